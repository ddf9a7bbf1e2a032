"""Arguments and helpers shared by several commands."""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..cluster import DEFAULT_WORKER_TIMEOUT

# binary units, as before: 256MB is 256 MiB
_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "k": 1 << 10, "mb": 1 << 20, "m": 1 << 20, "gb": 1 << 30, "g": 1 << 30,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def deprecated_alias(new: str) -> type[argparse.Action]:
    """An argparse action for an old flag spelling kept for one release: it stores like ``new`` (a flag whose value
    or const it shares) and warns on stderr that the spelling is going. Its help says so (``deprecated_help``)."""
    class DeprecatedAlias(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            warn_deprecated(parser.prog, option_string, new)
            setattr(namespace, self.dest, self.const if self.nargs == 0 else values)

    return DeprecatedAlias


def warn_deprecated(prog: str, old: str, new: str) -> None:
    print(f"{prog}: warning: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


def deprecated_help(new: str) -> str:
    return f"deprecated spelling of {new} (kept for one release, with a warning)"


# ---- shards: one --shard-size in every command that writes a dataset ----------------------------------------
@dataclass(frozen=True)
class ShardSize:
    """``--shard-size``: at most ``rows`` rows (a plain number) or ``bytes`` bytes of images (a number with a unit)."""
    rows: int | None = None
    bytes: int | None = None


def parse_shard_size(text: str) -> ShardSize:
    """``1000`` -> at most 1000 rows per shard; ``256MB``/``1GiB``/``500k`` -> at most that many bytes of images.
    One parser for every command that writes shards: a plain number was bytes in import and rows in synth."""
    m = _SIZE.fullmatch(text)
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS or (not unit and "." in m.group(1)):
        raise argparse.ArgumentTypeError(f"{text!r} is neither a row count (e.g. 1000) nor a size (e.g. 256MB, 1GiB)")
    value = int(float(m.group(1)) * _UNITS[unit]) if unit else int(m.group(1))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a shard must hold at least one row or byte")
    return ShardSize(bytes=value) if unit else ShardSize(rows=value)


def add_shard_arguments(parser: argparse.ArgumentParser, default: str = "256MB", old_spelling: bool = True) -> None:
    """``--shard-size N|SIZE`` (rows or bytes, ``default`` when not given) and, where the command had it, its old
    spelling ``--shard-rows`` (deprecated)."""
    group = parser.add_argument_group("shards")
    group.add_argument("--shard-size", type=parse_shard_size, default=None, metavar="N|SIZE",
                       help=f"rows per output shard (a plain number: 1000) or bytes of images per shard (a size: "
                            f"256MB, 1GiB); default {default}")
    if old_spelling:
        group.add_argument("--shard-rows", type=int, default=None, action=deprecated_alias("--shard-size N"),
                           help=deprecated_help("--shard-size N"))
    parser.set_defaults(_default_shard_size=parse_shard_size(default), shard_rows=None)


def shard_sizes(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """``(shard_rows, shard_bytes)`` for the writer: ``--shard-size`` (or the command's default), or the deprecated
    ``--shard-rows``, which still combines with a ``--shard-size SIZE`` as it did."""
    if args.shard_rows is not None:
        return args.shard_rows, args.shard_size.bytes if args.shard_size else None
    size = args.shard_size or args._default_shard_size
    return size.rows, size.bytes


# ---- the vocabulary every command shares: one helper per flag, so that a flag means the same everywhere --------
DEVICE_HELP = "auto (a GPU when this machine has one; the default), cpu, cuda or cuda:N"


def add_device_argument(parser, help_suffix: str = "") -> None:
    """``--device``, default ``auto`` (resolved by ``plip_runtime.device.resolve_device``, which names a missing GPU)."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP + help_suffix)


def resolved_device(args: argparse.Namespace) -> str:
    """``--device`` made concrete on this machine (``auto`` -> ``cuda`` or ``cpu``); a CUDA device this machine lacks
    is refused with the fix (``ValueError``). ``auto`` and ``cuda`` stay a bare ``cuda``, not ``cuda:0``: each Dask
    worker of a job then takes GPU ``worker index % GPUs`` (plip_runtime.device.resolve_device)."""
    from plip_runtime.device import resolve_device

    device = resolve_device(args.device)
    return device.type if args.device in ("auto", "cuda") else str(device)


PRECISION_HELP = "auto (bf16 where the device runs it natively, fp16 on older GPUs, else fp32), fp32, bf16 or fp16"
MEASURING_PRECISION = "fp32"  # commands that report numbers: the same numbers on every machine


def add_precision_argument(parser, default: str | None = "auto") -> None:
    """``--precision {auto,fp32,bf16,fp16}``. The default rule: ``auto`` where a command makes something (captions,
    a dataset, a model), ``fp32`` (MEASURING_PRECISION) where it reports a measurement; None: the config's."""
    from plip_runtime.device import PRECISIONS

    shown = "the config's" if default is None else default
    parser.add_argument("--precision", choices=PRECISIONS, default=default, help=f"{PRECISION_HELP} (default {shown})")


VERIFY_CHOICES = ("full", "quick", "none")


def add_verify_argument(parser, what: str = "the dataset, before it is read", choices: tuple = VERIFY_CHOICES,
                        old_spellings: bool = True) -> None:
    """``--verify {full,quick,none}`` (default full) and, where the command had them, the old spellings ``--quick`` /
    ``--no-verify`` (deprecated)."""
    parser.add_argument("--verify", choices=choices, default="full",
                        help=f"how to check {what}: full (sizes, schema, rows and every sha256; default), "
                             "quick (no sha256s)" + (", none" if "none" in choices else ""))
    if not old_spellings:
        return
    parser.add_argument("--quick", dest="verify", nargs=0, const="quick", action=deprecated_alias("--verify quick"),
                        help=deprecated_help("--verify quick"))
    if "none" in choices:
        parser.add_argument("--no-verify", dest="verify", nargs=0, const="none",
                            action=deprecated_alias("--verify none"), help=deprecated_help("--verify none"))


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
    "precision": PRECISION_HELP + " (default: the config's)",
    "seed": "random seed of weights, data order and augmentation (default: the config's)",
    "log_every": "steps between metrics.jsonl lines (default: the config's)",
    "checkpoint_every": "steps between checkpoints; one is always written at the end (default: the config's)",
    "keep_checkpoints": "newest checkpoints kept (default: the config's)",
    "device": DEVICE_HELP,
    "resume": "continue the run in --out from its latest checkpoint (with a larger --max-steps/--epochs: train "
              "it longer)",
    "stop_after": "stop with a checkpoint after this step without changing the schedule; --resume continues it "
                  "(time-sliced or preemptible jobs)",
    "workers": "DataLoader worker processes (default: the trainer's; --workers means Dask workers elsewhere)",
    "threads": "torch CPU threads (default: torch's; 1 can be faster on a busy shared machine)",
    "progress": "no progress bar or log lines (default: a bar on a terminal, a line every PLIP_PROGRESS_INTERVAL seconds in a log)",
}


def _flag_type(annotation: str):
    return int if "int" in annotation else float if "float" in annotation else str


def add_training_arguments(parser: argparse.ArgumentParser, config_help: str) -> None:
    """``--config``, ``--set`` and one flag per field of ``TrainArgs`` (the config's ``train`` section) and
    ``RunOptions``: the same names and meaning in ``plip train``, ``plip spac train`` and ``plip spac
    train-recognizer``. Their values are checked once, by the config and the options, not here."""
    import dataclasses

    from plip_runtime.runs import RunOptions, TrainArgs

    parser.add_argument("--config", default=None, help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (JSON), e.g. --set train.seed=3; a dotted path reaches into a "
                             "section (repeatable)")
    group = parser.add_argument_group("training run (the same in every training command)")
    for spec in (*dataclasses.fields(TrainArgs), *dataclasses.fields(RunOptions)):
        flag, help_text = "--" + spec.name.replace("_", "-"), _TRAINING_HELP.get(spec.name, spec.name)
        if spec.name == "workers":  # --workers is Dask worker processes in every other command
            group.add_argument("--loader-workers", dest="workers", type=int, default=None, help=help_text)
            group.add_argument("--workers", dest="workers", type=int, action=deprecated_alias("--loader-workers"),
                               help=deprecated_help("--loader-workers"))
        elif spec.name == "progress":
            group.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None,
                               help=help_text)
        elif spec.type == "bool":
            group.add_argument(flag, action="store_true", help=help_text)
        elif spec.name == "precision":
            add_precision_argument(group, default=None)
        elif spec.name == "device":
            add_device_argument(group)
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


def close_progress(progress, out: Path, manifest) -> bool:
    """Close a job's ``ShardProgress``; when the job found ``out`` finished already (nothing written, nothing
    resumed) say so and return True: the caller prints no summary of work it did not do (no throughput)."""
    progress.close()
    if progress.already_complete:
        print(f"already complete: {out} (id {manifest.id}, {manifest.num_rows} rows)")
    return progress.already_complete


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


def add_dataset_argument(parser, help_text: str = "dataset directory (holding manifest.json)") -> None:
    """The one dataset a command works on (validate, card, export, filter): ``--data DIR`` as in every command that
    reads datasets, or, the shorthand, the command's first argument (``plip validate DIR``)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("dataset", nargs="?", type=Path, metavar="DATASET", help=f"{help_text}; or give it as --data")
    group.add_argument("--data", dest="data", type=Path, metavar="DIR", help="the same, as in the other commands")


def checked_dataset_argument(args: argparse.Namespace) -> Path:
    """The dataset of ``add_dataset_argument``, checked by ``check_dataset_dir`` under the name it was given by."""
    return check_dataset_dir("--data", args.data) if args.data is not None else check_dataset_dir("DATASET", args.dataset)


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


# ---- command groups (plip spac ..., plip finetune ...) --------------------------------------------------
def add_subcommands(parser: argparse.ArgumentParser, subcommands: dict[str, tuple[str, str]], dest: str,
                    metavar: str) -> None:
    """One subparser per ``{name: (module, one-line help)}``; each module has ``add_arguments`` and ``run``."""
    import importlib

    sub = parser.add_subparsers(dest=dest, metavar=metavar, required=True)
    for name, (module, help_text) in subcommands.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(cmd)
        cmd.set_defaults(_subcommand_module=module)


def run_subcommand(args: argparse.Namespace) -> int:
    import importlib

    return importlib.import_module(args._subcommand_module).run(args)

