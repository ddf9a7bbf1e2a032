"""``plip filter DIR --out DIR``: the paper's quality filters as a new dataset version."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._common import (add_cluster_arguments, add_dataset_argument, add_device_argument, checked_dataset_argument,
                      close_progress, print_summary, resolved_device)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser, "the caption dataset to filter (it is not changed)")
    parser.add_argument("--out", type=Path, required=True, help="the new dataset directory")
    parser.add_argument("--max-unknown", type=int, default=2, help="drop images with more unknown slots (default 2)")
    parser.add_argument("--gender-threshold", type=float, default=0.7, help="gender voting share (default 0.7)")
    parser.add_argument("--min-images", type=int, default=5, help="drop identities with fewer images (default 5)")
    parser.add_argument("--max-images", type=int, default=20, help="keep at most this many per identity (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed for which images identity capping keeps")
    parser.add_argument("--min-faithfulness", type=float, default=None, metavar="X",
                        help="drop generated and prompt captions whose faithfulness (the share of their attribute "
                             "phrases that agree with the image's attributes, stored by plip synth or recomputed "
                             "from the spans) is below X, in [0, 1]; an image left with no caption is filtered "
                             "(reason 'faithfulness'). Default: off")
    seed = parser.add_argument_group(
        "seed filter (noisy identities)",
        "Runs only when --encoder is given. Its thresholds (0.6/0.65/0.62) assume re-identification features: "
        "generic ImageNet features put any two pedestrians at cosine ~0.6 (measured on ProcPedes: 0.71 within vs "
        "0.60 across identities), so the merger would chain every identity into one.")
    seed.add_argument("--encoder", default=None,
                      help="image encoder: a re-identification model's backbone via timm:<name> + --encoder-weights, "
                           "or efficientnet_lite0 (ImageNet weights) / tiny for experiments")
    seed.add_argument("--encoder-weights", type=Path, default=None, help="a local weights file for the encoder")
    seed.add_argument("--sigma-s", type=float, default=0.6, help="filter-out threshold (default 0.6)")
    seed.add_argument("--sigma-r", type=float, default=0.65, help="reassignment threshold (default 0.65)")
    seed.add_argument("--sigma-m", type=float, default=0.62, help="merger threshold (default 0.62)")
    seed.add_argument("--neighbours", type=int, default=2, help="neighbouring identities considered (default 2)")
    add_device_argument(parser, " for the encoder")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from spac.embedding import EmbedderConfig
    from spac.filters import FilterConfig

    from ..cluster import dask_client
    from ..filter_job import run_filter
    from ..progress import ShardProgress

    args.dataset = checked_dataset_argument(args)
    config = FilterConfig(max_unknown=args.max_unknown, gender_threshold=args.gender_threshold,
                          min_images=args.min_images, max_images=args.max_images, seed=args.seed,
                          seed_filter=args.encoder is not None, sigma_s=args.sigma_s, sigma_r=args.sigma_r,
                          sigma_m=args.sigma_m, neighbours=args.neighbours, min_faithfulness=args.min_faithfulness)
    embedder = None if args.encoder is None else EmbedderConfig(
        backbone=args.encoder, pretrained=str(args.encoder_weights) if args.encoder_weights else args.encoder == "efficientnet_lite0",
        device=resolved_device(args))
    t0 = time.perf_counter()
    progress = ShardProgress("filter")
    with dask_client(args.workers, args.scheduler, args.worker_timeout, shared=[args.dataset, args.out]) as client:
        manifest, counts = run_filter(args.dataset, args.out, config, embedder, client, progress)
    if close_progress(progress, args.out, manifest):
        return 0
    rows = [("dataset", args.out), ("id", manifest.id), ("parent", manifest.parents[0]),
            ("status", ", ".join(f"{k}={v}" for k, v in manifest.status_counts.items()))]
    rows += [(f"  {k}", v) for k, v in counts.items() if k not in ("rows",)]
    if args.encoder is None:
        rows.append(("seed filter", "skipped: no --encoder (its thresholds need re-identification features)"))
    rows.append(("time", f"{time.perf_counter() - t0:.1f} s"))
    print_summary(f"filtered {counts['rows']} rows of {args.dataset}", rows)
    if manifest.num_usable_rows == 0 and counts["rows"]:
        print(f"plip filter: warning: no row was kept: every one of the {counts['rows']} rows is filtered or "
              "failed (the counts above say by which rule), so nothing can train on this version. Loosen the rule "
              "that took most (e.g. --max-unknown, --gender-threshold, --min-images) and filter the input again",
              file=sys.stderr)
    return 0
