"""``plip spac eval-recognizer --checkpoint DIR --data DIR [--split test]``: per-slot accuracy and mA of a
recognizer against a dataset's ground-truth ``attributes`` (phrases compared after canonicalisation).

``--recognizer oracle`` needs no checkpoint (a sanity check: 100 %); ``clip`` and ``union`` take their
settings from ``--recognizer-config`` (JSON text or file with the keywords of ``spac.recognizers.create``).
Writes a JSON naming the recognizer, the checkpoint (with the sha256 of its weights) and the dataset id.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from synth_pedes import file_sha256

from ._common import add_device_argument, check_dataset_dir, int_at_least, print_summary, resolved_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="classifier checkpoint directory (from train-recognizer)")
    parser.add_argument("--data", type=Path, required=True, help="dataset directory with ground-truth attributes")
    parser.add_argument("--split", default="test", help="rows of this split (default test; 'all' for every row)")
    parser.add_argument("--recognizer", default="classifier", help="registry name: classifier, oracle, clip, union")
    parser.add_argument("--recognizer-config", default=None,
                        help="JSON object (text or file) of extra keywords for the recognizer")
    parser.add_argument("--out", type=Path, default=None,
                        help="metrics JSON (default: <checkpoint>/eval-<split>-<dataset id>.json, or "
                             "./recognizer-eval-<name>-<split>.json without a checkpoint)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=64, help="images per forward pass")
    add_device_argument(parser)
    parser.add_argument("--limit", type=int_at_least(1), default=None, help="evaluate at most this many rows")
    parser.add_argument("--exact", action="store_true", help="compare lowercase phrases without canonicalisation")


def _recognizer_config(text: str | None) -> dict:
    if text is None:
        return {}
    path = Path(text)
    raw = path.read_text() if path.is_file() else text
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"--recognizer-config: neither a JSON file nor JSON text ({e})") from e
    if not isinstance(cfg, dict):
        raise ValueError("--recognizer-config must be a JSON object")
    return cfg


def build_recognizer(args: argparse.Namespace):
    from spac import recognizers

    cfg = _recognizer_config(args.recognizer_config)
    name = args.recognizer
    if name not in recognizers.available():
        raise ValueError(f"unknown recognizer {name!r}; the recognizers are {', '.join(recognizers.available())}")
    if name == "classifier":
        if args.checkpoint is None:
            raise ValueError("--recognizer classifier needs --checkpoint DIR (a train-recognizer output)")
        cfg = {"checkpoint": args.checkpoint, "device": resolved_device(args), "batch_size": args.batch_size, **cfg}
    elif name == "clip":
        cfg = {"device": resolved_device(args), "batch_size": args.batch_size, **cfg}
        if args.checkpoint is not None:
            cfg.setdefault("candidates", str(args.checkpoint))
    return recognizers.create(name, **cfg)


def evaluate_dataset(recognizer, data: Path, split: str, batch_size: int = 64, limit: int | None = None,
                     canonical: bool = True) -> dict:
    """Predict every row of ``split`` and score it against the ``attributes`` column."""
    from spac.recognizers import evaluate
    from synth_pedes import open_dataset

    ds = open_dataset(data)
    preds, truths, errors = [], [], 0
    t0 = time.perf_counter()
    batch: list[dict] = []

    def flush():
        nonlocal errors
        out = recognizer.predict(batch)
        errors += sum(p.error is not None for p in out)
        preds.extend(out)
        truths.extend(r["attributes"] for r in batch)
        batch.clear()

    for row in ds.iter_records(columns=["key", "split", "image", "attributes"], status="ok"):
        if split != "all" and row["split"] != split:
            continue
        if limit is not None and len(truths) + len(batch) >= limit:
            break
        if row["attributes"] is None:
            raise ValueError(f"{data}: row {row['key']!r} has no ground-truth attributes; evaluation needs a "
                             "dataset with an attributes column (e.g. a ProcPedes render)")
        batch.append(row)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if not truths:
        raise ValueError(f"{data}: no rows of split {split!r} with status ok")
    seconds = time.perf_counter() - t0
    metrics = evaluate(preds, truths, canonical=canonical)
    return {"dataset": {"path": str(data), "id": ds.id, "name": ds.manifest.name}, "split": split,
            "n": len(truths), "errors": errors, "seconds": round(seconds, 3),
            "images_per_s": round(len(truths) / max(seconds, 1e-9), 2), "metrics": metrics,
            "truths": truths}


def vocab_coverage(vocab: dict, truths: list[dict]) -> dict:
    """Per slot, the share of ground-truth phrases (canonical) that the vocabulary holds: an accuracy ceiling."""
    from spac.recognizers import canonical_phrase

    out = {}
    for s, phrases in vocab.items():
        known = {canonical_phrase(p, s) for p in phrases}
        out[s] = round(100.0 * sum(canonical_phrase(t.get(s), s) in known for t in truths) / max(1, len(truths)), 2)
    return out


def run(args: argparse.Namespace) -> int:
    from spac.recognizers import format_table

    check_dataset_dir("--data", args.data)
    rec = build_recognizer(args)
    res = evaluate_dataset(rec, args.data, args.split, args.batch_size, args.limit, canonical=not args.exact)
    truths = res.pop("truths")
    doc = {"recognizer": rec.describe(), **res}
    if args.checkpoint is not None:
        weights = Path(getattr(rec, "checkpoint", None) or args.checkpoint) / "model.safetensors"  # run: its latest
        doc["checkpoint"] = {"path": str(args.checkpoint),
                             "weights_sha256": "sha256:" + file_sha256(weights) if weights.is_file() else None}
        vocab = getattr(rec, "vocab", None)
        if vocab:
            doc["vocab_coverage"] = vocab_coverage(vocab, truths)
    out = args.out
    if out is None:
        tag = res["dataset"]["id"].split(":")[-1][:12]
        out = (args.checkpoint / f"eval-{args.split}-{tag}.json" if args.checkpoint is not None
               else Path(f"recognizer-eval-{args.recognizer}-{args.split}.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(format_table(res["metrics"], title=f"{args.recognizer} on {args.data} (split {args.split})"))
    rows = [("recognizer", args.recognizer), ("dataset id", res["dataset"]["id"]),
            ("images", f"{res['n']} ({res['errors']} unreadable)"),
            ("time", f"{res['seconds']} s ({res['images_per_s']} images/s)")]
    if "vocab_coverage" in doc:
        rows.append(("vocab coverage", ", ".join(f"{s} {v:.0f}%" for s, v in doc["vocab_coverage"].items())))
    rows.append(("metrics", str(out)))
    print_summary("evaluation", rows)
    return 0
