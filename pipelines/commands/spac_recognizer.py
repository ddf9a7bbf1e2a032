"""``plip spac train-recognizer --data DIR [DIR...] --out DIR``: train SPAC's attribute classifier.

Labels are mined from the human captions with the phrase extractor (``--labels captions``, as the paper
did) or read from the ``attributes`` column (``--labels attributes``). Running the same command again on
an unfinished ``--out`` resumes it; raising ``--epochs``/``--max-steps`` continues a finished one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import print_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="dataset directories to train on")
    parser.add_argument("--out", type=Path, required=True,
                        help="checkpoint directory (new, or an earlier run of this command to resume)")
    parser.add_argument("--config", default="default",
                        help="named config (default: EfficientNet-Lite0 with ImageNet weights, 256x128; tiny: a "
                             "small random-init net for tests) or a JSON file (a config object or a checkpoint's "
                             "config.json)")
    parser.add_argument("--epochs", type=int, default=None, help="passes over the training rows (config: 8)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (config: 64)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW learning rate (config: 1e-3)")
    parser.add_argument("--labels", choices=("captions", "attributes"), default=None,
                        help="captions: mine labels from human captions (default); attributes: use the dataset's "
                             "attributes column")
    parser.add_argument("--min-count", type=int, default=None,
                        help="keep phrases seen at least this often in the vocabulary (config: 5)")
    parser.add_argument("--split", default=None, help="rows of this split are trained on (default: train)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=None,
                        help="autocast: auto uses bf16 where the device supports it (config: auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when available)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (config: 0)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many training rows")
    parser.add_argument("--save-every", type=int, default=0, help="also save a resumable checkpoint every N steps")
    parser.add_argument("--log-every", type=int, default=10, help="write a train_log.jsonl line every N steps")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from spac.recognizers import load_config
    from spac.recognizers.train import train_classifier

    for d in args.data:
        if not d.is_dir():
            raise FileNotFoundError(f"--data {d}: no such dataset directory")
    for name in ("epochs", "max_steps", "batch_size", "min_count", "limit"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    config = load_config(args.config).replace(epochs=args.epochs, max_steps=args.max_steps,
                                              batch_size=args.batch_size, lr=args.lr, labels=args.labels,
                                              min_count=args.min_count, split=args.split,
                                              precision=args.precision, seed=args.seed)
    summary = train_classifier(args.data, args.out, config, device=args.device, limit=args.limit,
                               save_every=args.save_every, log_every=args.log_every,
                               progress=False if args.no_progress else None, command=sys.argv)
    vocab = ", ".join(f"{s} {n}" for s, n in summary["vocab_sizes"].items())
    print_summary("trained attribute classifier", [
        ("checkpoint", summary["out"]),
        ("data", ", ".join(f"{d['path']} ({d['rows']} rows, {d['id'][:19]})" for d in summary["data"])),
        ("steps", f"{summary['steps']} ({summary['epochs']} epochs)"),
        ("final loss", f"{summary['final_loss']:.4f}"),
        ("time", f"{summary['seconds']} s ({summary['images_per_s']} images/s, {summary['precision']}, "
                 f"{summary['device']})"),
        ("vocabulary", vocab),
    ])
    return 0
