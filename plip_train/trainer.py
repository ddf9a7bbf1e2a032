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
import logging
import time
from pathlib import Path

import torch
from torch import nn

from plip_runtime.device import autocast, grad_scaler, move_batch
from plip_runtime.runs import Run, RunOptions, TrainResult, rng_state

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


KIND = "plip-pretrain"


class Trainer:
    """Builds everything for one run; ``fit()`` trains to the run's end step (its budget, or ``--stop-after``).

    The fine-tunes (``plip_train.finetune``) are subclasses: they replace the hooks marked below (which rows train,
    which model and heads, what happens after a step) and share the rest: run directory, resume, DDP, precision,
    logs and checkpoints."""

    kind = KIND

    def __init__(self, cfg: PlipConfig, data_dir: str | Path, run_dir: str | Path,
                 options: RunOptions | None = None, env: DistEnv | None = None):
        self.cfg, self.options = cfg, options or RunOptions()
        self.env = env or init_distributed(self.options.device)
        self.run = Run(run_dir, kind=self.kind, config=cfg.to_dict(), train=cfg.train, options=self.options,
                       device=self.env.device, extendable=True, rank=self.env.rank, world_size=self.env.world_size,
                       barrier=lambda: barrier(self.env))
        self.precision = self.run.precision
        self._open_data(data_dir)
        self.run.plan(self.steps_per_epoch, self.lineage(), **self.record())
        self.total_steps = self.run.total_steps
        # The IAP masking curriculum spans the run's first budget: a run resumed with a larger one trains on at
        # the curriculum's final ratio instead of stepping back into it (mask_ratio clamps progress at 1).
        state = self.run.trainer_state or {}
        self.curriculum_steps = int(state.get("curriculum_steps", self.total_steps))
        self._build_model()
        self.blank_caption_steps = 0  # steps whose batch held a caption without text (warned about)
        if self.run.resume_from is not None:
            self._load_checkpoint(self.run.resume_from)

    # ---- set-up -------------------------------------------------------------------------------
    def _open_data(self, data_dir) -> None:
        from synth_pedes import open_dataset

        cfg = self.cfg
        self.dataset = open_dataset(data_dir, verify={"none": False}.get(cfg.data.verify, cfg.data.verify))
        self.index = self.build_index()
        self.shape = BatchShape(cfg.data.batch_size, cfg.data.images_per_identity, cfg.data.window_row_groups)
        self.steps_per_epoch = len(plan_epoch(self.index, self.shape, cfg.train.seed, 0))

    def build_index(self) -> TrainIndex:
        """Hook: the rows (or row-caption pairs) that train."""
        cfg = self.cfg
        index = TrainIndex.build(self.dataset, None if cfg.data.split is None else (cfg.data.split,))
        if cfg.tasks.ivlc.enabled and cfg.tasks.ivlc.mode == "identity" and index.num_identities == 0:
            raise DataError(f"{self.dataset.directory}: no row has an identity (all -1), but IVLC in identity mode "
                            "needs them. Train on a dataset with identities (plip synth/filter of identity-grouped "
                            "images), or set tasks.ivlc.mode=instance for instance-level contrast "
                            "(--set tasks.ivlc.mode=\"instance\")")
        return index

    def lineage(self) -> list[dict]:
        """The datasets this run reads, for ``run.json`` (checked on resume by their ids)."""
        return [{"path": str(self.dataset.directory), "id": self.dataset.id, "name": self.dataset.manifest.name,
                 "rows": len(self.index), "identities": self.index.num_identities}]

    def record(self) -> dict:
        """Hook: trainer facts for ``run.json``."""
        return {}

    def build_model(self) -> nn.Module:
        """Hook: the model, before any checkpoint is loaded."""
        from .models import build_model

        return build_model(self.cfg.model)

    def build_heads(self, model: nn.Module, tokenizer) -> nn.Module:
        """Hook: the trained heads and losses: ``heads(model, batch, progress) -> {"loss", ...}``, with
        ``heads.masker(total_steps)`` (per-sample masks made by the data workers, or None) and ``heads.needs_gray``."""
        from .tasks import build_tasks

        return build_tasks(self.cfg.tasks, model, tokenizer)

    def _build_model(self) -> None:
        from .models import build_tokenizer
        from .optim import build_scheduler

        cfg, device = self.cfg, self.env.device
        self.model = self.build_model()
        self.tokenizer = build_tokenizer(cfg.model.text)
        self.tasks = self.build_heads(self.model, self.tokenizer)
        module = PretrainModule(self.model, self.tasks).to(device)
        if cfg.train.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.env.distributed:
            if device.type == "cuda":
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[device.index] if device.type == "cuda" else None)
        self.module = module
        self.optimizer = self.build_optimizer()
        self.scheduler = build_scheduler(cfg.optim, self.optimizer, self.steps_per_epoch)
        self.scaler = grad_scaler(device, self.precision)

    def build_optimizer(self) -> torch.optim.Optimizer:
        """Hook: the optimizer of the model and the heads (a recipe with a second optimizer adds it here)."""
        from .optim import build_optimizer

        return build_optimizer(self.cfg.optim, self.model, self.tasks)

    def optimizer_step(self) -> None:
        """Hook: step the optimizer(s) once the step's gradients are in (through the loss scaler)."""
        if self.cfg.optim.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.optim.max_grad_norm)
        self.scaler.step(self.optimizer)

    def _load_checkpoint(self, path: Path) -> None:
        ckpt.load_module(self.model, path / "model.safetensors")
        ckpt.load_module(self.tasks, path / "tasks.safetensors")
        state = self.run.trainer_state
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.restore_state(state)
        self.run.restore_rng()
        _log.info("resumed from %s (step %d)", path, self.run.start_step)

    def restore_state(self, state: dict) -> None:
        """Hook: restore what :meth:`extra_state` saved."""

    def extra_state(self) -> dict:
        """Hook: more resume state (e.g. the validation history of a fine-tune)."""
        return {}

    def stream_options(self) -> dict:
        """Hook: more ``StreamSpec`` fields (image ReID: no text, BoT's augmentations)."""
        return {}

    def train_mode(self) -> None:
        """Hook: put the modules in training mode (a fine-tune keeps frozen towers in eval mode)."""
        self.module.train()

    def after_step(self, steps_done: int) -> bool:
        """Hook, after every optimizer step: e.g. validate. True: write a checkpoint at this step."""
        return False

    # ---- training -----------------------------------------------------------------------------
    def stream(self) -> PlipStream:
        cfg = self.cfg
        spec = StreamSpec(self.index, self.shape, cfg.train.seed, self.steps_per_epoch, rank=self.env.rank,
                          world_size=self.env.world_size, accum=cfg.train.grad_accum,
                          caption_kinds=tuple(cfg.data.caption_kinds) if cfg.data.caption_kinds else None,
                          hflip=cfg.data.hflip, image_size=tuple(cfg.model.image.image_size),
                          mean=tuple(cfg.data.mean), std=tuple(cfg.data.std), gray=self.tasks.needs_gray,
                          cache_row_groups=cfg.data.window_row_groups,
                          masker=self.tasks.masker(self.curriculum_steps), **self.stream_options())
        return PlipStream(spec, self.tokenizer, cfg.model.text.max_length, self.run.start_step, self.run.end_step)

    def fit(self) -> TrainResult:
        workers = self.cfg.data.num_workers if self.options.workers is None else self.options.workers
        loader = make_loader(self.stream(), workers, self.env.device.type == "cuda")
        self.train_mode()
        losses = []
        for step, micro_batches in zip(range(self.run.start_step, self.run.end_step), loader):
            lr = self.scheduler.get_last_lr()[0]  # the rate this step trains with
            terms = self.train_step(step, micro_batches)
            losses.append(terms)
            self.run.log(step, terms, lr, self.cfg.data.batch_size)
            wants_checkpoint = self.after_step(step + 1)
            if (self.run.checkpoint_due(step + 1) or wants_checkpoint) and step + 1 < self.run.end_step:
                self.save(step + 1)
        checkpoint = self.run.finish(self._write_weights, self._trainer_state())
        return self.run.result(losses, checkpoint)

    def train_step(self, step: int, micro_batches: list[dict]) -> dict:
        from .tasks import check_finite

        progress = step / self.curriculum_steps
        accum, sums = len(micro_batches), {}
        self._warn_blank_captions(step, micro_batches)
        for i, micro_batch in enumerate(micro_batches):
            micro_batch = move_batch(micro_batch, self.env.device, self.cfg.train.channels_last)
            last = i == accum - 1
            sync = contextlib.nullcontext() if last or not self.env.distributed else self.module.no_sync()
            with sync:
                with autocast(self.env.device, self.precision):
                    out = self.module(micro_batch, progress)
                check_finite(out, step, micro_batch["keys"])
                self.scaler.scale(out["loss"] / accum).backward()
            for k, v in out.items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum
        if self.env.distributed:  # log the global batch's values: the mean of the ranks' terms
            names = sorted(sums)
            vec = torch.tensor([sums[k] for k in names], dtype=torch.float64, device=self.env.device)
            torch.distributed.all_reduce(vec)
            sums = dict(zip(names, (vec / self.env.world_size).tolist()))
        self.optimizer_step()
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return sums

    def _warn_blank_captions(self, step: int, micro_batches: list[dict]) -> None:
        """Say loudly when this rank's batch holds captions without text: IAP then masks no token and the
        contrast pairs images with nothing; a whole batch of them trains on noise. Rows whose captions are all
        blank come from datasets written before imports dropped blank captions (or from an outside writer)."""
        blank = [key for mb in micro_batches for key in mb["blank_caption_keys"]]
        if not blank:
            return
        rows = sum(len(mb["keys"]) for mb in micro_batches)
        self.blank_caption_steps += 1
        if self.blank_caption_steps <= 3 or self.blank_caption_steps % 100 == 0:  # loud, but not every step
            _log.warning("step %d: %d of %d captions in this batch have no text (e.g. %s)%s; %d step(s) so far. "
                         "Re-import the dataset (imports drop blank captions) or leave those rows out.", step,
                         len(blank), rows, blank[0], ": the batch has nothing to learn from" if len(blank) == rows
                         else "", self.blank_caption_steps)

    def save(self, step: int) -> Path | None:
        """A checkpoint after ``step`` steps (every rank's RNG state gathered; rank 0 writes)."""
        return self.run.save(step, self._write_weights, self._trainer_state())

    def _trainer_state(self) -> dict:
        """What resume restores: optimizer, schedule, loss scaler, curriculum span, every rank's RNG state."""
        rngs = [rng_state()]
        if self.env.distributed:
            rngs = [None] * self.env.world_size
            torch.distributed.all_gather_object(rngs, rng_state())
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rngs, "curriculum_steps": self.curriculum_steps,
                **self.extra_state()}

    def _write_weights(self, directory: Path, step: int) -> None:
        ckpt.write_weights(directory, self.model, self.tasks, step)

    def close(self) -> None:
        self.run.close()
        shutdown(self.env)


def train(cfg: PlipConfig, data_dir, run_dir, options: RunOptions | None = None) -> TrainResult:
    """Train (or resume) a run; the library entry point behind ``plip train``."""
    trainer = Trainer(cfg, data_dir, run_dir, options)
    try:
        t0 = time.time()
        result = trainer.fit()
        # every rank is done (the main one draws the loss plot after the others finish) before the process group
        # goes: a gloo rank destroying it while its peer still works aborted at exit now and then in CI
        barrier(trainer.env)
        _log.info("trained %d steps in %.1f s", result.steps, time.time() - t0)
        return result
    finally:
        trainer.close()
