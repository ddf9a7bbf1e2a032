"""``plip finetune image-reid (--init RUN | --config NAME) --data DIR --out RUN``: image-based person ReID.

BoT's recipe by default (docs/evaluation.md#image-reid-fine-tuning): ID loss with label smoothing + batch-hard
triplet (margin 0.3) + center loss (5e-4, its own SGD at 0.5) around a BNNeck, P=16 x K=4, flip, padding 10 +
random crop, random erasing 0.5, Adam 3.5e-4 wd 5e-4, 10 warm-up epochs, x0.1 at 40 and 70, 120 epochs. The last
checkpoint is evaluated once, query vs gallery (same identity + same camera excluded), in RUN/results.json.
"""
from __future__ import annotations

import argparse

from .finetune import add_common_arguments, run_task

# command flags that set a config field (besides the shared training flags)
CONFIG_FLAGS = {"batch_size": "data.batch_size", "rerank": "reid.rerank"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(
        parser, data_help="an imported image-ReID benchmark: train, query and gallery splits (plip import "
                          "market1501|dukemtmc-reid|msmt17)",
        eval_data_help="more image-ReID benchmarks to report query vs gallery on (cross-domain, e.g. train on "
                       "Market-1501, evaluate on DukeMTMC-reID)",
        batch_help="global images per optimizer step, over all ranks (data.batch_size; default 64: 16 identities x "
                   "4 images)")
    parser.add_argument("--rerank", action="store_true", default=None,
                        help="also report k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3)")


def run(args: argparse.Namespace) -> int:
    from plip_train.finetune import image_reid

    return run_task(args, image_reid, CONFIG_FLAGS,
                    lambda cfg: f"BoT: ID + triplet + center, batch {cfg.data.batch_size}")
