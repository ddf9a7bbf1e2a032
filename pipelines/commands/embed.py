"""``plip embed (--checkpoint RUN | --config NAME) --data DIR --out FILE.parquet``: embeddings of a dataset.

One row per ``ok`` image (of ``--split``, if given): ``key``, ``identity``, ``split``, ``camera``,
``image_embedding`` (list<float32>), ``caption_texts`` (list<string>) and ``caption_embeddings``
(list<list<float32>>, one per caption), all unit-norm. Written one row group at a time (memory: one row group);
the Parquet schema metadata ``plip.embed`` names the checkpoint, the dataset id and the preprocessing.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ._common import add_verify_argument, check_dataset_dir, int_at_least, print_summary
from .eval import add_model_arguments, check_model_arguments, load_embedder

METADATA_KEY = b"plip.embed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--data", type=Path, required=True, help="a synth-pedes dataset directory")
    parser.add_argument("--out", type=Path, required=True, help="the Parquet file to write")
    parser.add_argument("--split", default=None, help="only rows of this split (default: every split)")
    parser.add_argument("--rows-per-group", type=int_at_least(1), default=1024,
                        help="rows per Parquet row group, also the rows read and encoded together (default 1024)")
    add_verify_argument(parser, old_spellings=False)


def output_schema():
    import pyarrow as pa

    vec = pa.list_(pa.float32())
    return pa.schema([("key", pa.string()), ("identity", pa.int64()), ("split", pa.string()), ("camera", pa.string()),
                      ("image_embedding", vec), ("caption_texts", pa.list_(pa.string())),
                      ("caption_embeddings", pa.list_(vec))])


def _lists(vectors, counts=None):
    """(N, D) float32 rows as list<float32>; with ``counts``, grouped again as list<list<float32>>."""
    import numpy as np
    import pyarrow as pa

    n, d = vectors.shape
    inner = pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)),
                                     pa.array(vectors.reshape(-1), type=pa.float32()))
    if counts is None:
        return inner
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), inner)


def _encode_batch(embedder, batch, schema):
    import pyarrow as pa

    captions = [[c["text"] for c in caps or []] for caps in batch.column("captions").to_pylist()]
    flat = [t for caps in captions for t in caps]
    images = embedder.encode_image(batch.column("image").field("bytes").to_pylist()).numpy()
    texts = embedder.encode_text(flat).numpy().reshape(len(flat), embedder.embed_dim)
    return pa.table({"key": batch.column("key"), "identity": batch.column("identity"), "split": batch.column("split"),
                     "camera": batch.column("camera"), "image_embedding": _lists(images),
                     "caption_texts": pa.array(captions, type=pa.list_(pa.string())),
                     "caption_embeddings": _lists(texts, [len(c) for c in captions])}, schema=schema), len(flat)


def run(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from plip_runtime.version import code_version
    from synth_pedes import open_dataset

    t0 = time.perf_counter()
    check_model_arguments(args)
    check_dataset_dir("--data", args.data)
    dataset = open_dataset(args.data, verify=args.verify)
    splits = dict(dataset.manifest.splits)
    if args.split is not None and args.split not in splits:
        raise ValueError(f"split {args.split!r} is not in {args.data}; it has "
                         f"{', '.join(f'{s} ({n} rows)' for s, n in sorted(splits.items())) or 'none'}")
    embedder = load_embedder(args)
    m = dataset.manifest
    meta = {"format": "plip-embed/1", "checkpoint": embedder.info,
            "dataset": {"path": str(dataset.directory), "id": dataset.id, "name": m.name, "version": m.version},
            "split": args.split, "embed_dim": embedder.embed_dim, "normalised": True,
            "preprocessing": {"image_size": list(embedder.image_size), "resize": "bicubic",
                              "mean": embedder.config.data.mean, "std": embedder.config.data.std,
                              "text_max_length": embedder.max_length},
            "code": code_version()}
    schema = output_schema().with_metadata({METADATA_KEY: json.dumps(meta, default=str).encode()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    rows = captions = skipped = 0
    columns = ["key", "identity", "split", "camera", "status", "image", "captions"]
    pending: list = []  # ok rows not yet written (fewer than a row group, except at the end)

    def flush(writer) -> None:
        nonlocal rows, captions
        batch = pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
        pending.clear()
        table, n_caps = _encode_batch(embedder, batch, schema)
        writer.write_table(table, row_group_size=args.rows_per_group)
        rows, captions = rows + table.num_rows, captions + n_caps

    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for batch in dataset.iter_batches(columns, batch_size=args.rows_per_group):
                if args.split is not None:
                    batch = batch.filter(pc.equal(batch.column("split"), args.split))
                ok = batch.filter(pc.equal(batch.column("status"), "ok"))
                skipped += batch.num_rows - ok.num_rows
                while ok.num_rows:  # cut into row groups of exactly rows_per_group rows
                    room = args.rows_per_group - sum(b.num_rows for b in pending)
                    pending.append(ok.slice(0, room))
                    ok = ok.slice(room)
                    if sum(b.num_rows for b in pending) == args.rows_per_group:
                        flush(writer)
            if pending:
                flush(writer)
        tmp.replace(args.out)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    print_summary("plip embed", [
        ("model", embedder.info["description"]), ("dataset", f"{m.name} ({dataset.id[:19]})"),
        ("split", args.split or "all"), ("rows", f"{rows} images, {captions} captions"
                                         + (f" ({skipped} rows not ok, skipped)" if skipped else "")),
        ("embedding", f"{embedder.embed_dim}-d, unit norm"), ("seconds", f"{seconds:.1f}"), ("written", args.out)])
    return 0
