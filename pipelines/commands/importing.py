"""``plip import KIND SRC --out DIR``: bring external data into the synth-pedes format."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._common import add_cluster_arguments, add_shard_arguments, print_summary, shard_sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    images = sub.add_parser("images", help="a folder of person images (flat, or one folder per identity)",
                            description="Import a folder of person images: flat (LUPerson; identity -1) or one "
                                        "folder per identity (LUPerson-NL; identity from the folder name). "
                                        "Unreadable files become status=error rows.")
    images.add_argument("src", type=Path, help="the image folder")
    images.add_argument("--out", type=Path, required=True, help="output dataset directory (new, or an unfinished write)")
    images.add_argument("--name", default=None, help="dataset name (default: the folder name)")
    images.add_argument("--source", default=None, help="source name used in keys (default: the folder name)")
    images.add_argument("--split", default="train", help="split recorded on every row (default: train)")
    images.add_argument("--max-pixels", type=int, default=None, help="reject images with more pixels (bomb guard)")
    add_shard_arguments(images)
    add_cluster_arguments(images)


def run(args: argparse.Namespace) -> int:
    if args.kind == "images":
        return import_images(args)
    raise AssertionError(args.kind)


def import_images(args: argparse.Namespace) -> int:
    from synth_pedes import write_dataset
    from synth_pedes.sources.images import MAX_PIXELS, ImageFolderSource, scan_image_folder

    from ..cluster import dask_client
    from ..progress import ShardProgress

    t0 = time.perf_counter()
    layout, items = scan_image_folder(args.src)
    name = args.name or args.src.resolve().name
    source = ImageFolderSource(root=str(args.src.resolve()), source=args.source or name, split=args.split,
                               max_pixels=args.max_pixels or MAX_PIXELS)
    shard_rows, shard_bytes = shard_sizes(args)
    producer = {"stage": "import-images", "config": {"src": str(args.src.resolve()), "layout": layout,
                                                     "source": source.source, "split": args.split,
                                                     "max_pixels": source.max_pixels,
                                                     "shard_rows": shard_rows, "shard_bytes": shard_bytes}}
    progress = ShardProgress(f"import {name}")
    with dask_client(args.workers, args.scheduler) as client:
        manifest = write_dataset(items, args.out, name=name, kind="images", transform=source,
                                 shard_rows=shard_rows, shard_bytes=shard_bytes, size_of=lambda it: it.size,
                                 producer=producer, client=client, on_progress=progress,
                                 description=f"Person images imported from {args.src} ({layout} layout).")
    progress.close()
    seconds = time.perf_counter() - t0
    print_summary(f"imported {len(items)} files from {args.src} ({layout} layout)", [
        ("dataset", args.out), ("id", manifest.id), ("rows", manifest.num_rows),
        ("status", ", ".join(f"{k}={v}" for k, v in manifest.status_counts.items())),
        ("shards", len(manifest.shards)), ("size", f"{manifest.num_bytes / 2**20:.1f} MiB"),
        ("time", f"{seconds:.1f} s ({len(items) / seconds:.0f} images/s)"),
    ])
    return 0
