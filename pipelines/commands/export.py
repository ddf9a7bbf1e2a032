"""``plip export FORMAT DIR --out OUT``: write a synth-pedes dataset in a published layout."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._common import add_dataset_argument, add_verify_argument, checked_dataset_argument, print_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    sp = sub.add_parser(
        "synth-pedes-json", help="the released SYNTH-PEDES layout (Part*/<id>/<n>.jpg + synthpedes-dataset.json)",
        description="Export the status=ok rows of a dataset in the released SYNTH-PEDES layout: images to "
                    "OUT/Part<k>/<id>/<n>.jpg (identities in ascending order, --ids-per-part per Part, n from 0 "
                    "within an identity) and OUT/synthpedes-dataset.json with the fields id, file_path, "
                    "attributes, captions (kind generated, by style) and prompt_caption (kind prompt). Rows of "
                    "other statuses are left out and counted; OUT/plip-export.json records the source dataset id "
                    "and every count.")
    add_dataset_argument(sp)
    sp.add_argument("--out", type=Path, required=True, help="output folder (new, or an unfinished export)")
    sp.add_argument("--ids-per-part", type=int, default=30_000,
                    help="identities per Part<k> folder (default 30000: the release's 312k identities in 11 Parts)")
    sp.add_argument("--unknown-identities", choices=("own", "skip"), default="own",
                    help="rows of unknown identity (-1): own (default) gives each image its own identity, numbered "
                         "after the largest real one; skip leaves them out (counted)")
    add_verify_argument(sp)


def run(args: argparse.Namespace) -> int:
    from plip_runtime.progress import Progress
    from synth_pedes import open_dataset
    from synth_pedes.sources.synth_pedes_json import ANNOTATION_NAMES, export_synth_pedes_json

    t0 = time.perf_counter()
    args.dataset = checked_dataset_argument(args)
    dataset = open_dataset(args.dataset, verify=args.verify)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(f"export {dataset.manifest.name}", total, unit="image")
        bar.update(1)

    try:
        report = export_synth_pedes_json(dataset, args.out, ids_per_part=args.ids_per_part,
                                         unknown_identities=args.unknown_identities, on_progress=progress)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    left = ", ".join([f"status {k}={v}" for k, v in report.left_out_by_status.items()]
                     + ([f"unknown identity={report.unknown_skipped}"] if report.unknown_skipped else []))
    unknown = (f"{report.pseudo_identities} rows given their own identity (from {report.first_pseudo_identity})"
               if report.pseudo_identities else f"{report.unknown_skipped} rows skipped"
               if report.unknown_skipped else "none")
    parts = {0: "none", 1: f"{args.out}/Part1"}.get(report.parts, f"{args.out}/Part1..Part{report.parts}")
    print_summary(f"exported {report.exported} images of {args.dataset} ({dataset.manifest.name!r}, "
                  f"{dataset.id}) as SYNTH-PEDES", [
        ("annotations", args.out / ANNOTATION_NAMES[0]), ("images", parts),
        ("images written", report.exported), ("identities", report.identities), ("parts", report.parts),
        ("left out", f"{report.left_out} ({left})" if report.left_out else "0"),
        ("unknown identity", unknown),
        ("captions", f"{report.captions} generated, {report.prompt_captions} prompt"
                     + (f"; not in the format: {', '.join(f'{k}={v}' for k, v in report.captions_left_out.items())}"
                        if report.captions_left_out else "")),
        ("attributes", f"{report.attributes_missing} rows without (written as unknown), "
                       f"{report.attributes_rewritten} with commas replaced"),
        ("re-encoded", f"{report.reencoded} non-JPEG images as JPEG"),
        ("time", f"{seconds:.1f} s"),
    ])
    return 0
