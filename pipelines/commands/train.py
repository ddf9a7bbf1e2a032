"""``plip train --data DIR --out RUN``: PLIP pre-training on a caption dataset (one process or torchrun).

Multi-GPU: ``torchrun --nproc_per_node 8 -m pipelines.cli train --data DIR --out RUN --config
paper-rn50-bert``; every rank runs this same command and reads its slice of each global batch.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import print_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="caption dataset (plip synth / plip filter output)")
    parser.add_argument("--out", type=Path, required=True, help="run directory (run.json, checkpoints, logs)")
    parser.add_argument("--config", default="cpu-small",
                        help="a shipped config (paper-rn50-bert, cpu-small, tiny) or a JSON file (default cpu-small)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=1e-3 --set data.batch_size=64 (repeatable)")
    parser.add_argument("--max-steps", type=int, default=None, help="train this many steps (overrides epochs)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop (with a checkpoint) after this step without changing the schedule; "
                             "--resume continues it (for time-sliced or preemptible jobs)")
    parser.add_argument("--device", default="auto", help="auto (this rank's GPU if any), cpu, cuda")
    parser.add_argument("--workers", type=int, default=None, help="data loader workers (default: the config's)")


def run(args: argparse.Namespace) -> int:
    from plip_train.config import load_config
    from plip_train.trainer import train

    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.workers is not None:
        overrides.append(f"data.num_workers={args.workers}")
    cfg = load_config(args.config, overrides)
    result = train(cfg, args.data, args.out, resume=args.resume, device=args.device, stop_after=args.stop_after)
    if result.checkpoint is not None:  # rank 0 only
        last = result.losses[-1] if result.losses else {}
        print_summary("plip train", [
            ("run", args.out), ("config", cfg.name), ("steps this run", result.steps),
            ("samples/s", f"{result.samples_per_second:.1f}"),
            ("last losses", ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k.endswith("loss"))),
            ("checkpoint", result.checkpoint), ("logs", f"{args.out}/metrics.jsonl, {args.out}/tb")])
    return 0
