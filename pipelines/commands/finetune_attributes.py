"""``plip finetune attributes (--init RUN | --config NAME) --data DIR --out RUN``: pedestrian attribute recognition.

The Rethinking_of_PAR baseline by default (docs/evaluation.md#attribute-recognition-fine-tuning): the image encoder
and one linear layer, weighted BCE, Adam 1e-4 wd 5e-4 (gradient norm clipped at 10), lr x 0.1 when the validation
loss stalls for 4 epochs, 30 epochs of 64 images at 4:3 (256 x 192 at paper size) with flip and padding 10 + random
crop. The checkpoint is chosen on val mA and the test split is reported once, for it, in RUN/results.json: mA and
the instance-based accuracy, precision, recall and F1, as that repository computes them.
"""
from __future__ import annotations

import argparse

from .finetune import add_common_arguments, add_select_on_argument, run_task

# command flags that set a config field (besides the shared training flags)
CONFIG_FLAGS = {"batch_size": "data.batch_size", "protocol": "par.protocol"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(
        parser, data_help="an imported attribute-recognition dataset with train, val and test splits (plip import "
                          "pa100k|peta|rap|rap2, or plip render --format pa100k then import)",
        eval_data_help="more datasets of the same attributes whose test split is reported for the selected "
                       "checkpoint",
        batch_help="global images per optimizer step, over all ranks (data.batch_size; default 64)")
    parser.add_argument("--protocol", choices=("finetune", "linear-probe"), default=None,
                        help="finetune: the image encoder trains with the layer (default); linear-probe: frozen "
                             "encoder, only the linear layer trains")
    add_select_on_argument(parser, "mA", "RAPv1")


def run(args: argparse.Namespace) -> int:
    from plip_train.finetune import attributes

    def describe(cfg) -> str:
        size = "x".join(map(str, cfg.model.image.image_size))
        return (f"Rethinking_of_PAR baseline ({cfg.par.protocol}): linear layer, "
                f"{'weighted ' if cfg.par.weighted else ''}BCE, {size}, batch {cfg.data.batch_size}")

    return run_task(args, attributes, CONFIG_FLAGS, describe, select_section="par")
