"""``plip card DIR``: a dataset card (README.md) and a statistics report with plots, for any dataset.

The statistics are one streaming pass over the shards on a Dask cluster (one task per shard), with
the shard checksums verified in the same pass; see ``synth_pedes.card``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_cluster_arguments, check_dataset_dir, int_at_least, print_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, metavar="DATASET", help="dataset directory (holding manifest.json)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write README.md and report/ here instead of into the dataset directory")
    check = parser.add_mutually_exclusive_group()
    check.add_argument("--quick", action="store_true", help="verify sizes, schema and row counts but not the sha256s")
    check.add_argument("--no-verify", action="store_true",
                       help="describe the files as they are, without verifying them (the card says so)")
    parser.add_argument("--lineage", type=Path, action="append", default=[], metavar="DIR",
                        help="also look for parent datasets in (the subdirectories of) DIR; repeatable. "
                             "The dataset's sibling directories are always searched")
    parser.add_argument("--license", default="unknown",
                        help="license identifier for the card's front matter (default: unknown; images keep "
                             "the license of their source)")
    parser.add_argument("--pretty-name", default=None, help="title of the card (default: the manifest's name)")
    parser.add_argument("--samples", type=int_at_least(0), default=8, help="rows in the sample grid (default 8)")
    parser.add_argument("--force", action="store_true", help="replace a README.md that plip card did not write")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from synth_pedes.card import make_card

    from ..cluster import dask_client
    from ..progress import ShardProgress

    check_dataset_dir("DATASET", args.dataset)
    verify = "none" if args.no_verify else "quick" if args.quick else "full"
    progress = ShardProgress("card")
    with dask_client(args.workers, args.scheduler) as client:
        result = make_card(args.dataset, args.out, verify=verify, client=client, lineage_roots=args.lineage,
                           license=args.license, samples=args.samples, pretty_name=args.pretty_name,
                           force=args.force, on_progress=progress)
    progress.close()
    print_summary(f"wrote the dataset card of {args.dataset}", _summary_rows(result))
    return 0


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _summary_rows(result) -> list[tuple[str, object]]:
    s = result.stats
    faith = s["faithfulness"]
    faithful = (f"{_pct(faith['overall']['agreement'])} of {faith['overall']['spans']:,} attribute phrases agree "
                "with the attributes" if faith.get("measurable") else f"not measurable: {faith['why']}")
    rows = [("card", result.readme), ("report", result.report / "index.html"),
            ("statistics", result.report / "stats.json"), ("plots", ", ".join(result.plots)),
            ("verified", s["dataset"]["verify_note"]), ("images (ok)", f"{s['images']:,} of {s['rows']:,} rows"),
            ("identities", f"{s['identities']['count']:,}"), ("captions", f"{s['captions']['total']:,}"),
            ("faithfulness", faithful)]
    if s["attributes"].get("rows"):
        slots = s["attributes"]["slots"]
        rows.append(("unknown rates", ", ".join(f"{k} {_pct(v['unknown_rate'])}" for k, v in slots.items())))
    if s["ground_truth"].get("rows"):
        mean = _pct(s["ground_truth"]["attribute_accuracy_mean"])
        rows.append(("ground truth", f"attributes {mean} right (mean over slots)"))
    rows.append(("time", f"{s['timing']['seconds']} s ({s['timing']['rows_per_s']:,} rows/s, "
                         f"{s['timing']['workers'] or 'no'} Dask workers)"))
    return rows
