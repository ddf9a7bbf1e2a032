"""``plip finetune text-reid (--init RUN | --config NAME) --data DIR --out RUN``: text-based person ReID.

The official CMPM/C recipe by default (docs/evaluation.md#fine-tuning-protocols): Adan lr 1e-4 wd 0.02, 5 warm-up
epochs, x0.1 at epoch 20, 30 epochs, 32 images per step, one caption per sample, the whole BERT trainable, the
identity classifier at lr x 10. The checkpoint is chosen on the validation split and the test split is reported
once, for it, in RUN/results.json (with every --eval-data benchmark: domain generalisation).
Multi-GPU: ``torchrun --nproc_per_node 4 -m pipelines.cli finetune text-reid ... --batch-size 128``.
"""
from __future__ import annotations

import argparse

from .finetune import add_common_arguments, add_select_on_argument, run_task

# command flags that set a config field (besides the shared training flags)
CONFIG_FLAGS = {"batch_size": "data.batch_size", "loss": "finetune.loss", "protocol": "finetune.protocol",
                "train_fraction": "finetune.train_fraction", "fraction_of": "finetune.fraction_of",
                "fraction_seed": "finetune.fraction_seed"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(
        parser, data_help="an imported benchmark with train, val and test splits (plip import cuhk-pedes|icfg-pedes|"
                          "rstpreid, or plip render)",
        eval_data_help="more benchmarks whose test split is reported for the selected checkpoint (domain "
                       "generalisation, e.g. train on CUHK-PEDES, evaluate on ICFG-PEDES)",
        batch_help="global images per optimizer step, over all ranks (data.batch_size; default 32, the official 32 "
                   "per GPU on one GPU)")
    parser.add_argument("--loss", choices=("cmpm+cmpc", "cmpm"), default=None,
                        help="cmpm+cmpc: the official recipe (default); cmpm: the paper's CMPM-only fine-tune")
    parser.add_argument("--protocol", choices=("finetune", "linear-probe"), default=None,
                        help="finetune: both encoders train (default); linear-probe: frozen encoders, a linear map "
                             "after each is trained")
    add_select_on_argument(parser, "t2i R1", "ICFG-PEDES")
    fewshot = parser.add_argument_group("few-shot (the subset is written to RUN/subset.json)")
    fewshot.add_argument("--train-fraction", type=float, default=None, metavar="F",
                         help="train on this fraction (0 < F <= 1, default 1) of the training data")
    fewshot.add_argument("--fraction-of", choices=("identities", "images"), default=None,
                         help="identities: F of the identities, all their images (default); images: F of every "
                              "identity's images")
    fewshot.add_argument("--fraction-seed", type=int, default=None, metavar="S",
                         help="which subset (default 0): the same seed picks the same rows")


def run(args: argparse.Namespace) -> int:
    from plip_train.finetune import text_reid

    return run_task(args, text_reid, CONFIG_FLAGS, lambda cfg: f"{cfg.finetune.protocol}, loss {cfg.finetune.loss}",
                    select_section="finetune")
