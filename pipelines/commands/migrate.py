"""``plip migrate DATASET --out NEW``: copy a dataset of the older layout into the current one (docs/formats.md#old-layout)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._common import (add_cluster_arguments, add_dataset_argument, checked_dataset_argument, close_progress,
                      print_summary)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser, "a dataset in the older layout (part-NNNNN.parquet files at the top)")
    parser.add_argument("--out", type=Path, required=True,
                        help="a new directory for the copy in the current layout (data/ and rejected/)")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from synth_pedes.migrate import migrate_dataset

    from ..cluster import dask_client
    from ..progress import ShardProgress

    old = checked_dataset_argument(args)
    t0 = time.perf_counter()
    progress = ShardProgress("migrate")
    with dask_client(args.workers, args.scheduler, args.worker_timeout, shared=[old, args.out]) as client:
        manifest = migrate_dataset(old, args.out, client, on_progress=progress)
    if close_progress(progress, args.out, manifest):
        return 0
    print_summary(f"copied {old} into the current layout", [
        ("dataset", args.out), ("id", manifest.id), ("rows", manifest.num_rows),
        ("usable", f"{manifest.num_usable_rows} (status ok)"), ("files", len(manifest.shards)),
        ("time", f"{time.perf_counter() - t0:.1f} s")])
    return 0
