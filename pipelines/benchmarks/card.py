"""Card benchmark: rows/s of ``plip card``'s statistics pass on a SYNTH-PEDES-like caption dataset
(100k rows; ``--quick``: 20k), on a 2-worker Dask LocalCluster and in one process, and the peak
memory of a card run in a fresh process at a tenth of the size and at full size (it must not grow with
the row count: the pass streams shards and merges bounded summaries).

Rows look like SPAC output: six attributes (some unknown), two generated captions and a prompt caption
with attribute spans, some captions contradicting their attributes, a few filtered and error rows.
"""
from __future__ import annotations

import io
import json
import random
import resource
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

SHARD_ROWS = 5000
COLOURS = ("black", "white", "red", "blue", "grey", "green", "navy", "pink", "brown", "yellow")
VALUES = {"person": ("man", "woman", "young man", "young woman", "old man"),
          "head": ("short {} hair", "long {} hair", "{} cap"), "upper": ("{} t-shirt", "{} jacket", "{} sweater"),
          "lower": ("{} jeans", "{} shorts", "{} trousers", "{} skirt"), "shoes": ("{} sneakers", "{} boots"),
          "belongings": ("{} backpack", "{} handbag")}
UNKNOWN_P = {"person": 0.0, "head": 0.02, "upper": 0.02, "lower": 0.15, "shoes": 0.15, "belongings": 0.5}


@lru_cache(maxsize=1)
def _jpeg_pool(n: int = 64) -> tuple[bytes, ...]:
    """Small JPEGs (24x48): the pass never reads image bytes, so their size only costs disk."""
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (48, 24, 3), dtype=np.uint8)).save(buf, "JPEG", quality=70)
        out.append(buf.getvalue())
    return tuple(out)


def _attributes(rng: random.Random) -> dict:
    attrs = {}
    for slot, options in VALUES.items():
        attrs[slot] = ("unknown" if rng.random() < UNKNOWN_P[slot]
                       else rng.choice(options).format(rng.choice(COLOURS)))
    return attrs


def _caption(rng: random.Random, attrs: dict, style: str, kind: str, opener: str) -> dict:
    """A caption naming the known slots; 15% of its phrases use another colour (a contradiction)."""
    parts, spans = [opener.format(attrs["person"])], []
    spans.append(("person", attrs["person"]))
    for slot in ("head", "upper", "lower", "shoes", "belongings"):
        value = attrs[slot]
        if value == "unknown":
            continue
        if rng.random() < 0.15:
            value = value.replace(value.split()[0], rng.choice(COLOURS), 1)
        parts.append({"head": "with {}", "upper": "wearing a {}", "lower": "and {}", "shoes": "with {}",
                      "belongings": "carrying a {}"}[slot].format(value))
        spans.append((slot, value))
    text = " ".join(parts) + "."
    found, cursor = [], 0
    for slot, phrase in spans:
        start = text.index(phrase, cursor)
        found.append({"slot": slot, "start": start, "end": start + len(phrase)})
        cursor = start + len(phrase)
    return {"text": text, "style": style, "kind": kind, "spans": found}


def caption_record(i: int) -> dict:
    from synth_pedes import make_record

    rng = random.Random(i)
    status = "error" if i % 200 == 7 else "filtered" if i % 50 == 3 else "ok"
    if status == "error":
        return make_record(f"bench/{i:08d}.jpg", identity=i // 10, source="bench", status="error",
                           error="corrupt image: synthetic")
    attrs = _attributes(rng)
    captions = [_caption(rng, attrs, "cuhk-pedes", "generated", "A {} is walking"),
                _caption(rng, attrs, "icfg-pedes", "generated", "The {} in the picture is seen"),
                _caption(rng, attrs, "prompt", "prompt", "This {}")]
    return make_record(f"bench/{i:08d}.jpg", identity=i // 10, source="bench", image_bytes=_jpeg_pool()[i % 64],
                       width=24, height=48, attributes=attrs, captions=captions, status=status,
                       error="gender-vote: synthetic" if status == "filtered" else "")


def _write(n: int, out: Path) -> float:
    from synth_pedes import write_dataset

    t0 = time.perf_counter()
    write_dataset(range(n), out, name=f"card-bench-{n}", kind="captions", transform=caption_record,
                  shard_rows=SHARD_ROWS)
    return time.perf_counter() - t0


def _card(path: Path, out: Path, workers: int) -> dict:
    """One full card (sha256 verification included) on ``workers`` Dask workers (0: this process)."""
    from synth_pedes.card import make_card

    from ..cluster import dask_client

    with dask_client(workers) as client:
        t0 = time.perf_counter()
        result = make_card(path, out, client=client)
        total = time.perf_counter() - t0
    return {"pass_s": result.stats["timing"]["seconds"], "total_s": total, "rows": result.stats["rows"]}


def _peak_memory_mib(path: Path | None, out: Path) -> float:
    """Peak RSS (MiB) of a fresh process that writes the card of ``path`` without a cluster
    (``path=None``: only the imports and a plot, the baseline every card run pays)."""
    work = (f"make_card(Path({str(path)!r}), Path({str(out)!r}), verify='quick')" if path else
            "import matplotlib.figure; matplotlib.figure.Figure().savefig(__import__('io').BytesIO())")
    code = ("import resource; from pathlib import Path; from synth_pedes.card import make_card; "
            f"{work}; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def run(quick: bool, workdir: Path) -> dict:
    n = 20_000 if quick else 100_000
    small = n // 10
    big, tenth = workdir / "big", workdir / "small"
    t_write = _write(n, big)
    _write(small, tenth)
    import distributed  # noqa: F401  (imports are not what we time)

    cluster = _card(big, workdir / "card-2w", 2)
    single = _card(big, workdir / "card-0w", 0)
    mem_base = _peak_memory_mib(None, workdir)
    mem_small, mem_big = _peak_memory_mib(tenth, workdir / "mem-s"), _peak_memory_mib(big, workdir / "mem-b")
    stats = json.loads((workdir / "card-2w" / "report" / "stats.json").read_text())
    rows = [
        {"metric": f"statistics pass, {n:,} rows, 2 Dask workers", "value": round(n / cluster["pass_s"]),
         "unit": "rows/s", "note": f"{cluster['pass_s']:.1f} s incl. sha256 of every shard; whole card "
                                   f"{cluster['total_s']:.1f} s with plots"},
        {"metric": f"statistics pass, {n:,} rows, in one process", "value": round(n / single["pass_s"]),
         "unit": "rows/s", "note": f"whole card {single['total_s']:.1f} s"},
        {"metric": "card peak RSS, imports only", "value": round(mem_base), "unit": "MiB",
         "note": "baseline: python, pyarrow, dask, matplotlib, torch (via the torchvision shim)"},
        {"metric": f"card peak RSS, {small:,} rows", "value": round(mem_small), "unit": "MiB"},
        {"metric": f"card peak RSS, {n:,} rows", "value": round(mem_big), "unit": "MiB",
         "goal": "bounded by shard size", "pass": mem_big < 1.5 * mem_small + 64},
    ]
    return {"rows": rows, "dataset_rows": n, "shard_rows": SHARD_ROWS, "write_s": round(t_write, 1),
            "faithfulness": stats["faithfulness"]["overall"]["agreement"],
            "client_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv, workdir=Path(sys.argv[1])), indent=1))
