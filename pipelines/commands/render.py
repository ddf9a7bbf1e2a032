"""``plip render``: a ProcPedes corpus as our dataset, an official benchmark layout, or an image folder."""
from __future__ import annotations

import argparse
import functools
import time
from itertools import islice
from pathlib import Path

from ._common import add_cluster_arguments, add_shard_arguments, close_progress, print_summary, shard_sizes

FORMATS = ("dataset", "cuhk-pedes", "icfg-pedes", "rstpreid", "market1501", "pa100k", "image-folder",
           "flat-folder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output directory (must be new or empty)")
    parser.add_argument("--identities", type=int, default=100, help="number of people (default 100)")
    parser.add_argument("--images-per-identity", type=int, default=8, help="images per person (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed renders the same corpus")
    parser.add_argument("--captions-per-image", type=int, default=2, help="human-style captions per image (default 2)")
    parser.add_argument("--format", choices=FORMATS, default="dataset",
                        help="dataset: manifest + Parquet shards; cuhk-pedes/icfg-pedes/rstpreid: the benchmark's "
                             "official images + JSON; market1501: the image-ReID folders; pa100k: the pedestrian-"
                             "attribute layout (data/NNNNNN.jpg + annotation.mat, 26 0/1 attributes per image from "
                             "the ground truth); image-folder: LUPerson-NL layout (<identity>/<file>.jpg, no "
                             "labels); flat-folder: LUPerson layout (all files in one folder); both also write "
                             "ground-truth.jsonl beside the images, for `plip card --truth`")
    parser.add_argument("--styles", default="cuhk-pedes,icfg-pedes,rstpreid",
                        help="annotator styles of the captions, comma-separated")
    parser.add_argument("--style-assignment", choices=("cycle", "rotate", "fixed", "random"), default="cycle",
                        help="which style caption j gets: cycle (styles[j]), rotate (all styles equally often), "
                             "fixed (the first), random")
    parser.add_argument("--height", type=int, default=256, help="image height in pixels (default 256)")
    parser.add_argument("--width", type=int, default=128, help="image width in pixels (default 128)")
    parser.add_argument("--split", default=None, help="render only identities of this split (train/val/test)")
    parser.add_argument("--contact-sheet", type=Path, default=None, help="also write a PNG grid of samples")
    add_shard_arguments(parser, "1000")  # used by --format dataset
    add_cluster_arguments(parser)


def config_from_args(args: argparse.Namespace):
    from synth_pedes.procpedes import ProcPedesConfig

    return ProcPedesConfig(identities=args.identities, images_per_identity=args.images_per_identity, seed=args.seed,
                           captions_per_image=args.captions_per_image, height=args.height, width=args.width,
                           styles=tuple(s.strip() for s in args.styles.split(",") if s.strip()),
                           style_assignment=args.style_assignment)


def selected_items(config, split: str | None) -> list:
    from synth_pedes.procpedes import plan_items

    items = plan_items(config)
    return [it for it in items if split is None or it.split == split]


def write_image_folder(records, out: Path, flat: bool) -> int:
    """Images as LUPerson(-NL) ships them (no labels): what `plip import images` reads. Beside them goes the
    ground truth, keyed by image sha256 (synth_pedes.card.truth.TRUTH_TABLE_NAME), which the import skips and
    SPAC never reads; `plip card --truth` joins it, so data that went through the folder can be scored."""
    from synth_pedes.card.truth import TRUTH_TABLE_NAME, truth_table_line

    n = 0
    out.mkdir(parents=True, exist_ok=True)
    with open(out / TRUTH_TABLE_NAME, "w") as truth:
        for rec in records:
            name = rec["key"].rsplit("/", 1)[-1]
            rel = f"{rec['identity']:05d}_{name}" if flat else f"{rec['identity']:05d}/{name}"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(rec["image"]["bytes"])
            truth.write(truth_table_line(rec, rel))
            n += 1
    return n


def _fixed(size: int, item) -> int:
    return size


def render(args: argparse.Namespace) -> dict | None:
    """Render as asked; returns what was made (used by the demo too)."""
    from synth_pedes import write_dataset
    from synth_pedes.procpedes import contact_sheet, render_record, write_layout

    from ..cluster import dask_client
    from ..progress import ShardProgress

    config = config_from_args(args)
    items = selected_items(config, args.split)
    if not items:
        raise ValueError(f"no identities fall in split {args.split!r} with {args.identities} identities")
    if args.out.exists() and any(args.out.iterdir()) and args.format != "dataset":
        raise ValueError(f"{args.out} is not empty; render into a new directory")
    transform = functools.partial(render_record, config=config)
    t0 = time.perf_counter()
    result = {"out": str(args.out), "format": args.format, "images": len(items)}
    if args.format == "dataset":
        shard_rows, shard_bytes = shard_sizes(args)
        # a --shard-size in bytes packs by the first image's size: the images are not drawn before the plan
        size_of = functools.partial(_fixed, len(transform(items[0])["image"]["bytes"])) if shard_bytes else None
        progress = ShardProgress("render")
        with dask_client(args.workers, args.scheduler, args.worker_timeout, shared=[args.out]) as client:
            manifest = write_dataset(items, args.out, name=f"procpedes-s{args.seed}", kind="benchmark",
                                     transform=transform, shard_rows=shard_rows, shard_bytes=shard_bytes,
                                     size_of=size_of, client=client,
                                     on_progress=progress, producer={"stage": "render-procpedes",
                                                                     "config": config.to_dict(),
                                                                     "split": args.split},
                                     description="ProcPedes: procedurally rendered pedestrians with ground-truth "
                                                 "attributes and human-style captions.")
        if close_progress(progress, args.out, manifest):
            return None
        result.update(id=manifest.id, rows=manifest.num_rows, splits=manifest.splits)
    else:
        records = map(transform, items)
        if args.format in ("image-folder", "flat-folder"):
            write_image_folder(records, args.out, flat=args.format == "flat-folder")
        else:
            result["layout"] = write_layout(records, args.out, args.format)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if args.contact_sheet:
        contact_sheet([transform(it) for it in islice(items, 0, len(items), max(1, len(items) // 32))][:32],
                      args.contact_sheet)
        result["contact_sheet"] = str(args.contact_sheet)
    return result


def run(args: argparse.Namespace) -> int:
    result = render(args)
    if result is None:  # the dataset was finished already (said by close_progress)
        return 0
    rows = [("output", result["out"]), ("format", result["format"]), ("images", result["images"]),
            ("time", f"{result['seconds']} s ({result['images'] / max(result['seconds'], 1e-9):.0f} images/s)")]
    if "id" in result:
        rows += [("id", result["id"]), ("splits", result["splits"])]
    layout = result.get("layout") or {}
    if layout.get("format") == "pa100k":
        rows += [("annotation", layout["annotation"]), ("splits", layout["images_per_split"]),
                 ("positives", ", ".join(f"{k} {v}" for k, v in layout["positives"].items())),
                 ("always 0", ", ".join(layout["always_zero"]) + " (ProcPedes draws no glasses or lower patterns)")]
    if "contact_sheet" in result:
        rows.append(("contact sheet", result["contact_sheet"]))
    print_summary("rendered ProcPedes", rows)
    return 0
