"""Training the captioner: caption CE + 0.15 x attribute CE, AdamW at a constant learning rate, on the run
machinery every trainer shares (``plip_runtime.runs``).

    RUN/run.json                      config, the datasets consumed (ids), corpus statistics, progress
    RUN/checkpoints/step-000500/      a loadable captioner checkpoint (see checkpoint.py) + trainer.pt
    RUN/metrics.jsonl, RUN/tb/, RUN/losses.png

``load_captioner(RUN)`` loads the latest complete checkpoint. Resuming (``RunOptions(resume=True)``) restores
the weights, the optimizer, the data position (epoch, batches done) and the RNG states, so N steps in one go
and N/2 + N/2 with a stop in between give identical weights; a larger ``train.max_steps``/``train.epochs``
trains a finished run longer (the learning rate is constant, so nothing in the schedule depends on the
budget).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from plip_runtime.device import autocast, grad_scaler, move_batch, resolve_device
from plip_runtime.finite import check_finite
from plip_runtime.runs import Run, RunOptions, TrainResult, rng_state

from .checkpoint import CheckpointError, load_checkpoint, write_model_files
from .config import CaptionerConfig, load_config, warn_random_init
from .data import Collate, Corpus, CorpusDataset, EpochBatches, load_corpus, steps_per_epoch
from .model import SpacCaptioner, count_parameters
from .tokenizer import CaptionTokenizer

_log = logging.getLogger(__name__)
KIND = "spac-captioner"


@dataclass
class _Position:
    """Where the data stream is: the epoch and the batches of it already trained on."""

    epoch: int = 0
    in_epoch: int = 0


def train(config: CaptionerConfig | str, data_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
          options: RunOptions | None = None, *, limit: int | None = None) -> TrainResult:
    """Train (or resume) a captioner on the human captions of ``data_dirs``; ``limit``: use at most this many
    images (smoke runs)."""
    cfg = load_config(config) if isinstance(config, (str, os.PathLike)) else config
    options = options or RunOptions()
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 image, got {limit}")
    device = resolve_device(options.device)
    run = Run(out_dir, kind=KIND, config=cfg.to_dict(), train=cfg.train, options=options, device=device)
    tokenizer = CaptionTokenizer.from_config(cfg) if run.resume_from is None else None
    model = None
    if run.resume_from is not None:
        model, tokenizer, _ = load_checkpoint(run.resume_from, "cpu")
    corpus = load_corpus(data_dirs, cfg, tokenizer, split=cfg.split, limit=limit)
    if model is None:
        warn_random_init(cfg)  # a new run: say so when a large part would start from random weights
        model = SpacCaptioner(cfg, tokenizer.vocab_size, tokenizer.eos_id)
        if cfg.vocab_shortlist:
            model.set_shortlist(corpus.token_ids())
    elif cfg.vocab_shortlist and not corpus.token_ids() <= set(model.shortlist.tolist()):
        raise CheckpointError(f"{out_dir}: the training data has tokens outside the checkpoint's vocabulary shortlist")
    per_epoch = steps_per_epoch(len(corpus), cfg.batch_size)
    lineage = [{"path": d["path"], "id": d["id"], "name": d["name"], "rows": d["images"], "captions": d["captions"]}
               for d in corpus.datasets]
    run.plan(per_epoch, lineage, corpus=corpus.stats, parameters=count_parameters(model),
             tokenizer={"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "sha256": tokenizer.fingerprint,
                        "shortlist": len(model.shortlist)})
    try:
        return _fit(run, cfg, model, tokenizer, corpus, options)
    finally:
        run.close()


def _fit(run: Run, cfg: CaptionerConfig, model: SpacCaptioner, tokenizer: CaptionTokenizer, corpus: Corpus,
         options: RunOptions) -> TrainResult:
    device = run.device
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = grad_scaler(device, run.precision)
    position = _Position()
    if run.trainer_state is not None:
        optimizer.load_state_dict(run.trainer_state["optimizer"])
        scaler.load_state_dict(run.trainer_state["scaler"])
        position = _Position(**run.trainer_state["position"])
        run.restore_rng()
        _log.info("resuming %s at step %d (epoch %d, batch %d)", run.directory, run.start_step, position.epoch,
                  position.in_epoch)

    def write_weights(directory: Path, step: int) -> None:
        write_model_files(directory, model, tokenizer, step)

    def trainer_state() -> dict:
        return {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": [rng_state()],
                "position": vars(position).copy()}

    dataset, collate = CorpusDataset(corpus, cfg.image_size), Collate(tokenizer.pad_id, cfg.caption_condition_tokens, tokenizer.eos_id)
    step, losses = run.start_step, []
    while step < run.end_step:
        sampler = EpochBatches(len(corpus), cfg.batch_size, cfg.train.seed, position.epoch, cfg.hflip,
                               start=position.in_epoch)
        # A private generator: creating the loader must not consume the global RNG (dropout's).
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                             num_workers=options.workers or 0, pin_memory=device.type == "cuda",
                                             generator=torch.Generator())
        for batch in loader:
            terms = _train_step(model, optimizer, scaler, move_batch(batch, device), cfg, run.precision, params,
                                step)
            losses.append(terms)
            run.log(step, terms, cfg.lr, batch["images"].shape[0])
            step += 1
            position.in_epoch += 1
            if position.in_epoch >= run.steps_per_epoch:
                position.epoch, position.in_epoch = position.epoch + 1, 0
            if run.checkpoint_due(step):
                run.save(step, write_weights, trainer_state())
            if step >= run.end_step:
                break
    checkpoint = run.finish(write_weights, trainer_state())
    return run.result(losses, checkpoint, images=len(corpus), corpus=corpus.stats, device=device)


def _train_step(model, optimizer, scaler, batch: dict, cfg: CaptionerConfig, precision: str, params: list,
                step: int) -> dict:
    with autocast(batch["images"].device, precision):
        out = model(batch)
    check_finite(out, step, batch.get("keys"))  # stop here: NaN weights would caption nothing, silently
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(out["loss"]).backward()
    if cfg.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return {k: float(out[k].detach()) for k in ("loss", "caption_loss", "attribute_loss")}
