"""The training-run machinery every trainer uses (SPAC's recognizer and captioner, PLIP pre-training, the
fine-tunes): one run directory layout, one run record, one checkpoint format with trainer state, exact resume
that may extend a run's budget, stop-after, seeds and logs.

::

    RUN/run.json                      kind, config, the datasets consumed (ids), code version, progress
    RUN/checkpoints/step-000100/      one complete checkpoint:
        <the trainer's weight files>  e.g. model.safetensors (+ config/vocabulary files): what loaders read
        trainer.pt                    optimizer, schedule, loss scaler, data position, every rank's RNG state
        state.json                    step and epoch, written last: its presence marks a complete checkpoint
    RUN/metrics.jsonl, RUN/tb/, RUN/losses.png

A checkpoint is written under a temporary name and renamed, so a crash mid-write leaves the previous one as
the latest complete checkpoint; the newest ``train.keep_checkpoints`` are kept. A trainer's loop::

    run = Run(out, kind="spac-captioner", config=cfg.to_dict(), train=cfg.train, options=options, device=device)
    # run.start_step is 0, or the step it resumes from; run.resume_from the checkpoint to load weights from
    ... build the model (from run.resume_from when resuming), read the data ...
    run.plan(steps_per_epoch, datasets=lineage)     # checks a resume's data, writes run.json, starts the logs
    if run.trainer_state: restore optimizer, data position ... from it; run.restore_rng()
    for step in range(run.start_step, run.end_step):
        ... one optimizer step ...; run.log(step, terms, lr, samples)
        if run.checkpoint_due(step + 1): run.save(step + 1, write_weights, trainer_state())
    checkpoint = run.finish(write_weights, trainer_state())      # write_weights(directory, step)

Resuming (``RunOptions.resume``) refuses other data and another configuration, naming each field that differs
and its two values, except the budget (``train.epochs``, ``train.max_steps``): a run may be resumed with a larger
budget to train longer, where its trainer's schedule permits (see ``Run``'s ``extendable``).
"""
from __future__ import annotations

import json
import math
import os
import pickle
import random
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .config import ConfigBase
from .device import PRECISIONS, resolve_precision, tune_for_speed
from .metrics import MetricLogger, plot_losses
from .version import code_version
from .weights import check_safetensors

RUN_FORMAT = "plip-run/2"
READABLE_RUN_FORMATS = ("plip-run/1", RUN_FORMAT)
RUN_FILE, CHECKPOINTS_DIR, STATE_FILE, TRAINER_FILE = "run.json", "checkpoints", "state.json", "trainer.pt"
BUDGET_FIELDS = ("train.epochs", "train.max_steps")  # may change on resume (where the schedule permits)


@dataclass
class TrainArgs(ConfigBase):
    """How long a run trains, in which precision, from which seed, how often it logs and checkpoints: the
    ``train`` section of every trainer's config, the same fields and flags (``--epochs``, ``--max-steps``,
    ``--precision``, ``--seed``, ...) in every training command."""

    where = "train"
    epochs: float = 1.0  # passes over the training data: the run's budget unless max_steps is set
    max_steps: int | None = None  # if set, the run is this many optimizer steps instead of epochs
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (plip_runtime.device)
    seed: int = 0  # seeds torch, Python and NumPy; data order and augmentation derive from it too
    log_every: int = 10  # steps between metrics.jsonl lines (the first and last step are always logged)
    checkpoint_every: int = 1000  # steps between checkpoints; one is always written at the end
    keep_checkpoints: int = 2  # newest complete checkpoints kept

    def validate(self) -> None:
        self.require_number("epochs", 0, lo_open=True)
        self.require_int("max_steps", 1, optional=True)
        self.require_choice("precision", PRECISIONS)
        self.require_int("seed", 0)
        for name in ("log_every", "checkpoint_every", "keep_checkpoints"):
            self.require_int(name, 1)

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's length in optimizer steps."""
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * steps_per_epoch))


@dataclass
class RunOptions(ConfigBase):
    """How to execute a run: not part of its recipe (not compared on resume), the same in every training command."""

    where = "options"
    device: str = "auto"  # auto (a GPU when there is one) | cpu | cuda | cuda:N
    resume: bool = False  # continue the run in the output directory from its latest complete checkpoint
    stop_after: int | None = None  # stop (with a checkpoint) after this step; the schedule is unchanged
    workers: int | None = None  # data-loading processes; None: the trainer's default
    threads: int | None = None  # torch CPU threads; None: torch's default
    progress: bool | None = None  # a progress bar; None: when stderr is a terminal

    def validate(self) -> None:
        self.require("device", isinstance(self.device, str) and bool(self.device), "must be auto, cpu, cuda or cuda:N")
        self.require_bool("resume")
        self.require_int("stop_after", 1, optional=True)
        self.require_int("workers", 0, optional=True)
        self.require_int("threads", 1, optional=True)
        self.require("progress", self.progress is None or isinstance(self.progress, bool), "must be true, false or null")


# ---- seeds and RNG state ------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed torch (every device), Python's ``random`` and NumPy's global generator."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)


def rng_state() -> dict:
    """This process's RNG states (torch CPU, every CUDA device, Python, NumPy): what exact resume restores."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    # NumPy's state as plain values: checkpoints load with weights_only=True, which refuses NumPy arrays
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (kind, keys.tolist(), int(pos), int(has_gauss), float(cached))}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- the run directory --------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_run_file(run_dir: str | os.PathLike, info: dict) -> None:
    """Write ``run.json`` atomically."""
    path = Path(run_dir) / RUN_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=1, default=str) + "\n")
    tmp.replace(path)


def read_run_file(run_dir: str | os.PathLike) -> dict:
    """``run.json`` of a run directory; a run of the first format gets its ``dataset`` as ``datasets``."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: no {RUN_FILE}; this is not a training run directory (plip train, "
                                "plip spac train, plip spac train-recognizer and plip convert write one)")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the run directory is damaged") from e
    if info.get("format") not in READABLE_RUN_FORMATS:
        raise ValueError(f"{path}: run format {info.get('format')!r} is not one this version reads "
                         f"({', '.join(READABLE_RUN_FORMATS)})")
    if not isinstance(info.get("config", {}), dict):  # a name here would be read as a list of section names
        raise ValueError(f"{path}: 'config' is {info['config']!r}, not a config document (a JSON object); the run "
                         "directory is damaged, or was not written by plip")
    if "datasets" not in info:  # plip-run/1 recorded its one dataset under "dataset"
        info["datasets"] = [info["dataset"]] if info.get("dataset") else []
    info.setdefault("kind", "plip-pretrain")
    return info


def complete_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The run's complete checkpoints (those with a ``state.json``), oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists())


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step a checkpoint directory was written at (its ``state.json``), or None."""
    try:
        return int(json.loads((Path(path) / STATE_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve_checkpoint(path: str | os.PathLike, checkpoint: str | os.PathLike | int | None = None,
                       weights: str = "model.safetensors") -> tuple[Path | None, Path]:
    """``(run directory or None, checkpoint directory)`` for what a user names: a run directory (its latest
    complete checkpoint, or ``checkpoint``: a step number or a path, absolute or inside the run), a checkpoint
    directory inside a run, or a bare directory holding ``weights`` (no run around it)."""
    path = Path(path)
    if checkpoint is None and (path / weights).is_file():
        if (run_dir := _run_around(path)) is not None:
            return _checked(run_dir, path, weights)
        if not (path / RUN_FILE).is_file() or not (path / CHECKPOINTS_DIR).is_dir():
            return _checked(None, path, weights)  # a bare checkpoint directory
    info = read_run_file(path)  # FileNotFoundError naming the directory when it is neither
    steps = [p.name for p in complete_checkpoints(path)]
    if checkpoint is None:  # a fine-tune's checkpoint selected on validation, else the run's last
        named = (info.get("selected") or {}).get("checkpoint") or info.get("checkpoint")
        found = path / named if named and (path / named / STATE_FILE).exists() else latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"{path}: the run has no complete checkpoint yet (none under "
                                    f"{path / CHECKPOINTS_DIR} has a {STATE_FILE}); train past the first checkpoint")
    elif isinstance(checkpoint, int) and not isinstance(checkpoint, bool):
        found = path / CHECKPOINTS_DIR / f"step-{checkpoint:06d}"
    else:
        found = Path(checkpoint)
        if not found.is_absolute() and (path / found).exists():
            found = path / found
    if not (found / STATE_FILE).exists() or not (found / weights).exists():
        raise FileNotFoundError(f"{found}: not a complete checkpoint of {path} (complete ones: "
                                f"{', '.join(steps) or 'none'})")
    return _checked(path, found, weights)


def _run_around(checkpoint_dir: Path) -> Path | None:
    """The run directory that ``checkpoint_dir`` is a checkpoint of (``RUN/checkpoints/step-N``), or None."""
    run_dir = checkpoint_dir.parent.parent
    return run_dir if checkpoint_dir.parent.name == CHECKPOINTS_DIR and (run_dir / RUN_FILE).is_file() else None


def _checked(run_dir: Path | None, checkpoint_dir: Path, weights: str) -> tuple[Path | None, Path]:
    """``(run_dir, checkpoint_dir)`` once its weights file is whole (a truncated copy is named here, with the fix,
    rather than by the loader's own error: docs/formats.md#checkpoints)."""
    if weights.endswith(".safetensors"):
        check_safetensors(checkpoint_dir / weights)
    return run_dir, checkpoint_dir


# What each trainer's runs are called in messages, and the commands that make them (``Run``'s ``kind``).
RUN_KINDS = {"plip-pretrain": ("a PLIP run", "plip train or plip convert official"),
             "spac-captioner": ("a SPAC captioner run", "plip spac train"),
             "spac-recognizer": ("a SPAC attribute-recognizer run", "plip spac train-recognizer"),
             "plip-text-reid": ("a PLIP text-ReID fine-tune run", "plip finetune text-reid"),
             "plip-image-reid": ("a PLIP image-ReID fine-tune run", "plip finetune image-reid"),
             "plip-attributes": ("a PLIP attribute-recognition fine-tune run", "plip finetune attributes")}
# The runs holding a PlipModel (model.safetensors + a model config): what plip eval, embed and finetune --init read.
PLIP_MODEL_KINDS = ("plip-pretrain", "plip-text-reid", "plip-image-reid", "plip-attributes")


def check_run_kind(path: str | os.PathLike, kind: str | Sequence[str], flag: str) -> None:
    """``ValueError`` when ``path`` (a run directory, or a checkpoint in one) was made by another trainer than
    ``kind`` (one kind, or several accepted): "RUN is a SPAC captioner run, not a PLIP run: pass a PLIP run
    (plip train ...) to --checkpoint". A path that is no run passes: the loader says what is wrong with it."""
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    run_dir = path if (path / RUN_FILE).is_file() else _run_around(path)
    if run_dir is None or (made_by := read_run_file(run_dir)["kind"]) in kinds:
        return
    made = RUN_KINDS.get(made_by, (f"a {made_by} run", ""))[0]
    if kinds == PLIP_MODEL_KINDS:  # every run holding a PLIP model
        wanted, makers = "a PLIP run", "plip train, plip convert official or plip finetune"
    else:
        wanted = " or ".join(RUN_KINDS[k][0] for k in kinds)
        makers = ", ".join(RUN_KINDS[k][1] for k in kinds)
    what = f"{path} is {made}" if run_dir == path else f"{path} is a checkpoint of {made} ({run_dir})"
    raise ValueError(f"{what}, not {wanted}: pass {wanted} ({makers}) to {flag}")


def write_checkpoint(run_dir: str | os.PathLike, step: int, epoch: float | None,
                     write_weights: Callable[[Path], None], trainer_state: dict | None = None,
                     keep: int | None = None, protect: Sequence[str] = ()) -> Path:
    """Write ``checkpoints/step-NNNNNN`` atomically: ``write_weights(directory)`` writes the model's files, then
    ``trainer.pt`` (when given) and ``state.json``; keep the newest ``keep`` checkpoints (None: all) and those
    named in ``protect`` (a checkpoint selected on validation outlives the pruning)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_weights(tmp)
    if trainer_state is not None:
        torch.save(trainer_state, tmp / TRAINER_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({"step": step, "epoch": epoch}))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    if keep is not None:
        for old in complete_checkpoints(run_dir)[:-keep]:
            if old.name not in protect:
                shutil.rmtree(old, ignore_errors=True)
    return final


def config_diff(saved: Any, now: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``[(dotted field, saved value, new value)]`` for every leaf that differs between two config documents."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(saved) | set(now), key=str):
            out += config_diff(saved.get(key), now.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == now else [(prefix[:-1], saved, now)]


def _describe(diff: Sequence[tuple[str, Any, Any]]) -> str:
    return "; ".join(f"{name} {json.dumps(old)} in the run, {json.dumps(new)} now" for name, old, new in diff)


@dataclass
class TrainResult:
    """A finished (or stopped-after) training segment, the same for every trainer."""

    run_dir: Path
    start_step: int  # where this segment began (0, or the step it resumed from)
    end_step: int  # where it stopped: the run's total, or --stop-after
    total_steps: int  # the run's budget
    checkpoint: Path | None  # the last checkpoint written (None on other ranks than the main one)
    losses: list[dict]  # the loss terms of every step of this segment (floats)
    samples_per_second: float  # this segment's training throughput (set-up excluded)
    extra: dict  # trainer facts (corpus statistics, vocabulary sizes, ...)
    last_logged: dict | None = None  # the last metrics.jsonl line (main rank): means over its mean_of_steps steps

    @property
    def steps(self) -> int:
        return self.end_step - self.start_step

    @property
    def finished(self) -> bool:
        return self.end_step >= self.total_steps

    def loss_rows(self) -> list[tuple[str, str]]:
        """A trainer summary's loss rows, each saying which loss it is (docs/formats.md#logs): the terms of the
        last step, and their means over the last metrics.jsonl line's steps."""
        rows = [("loss at the last step", _loss_terms(self.losses[-1]))] if self.losses else []
        if self.last_logged and "mean_of_steps" in self.last_logged:
            n = self.last_logged["mean_of_steps"]
            rows.append((f"loss, mean of the last {n} step{'s' if n != 1 else ''}", _loss_terms(self.last_logged)))
        return rows


def _loss_terms(terms: dict) -> str:
    """``2.3456 (caption_loss 1.234, attribute_loss 0.1111)``: the total, then the other loss terms."""
    parts = [f"{k} {v:.4g}" for k, v in terms.items() if k.endswith("_loss")]
    total = f"{terms['loss']:.4f}" if "loss" in terms else ""
    return f"{total} ({', '.join(parts)})" if total and parts else total or ", ".join(parts)


class Run:
    """One training run's directory and lifecycle (see the module docstring for the loop).

    ``kind`` names the trainer (``plip-pretrain``, ``spac-captioner``, ``spac-recognizer``, ...); ``config`` is
    the trainer's whole config as a dict, ``train`` its :class:`TrainArgs`. ``extendable``: True when the
    trainer's schedule lets a resumed run take a larger budget; otherwise a sentence saying why not, shown when
    a resume asks for one. Under ``torchrun`` every rank builds the run; only ``rank`` 0 writes, and ``barrier``
    synchronises the ranks after each write."""

    def __init__(self, directory: str | os.PathLike, *, kind: str, config: dict, train: TrainArgs,
                 options: RunOptions, device: torch.device, extendable: bool | str = True,
                 rank: int = 0, world_size: int = 1, barrier: Callable[[], None] = lambda: None):
        self.directory, self.kind, self.config, self.train = Path(directory), kind, config, train
        self.options, self.device, self.datasets = options, device, []
        self.rank, self.world_size, self._barrier = rank, world_size, barrier
        self.is_main = rank == 0
        self.precision = resolve_precision(train.precision, device)
        self.start_step, self.resume_from, self.trainer_state = 0, None, None
        self.extension: dict | None = None
        self.logger: MetricLogger | None = None
        self.steps_per_epoch = self.total_steps = self.end_step = 0
        self._saved: dict | None = None  # the run.json being resumed
        self._record: dict = {}
        if options.threads:
            torch.set_num_threads(options.threads)
        tune_for_speed(device)
        seed_everything(train.seed)
        self._open(extendable)
        self._barrier()  # every rank has checked the directory before the main rank writes to it

    # ---- opening: new run or resume ---------------------------------------------------------------------
    def _open(self, extendable: bool | str) -> None:
        exists = (self.directory / RUN_FILE).exists()
        if exists and not self.options.resume:
            raise ValueError(f"{self.directory} already holds a training run; pass --resume to continue it (or to "
                             "train it longer), or choose a new --out directory")
        if not exists:
            if self.directory.is_dir() and any(self.directory.iterdir()):
                raise ValueError(f"{self.directory} is not empty and holds no training run (no {RUN_FILE}); choose "
                                 "a new --out directory so nothing there is overwritten")
            return
        saved = read_run_file(self.directory)
        if saved["kind"] != self.kind:
            raise ValueError(f"{self.directory} holds a {saved['kind']} run, not a {self.kind} run; choose a new "
                             "--out directory")
        self._saved = saved
        diff = config_diff(saved.get("config"), self.config)
        budget = [d for d in diff if d[0] in BUDGET_FIELDS]
        other = [d for d in diff if d[0] not in BUDGET_FIELDS]
        if other:
            raise ValueError(f"{self.directory}: --resume with a different configuration ({_describe(other)}); "
                             "resume with the run's own settings, or start a new run")
        if budget and extendable is not True:
            raise ValueError(f"{self.directory}: --resume with a different budget ({_describe(budget)}): "
                             f"{extendable}; resume with the run's budget, or start a new run")
        if budget:
            self.extension = {"at_step": saved.get("step"), "changed": {n: [o, v] for n, o, v in budget}}
        self._record = {k: saved[k] for k in ("started", "extensions", "selected") if k in saved}
        last = latest_checkpoint(self.directory)
        if last is not None:
            self.resume_from, self.start_step = last, checkpoint_step(last) or 0
            trainer_file = last / TRAINER_FILE
            if not trainer_file.is_file():
                raise ValueError(f"{trainer_file}: missing; this checkpoint holds weights only and cannot resume "
                                 "training")
            try:
                self.trainer_state = torch.load(trainer_file, map_location="cpu", weights_only=True)
            except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:  # a copy that stopped part-way
                raise ValueError(f"{trainer_file}: a truncated or corrupt trainer state ({type(e).__name__}: {e}); "
                                 "delete this checkpoint directory to resume from the one before it, or start a "
                                 "new run") from None

    def restore_rng(self) -> None:
        """Restore this rank's RNG state from the checkpoint the run resumes from."""
        states = self.trainer_state["rng"]
        set_rng_state(states[min(self.rank, len(states) - 1)])

    # ---- planning and logging -----------------------------------------------------------------------------
    def plan(self, steps_per_epoch: int, datasets: list[dict], **record: Any) -> None:
        """Fix the run's length from the data (``steps_per_epoch``), check that a resumed run reads the same data,
        write ``run.json`` and start the logs. ``datasets``: the lineage consumed (``[{"path", "id", "name",
        "rows", ...}]``); ``record``: trainer facts for ``run.json`` (corpus statistics, parameter counts, ...)."""
        if self._saved is not None:
            old_ids, new_ids = [d.get("id") for d in self._saved["datasets"]], [d.get("id") for d in datasets]
            if old_ids != new_ids:
                raise ValueError(f"{self.directory}: --resume with other data (the run trained on {old_ids}, now "
                                 f"{new_ids}); resume on the same data or start a new run")
        self.datasets, self.steps_per_epoch = datasets, steps_per_epoch
        self.total_steps = self.train.total_steps(steps_per_epoch)
        stop = self.options.stop_after
        self.end_step = self.total_steps if stop is None else min(self.total_steps, stop)
        if self.start_step >= self.total_steps:
            raise ValueError(f"{self.directory} already holds {self.start_step} training steps, the whole budget "
                             f"of {self.total_steps}; raise --max-steps or --epochs (train.max_steps, train.epochs) "
                             "and --resume to train it longer, or choose a new --out directory")
        if self.start_step >= self.end_step:
            raise ValueError(f"--stop-after {stop}: the run in {self.directory} is already at step {self.start_step}")
        if self.extension is not None:
            self._record.setdefault("extensions", []).append(self.extension)
        self._record.update(record)
        self._record.setdefault("started", _now())
        if self.is_main:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._write(self.start_step, self.resume_from, finished=False)
        self._barrier()
        self.logger = MetricLogger(self.directory, enabled=self.is_main, every=self.train.log_every,
                                   start=self.start_step, end=self.end_step, name=self.kind,
                                   progress=self.options.progress)

    def log(self, step: int, terms: dict, lr: float, samples: int) -> dict | None:
        """Log 0-based ``step``: its loss terms (floats), learning rate and number of samples."""
        return self.logger.log(step, terms, lr, samples)

    def checkpoint_due(self, steps_done: int) -> bool:
        """Whether to write a checkpoint after ``steps_done`` steps (the last one is written by ``finish``)."""
        return steps_done % self.train.checkpoint_every == 0 and steps_done < self.end_step

    # ---- checkpoints and run.json -----------------------------------------------------------------------
    def save(self, steps_done: int, write_weights: Callable[[Path, int], None], trainer_state: dict) -> Path | None:
        """Write a checkpoint after ``steps_done`` steps (main rank; ``write_weights(directory, step)`` writes the
        model's files) and update ``run.json``; every rank waits."""
        path = None
        if self.is_main:
            path = write_checkpoint(self.directory, steps_done, steps_done / self.steps_per_epoch,
                                    lambda directory: write_weights(directory, steps_done), trainer_state,
                                    keep=self.train.keep_checkpoints, protect=self._protected())
            self._write(steps_done, path, finished=steps_done >= self.total_steps)
        self._barrier()
        return path

    def select(self, steps_done: int, **facts: Any) -> None:
        """Mark the checkpoint of ``steps_done`` (written at that step, now or just after) as the run's selected
        one (e.g. best on validation): kept however old, what ``resolve_checkpoint`` and ``plip eval`` load by
        default, recorded in ``run.json`` as ``selected`` with ``facts`` (the split, the metric...)."""
        self._record["selected"] = {"checkpoint": f"{CHECKPOINTS_DIR}/step-{steps_done:06d}", "step": steps_done,
                                    **facts}

    @property
    def selected(self) -> dict | None:
        return self._record.get("selected")

    def _protected(self) -> tuple[str, ...]:
        return (Path(self.selected["checkpoint"]).name,) if self.selected else ()

    def finish(self, write_weights: Callable[[Path, int], None], trainer_state: dict) -> Path | None:
        """The last checkpoint (at ``end_step``), the logs closed and ``losses.png`` drawn."""
        path = self.save(self.end_step, write_weights, trainer_state)
        self.close()
        if self.is_main:
            plot_losses(self.directory)
        return path

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()

    def result(self, losses: list[dict], checkpoint: Path | None, **extra: Any) -> "TrainResult":
        """What a trainer returns: this process's steps and losses, the last checkpoint, ``extra`` facts."""
        logger = self.logger
        return TrainResult(self.directory, self.start_step, self.end_step, self.total_steps, checkpoint, losses,
                           logger.samples_per_second() if logger is not None else 0.0, extra,
                           last_logged=logger.last_record if logger is not None else None)

    def _write(self, step: int, checkpoint: Path | None, finished: bool) -> None:
        write_run_file(self.directory, {
            "format": RUN_FORMAT, "kind": self.kind, "config": self.config, "datasets": self.datasets,
            "step": step, "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
            "epochs_done": round(step / max(self.steps_per_epoch, 1), 4), "finished": finished,
            "checkpoint": None if checkpoint is None else str(Path(checkpoint).relative_to(self.directory)),
            "device": str(self.device), "precision": self.precision, "world_size": self.world_size,
            "code": code_version(), **self._record, "updated": _now()})

