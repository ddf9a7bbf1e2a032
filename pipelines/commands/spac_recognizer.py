"""``plip spac train-recognizer --data DIR [DIR...] --out RUN``: train SPAC's attribute classifier.

Labels are mined from the human captions with the phrase extractor (``--labels captions``, as the paper
did) or read from the ``attributes`` column (``--labels attributes``). ``--resume`` continues an unfinished
run; with the constant schedule, a larger ``--epochs``/``--max-steps`` trains a finished one longer.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_training_arguments, check_dataset_dir, print_summary, run_options, training_overrides

# command flags that set a config field (besides the shared training flags)
CONFIG_FLAGS = {"batch_size": "batch_size", "lr": "lr", "labels": "labels", "min_count": "min_count", "split": "split"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="dataset directories to train on")
    parser.add_argument("--out", type=Path, required=True, help="run directory (run.json, checkpoints, logs)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (config: 64)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW learning rate (config: 1e-3)")
    parser.add_argument("--labels", choices=("captions", "attributes"), default=None,
                        help="captions: mine labels from human captions (default); attributes: use the dataset's "
                             "attributes column")
    parser.add_argument("--min-count", type=int, default=None,
                        help="keep phrases seen at least this often in the vocabulary (config: 5)")
    parser.add_argument("--split", default=None, help="rows of this split are trained on (default: train)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many training rows")
    add_training_arguments(parser, "named config (default: EfficientNet-Lite0 with ImageNet weights, 256x128; tiny: "
                                   "a small random-init net for tests) or a JSON file (a config object or a "
                                   "checkpoint's config.json)")
    parser.set_defaults(config="default")


def run(args: argparse.Namespace) -> int:
    from spac.recognizers import load_config
    from spac.recognizers.train import train_classifier

    for data in args.data:
        check_dataset_dir("--data", data)
    config = load_config(args.config, training_overrides(args, CONFIG_FLAGS))
    res = train_classifier(config, args.data, args.out, run_options(args), limit=args.limit)
    vocab = ", ".join(f"{s} {n}" for s, n in res.extra["vocab_sizes"].items())
    print_summary("trained attribute classifier", [
        ("run", res.run_dir), ("checkpoint", res.checkpoint),
        ("steps", f"{res.end_step} of {res.total_steps} ({res.steps} this run)"),
        *res.loss_rows(),
        ("throughput", f"{res.samples_per_second:.1f} images/s ({res.extra['precision']}, {res.extra['device']})"),
        ("vocabulary", vocab),
        ("logs", f"{res.run_dir}/metrics.jsonl, {res.run_dir}/tb"),
    ])
    return 0
