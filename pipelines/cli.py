"""The ``plip`` command line: one table of subcommands, each a module with ``add_arguments`` and ``run``.

Command modules import their heavy dependencies inside ``run`` so ``plip --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import torchvision_cpu_shim
from plip_runtime.version import package_version

torchvision_cpu_shim.install()

# name -> (module, one-line help). The order here is the order `plip --help` lists them in.
COMMANDS = {
    "demo": ("pipelines.commands.demo", "run the whole system end to end on the embedded ProcPedes corpus"),
    "render": ("pipelines.commands.render", "render a ProcPedes corpus (dataset, official benchmark layout, folder)"),
    "import": ("pipelines.commands.importing", "import image folders and public datasets as synth-pedes datasets"),
    "export": ("pipelines.commands.export", "write a dataset in a published layout (SYNTH-PEDES JSON + Part folders)"),
    "spac": ("pipelines.commands.spac", "SPAC: mine templates, train/evaluate recognizers, train the captioner, caption"),
    "synth": ("pipelines.commands.synth", "run SPAC over an image dataset on Dask: a SYNTH-PEDES-style caption dataset"),
    "filter": ("pipelines.commands.filter", "apply the SYNTH-PEDES quality filters: a new, filtered dataset version"),
    "validate": ("pipelines.commands.validate", "check a dataset: manifest, schema, row counts, every checksum"),
    "migrate": ("pipelines.commands.migrate", "copy a dataset of the older layout into the current one"),
    "card": ("pipelines.commands.card", "write a dataset card (README.md) and statistics report with plots"),
    "train": ("pipelines.commands.train", "pre-train PLIP on a caption dataset (IVLC + TIC + IAP; torchrun for DDP)"),
    "finetune": ("pipelines.commands.finetune", "fine-tune a PLIP model downstream: text ReID (CMPM/C, linear probe, "
                 "few-shot)"),
    "eval": ("pipelines.commands.eval", "zero-shot retrieval on a benchmark (t2i/i2t, Market-1501 image ReID)"),
    "embed": ("pipelines.commands.embed", "write image and caption embeddings of a dataset to Parquet"),
    "convert": ("pipelines.commands.convert", "import the released PLIP checkpoint as a run directory"),
    "bench": ("pipelines.commands.bench", "run benchmarks, write bench/results.json and a Markdown table"),
    "env": ("pipelines.commands.env", "show versions, weights, offline settings and the torchvision CPU shim"),
}


class UsageError(Exception):
    """A problem with the command's input that the user can fix; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plip", description="PLIP + SPAC: synthesize person-caption datasets, pre-train, evaluate.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("--version", action="version", version=f"plip {package_version()}",
                        help="print the installed version of plip and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def absolute_paths(args: argparse.Namespace) -> argparse.Namespace:
    """Every path argument made absolute against this directory, once, before any work: a job's workers
    (``--scheduler``) run elsewhere and would read a relative path against their own directory, and the
    transforms and records built from the arguments then name the same files everywhere. ``..`` and symlinks
    are kept as given (``Path.absolute``), so a path means what it meant here."""
    for name, value in vars(args).items():
        if isinstance(value, Path):
            setattr(args, name, value.absolute())
        elif isinstance(value, list) and any(isinstance(v, Path) for v in value):
            setattr(args, name, [v.absolute() if isinstance(v, Path) else v for v in value])
    return args


def main(argv: list[str] | None = None) -> int:
    args = absolute_paths(build_parser().parse_args(argv))
    from .logs import setup_logging

    setup_logging(args.verbose)
    from synth_pedes.errors import SynthPedesError

    from .cluster import ClusterError

    started = time.time()
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (UsageError, SynthPedesError, ClusterError, FileNotFoundError, NotADirectoryError, ValueError) as e:
        if os.environ.get("PLIP_DEBUG"):
            raise
        print(f"plip {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        finished = _finished_output(args, started)
        if finished is not None:  # e.g. Ctrl-C while the workers were stopping: the work is done
            print(f"plip {args.command}: finished ({finished}); interrupted during shutdown", file=sys.stderr)
            return 0
        print(f"plip {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


def _finished_output(args: argparse.Namespace, since: float) -> str | None:
    """``"OUT complete, id ..."`` when this command finished writing the dataset ``--out`` (its manifest was
    written since ``since``), else None."""
    manifest = getattr(args, "out", None) and Path(args.out) / "manifest.json"
    try:
        if not manifest or manifest.stat().st_mtime < since - 1:  # (file times may lag the clock a little)
            return None
        return f"{args.out} complete, id {json.loads(manifest.read_text())['id']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


if __name__ == "__main__":
    sys.exit(main())
