"""``plip spac caption``: caption person images with a trained SPAC captioner, or measure its quality.

    plip spac caption --checkpoint RUN IMAGE [IMAGE ...] [--decoding greedy|beam|nucleus] [--json]
    plip spac caption --checkpoint RUN --evaluate --data DATASET [DATASET ...] [--split test] [--out DIR]

For each image it prints the six attribute phrases and one caption per style. An image that cannot
be read is reported on its own line and the others are still captioned; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import (MEASURING_PRECISION, add_device_argument, add_precision_argument, check_captioner_dir,
                      check_dataset_dir, resolved_device, warn_deprecated)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", type=Path, metavar="IMAGE",
                        help="image files, or directories (their images are captioned, sorted by name)")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a checkpoint directory or a `plip spac train` run directory")
    parser.add_argument("--decoding", choices=("greedy", "beam", "nucleus"), default=None,
                        help="default: the config's (greedy)")
    parser.add_argument("--beams", type=int, default=None, help="beam width for --decoding beam")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus mass for --decoding nucleus")
    parser.add_argument("--temperature", type=float, default=None,
                        help="softmax temperature for --decoding nucleus (default: the config's, 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (nucleus)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model batch (default 32)")
    add_device_argument(parser)
    add_precision_argument(parser, MEASURING_PRECISION)  # --evaluate reports numbers; captions compare across machines
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's; 1 can be faster on a busy shared machine)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image instead of text")
    parser.add_argument("--evaluate", type=Path, nargs="*", metavar="DATASET", default=False,
                        help="measure quality on the --data datasets' --split instead of captioning images "
                             "(--evaluate DATASET ... is the deprecated spelling of --evaluate --data DATASET ...)")
    parser.add_argument("--data", type=Path, nargs="+", default=None, metavar="DATASET",
                        help="with --evaluate: the datasets to measure on")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most this many images")
    parser.add_argument("--out", type=Path, default=None, help="where --evaluate writes quality.md/.json")


def _expand(paths: list[Path]) -> list[Path]:
    from synth_pedes.sources.images import is_image_name  # the one list of image extensions

    out = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if is_image_name(f.name))
        else:
            out.append(p)  # a missing or unreadable file is reported as that image's error
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from spac.captioner import load_captioner

    evaluating = args.evaluate is not False
    if args.evaluate:  # the old spelling, --evaluate DATASET ...
        warn_deprecated("plip spac caption", "--evaluate DATASET", "--evaluate --data DATASET")
        args.data = [*args.evaluate, *(args.data or [])]
    if evaluating and not args.data:
        raise ValueError("--evaluate measures on datasets: give them with --data DATASET [DATASET ...]")
    if not args.images and not evaluating:
        raise ValueError("give IMAGE paths to caption, or --evaluate --data DATASET")
    for dataset in args.data or []:
        check_dataset_dir("--data", dataset)
    check_captioner_dir("--checkpoint", args.checkpoint)
    device = resolved_device(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    captioner = load_captioner(args.checkpoint, device)
    given = {"method": args.decoding, "num_beams": args.beams, "top_p": args.top_p, "temperature": args.temperature}
    opts = captioner.options(**{k: v for k, v in given.items() if v is not None},  # the rest: the config's
                             seed=args.seed, precision=args.precision)
    if evaluating:
        from spac.captioner.quality import evaluate_captioner, format_quality, format_samples, write_report

        report = evaluate_captioner(captioner, args.data, args.split, opts, batch_size=args.batch_size,
                                    limit=args.limit)
        print(format_quality(report))
        print(format_samples(report))
        if args.out:
            js, md = write_report(report, args.out)
            print(f"wrote {md} and {js}")
        return 0
    paths = _expand(args.images)
    if not paths:
        raise ValueError(f"no images found in {[str(p) for p in args.images]}")
    results = captioner.caption([str(p) for p in paths], opts, batch_size=args.batch_size)
    for res in results:
        if args.json:
            print(json.dumps(res.to_dict()))
            continue
        print(res.source)
        if not res.ok:
            print(f"  error: {res.error}")
            continue
        width = max(len(k) for k in [*res.attributes, *res.captions])
        for slot, phrase in res.attributes.items():
            print(f"  {slot:<{width}}  {phrase}")
        for style, caption in res.captions.items():
            print(f"  {style:<{width}}  {caption}")
    failed = sum(not r.ok for r in results)
    if failed:
        print(f"{failed} of {len(results)} images could not be captioned (see 'error' above)")
    return 1 if failed else 0
