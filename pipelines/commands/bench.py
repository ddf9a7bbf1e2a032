"""``plip bench [SUITE...]``: run benchmark suites, merge results into bench/results.json, print a table."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from ..benchmarks import SUITES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"which suites (default: all of {list(SUITES)})")
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"), help="results JSON (merged)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temporary one)")


def machine() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": gpu,
            "python": platform.python_version(), "torch": torch.__version__}


def markdown(results: dict) -> str:
    lines = ["| suite | metric | value | unit | goal | note |", "|---|---|---|---|---|---|"]
    for suite, res in results.items():
        for row in res["rows"]:
            goal = row.get("goal", "")
            if "pass" in row:
                goal = f"{goal} {'(met)' if row['pass'] else '(NOT met)'}"
            lines.append(f"| {suite} | {row['metric']} | {row['value']} | {row['unit']} | {goal} | {row.get('note', '')} |")
    hw = {json.dumps(r["machine"], sort_keys=True) for r in results.values()}
    lines.append("")
    lines += [f"Measured on: {h}" for h in sorted(hw)]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown benchmark suite(s) {unknown}; available: {list(SUITES)}")
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for name in args.suites or list(SUITES):
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)  # a new scratch directory is fine
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            t0 = time.perf_counter()
            res = importlib.import_module(SUITES[name]).run(args.quick, Path(tmp))
        res.update(seconds=round(time.perf_counter() - t0, 1), quick=args.quick, machine=machine(),
                   measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        results[name] = res
        print(markdown({name: res}))
        if "table" in res:  # a suite's own table (per-slot scores, ablation variants) beside the results
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.with_name(f"{name}.md").write_text(res["table"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0
