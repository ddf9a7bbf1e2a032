"""Arguments and helpers shared by several commands."""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Callable

from ..cluster import DEFAULT_WORKER_TIMEOUT

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
    group.add_argument("--scheduler", default=None,
                       help="address of an existing Dask scheduler to use instead; its workers must see the paths "
                            "given here at the same place (a shared filesystem)")
    group.add_argument("--worker-timeout", type=float, default=DEFAULT_WORKER_TIMEOUT, metavar="SECONDS",
                       help="with --scheduler: how long to wait for a worker to connect, and how long a running job "
                            f"waits when every worker has gone, before it stops with a message (default "
                            f"{DEFAULT_WORKER_TIMEOUT:g})")


# ---- training commands: the flags every trainer shares, generated from TrainArgs and RunOptions ---------------
_TRAINING_HELP = {
    "epochs": "passes over the training data (the run's budget unless --max-steps is given; default: the config's)",
    "max_steps": "train this many optimizer steps in all (replaces --epochs; raise it with --resume to train a "
                 "finished run longer)",
    "precision": "auto (bf16 where the device runs it natively, fp16 on older GPUs, else fp32), fp32, bf16 or fp16 "
                 "(default: the config's)",
    "seed": "random seed of weights, data order and augmentation (default: the config's)",
    "log_every": "steps between metrics.jsonl lines (default: the config's)",
    "checkpoint_every": "steps between checkpoints; one is always written at the end (default: the config's)",
    "keep_checkpoints": "newest checkpoints kept (default: the config's)",
    "device": "auto (a GPU when there is one; the default), cpu, cuda or cuda:N",
    "resume": "continue the run in --out from its latest checkpoint (with a larger --max-steps/--epochs: train "
              "it longer)",
    "stop_after": "stop with a checkpoint after this step without changing the schedule; --resume continues it "
                  "(time-sliced or preemptible jobs)",
    "workers": "data-loading worker processes (default: the trainer's)",
    "threads": "torch CPU threads (default: torch's; 1 can be faster on a busy shared machine)",
    "progress": "no progress bar (default: one when stderr is a terminal)",
}


def _flag_type(annotation: str):
    return int if "int" in annotation else float if "float" in annotation else str


def add_training_arguments(parser: argparse.ArgumentParser, config_help: str) -> None:
    """``--config``, ``--set`` and one flag per field of ``TrainArgs`` (the config's ``train`` section) and
    ``RunOptions``: the same names and meaning in ``plip train``, ``plip spac train`` and ``plip spac
    train-recognizer``. Their values are checked once, by the config and the options, not here."""
    import dataclasses

    from plip_runtime.device import PRECISIONS
    from plip_runtime.runs import RunOptions, TrainArgs

    parser.add_argument("--config", default=None, help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (JSON), e.g. --set train.seed=3; a dotted path reaches into a "
                             "section (repeatable)")
    group = parser.add_argument_group("training run (the same in every training command)")
    for spec in (*dataclasses.fields(TrainArgs), *dataclasses.fields(RunOptions)):
        flag, help_text = "--" + spec.name.replace("_", "-"), _TRAINING_HELP.get(spec.name, spec.name)
        if spec.name == "progress":
            group.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None,
                               help=help_text)
        elif spec.type == "bool":
            group.add_argument(flag, action="store_true", help=help_text)
        elif spec.name == "precision":
            group.add_argument(flag, choices=PRECISIONS, default=None, help=help_text)
        else:
            group.add_argument(flag, type=_flag_type(str(spec.type)), default=None, help=help_text)


def training_overrides(args: argparse.Namespace, fields: dict[str, str] | None = None) -> list[str]:
    """The ``--set`` items of a training command: its own ``--set`` values, then one per TrainArgs flag given
    (``train.max_steps=5``) and per command-specific flag in ``fields`` (``{"batch_size": "data.batch_size"}``)."""
    import dataclasses
    import json

    from plip_runtime.runs import TrainArgs

    items = list(args.overrides)
    mapping = {f.name: f"train.{f.name}" for f in dataclasses.fields(TrainArgs)} | (fields or {})
    for name, key in mapping.items():
        value = getattr(args, name, None)
        if value is not None:
            items.append(f"{key}={json.dumps(value)}")
    return items


def run_options(args: argparse.Namespace):
    """The ``RunOptions`` of a training command's flags (validated by RunOptions)."""
    import dataclasses

    from plip_runtime.runs import RunOptions

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunOptions) if getattr(args, f.name) is not None}
    return RunOptions(**given)


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
    from synth_pedes.sources.images import holds_image_files

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
    elif holds_image_files(path):
        problem = "a folder of image files, not a dataset"
        fix = f"run `plip import images {path} --out DATASET` first and give DATASET"
    else:
        problem = "not a dataset directory (no manifest.json)"
    raise FileNotFoundError(f"{flag} {path}: {problem}; {fix}")


def check_captioner_dir(flag: str, path: Path) -> Path:
    """The SPAC captioner checkpoint ``path`` names (a ``plip spac train`` run or one of its checkpoints), before any
    work: another trainer's run is refused as what it is, a missing or truncated checkpoint is named with the fix."""
    from plip_runtime.runs import check_run_kind
    from spac.captioner.checkpoint import find_checkpoint

    check_run_kind(path, "spac-captioner", flag)
    return find_checkpoint(path)


def recognizer_specs(text: str) -> tuple[str, ...]:
    """``--recognizers classifier:runs/rec,oracle`` as specs whose checkpoint paths are absolute: the specs travel
    to Dask workers, which resolve a relative path against their own working directory (like every Path
    argument, see ``pipelines.cli.absolute_paths``)."""
    specs = []
    for spec in (s.strip() for s in text.split(",")):
        name, _, path = spec.partition(":")
        if spec:
            specs.append(f"{name}:{Path(path).absolute()}" if path else name)
    return tuple(specs)


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
