"""``plip spac train``: train SPAC's stylised prefix captioner on human-captioned datasets.

    plip spac train --data DIR [DIR ...] --out RUN [--config cpu-small|paper|tiny|FILE] [--max-steps N]
                    [--epochs N] [--batch-size N] [--resume] [--device auto|cpu|cuda] [--seed S]
                    [--precision auto|fp32|bf16|fp16] [--set FIELD=VALUE ...] [--evaluate]

Writes the run directory (``run.json``, ``checkpoints/step-N/`` each a loadable captioner checkpoint,
``metrics.jsonl``, ``tb/``, ``losses.png``); with --evaluate also RUN/quality.md and RUN/quality.json (the
test identities of the same datasets).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_training_arguments, check_dataset_dir, print_summary, run_options, training_overrides

# command flags that set a config field (besides the shared training flags)
CONFIG_FLAGS = {"batch_size": "batch_size", "split": "split"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, nargs="+", required=True, metavar="DIR",
                        help="caption datasets (their human captions of the training split are used)")
    parser.add_argument("--out", type=Path, required=True, help="run directory (run.json, checkpoints, logs)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (default: the config's)")
    parser.add_argument("--split", default=None, help="which split to train on (default: the config's, train)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many images (smoke runs)")
    parser.add_argument("--evaluate", action="store_true",
                        help="afterwards, measure caption quality on the test split of the same datasets")
    parser.add_argument("--eval-split", default="test", help="split that --evaluate measures (default test)")
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluate at most this many images")
    add_training_arguments(parser, "a shipped config (cpu-small, paper, tiny) or a JSON file (default cpu-small). "
                                   "paper starts ResNet-101 and its GPT-2-size decoder from random weights unless "
                                   "local files are given: --set backbone_weights=FILE.pth --set decoder_weights=DIR "
                                   "--set tokenizer=gpt2 --set tokenizer_path=DIR (nothing is downloaded; README.md, "
                                   "'SPAC on real photos at paper size')")
    parser.set_defaults(config="cpu-small")


def run(args: argparse.Namespace) -> int:
    from spac.captioner import load_config, train

    for data in args.data:
        check_dataset_dir("--data", data)
    cfg = load_config(args.config, training_overrides(args, CONFIG_FLAGS))
    res = train(cfg, args.data, args.out, run_options(args), limit=args.limit)
    rows = [("run", res.run_dir), ("checkpoint", res.checkpoint), ("config", cfg.name),
            ("images", res.extra["images"]), ("captions per style", res.extra["corpus"]["captions_per_style"]),
            ("steps", f"{res.end_step} of {res.total_steps} ({res.steps} this run, "
                      f"{res.samples_per_second:.1f} images/s)")]
    rows += res.loss_rows()
    rows.append(("logs", f"{res.run_dir}/metrics.jsonl, {res.run_dir}/tb"))
    print_summary("trained SPAC captioner", rows)
    if args.evaluate:
        from spac.captioner import load_captioner
        from spac.captioner.quality import evaluate_captioner, format_quality, write_report

        report = evaluate_captioner(load_captioner(args.out, str(res.extra["device"])), args.data, args.eval_split,
                                    limit=args.eval_limit)
        js, md = write_report(report, args.out)
        print()
        print(format_quality(report))
        print(f"wrote {md} and {js}")
    return 0

