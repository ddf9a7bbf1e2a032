"""Retrieval metrics at benchmark scale: R@k, mAP, mINP and the official mAP over a 20k x 20k
similarity matrix (5 positives per query), chunked over queries so memory stays bounded."""
from __future__ import annotations

from pathlib import Path


def run(quick: bool, workdir: Path) -> dict:
    from plip_train.evaluate import bench_retrieval

    n = 2000 if quick else 20000
    res = bench_retrieval(num_queries=n, num_gallery=n)
    rows = [{"metric": f"retrieval_metrics {n} x {n}", "value": round(res["seconds"], 2), "unit": "s",
             "goal": "seconds", "note": f"{res['similarity_mib']} MiB similarity matrix + {res['peak_extra_mib']} MiB extra at peak; "
                     f"{res['queries_per_s']:.0f} queries/s"}]
    return {"rows": rows, "details": res}
