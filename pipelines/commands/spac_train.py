"""``plip spac train``: train SPAC's stylised prefix captioner on human-captioned datasets.

    plip spac train --data DIR [DIR ...] --out RUN [--config cpu-small|paper|tiny|FILE] [--max-steps N]
                    [--epochs N] [--batch-size N] [--resume] [--device cpu|cuda] [--seed S]
                    [--precision fp32|bf16] [--set FIELD=VALUE ...] [--evaluate]

Writes RUN/checkpoint/ (weights, config, vocabulary, run.json, trainer state) and RUN/train_log.jsonl;
with --evaluate also RUN/quality.md and RUN/quality.json (the test identities of the same datasets).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import print_summary


def parse_set(items: list[str] | None) -> dict:
    """``["lr=0.001", 'styles=["a","b"]']`` -> ``{"lr": 0.001, "styles": ["a", "b"]}`` (JSON, else a string)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, nargs="+", required=True, metavar="DIR",
                        help="caption datasets (their human captions of the training split are used)")
    parser.add_argument("--out", type=Path, required=True, help="run directory (checkpoint, log)")
    parser.add_argument("--config", default="cpu-small",
                        help="a shipped config (cpu-small, paper, tiny) or a JSON file (default cpu-small)")
    parser.add_argument("--set", action="append", metavar="FIELD=VALUE", dest="overrides",
                        help="override a config field (JSON value), e.g. --set backbone_weights=/models/r101.pth")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps in all")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the config's, unless --max-steps)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (default: the config's)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="default: the config's")
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes (default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's; 1 can be faster on a busy shared machine)")
    parser.add_argument("--split", default="train", help="which split to train on (default train)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many images (smoke runs)")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    parser.add_argument("--evaluate", action="store_true",
                        help="afterwards, measure caption quality on the test split of the same datasets")
    parser.add_argument("--eval-split", default="test")
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluate at most this many images")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from spac.captioner import TrainOptions, load_config, train

    for d in args.data:
        if not d.is_dir():
            raise ValueError(f"--data {d}: not a dataset directory")
    for name in ("max_steps", "epochs", "batch_size", "limit", "checkpoint_every"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, **parse_set(args.overrides))
    opts = TrainOptions(max_steps=args.max_steps, epochs=args.epochs, batch_size=args.batch_size, device=args.device,
                        seed=args.seed, resume=args.resume, workers=args.workers, precision=args.precision,
                        split=args.split, limit=args.limit, checkpoint_every=args.checkpoint_every,
                        progress=False if args.no_progress else None)
    res = train(args.data, args.out, cfg, opts)
    last = res["last"]
    rows = [("checkpoint", res["checkpoint"]), ("log", res["log"]), ("config", cfg.name),
            ("images", res["images"]), ("captions per style", res["corpus"]["captions_per_style"]),
            ("steps", f"{res['step']} ({res['epochs_done']} epochs)"), ("train time", f"{res['train_seconds']} s")]
    if last:
        rows.append(("last loss", f"{last['loss']:.4f} (caption {last['caption_loss']:.4f}, "
                                  f"attribute {last['attribute_loss']:.4f})"))
    rows.append(("datasets", ", ".join(f"{d['name']} {d['id'][:19]}" for d in res["datasets"])))
    print_summary("trained SPAC captioner", rows)
    if args.evaluate:
        from spac.captioner import load_captioner
        from spac.captioner.quality import evaluate_captioner, format_quality, write_report

        report = evaluate_captioner(load_captioner(args.out, args.device), args.data, args.eval_split,
                                    limit=args.eval_limit)
        js, md = write_report(report, args.out)
        print()
        print(format_quality(report))
        print(f"wrote {md} and {js}")
    return 0
