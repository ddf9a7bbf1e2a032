"""``plip card DIR``: a dataset card (README.md) and a statistics report with plots, for any dataset.

The statistics are one streaming pass over the shards on a Dask cluster (one task per shard), with
the shard checksums verified in the same pass; see ``synth_pedes.card``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (add_cluster_arguments, add_dataset_argument, add_verify_argument, checked_dataset_argument,
                      int_at_least, print_summary)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="write README.md and report/ here instead of into the dataset directory")
    add_verify_argument(parser, "the shards (in the same pass as the statistics; with none, the card says so)")
    parser.add_argument("--lineage", type=Path, action="append", default=[], metavar="DIR",
                        help="also look for parent datasets in (the subdirectories of) DIR; repeatable. "
                             "The dataset's sibling directories are always searched")
    parser.add_argument("--license", default="unknown",
                        help="license identifier for the card's front matter (default: unknown; images keep "
                             "the license of their source)")
    parser.add_argument("--pretty-name", default=None, help="title of the card (default: the manifest's name)")
    parser.add_argument("--samples", type=int_at_least(0), default=8, help="rows in the sample grid (default 8)")
    parser.add_argument("--force", action="store_true", help="replace a README.md that plip card did not write")
    parser.add_argument("--truth", type=Path, default=None, metavar="FILE",
                        help="a ground-truth table (ground-truth.jsonl, written by `plip render --format "
                             "image-folder|flat-folder` beside the images) joined to the rows by image_sha256, so a "
                             "dataset imported from that folder is scored against the truth")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from synth_pedes.card import make_card

    from ..cluster import dask_client
    from ..progress import ShardProgress

    args.dataset = checked_dataset_argument(args)
    if args.truth is not None and not args.truth.is_file():
        raise FileNotFoundError(f"--truth {args.truth}: no such file; pass the ground-truth.jsonl that `plip render "
                                "--format image-folder` wrote beside the images")
    progress = ShardProgress("card")
    with dask_client(args.workers, args.scheduler, args.worker_timeout, shared=[args.dataset]) as client:
        result = make_card(args.dataset, args.out, verify=args.verify, client=client, lineage_roots=args.lineage,
                           license=args.license, samples=args.samples, pretty_name=args.pretty_name,
                           force=args.force, on_progress=progress, truth=args.truth)
    progress.close()
    print_summary(f"wrote the dataset card of {args.dataset}", _summary_rows(result))
    return 0


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _summary_rows(result) -> list[tuple[str, object]]:
    s = result.stats
    faith = s["faithfulness"]
    faithful = (f"{_pct(faith['overall']['agreement'])} of {faith['overall']['spans']:,} attribute phrases agree "
                "with the row's own attributes (not the truth)" if faith.get("measurable")
                else f"not measurable: {faith['why']}")
    rows = [("card", result.readme), ("report", result.report / "index.html"),
            ("statistics", result.report / "stats.json"), ("plots", ", ".join(result.plots)),
            ("verified", s["dataset"]["verify_note"]), ("images (ok)", f"{s['images']:,} of {s['rows']:,} rows"),
            ("identities", f"{s['identities']['count']:,}"), ("captions", f"{s['captions']['total']:,}"),
            ("self-agreement", faithful)]
    scores = s["caption_faithfulness"]
    if scores.get("measurable"):
        o = scores["overall"]
        rows.append(("per-caption faithfulness", f"mean {o['mean']:.2f}, {_pct(o['below_0_5'])} of {o['count']:,} "
                                                 f"captions below {scores['low_threshold']} (vs own attributes)"))
    if s["attributes"].get("rows"):
        slots = s["attributes"]["slots"]
        rows.append(("unknown rates", ", ".join(f"{k} {_pct(v['unknown_rate'])}" for k, v in slots.items())))
    if s["ground_truth"].get("rows"):
        gt = s["ground_truth"]
        phrases = gt["synthetic_caption_phrases"]
        rows.append(("ground truth", f"attributes {_pct(gt['attribute_accuracy_mean'])} right (mean over slots)"
                     + (f"; synthetic caption phrases {_pct(phrases['accuracy'])} true" if phrases["spans"] else "")))
    rows += [("WARNING", w["message"]) for w in s["warnings"]]
    rows.append(("time", f"{s['timing']['seconds']} s ({s['timing']['rows_per_s']:,} rows/s, "
                         f"{s['timing']['workers'] or 'no'} Dask workers)"))
    return rows
