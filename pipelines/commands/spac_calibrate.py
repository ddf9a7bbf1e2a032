"""``plip spac calibrate --captioner RUN --recognizers classifier:RUN --data DIR [--split val] --out FILE``: fit
the union of the recognizers and the captioner's attribute prefixes on a validation split.

Per member and slot, Platt scaling turns the member's score into the probability that its phrase is right
(``spac.recognizers.union``); the union then takes, per slot, the phrase most likely right. Ground truth: the
rows' ``attributes`` column where the data has one (a ProcPedes render), else labels mined from their human
captions (CUHK-PEDES/ICFG-PEDES validation splits). Prints each member's and the union's accuracy on the split
and writes the calibration that ``plip synth --calibration FILE`` reads.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import (add_device_argument, check_captioner_dir, check_dataset_dir, int_at_least, print_summary,
                      recognizer_specs, resolved_device)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--captioner", type=Path, required=True, help="SPAC captioner checkpoint (plip spac train)")
    parser.add_argument("--recognizers", required=True,
                        help="the recognizers plip synth will run, comma-separated, e.g. classifier:runs/rec")
    parser.add_argument("--data", type=Path, required=True, help="dataset with ground truth or human captions")
    parser.add_argument("--split", default="val", help="rows of this split (default val; never the test split "
                                                       "you report on)")
    parser.add_argument("--out", type=Path, required=True, help="calibration JSON to write")
    parser.add_argument("--threshold", type=float, default=0.0,
                        help="for the accuracy it prints: a slot whose best phrase is less likely right than this "
                             "becomes unknown (default 0: never abstain, as plip synth)")
    parser.add_argument("--limit", type=int_at_least(1), default=1000, help="at most this many rows (default 1000)")
    add_device_argument(parser)


def _rows(data: Path, split: str, limit: int) -> list[dict]:
    from synth_pedes import open_dataset

    rows = []
    for row in open_dataset(data).iter_records(columns=["key", "split", "image", "attributes", "captions"],
                                               status="ok"):
        if row["split"] == split and row.get("image"):
            rows.append(row)
            if len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"--data {data}: no ok rows of split {split!r}; calibrate on a validation split "
                         "(--split val) of data with ground truth or human captions")
    return rows


def _truths(rows: list[dict]) -> tuple[list, str]:
    from spac.recognizers import labels_for_rows

    if all(r.get("attributes") for r in rows):
        return [r["attributes"] for r in rows], "attributes column"
    return [a.to_dict() for a in labels_for_rows(rows, "captions")], "labels mined from human captions"


def run(args: argparse.Namespace) -> int:
    from spac.annotator import calibrate_union
    from spac.captioner import load_captioner

    check_dataset_dir("--data", args.data)
    check_captioner_dir("--captioner", args.captioner)
    specs = recognizer_specs(args.recognizers)
    rows = _rows(args.data, args.split, args.limit)
    truths, truth_source = _truths(rows)
    device = resolved_device(args)
    calibration, accuracy = calibrate_union(load_captioner(args.captioner, device), specs, rows, truths,
                                            args.threshold, device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(calibration, indent=2) + "\n")
    print_summary(f"union calibration on {args.data} ({args.split})", [
        ("rows", len(rows)), ("ground truth", truth_source),
        ("members", ", ".join(label for label in accuracy if label != "union")),
        ("mean slot accuracy", ", ".join(f"{k} {v:.1f}%" for k, v in accuracy.items())),
        ("written", args.out), ("use", f"plip synth ... --recognizers {args.recognizers} --calibration {args.out}")])
    return 0
