"""``plip train --data DIR --out RUN``: PLIP pre-training on a caption dataset (one process or torchrun).

Multi-GPU: ``torchrun --nproc_per_node 8 -m pipelines.cli train --data DIR --out RUN --config
paper-rn50-bert``; every rank runs this same command and reads its slice of each global batch.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_training_arguments, check_dataset_dir, print_summary, run_options, training_overrides

# command flags that set a config field (besides the shared training flags)
CONFIG_FLAGS = {"batch_size": "data.batch_size"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="caption dataset (plip synth / plip filter output)")
    parser.add_argument("--out", type=Path, required=True, help="run directory (run.json, checkpoints, logs)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="global images per optimizer step, over all ranks (data.batch_size; default: the "
                             "config's)")
    add_training_arguments(parser, "a shipped config (paper-rn50-bert, cpu-small, tiny) or a JSON file (default "
                                   "cpu-small)")
    parser.set_defaults(config="cpu-small")


def run(args: argparse.Namespace) -> int:
    from plip_train.config import load_config
    from plip_train.trainer import train

    check_dataset_dir("--data", args.data)
    cfg = load_config(args.config, training_overrides(args, CONFIG_FLAGS))
    result = train(cfg, args.data, args.out, run_options(args))
    if result.checkpoint is not None:  # rank 0 only
        print_summary("plip train", [
            ("run", args.out), ("config", cfg.name),
            ("steps", f"{result.end_step} of {result.total_steps} ({result.steps} this run)"),
            ("samples/s", f"{result.samples_per_second:.1f}"), *result.loss_rows(),
            ("checkpoint", result.checkpoint), ("logs", f"{args.out}/metrics.jsonl, {args.out}/tb")])
    return 0
