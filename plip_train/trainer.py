"""The pre-training loop: data stream -> model + pretext tasks -> Adan, on one process or under torchrun.

Exactness is a design goal, not a hope: the data plan, every per-sample random choice and the
IAP masks are functions of (seed, step, global position), the RNG states travel in the
checkpoint, and DDP gathers IVLC's embeddings so the contrastive loss is over the global batch.
A resumed run therefore reproduces the losses of an uninterrupted one, and N ranks reproduce one
process on the same global batch (up to float reduction order; with BatchNorm only if the norm is
synchronised, which on CPU it cannot be: use ``norm: group`` there).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from plip_runtime.device import autocast, resolve_precision

from . import checkpoint as ckpt
from .config import PlipConfig
from .data import BatchShape, DataError, PlipStream, StreamSpec, TrainIndex, make_loader, plan_epoch
from .distributed import DistEnv, barrier, init_distributed, shutdown

_log = logging.getLogger(__name__)


class PretrainModule(nn.Module):
    """Model + task heads behind one ``forward`` so DDP sees (and syncs) every trained parameter."""

    def __init__(self, model: nn.Module, tasks: nn.Module):
        super().__init__()
        self.model, self.tasks = model, tasks

    def forward(self, batch: dict, progress: float) -> dict:
        return self.tasks(self.model, batch, progress)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    losses: list[dict] = field(default_factory=list)  # one dict of floats per step (this run's steps)
    samples_per_second: float = 0.0
    checkpoint: Path | None = None


def to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if channels_last and v.ndim == 4:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


class Trainer:
    """Builds everything for one run; ``fit()`` trains to the configured number of steps."""

    def __init__(self, cfg: PlipConfig, data_dir: str | Path, run_dir: str | Path, *, resume: bool = False,
                 device: str | None = None, stop_after: int | None = None, env: DistEnv | None = None):
        self.cfg, self.run_dir, self.stop_after = cfg, Path(run_dir), stop_after
        self.env = env or init_distributed(device)
        self.precision = resolve_precision(cfg.train.precision, self.env.device)
        torch.manual_seed(cfg.train.seed)
        self._open_data(data_dir)
        self._build_model()
        self.start_step = self._prepare_run_dir(resume)

    # ---- set-up -------------------------------------------------------------------------------
    def _open_data(self, data_dir) -> None:
        from synth_pedes import open_dataset

        cfg = self.cfg
        self.dataset = open_dataset(data_dir, verify={"none": False}.get(cfg.data.verify, cfg.data.verify))
        splits = None if cfg.data.split is None else (cfg.data.split,)
        self.index = TrainIndex.build(self.dataset, splits)
        if cfg.tasks.ivlc.enabled and cfg.tasks.ivlc.mode == "identity" and self.index.num_identities == 0:
            raise DataError(f"{data_dir}: no row has an identity (all -1), but IVLC in identity mode needs them. "
                            "Train on a dataset with identities (plip synth/filter of identity-grouped images), or "
                            "set tasks.ivlc.mode=instance for instance-level contrast (--set tasks.ivlc.mode=\"instance\")")
        self.shape = BatchShape(cfg.data.batch_size, cfg.data.images_per_identity, cfg.data.window_row_groups)
        self.steps_per_epoch = len(plan_epoch(self.index, self.shape, cfg.train.seed, 0))
        self.total_steps = cfg.train.max_steps or max(1, math.ceil(cfg.train.epochs * self.steps_per_epoch))

    def _build_model(self) -> None:
        from .models import build_model, build_tokenizer
        from .optim import build_optimizer, build_scheduler
        from .tasks import build_tasks

        cfg, device = self.cfg, self.env.device
        self.model = build_model(cfg.model)
        self.tokenizer = build_tokenizer(cfg.model.text)
        self.tasks = build_tasks(cfg.tasks, self.model, self.tokenizer)
        module = PretrainModule(self.model, self.tasks).to(device)
        if cfg.train.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.env.distributed:
            if device.type == "cuda":
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[device.index] if device.type == "cuda" else None)
        self.module = module
        self.optimizer = build_optimizer(cfg.optim, self.model, self.tasks)
        self.scheduler = build_scheduler(cfg.optim, self.optimizer, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")

    def _prepare_run_dir(self, resume: bool) -> int:
        run_file = self.run_dir / ckpt.RUN_FILE
        if run_file.exists() and not resume:
            raise ValueError(f"{self.run_dir} already holds a training run; pass --resume to continue it, "
                             "or choose a new --out directory")
        if not resume or not run_file.exists():
            if self.env.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self._write_run_file(step=0, checkpoint=None)
            barrier(self.env)
            return 0
        info = ckpt.read_run_file(self.run_dir)
        if info.get("dataset", {}).get("id") != self.dataset.id:
            raise ValueError(f"{self.run_dir}: --resume with a different dataset (run: {info['dataset']['id']}, "
                             f"now: {self.dataset.id}); resume on the same data or start a new run")
        if info.get("config") != self.cfg.to_dict():
            raise ValueError(f"{self.run_dir}: --resume with a different configuration than the run's run.json; "
                             "resume with the same --config and --set options, or start a new run")
        last = ckpt.latest_checkpoint(self.run_dir)
        return 0 if last is None else self._load_checkpoint(last)

    def _load_checkpoint(self, path: Path) -> int:
        ckpt.load_module(self.model, path / "model.safetensors")
        ckpt.load_module(self.tasks, path / "tasks.safetensors")
        state = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"][min(self.env.rank, len(state["rng"]) - 1)])
        step = json.loads((path / "state.json").read_text())["step"]
        _log.info("resumed from %s (step %d)", path, step)
        return step

    def _write_run_file(self, step: int, checkpoint: Path | None, finished: bool = False) -> None:
        m = self.dataset.manifest
        ckpt.write_run_file(self.run_dir, {
            "format": "plip-run/1", "config": self.cfg.to_dict(), "step": step, "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch, "finished": finished,
            "checkpoint": None if checkpoint is None else str(checkpoint.relative_to(self.run_dir)),
            "dataset": {"path": str(self.dataset.directory), "id": self.dataset.id, "name": m.name,
                        "rows": len(self.index), "identities": self.index.num_identities},
            "code": ckpt.code_version(), "world_size": self.env.world_size, "precision": self.precision,
            "device": str(self.env.device)})

    # ---- training -----------------------------------------------------------------------------
    def stream(self) -> PlipStream:
        cfg = self.cfg
        spec = StreamSpec(self.index, self.shape, cfg.train.seed, self.steps_per_epoch, rank=self.env.rank,
                          world_size=self.env.world_size, accum=cfg.train.grad_accum,
                          caption_kinds=tuple(cfg.data.caption_kinds) if cfg.data.caption_kinds else None,
                          hflip=cfg.data.hflip, image_size=tuple(cfg.model.image.image_size),
                          mean=tuple(cfg.data.mean), std=tuple(cfg.data.std), gray=cfg.tasks.tic.enabled,
                          cache_row_groups=cfg.data.window_row_groups,
                          masker=self.tasks.masker(self.total_steps))
        return PlipStream(spec, self.tokenizer, cfg.model.text.max_length, self.start_step, self.total_steps)

    def fit(self) -> TrainResult:
        from .logger import MetricLogger

        end = self.total_steps if self.stop_after is None else min(self.total_steps, self.stop_after)
        loader = make_loader(self.stream(), self.cfg.data.num_workers, self.env.device.type == "cuda")
        logger = MetricLogger(self.run_dir, self.env.is_main, self.cfg.train.log_every, self.start_step, end,
                              samples_per_step=self.cfg.data.batch_size)
        result = TrainResult(self.run_dir, 0)
        self.module.train()
        step, last_ckpt = self.start_step, None
        try:
            for step, micro_batches in zip(range(self.start_step, end), loader):
                lrs = self.scheduler.get_last_lr()  # the rates this step trains with
                terms = self.train_step(step, micro_batches)
                result.losses.append(terms)
                logger.log(step, terms, lrs)
                if (step + 1) % self.cfg.train.checkpoint_every == 0 and step + 1 < end:
                    last_ckpt = self.save(step + 1)
            step = end
            last_ckpt = self.save(end)
        finally:
            logger.close()
        if self.env.is_main:
            from .plots import plot_losses

            plot_losses(self.run_dir)
        result.steps, result.checkpoint = step - self.start_step, last_ckpt
        result.samples_per_second = logger.samples_per_second()
        return result

    def train_step(self, step: int, micro_batches: list[dict]) -> dict:
        from .tasks import check_finite

        progress = step / self.total_steps
        accum, sums = len(micro_batches), {}
        for i, mb in enumerate(micro_batches):
            mb = to_device(mb, self.env.device, self.cfg.train.channels_last)
            sync = contextlib.nullcontext() if i == accum - 1 or not self.env.distributed else self.module.no_sync()
            with sync:
                with autocast(self.env.device, self.precision):
                    out = self.module(mb, progress)
                check_finite(out, step, mb["keys"])
                self.scaler.scale(out["loss"] / accum).backward()
            for k, v in out.items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum
        if self.env.distributed:  # log the global batch's values: the mean of the ranks' terms
            names = sorted(sums)
            vec = torch.tensor([sums[k] for k in names], dtype=torch.float64, device=self.env.device)
            torch.distributed.all_reduce(vec)
            sums = dict(zip(names, (vec / self.env.world_size).tolist()))
        if self.cfg.optim.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.optim.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return sums

    def save(self, step: int) -> Path | None:
        """Every rank's RNG state is gathered; rank 0 writes the checkpoint and run.json."""
        rngs = [ckpt.rng_state()]
        if self.env.distributed:
            rngs = [None] * self.env.world_size
            torch.distributed.all_gather_object(rngs, ckpt.rng_state())
        path = None
        if self.env.is_main:
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "scaler": self.scaler.state_dict(), "rng": rngs, "step": step}
            path = ckpt.save_checkpoint(self.run_dir, step, step / self.steps_per_epoch, self.model, self.tasks,
                                        state, keep=self.cfg.train.keep_checkpoints)
            self._write_run_file(step, path, finished=step >= self.total_steps)
        barrier(self.env)
        return path

    def close(self) -> None:
        shutdown(self.env)


def train(cfg: PlipConfig, data_dir, run_dir, *, resume: bool = False, device: str | None = None,
          stop_after: int | None = None) -> TrainResult:
    """Train (or resume) a run; the library entry point behind ``plip train``."""
    trainer = Trainer(cfg, data_dir, run_dir, resume=resume, device=device, stop_after=stop_after)
    try:
        t0 = time.time()
        result = trainer.fit()
        _log.info("trained %d steps in %.1f s", result.steps, time.time() - t0)
        return result
    finally:
        trainer.close()
