"""``plip eval (--checkpoint RUN | --config NAME) --data DIR``: zero-shot retrieval on an imported benchmark.

Text-based person retrieval (t2i / i2t / both) on CUHK-PEDES, ICFG-PEDES, RSTPReid or ProcPedes, and image ReID
(i2i, same identity + same camera excluded) on Market-1501. Writes a results JSON (checkpoint, dataset id, split,
metrics, code version) and prints a table. ``--select-on val`` chooses the checkpoint on the validation split and
reports the test split for that checkpoint only: the test split is reported, never selected on.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from ._common import (MEASURING_PRECISION, add_device_argument, add_precision_argument, add_verify_argument,
                      check_dataset_dir, int_at_least, print_summary)

FORMAT = "plip-eval/1"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint RUN [--step N] | --config NAME [--set K=V]``, ``--device``, ``--batch-size``, ``--precision``
    (shared with ``plip embed``)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, metavar="RUN",
                     help="a run directory (plip train / plip convert official / plip finetune), or a checkpoint "
                          "directory in one")
    src.add_argument("--config", metavar="NAME",
                     help="the initial weights of a config (the no-pre-training baseline): cpu-small, tiny, "
                          "paper-rn50-bert or a JSON file")
    parser.add_argument("--step", type=int, default=None,
                        help="with --checkpoint: this step's checkpoint (default: the run's latest complete one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="with --config: override a config value (repeatable)")
    add_device_argument(parser)
    parser.add_argument("--batch-size", type=int_at_least(1), default=128,
                        help="images / captions per forward pass (128)")
    add_precision_argument(parser, MEASURING_PRECISION)


def check_model_arguments(args: argparse.Namespace) -> None:
    if args.step is not None and args.checkpoint is None:
        raise ValueError("--step selects a checkpoint of a run: use it with --checkpoint RUN")
    if args.overrides and args.config is None:
        raise ValueError("--set overrides a config: use it with --config NAME (a run's config is in its run.json)")
    if args.checkpoint is not None:  # the wrong trainer's run, or a missing or truncated checkpoint: before any work
        from plip_runtime.runs import PLIP_MODEL_KINDS, check_run_kind, resolve_checkpoint

        check_run_kind(args.checkpoint, PLIP_MODEL_KINDS, "--checkpoint")
        resolve_checkpoint(args.checkpoint, args.step)


def note_attribute_run(args: argparse.Namespace) -> None:
    """An attribute-recognition fine-tune has its own metrics: say where they are, and what retrieval measures on
    it. Attribute data (no identities to retrieve by) is refused with that pointer rather than the evaluator's."""
    import sys

    from plip_runtime.runs import RUN_FILE, read_run_file
    from synth_pedes import open_dataset

    run = args.checkpoint if args.checkpoint is not None and (args.checkpoint / RUN_FILE).is_file() else None
    if run is None or read_run_file(run)["kind"] != "plip-attributes":
        return
    where = f"{run} is an attribute-recognition fine-tune: its attribute metrics (mA, F1, per attribute) are in " \
            f"{run}/results.json"
    if open_dataset(args.data, verify=False).manifest.attribute_names:
        raise ValueError(f"{where}; plip eval measures retrieval by identity, which {args.data} (attribute labels, "
                         "no identities) cannot score")
    print(f"plip eval: note: {where}. Retrieval here uses its fine-tuned image tower; its text tower is the "
          "initialisation's, untouched by the fine-tune", file=sys.stderr)


def load_embedder(args: argparse.Namespace, checkpoint=None):
    from plip_train import embed

    kw = {"device": args.device, "batch_size": args.batch_size, "precision": args.precision}
    if args.config is not None:
        return embed.from_config(args.config, args.overrides, **kw)
    return embed.load(args.checkpoint, checkpoint=checkpoint if checkpoint is not None else args.step, **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--data", type=Path, required=True,
                        help="an imported benchmark dataset (plip import cuhk-pedes|icfg-pedes|rstpreid|market1501, "
                             "or plip render)")
    parser.add_argument("--split", default=None,
                        help="split to report (default test; query/gallery on Market-1501-style data)")
    parser.add_argument("--direction", choices=("t2i", "i2t", "both", "i2i"), default=None,
                        help="t2i: captions query images (default); i2t: images query captions; both; "
                             "i2i: image ReID, query vs gallery (the default on Market-1501-style data)")
    parser.add_argument("--select-on", default=None, metavar="SPLIT",
                        help="evaluate every complete checkpoint of RUN on SPLIT (e.g. val), keep the best by R1 "
                             "(ties: the later step) and report --split for that checkpoint only")
    parser.add_argument("--rerank", action="store_true", default=None,
                        help="also report k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3; image ReID only)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default RUN/eval/<dataset-name>-<split>.json; required with --config)")
    add_verify_argument(parser, old_spellings=False)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "dataset"


def default_out(args: argparse.Namespace, dataset, split: str, direction: str, default_direction: str) -> Path:
    if args.out is not None:
        return args.out
    from plip_runtime.runs import resolve_checkpoint

    run_dir, ckpt = resolve_checkpoint(args.checkpoint, args.step)
    name = f"{_slug(dataset.manifest.name)}-{_slug(split)}"
    if direction != default_direction:
        name += f"-{direction}"
    if not args.select_on and ckpt.resolve() != resolve_checkpoint(run_dir)[1].resolve():  # not the run's default
        name += f"-{ckpt.name}"
    if args.select_on:
        name += f"-selected-on-{_slug(args.select_on)}"
    return run_dir / "eval" / f"{name}.json"


def _label(dataset, split: str, direction: str) -> str:
    return f"{dataset.manifest.name} {split} {direction}"


def run(args: argparse.Namespace) -> int:
    from plip_runtime.version import code_version
    from plip_train.evaluate import format_table
    from plip_train.zeroshot import evaluate_dataset, resolve_protocol, select_checkpoint
    from synth_pedes import open_dataset

    t0 = time.perf_counter()
    check_model_arguments(args)
    check_dataset_dir("--data", args.data)
    note_attribute_run(args)
    if args.select_on is not None:
        if args.checkpoint is None or args.step is not None:
            raise ValueError("--select-on chooses among the checkpoints of a run: use it with --checkpoint RUN and "
                             "without --step")
        if args.select_on == (args.split or "test"):
            raise ValueError(f"--select-on {args.select_on} would select on the split it reports; select on a "
                             "validation split (--select-on val) and report test")
    if args.config is not None and args.out is None:
        raise ValueError("--config evaluates a config's initial weights, which have no run directory to write into: "
                         "give --out FILE.json")
    dataset = open_dataset(args.data, verify=args.verify)
    splits = dict(dataset.manifest.splits)
    mode, split, direction = resolve_protocol(splits, args.split, args.direction)
    out = default_out(args, dataset, split, direction, "i2i" if mode == "reid" else "t2i")

    selection, checkpoint = None, None
    if args.select_on is not None:
        selection = select_checkpoint(args.checkpoint, dataset, args.select_on, direction if mode == "text" else None,
                                      device=args.device, batch_size=args.batch_size, precision=args.precision)
        checkpoint = selection["chosen"]["checkpoint"]
        print(f"selected step {selection['chosen']['step']} on {selection['split']}: {selection['reason']}")
        print(format_table({f"step {c['step']} ({selection['split']} {c['direction']})": c["metrics"]
                            for c in selection["candidates"]}))
    embedder = load_embedder(args, checkpoint)
    result = evaluate_dataset(embedder, dataset, split, direction, rerank=bool(args.rerank))
    m = dataset.manifest
    doc = {"format": FORMAT,
           "checkpoint": embedder.info,
           "dataset": {"path": str(dataset.directory), "id": dataset.id, "name": m.name, "kind": m.kind,
                       "version": m.version},
           "split": result["split"], "direction": result["direction"], "mode": result["mode"],
           "protocol": result["protocol"], "metrics": result["metrics"],
           **({"metrics_reranked": result["metrics_reranked"]} if args.rerank else {}), "counts": result["counts"],
           "selection": selection,
           "preprocessing": {"image_size": list(embedder.image_size), "resize": "bicubic",
                             "mean": embedder.config.data.mean, "std": embedder.config.data.std,
                             "text_max_length": embedder.max_length, "text_pooling": embedder.config.model.text.pooling},
           "device": str(embedder.device), "precision": embedder.precision, "batch_size": embedder.batch_size,
           "throughput": result["throughput"], "code": code_version(),
           "seconds": round(time.perf_counter() - t0, 3), "eval_seconds": result["seconds"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(out)

    table = {_label(dataset, result["split"], d): v for d, v in result["metrics"].items()}
    if args.rerank:
        table[_label(dataset, result["split"], "i2i re-ranked")] = result["metrics_reranked"]
    print(format_table(table))
    c = result["counts"]
    size = (f"{c['images']} images, {c['captions']} captions, {c['identities']} identities" if mode == "text" else
            f"{c['query_images']} queries, {c['gallery_images']} gallery images, {c['identities']} identities")
    rows = [("model", embedder.info["description"]), ("dataset", f"{m.name} ({dataset.id[:19]})"),
            ("split", result["split"]), ("evaluated", size), ("protocol", result["protocol"])]
    if selection is not None:
        rows.append(("selected on", f"{selection['split']}: step {selection['chosen']['step']}"))
    rows += [("throughput", f"{result['throughput']['images_per_s']} images/s"
              + (f", {result['throughput']['captions_per_s']} captions/s" if mode == "text" else "")),
             ("seconds", doc["seconds"]), ("results", out)]
    print_summary("plip eval", rows)
    return 0
