"""Shard I/O benchmark: our writer vs plain ``pyarrow.parquet.write_table`` on the same rows, read
throughput through the torch IterableDataset, and the writer's peak memory at two dataset sizes."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

SHARD_ROWS = 1000


@lru_cache(maxsize=1)
def _jpeg_pool(n: int = 200, seed: int = 0) -> tuple[bytes, ...]:
    """Person-crop-like JPEGs (128x256, blocks + noise, ~10-20 KB), reused across rows."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(n):
        img = np.repeat(np.repeat(rng.integers(0, 255, (16, 8, 3), dtype=np.uint8), 16, 0), 16, 1)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=85)
        pool.append(buf.getvalue())
    return tuple(pool)


def synthetic_record(i: int) -> dict:
    from synth_pedes import make_record

    data = _jpeg_pool()[i % len(_jpeg_pool())]
    text = f"A person {i} wearing a red jacket and blue jeans, carrying a black backpack."
    return make_record(f"bench/{i:08d}.jpg", identity=i // 8, source="bench", image_bytes=data,
                       image_path=f"{i:08d}.jpg", width=128, height=256,
                       attributes={"person": "man", "head": "short hair", "upper": "red jacket",
                                   "lower": "blue jeans", "shoes": "unknown", "belongings": "black backpack"},
                       captions=[{"text": text, "style": "s0", "kind": "generated",
                                  "spans": [{"slot": "upper", "start": 20, "end": 30}]}])


def _write_ours(n: int, out: Path) -> float:
    from synth_pedes import write_dataset

    t0 = time.perf_counter()
    write_dataset(range(n), out, name="bench", kind="images", transform=synthetic_record, shard_rows=SHARD_ROWS)
    return time.perf_counter() - t0


def _write_plain(n: int, out: Path) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synth_pedes import RECORD_SCHEMA

    out.mkdir(parents=True)
    t0 = time.perf_counter()
    for s, start in enumerate(range(0, n, SHARD_ROWS)):
        rows = [synthetic_record(i) for i in range(start, min(n, start + SHARD_ROWS))]
        pq.write_table(pa.Table.from_pylist(rows, schema=RECORD_SCHEMA), out / f"part-{s:05d}.parquet")
    return time.perf_counter() - t0


def _read_rows_per_s(path: Path, num_workers: int, batch_size: int | None = None) -> tuple[float, float]:
    """Rows/s and MiB/s of image bytes through a DataLoader; ``batch_size``: the workers send batches."""
    import torch

    from synth_pedes import open_dataset

    ds = open_dataset(path, verify="quick").torch(columns=["key", "image", "captions"], status=None,
                                                  batch_size=batch_size)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=num_workers)
    t0 = time.perf_counter()
    rows = nbytes = 0
    for item in loader:
        for row in item if batch_size else [item]:
            rows += 1
            nbytes += len(row["image"]["bytes"])
    seconds = time.perf_counter() - t0
    return rows / seconds, nbytes / seconds / 2**20


def _peak_memory_mib(n: int, workdir: Path) -> float:
    """Write ``n`` rows in a fresh process and return its peak RSS (MiB)."""
    out = workdir / f"mem-{n}"
    code = ("import resource, sys; from pipelines.benchmarks.shards import _write_ours; from pathlib import Path; "
            f"_write_ours({n}, Path({str(out)!r})); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    _rmtree(out)
    return float(proc.stdout.strip().splitlines()[-1])


def _rmtree(path: Path) -> None:
    if path.exists():
        for p in path.rglob("*"):
            if p.is_file():
                os.chmod(p, 0o644)
        shutil.rmtree(path)


def run(quick: bool, workdir: Path) -> dict:
    n = 3000 if quick else 10000
    small, large = (2000, 20000) if quick else (10000, 100000)
    ours_dir, plain_dir = workdir / "ours", workdir / "plain"
    for d in (ours_dir, plain_dir):
        _rmtree(d)
    _jpeg_pool()
    import dask  # noqa: F401  (imports are not what we time)
    import synth_pedes  # noqa: F401
    t_plain = _write_plain(n, plain_dir)
    t_ours = _write_ours(n, ours_dir)
    mib = sum(p.stat().st_size for p in ours_dir.rglob("*.parquet")) / 2**20  # under data/ (and rejected/)
    read0, read0_mb = _read_rows_per_s(ours_dir, 0)
    read2, read2_mb = _read_rows_per_s(ours_dir, 2)
    batched0, _ = _read_rows_per_s(ours_dir, 0, batch_size=256)
    batched2, batched2_mb = _read_rows_per_s(ours_dir, 2, batch_size=256)
    mem_small, mem_large = _peak_memory_mib(small, workdir), _peak_memory_mib(large, workdir)
    _rmtree(ours_dir), _rmtree(plain_dir)
    ratio = t_plain / t_ours
    rows = [
        {"metric": f"writer ({n} rows, {SHARD_ROWS}/shard)", "value": round(n / t_ours), "unit": "rows/s",
         "note": f"{mib / t_ours:.0f} MiB/s incl. sha256 + stats"},
        {"metric": "pyarrow write_table, same rows", "value": round(n / t_plain), "unit": "rows/s",
         "note": f"{mib / t_plain:.0f} MiB/s"},
        {"metric": "writer / write_table", "value": round(ratio, 2), "unit": "ratio", "goal": ">= 0.8",
         "pass": ratio >= 0.8},
        {"metric": "read, IterableDataset, 0 workers", "value": round(read0), "unit": "rows/s",
         "note": f"{read0_mb:.0f} MiB/s of image bytes"},
        {"metric": "read, IterableDataset, 2 workers", "value": round(read2), "unit": "rows/s",
         "note": f"{read2_mb:.0f} MiB/s of image bytes; rows cross the worker pipe one at a time"},
        {"metric": "read, IterableDataset batch_size=256, 0 / 2 workers", "value": f"{batched0:.0f} / {batched2:.0f}",
         "unit": "rows/s", "goal": "2 workers >= 2x row by row", "pass": batched2 >= 2 * read2,
         "note": f"{batched2_mb:.0f} MiB/s with 2 workers: whole batches cross the pipe. Bare reads need no "
                 "workers; they pay off with per-row work (decoding: see the train suite's stream rows)"},
        {"metric": f"writer peak RSS, {small} rows", "value": round(mem_small), "unit": "MiB"},
        {"metric": f"writer peak RSS, {large} rows", "value": round(mem_large), "unit": "MiB",
         "goal": "bounded by shard size", "pass": mem_large < 1.5 * mem_small + 64},
    ]
    return {"rows": rows, "rows_written": n, "bytes_written_mib": round(mib, 1)}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv, workdir=Path(sys.argv[1])), indent=1))
