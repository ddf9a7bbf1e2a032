"""Training: caption CE + 0.15 x attribute CE, AdamW at a fixed learning rate, exact resume.

    out/
      checkpoint/        weights, config, vocabulary, run.json, trainer_state.pt (see checkpoint.py)
      train_log.jsonl    one JSON line per logged step: losses, lr, images/s

Resuming (``resume=True``) restores the weights, the optimizer, the step, the data position
(epoch, batches done) and the RNG states, so N steps in one go and N/2 + N/2 with a stop in between
give identical weights. Resuming refuses a different config, batch size or set of datasets.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import torch

from .checkpoint import CheckpointError, load_checkpoint, read_trainer_state, save_checkpoint
from .config import CaptionerConfig, load_config
from .data import Collate, CorpusDataset, EpochBatches, batch_to, load_corpus, steps_per_epoch
from .generate import autocast
from .model import SpacCaptioner, count_parameters
from .tokenizer import CaptionTokenizer

_log = logging.getLogger(__name__)
RUN_FORMAT = "spac-captioner-run/1"


@dataclass
class TrainOptions:
    max_steps: int | None = None  # stop after this many steps in all (with epochs: whichever is first)
    epochs: int | None = None  # None: the config's epochs (unless max_steps is given)
    batch_size: int | None = None  # None: the config's
    device: str = "cpu"
    seed: int = 0
    resume: bool = False
    workers: int = 0  # DataLoader worker processes
    precision: str | None = None  # fp32 | bf16; None: the config's
    split: str = "train"
    limit: int | None = None  # use at most this many images (smoke runs)
    checkpoint_every: int | None = None
    log_every: int | None = None
    progress: bool | None = None  # tqdm bar; None: when stderr is a terminal


def _versions() -> dict:
    import transformers

    try:
        from importlib.metadata import version

        plip = version("plip")
    except Exception:  # not installed as a distribution (e.g. a source checkout on sys.path)
        plip = "unknown"
    return {"plip": plip, "torch": torch.__version__, "transformers": transformers.__version__}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint a resumed run starts from)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train(data_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
          config: CaptionerConfig | str = "cpu-small", opts: TrainOptions | None = None) -> dict:
    """Train (or resume) a captioner on the human captions of ``data_dirs``; returns a summary."""
    opts = opts or TrainOptions()
    out = Path(out_dir)
    ckpt_dir, log_path = out / "checkpoint", out / "train_log.jsonl"
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {opts.device!r}: CUDA is not available on this machine")
    cfg = load_config(config) if isinstance(config, (str, os.PathLike)) else config

    resume_from = None
    has_ckpt = (ckpt_dir / "config.json").is_file() or (out / "checkpoint.old" / "config.json").is_file()
    if has_ckpt and not opts.resume:
        raise ValueError(f"{out} already holds a checkpoint; pass --resume to continue that run, or choose a new --out")
    if opts.resume and has_ckpt:
        resume_from = read_trainer_state(out)
        saved_cfg = load_config(out / "checkpoint" if (ckpt_dir / "config.json").is_file() else out / "checkpoint.old")
        if saved_cfg.to_dict() != cfg.to_dict():
            diff = sorted(k for k, v in saved_cfg.to_dict().items() if cfg.to_dict().get(k) != v)
            raise ValueError(f"--resume: the checkpoint in {out} was trained with a different config "
                             f"(fields {diff} differ); resume with --config {out / 'checkpoint' / 'config.json'}")
        cfg = saved_cfg
    elif opts.resume:
        _log.info("--resume: no checkpoint in %s yet; starting a new run", out)

    batch_size = opts.batch_size or cfg.batch_size
    precision = opts.precision or cfg.precision
    if resume_from is not None and resume_from["batch_size"] != batch_size:
        raise ValueError(f"--resume: the run used batch size {resume_from['batch_size']}, not {batch_size}; "
                         "the data position is only defined for the same batch size")
    seed = resume_from["seed"] if resume_from is not None else opts.seed
    log_every = opts.log_every or cfg.log_every
    ckpt_every = opts.checkpoint_every or cfg.checkpoint_every

    # --- data ---------------------------------------------------------------------------------
    torch.manual_seed(seed)
    tokenizer = CaptionTokenizer.from_config(cfg) if resume_from is None else None
    if resume_from is not None:
        model, tokenizer, _ = load_checkpoint(out, "cpu")
    corpus = load_corpus(data_dirs, cfg, tokenizer, split=opts.split, limit=opts.limit)
    dataset_ids = [d["id"] for d in corpus.datasets]
    if resume_from is not None and (resume_from["dataset_ids"], resume_from["images"]) != (dataset_ids, len(corpus)):
        raise ValueError(f"--resume: the run in {out} trained on {resume_from['images']} images of datasets "
                         f"{resume_from['dataset_ids']}, not {len(corpus)} images of {dataset_ids}")
    per_epoch = steps_per_epoch(len(corpus), batch_size)
    if opts.max_steps is not None and opts.epochs is None:
        total = opts.max_steps
    else:
        total = (opts.epochs or cfg.epochs) * per_epoch
        if opts.max_steps is not None:
            total = min(total, opts.max_steps)

    # --- model and optimizer ------------------------------------------------------------------
    if resume_from is None:
        model = SpacCaptioner(cfg, tokenizer.vocab_size, tokenizer.eos_id)
        if cfg.vocab_shortlist:
            model.set_shortlist(corpus.token_ids())
    elif cfg.vocab_shortlist and not corpus.token_ids() <= set(model.shortlist.tolist()):
        raise CheckpointError(f"{out}: the training data has tokens outside the checkpoint's vocabulary shortlist")
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, epoch, in_epoch, seconds = 0, 0, 0, 0.0
    if resume_from is not None:
        optimizer.load_state_dict(resume_from["optimizer"])
        step, epoch, in_epoch = resume_from["step"], resume_from["epoch"], resume_from["batch_in_epoch"]
        seconds = resume_from.get("seconds", 0.0)
        _set_rng_state(resume_from["rng"], device)
        _truncate_log(log_path, step)
        _log.info("resuming %s at step %d (epoch %d, batch %d)", out, step, epoch, in_epoch)
    else:
        out.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)

    run_info = {
        "format": RUN_FORMAT, "config": cfg.name, "datasets": corpus.datasets, "corpus": corpus.stats,
        "split": opts.split, "seed": seed, "batch_size": batch_size, "steps_per_epoch": per_epoch,
        "device": str(device), "precision": precision, "parameters": count_parameters(model),
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "sha256": tokenizer.fingerprint,
                      "shortlist": len(model.shortlist)},
        "versions": _versions(), "started": _now()}

    def checkpoint() -> None:
        state = {"step": step, "epoch": epoch, "batch_in_epoch": in_epoch, "optimizer": optimizer.state_dict(),
                 "rng": _rng_state(device), "batch_size": batch_size, "seed": seed, "dataset_ids": dataset_ids,
                 "images": len(corpus), "seconds": seconds}
        info = {**run_info, "step": step, "epochs_done": round(step / per_epoch, 3), "train_seconds": round(seconds, 1),
                "updated": _now()}
        save_checkpoint(ckpt_dir, model, tokenizer, step=step, run_info=info, trainer_state=state)

    # --- loop ---------------------------------------------------------------------------------
    from tqdm import tqdm

    show = sys.stderr.isatty() if opts.progress is None else opts.progress
    bar = tqdm(total=total, initial=step, desc="spac train", unit="step", disable=not show, file=sys.stderr)
    ds = CorpusDataset(corpus, cfg.image_size)
    collate = Collate(tokenizer.pad_id)
    last: dict = {}
    window_t, window_images = time.perf_counter(), 0
    while step < total:
        sampler = EpochBatches(len(corpus), batch_size, seed, epoch, cfg.hflip, start=in_epoch)
        # A private generator: creating the loader must not consume the global RNG (dropout's).
        loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=opts.workers,
                                             pin_memory=device.type == "cuda", generator=torch.Generator())
        for batch in loader:
            t0 = time.perf_counter()
            batch = batch_to(batch, device)
            with autocast(device, precision):
                losses = model(batch)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            step, in_epoch = step + 1, in_epoch + 1
            seconds += time.perf_counter() - t0
            window_images += batch["images"].shape[0]
            bar.update(1)
            if step % log_every == 0 or step == total:
                now = time.perf_counter()
                last = {"step": step, "epoch": epoch, "loss": round(losses["loss"].item(), 5),
                        "caption_loss": round(losses["caption_loss"].item(), 5),
                        "attribute_loss": round(losses["attribute_loss"].item(), 5), "lr": cfg.lr,
                        "images_per_s": round(window_images / max(now - window_t, 1e-9), 2),
                        "seconds": round(seconds, 1)}
                with log_path.open("a") as f:
                    f.write(json.dumps(last) + "\n")
                bar.set_postfix(loss=f"{last['loss']:.3f}", img_s=f"{last['images_per_s']:.1f}")
                window_t, window_images = now, 0
            if in_epoch >= per_epoch:
                epoch, in_epoch = epoch + 1, 0
            if step % ckpt_every == 0 or step >= total:
                checkpoint()
            if step >= total:
                break
    bar.close()
    if not (ckpt_dir / "config.json").is_file():  # total reached before any step (resuming a finished run)
        checkpoint()
    return {"out": str(out), "checkpoint": str(ckpt_dir), "log": str(log_path), "step": step,
            "epochs_done": round(step / per_epoch, 3), "images": len(corpus), "train_seconds": round(seconds, 1),
            "last": last, "datasets": corpus.datasets, "corpus": corpus.stats}
