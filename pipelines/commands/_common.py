"""Arguments and helpers shared by several commands."""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Callable

_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "k": 1 << 10, "mb": 1 << 20, "m": 1 << 20, "gb": 1 << 30, "g": 1 << 30}


def parse_size(text: str) -> int:
    """'256MB' -> bytes (binary units; plain numbers are bytes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; use e.g. 500MB, 2GB or 1048576")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def add_shard_arguments(parser: argparse.ArgumentParser, default_bytes: str = "256MB") -> None:
    group = parser.add_argument_group("shards")
    group.add_argument("--shard-rows", type=int, default=None, help="at most this many rows per shard")
    group.add_argument("--shard-size", type=parse_size, default=None,
                       help=f"at most this many bytes of images per shard (default {default_bytes} when "
                            "--shard-rows is not given)")
    parser.set_defaults(_default_shard_bytes=parse_size(default_bytes))


def shard_sizes(args: argparse.Namespace) -> tuple[int | None, int | None]:
    if args.shard_rows is None and args.shard_size is None:
        return None, args._default_shard_bytes
    return args.shard_rows, args.shard_size


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("--workers", type=int, default=None,
                       help="Dask LocalCluster worker processes (default: one per core; 0: run in this process)")
    group.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler to use instead")


def print_summary(title: str, rows: list[tuple[str, object]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(title)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


# ---- input checks that no config makes ------------------------------------------------------------------
# A value that goes into a config is validated by the config (plip_runtime.config), never here. What is left is
# the command line's own input: the dataset directories a command reads, and integer flags that feed no config.

def check_dataset_dir(flag: str, path: Path) -> Path:
    """``path`` if it is a finished synth-pedes dataset directory (it holds ``manifest.json``); otherwise
    ``FileNotFoundError`` saying ``FLAG PATH: <what is wrong>; <the fix>``. Every command that reads a dataset
    checks each dataset argument with this before any work (``flag``: ``--data``, or ``DATASET`` for a positional
    argument)."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        return path
    fix = "give a synth-pedes dataset directory (one holding manifest.json, as plip render, import, synth and filter write)"
    if not path.exists():
        problem = "no such dataset directory"
    elif not path.is_dir():
        problem = "not a dataset directory but a file"
    elif (path / "_stats").is_dir():  # the writer keeps its plan and shard stats there until the manifest
        problem = "an unfinished dataset (no manifest.json yet)"
        fix = "re-run the command that was writing it to finish it"
    else:
        problem = "not a dataset directory (no manifest.json)"
    raise FileNotFoundError(f"{flag} {path}: {problem}; {fix}")


def int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse ``type`` for an integer flag that feeds no config (a config checks its own fields):
    ``type=int_at_least(1)``. A smaller value stops the command before any work, argparse naming the flag:
    ``plip card: error: argument --samples: must be an integer >= 0, got -1``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {value}")
        return value

    return parse
