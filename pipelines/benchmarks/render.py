"""ProcPedes render throughput on one core (goal: >= 300 images/s at 256x128, JPEG encode included)."""
from __future__ import annotations

from pathlib import Path


def run(quick: bool, workdir: Path) -> dict:
    from synth_pedes.procpedes import ProcPedesConfig, bench_render

    n = 200 if quick else 1000
    rows = []
    for height, width in ((256, 128), (384, 128)):
        res = bench_render(n, ProcPedesConfig(identities=max(1, n // 4), images_per_identity=4, height=height,
                                              width=width))
        goal = {"goal": ">= 300", "pass": res["images_per_s"] >= 300} if height == 256 else {}
        rows.append({"metric": f"render {height}x{width}, one core", "value": res["images_per_s"],
                     "unit": "images/s", **goal, "note": f"{res['mean_jpeg_bytes'] / 1024:.1f} KB JPEG"})
        rows.append({"metric": f"render + captions + record {height}x{width}", "value": res["records_per_s"],
                     "unit": "records/s"})
    return {"rows": rows}
