"""``plip spac mine-templates CORPUS... --out FILE``: captions -> masked prompt-caption templates.

CORPUS is a dataset directory (its human captions are used) or a caption file: plain text (one
caption per line), a JSON list (strings, or CUHK-PEDES/ICFG-PEDES/RSTPReid annotation objects) or
JSON lines. The output is a template library in the shipped ``library.json`` layout, so it can be
reviewed and merged into the curated library.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import check_dataset_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", nargs="+", type=Path, metavar="CORPUS", help="dataset directories or caption files")
    parser.add_argument("--out", type=Path, required=True, help="output template library (JSON)")
    parser.add_argument("--kind", default="human", help="caption kind to mine from datasets (default: human)")


def dataset_captions(directory: Path, kind: str) -> list[str]:
    from synth_pedes import open_dataset

    captions = []
    for row in open_dataset(directory).iter_records(columns=["captions"], status="ok"):
        captions += [c["text"] for c in row["captions"] if c["kind"] == kind]
    return captions


def run(args: argparse.Namespace) -> int:
    from spac.templates import mine_templates, parse_template
    from spac.templates.mining import read_captions

    captions, sources = [], []
    for path in args.corpus:
        if not path.exists():
            raise FileNotFoundError(f"CORPUS {path}: no such dataset directory or caption file; give a dataset "
                                    "directory or a caption file (text, JSON or JSON lines)")
        if path.is_dir():
            check_dataset_dir("CORPUS", path)
        found = dataset_captions(path, args.kind) if path.is_dir() else read_captions(path)
        captions += found
        sources.append({"path": str(path), "captions": len(found)})
    templates = mine_templates(captions)
    for t in templates:  # every mined template must parse as the filler reads it
        parse_template(t)
    doc = {"version": 1, "_doc": f"Templates mined by plip spac mine-templates from {len(captions)} captions.",
           "sources": sources, "templates": [{"text": t, "gender": "any"} for t in templates]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"mined {len(templates)} templates from {len(captions)} captions -> {args.out}")
    return 0
