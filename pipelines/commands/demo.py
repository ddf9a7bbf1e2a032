"""``plip demo``: the whole system end to end on the embedded ProcPedes corpus."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output directory (default ./demo-out)")
    parser.add_argument("--quick", action="store_true", help="a smaller run, used by the tests: about 1 minute on 2 CPU cores "
                             "(the full demo: about 7)")
    parser.add_argument("--workers", type=int, default=None, help="Dask workers (default: one per core)")


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo, summary_table

    if args.out.exists() and (args.out / "summary.json").exists():
        raise ValueError(f"{args.out} holds a finished demo; choose a new --out (or delete it)")
    summary = run_demo(args.out, quick=args.quick, workers=args.workers)
    print()
    print(summary_table(summary))
    print(f"\ndemo finished in {summary['seconds']} s; outputs in {summary['out']} (summary.json, demo.log)\n"
          f"  dataset card: {summary['card']}\n  report:       {summary['report']}\n"
          f"  PLIP run:     {summary['run']}\n  contact sheet: {summary['contact_sheet']}")
    return 0
