"""``plip import KIND SRC --out DIR``: bring external data into the synth-pedes format."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._common import add_cluster_arguments, add_shard_arguments, close_progress, print_summary, shard_sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    images = sub.add_parser("images", help="a folder of person images (flat, or one folder per identity)",
                            description="Import a folder of person images: flat (LUPerson; identity -1) or one "
                                        "folder per identity (LUPerson-NL; identity from the folder name). "
                                        "Unreadable files, dangling symlinks and symlinks leading outside SRC "
                                        "become status=error rows; other paths left out are counted by reason "
                                        "(docs/formats.md#image-folders).")
    images.add_argument("src", type=Path, help="the image folder")
    images.add_argument("--out", type=Path, required=True, help="output dataset directory (new, or an unfinished write)")
    images.add_argument("--name", default=None, help="dataset name (default: the folder name)")
    images.add_argument("--source", default=None, help="source name used in keys (default: the folder name)")
    images.add_argument("--split", default="train", help="split recorded on every row (default: train)")
    images.add_argument("--max-pixels", type=int, default=None, help="reject images with more pixels (bomb guard)")
    add_allow_outside_root(images)
    add_shard_arguments(images)
    add_cluster_arguments(images)
    _add_entry_importers(sub)


def add_allow_outside_root(parser: argparse.ArgumentParser, root: str = "SRC") -> None:
    """The one definition of ``--allow-outside-root`` (every importer has it; see
    ``synth_pedes.sources.images.resolve_inside``); ``root`` is the folder the files are looked up in."""
    parser.add_argument("--allow-outside-root", action="store_true",
                        help=f"follow symlinks that lead outside {root} (refused by default: such a file is never "
                             "read)")


def run(args: argparse.Namespace) -> int:
    if args.kind == "images":
        return import_images(args)
    if args.kind in ENTRY_IMPORTERS:
        return import_entries(args)
    raise AssertionError(args.kind)


def import_images(args: argparse.Namespace) -> int:
    from synth_pedes import write_dataset
    from synth_pedes.sources.images import MAX_PIXELS, ImageFolderSource, scan_image_folder, stored_path

    from ..cluster import dask_client
    from ..progress import ShardProgress

    t0 = time.perf_counter()
    scan = scan_image_folder(args.src, args.allow_outside_root)
    items = scan.items
    src = stored_path(str(args.src.resolve()))  # as the manifest can store it (docs/formats.md#file-names)
    name = args.name or src.rsplit("/", 1)[-1]
    source = ImageFolderSource(root=str(args.src.resolve()), source=args.source or name, split=args.split,
                               max_pixels=args.max_pixels or MAX_PIXELS, allow_outside_root=args.allow_outside_root)
    shard_rows, shard_bytes = shard_sizes(args)
    producer = {"stage": "import-images",
                "config": {"src": src, "layout": scan.layout, "source": source.source,
                           "split": args.split, "max_pixels": source.max_pixels,
                           "allow_outside_root": args.allow_outside_root, "identity_map": scan.identity_map,
                           "shard_rows": shard_rows, "shard_bytes": shard_bytes},
                "counts": {"files": len(items), "skipped": scan.skipped}}
    progress = ShardProgress(f"import {name}")
    with dask_client(args.workers, args.scheduler, args.worker_timeout, shared=[args.out]) as client:
        manifest = write_dataset(items, args.out, name=name, kind="images", transform=source,
                                 shard_rows=shard_rows, shard_bytes=shard_bytes, size_of=lambda it: it.size,
                                 producer=producer, client=client, on_progress=progress,
                                 description=f"Person images imported from {stored_path(str(args.src))} "
                                             f"({scan.layout} layout).")
    if close_progress(progress, args.out, manifest):
        return 0
    seconds = time.perf_counter() - t0
    print_summary(f"imported {len(items)} files from {stored_path(str(args.src))} ({scan.layout} layout)", [
        ("dataset", args.out), ("id", manifest.id), ("rows", manifest.num_rows),
        ("status", ", ".join(f"{k}={v}" for k, v in manifest.status_counts.items())),
        *error_files(args.out, manifest, source.source),
        ("skipped", ", ".join(f"{k}={v}" for k, v in scan.skipped.items()) or "none"),
        ("files", len(manifest.shards)), ("size", f"{manifest.num_bytes / 2**20:.1f} MiB"),
        ("time", f"{seconds:.1f} s ({len(items) / seconds:.0f} images/s)"),
    ])
    return 0


ERROR_FILES_SHOWN = 5  # the summary names this many error rows' files; the dataset keeps every one


def error_files(out: Path, manifest, source: str) -> list[tuple[str, str]]:
    """Summary rows naming the files of the first few ``status=error`` rows with why, and where all of them are:
    the dataset's own error rows (``key`` is ``SOURCE/<file under SRC>``, ``error`` the reason)."""
    count = manifest.status_counts.get("error", 0)
    if not count:
        return []
    from synth_pedes.dataset import Dataset

    rows = Dataset(out, manifest).iter_records(["key", "error"], status="error")
    shown = [f"{row['key'].removeprefix(source + '/')} ({row['error'].split(':')[0]})"
             for _, row in zip(range(ERROR_FILES_SHOWN), rows)]
    more = f" and {count - len(shown)} more" if count > len(shown) else ""
    return [("errors", ", ".join(shown) + more),
            ("", f"all {count}: the status=error rows of {out} (file in 'key', reason in 'error')")]


# ------------------------------------------------------------------ benchmarks, SYNTH-PEDES JSON, ReID, attributes

# kind -> (dataset kind, one-line help, description)
ENTRY_IMPORTERS = {
    "cuhk-pedes": ("benchmark", "CUHK-PEDES (reid_raw.json or caption_all.json + imgs/)",
                   "Import CUHK-PEDES: SRC/reid_raw.json (or caption_all.json; without 'split' it needs "
                   "--split-file) and the images under SRC/imgs/<file_path>. One row per entry; identity is "
                   "the dataset's own 1-based id; splits train/val/test as given."),
    "icfg-pedes": ("benchmark", "ICFG-PEDES (ICFG_PEDES.json + imgs/)",
                   "Import ICFG-PEDES: SRC/ICFG_PEDES.json and SRC/imgs/<file_path>. One row per entry; identity "
                   "is the dataset's own 0-based id; splits train/test as given."),
    "rstpreid": ("benchmark", "RSTPReid (data_captions.json + imgs/)",
                 "Import RSTPReid: SRC/data_captions.json and SRC/imgs/<img_path>. One row per entry; identity "
                 "is the dataset's own 0-based id; splits train/val/test as given."),
    "synth-pedes-json": ("captions", "a released SYNTH-PEDES (Part1..Part11/ + synthpedes-dataset.json)",
                         "Import the released SYNTH-PEDES layout: SRC/Part*/<id>/<k>.jpg and "
                         "SRC/synthpedes-dataset.json (or synthpedes_dataset.json). attributes fill the six "
                         "slots; captions become kind 'generated' (styles spac-0, spac-1, ...); prompt_caption "
                         "becomes kind 'prompt'."),
    "market1501": ("benchmark", "Market-1501 (bounding_box_train/, query/, bounding_box_test/)",
                   "Import Market-1501: bounding_box_train/ -> train, query/ -> query, bounding_box_test/ -> "
                   "gallery; identity and camera from PPPP_cXsY_FFFFFF_NN.jpg. Junk (-1) and distractor (0000) "
                   "images are kept and flagged in 'extra' (junk: true / distractor: true)."),
    "dukemtmc-reid": ("benchmark", "DukeMTMC-reID (bounding_box_train/, query/, bounding_box_test/)",
                      "Import DukeMTMC-reID: bounding_box_train/ -> train, query/ -> query, bounding_box_test/ -> "
                      "gallery; identity and camera from PPPP_cX_fFFFFFFF.jpg (no junk or distractor ids)."),
    "msmt17": ("benchmark", "MSMT17 (list_train/val/query/gallery.txt + train/, test/)",
               "Import MSMT17: list_train.txt -> train, list_val.txt -> val (images under train/), "
               "list_query.txt -> query, list_gallery.txt -> gallery (images under test/; MSMT17_V2's "
               "mask_train_v2/, mask_test_v2/ also found). identity is the listed pid (training and test ids "
               "are numbered separately from 0); camera from the third '_' field of the file name."),
    "pa100k": ("benchmark", "PA-100K attribute recognition (annotation.mat + data/)",
               "Import PA-100K as Rethinking_of_PAR reads it: SRC/annotation.mat and the images it names in "
               "SRC/data/. One row per image with its 26 attribute labels (0/1, in Rethinking_of_PAR's group order; "
               "the manifest's attribute_names says which is which); identity -1 (no identities); splits "
               "train/val/test as annotation.mat gives them (trainval, their union, is not written separately)."),
    "peta": ("benchmark", "PETA attribute recognition (PETA.mat + images/)",
             "Import PETA as Rethinking_of_PAR reads it: SRC/PETA.mat and SRC/images/00001.png ... One row per "
             "image of partition 0 (the first of PETA.mat's five random splits) with its 35 evaluated attribute "
             "labels (0/1, group order; names in the manifest's attribute_names); identity -1; splits "
             "train/val/test. Images in no split are left out and counted."),
    "rap": ("benchmark", "RAPv1 attribute recognition (RAP_annotation/RAP_annotation.mat + RAP_dataset/)",
            "Import RAPv1 as Rethinking_of_PAR reads it: SRC/RAP_annotation/RAP_annotation.mat and the images in "
            "SRC/RAP_dataset/. One row per image of partition 0 with its 51 evaluated attribute labels (0/1, group "
            "order; RAP's 2, uncertain, counts as 0; names in the manifest's attribute_names); identity -1. RAPv1 "
            "has no validation split: partition 0's trainval is written as split train, its test as test. Images "
            "in no split are left out and counted."),
    "rap2": ("benchmark", "RAPv2 attribute recognition (RAP_annotation/RAP_annotation.mat + RAP_dataset/)",
             "Import RAPv2 as Rethinking_of_PAR reads it: SRC/RAP_annotation/RAP_annotation.mat and the images in "
             "SRC/RAP_dataset/. One row per image of partition 0 with its 54 evaluated attribute labels "
             "(selected_attribute, in group order; 2, uncertain, counts as 0; names in the manifest's "
             "attribute_names); identity -1; splits train/val/test (trainval, their union, is not written "
             "separately). Images in no split are left out and counted."),
}
DEFAULT_SOURCES = {"synth-pedes-json": "synth-pedes"}
BENCHMARK_KINDS = ("cuhk-pedes", "icfg-pedes", "rstpreid")  # image paths relative to SRC/imgs/
PAR_KINDS = ("pa100k", "peta", "rap", "rap2")  # attribute datasets: synth_pedes.sources.par_datasets.PAR_FORMATS
# the folder an importer looks image files up in, where it is not SRC itself (--allow-outside-root's root)
IMAGE_ROOTS = {**dict.fromkeys(BENCHMARK_KINDS, "SRC/imgs/"), "pa100k": "SRC/data/", "peta": "SRC/images/",
               "rap": "SRC/RAP_dataset/", "rap2": "SRC/RAP_dataset/"}


def _add_entry_importers(sub) -> None:
    for kind, (_, help_text, description) in ENTRY_IMPORTERS.items():
        p = sub.add_parser(kind, help=help_text, description=description + " Missing image files and malformed "
                           "entries follow --on-bad-files; unreadable images become status=error rows.")
        p.add_argument("src", type=Path, help="the dataset root folder, as distributed")
        p.add_argument("--out", type=Path, required=True,
                       help="output dataset directory (new, or an unfinished write)")
        p.add_argument("--name", default=None, help=f"dataset name (default: {DEFAULT_SOURCES.get(kind, kind)})")
        p.add_argument("--on-bad-files", choices=("error", "warn", "skip"), default="error",
                       help="missing image files and malformed entries: error (default) stops before writing "
                            "anything, naming them; warn keeps each as a status=error row; skip leaves them out. "
                            "They are counted in the summary and the manifest either way")
        if kind == "cuhk-pedes":
            p.add_argument("--split-file", type=Path, default=None,
                           help="JSON giving each file_path its split, for copies without 'split' "
                                "(caption_all.json): {file_path: split}, {split: [file_path, ...]} or reid_raw.json")
        if kind == "synth-pedes-json":
            p.add_argument("--split", default="train", help="split recorded on every row (default: train)")
        p.add_argument("--max-pixels", type=int, default=None, help="reject images with more pixels (bomb guard)")
        add_allow_outside_root(p, IMAGE_ROOTS.get(kind, "SRC"))
        add_shard_arguments(p)
        add_cluster_arguments(p)


def _scan(args: argparse.Namespace):
    if args.kind == "synth-pedes-json":
        from synth_pedes.sources.synth_pedes_json import scan_synth_pedes_json

        return scan_synth_pedes_json(args.src, args.on_bad_files, split=args.split,
                                     allow_outside=args.allow_outside_root)
    if args.kind == "market1501":
        from synth_pedes.sources.market1501 import scan_market1501

        return scan_market1501(args.src, args.on_bad_files, allow_outside=args.allow_outside_root)
    if args.kind in ("dukemtmc-reid", "msmt17"):
        from synth_pedes.sources.reid_datasets import scan_dukemtmc_reid, scan_msmt17

        scan = scan_dukemtmc_reid if args.kind == "dukemtmc-reid" else scan_msmt17
        return scan(args.src, args.on_bad_files, allow_outside=args.allow_outside_root)
    if args.kind in PAR_KINDS:
        from synth_pedes.sources.par_datasets import scan_par

        return scan_par(args.src, args.kind, args.on_bad_files, allow_outside=args.allow_outside_root)
    from synth_pedes.sources.benchmarks import scan_benchmark

    return scan_benchmark(args.src, args.kind, args.on_bad_files, split_file=getattr(args, "split_file", None),
                          allow_outside=args.allow_outside_root)


def import_entries(args: argparse.Namespace) -> int:
    """``plip import KIND SRC --out DIR`` for every KIND of ENTRY_IMPORTERS (benchmarks, SYNTH-PEDES JSON, image
    ReID and attribute datasets)."""
    import dataclasses

    from synth_pedes import write_dataset
    from synth_pedes.sources.images import MAX_PIXELS

    from ..cluster import dask_client
    from ..progress import ShardProgress

    t0 = time.perf_counter()
    scan, source = _scan(args)
    source = dataclasses.replace(source, max_pixels=args.max_pixels or MAX_PIXELS)
    name = args.name or DEFAULT_SOURCES.get(args.kind, args.kind)
    shard_rows, shard_bytes = shard_sizes(args)
    producer = {"stage": f"import-{args.kind}",
                "config": {"src": str(args.src.resolve()), **scan.files, "source": source.source,
                           "on_bad_files": args.on_bad_files, "allow_outside_root": args.allow_outside_root,
                           "max_pixels": source.max_pixels,
                           **({"split": args.split} if args.kind == "synth-pedes-json" else {}),
                           "shard_rows": shard_rows, "shard_bytes": shard_bytes},
                "counts": {**scan.counts, "bad_reasons": scan.bad_reasons}}
    progress = ShardProgress(f"import {name}")
    with dask_client(args.workers, args.scheduler, args.worker_timeout, shared=[args.out]) as client:
        manifest = write_dataset(scan.items, args.out, name=name, kind=ENTRY_IMPORTERS[args.kind][0],
                                 transform=source, shard_rows=shard_rows, shard_bytes=shard_bytes,
                                 size_of=lambda it: it.size, producer=producer, client=client, on_progress=progress,
                                 description=f"{ENTRY_IMPORTERS[args.kind][1]} imported from {args.src}.",
                                 attribute_names=scan.attribute_names)
    if close_progress(progress, args.out, manifest):
        return 0
    seconds = time.perf_counter() - t0
    counts = scan.counts
    extra_rows = []
    if args.kind == "market1501":
        extra_rows = [("junk (-1)", counts["junk"]), ("distractors (0000)", counts["distractors"]),
                      ("ignored files", counts["ignored_files"])]
    elif args.kind == "dukemtmc-reid":
        extra_rows = [("ignored files", counts["ignored_files"])]
    elif args.kind in PAR_KINDS:
        extra_rows = [("attributes", f"{len(manifest.attribute_names)} (0/1 labels per row; their names are the "
                                     "manifest's attribute_names)"),
                      ("not in partition 0", f"{counts['not_in_partition']} (left out)")]
    print_summary(f"imported {counts['entries']} entries from {args.src} as {manifest.kind} dataset {name!r}", [
        ("dataset", args.out), ("id", manifest.id), ("rows", manifest.num_rows),
        ("splits", ", ".join(f"{k}={v}" for k, v in manifest.splits.items()) or "-"),
        ("identities", "none (-1)" if args.kind in PAR_KINDS else scan.identities),
        ("captions", f"{scan.captions}" + (f" (blank, dropped: {counts['blank_captions']})"
                                           if "blank_captions" in counts else "")),
        ("status", ", ".join(f"{k}={v}" for k, v in manifest.status_counts.items()) or "-"),
        ("bad entries", f"{counts['bad']} (kept as error rows: {counts['kept_as_error']}, skipped: "
                        f"{counts['skipped']}; --on-bad-files {args.on_bad_files})"
                        + (f": {', '.join(f'{k}={v}' for k, v in scan.bad_reasons.items())}" if counts["bad"] else "")),
        *extra_rows,
        ("files", len(manifest.shards)), ("size", f"{manifest.num_bytes / 2**20:.1f} MiB"),
        ("time", f"{seconds:.1f} s ({counts['entries'] / max(seconds, 1e-9):.0f} entries/s)"),
    ])
    return 0
