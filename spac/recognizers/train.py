"""Training the attribute classifier on one or more datasets (``plip spac train-recognizer``), on the run
machinery every trainer shares (``plip_runtime.runs``).

Rows of ``config.split`` with status ``ok`` are read into memory (image bytes + labels; a JPEG crop is
~10 KB, so 100k images are ~1 GB), labels are mined from the captions (or read from ``attributes``), the
vocabulary is built, and the model is trained with AdamW on the sum over slots of the cross-entropy
(phrases outside the vocabulary are ignored), bf16 autocast and channels_last where they help. The first
``freeze_stages`` backbone stages stay frozen; with ``cache_frozen`` their output is computed once per image
(and its mirror image) before training, so each step runs only the trainable part (all stages frozen but the
last: ~150 images/s on 2 CPU cores instead of ~10-35).

The run directory holds ``run.json`` (the datasets consumed, label coverage, vocabulary sizes, progress) and
``checkpoints/step-N/`` (``model.safetensors``, ``config.json``, ``vocab.json``: what ``classifier:RUN``
loads, + the trainer state), ``metrics.jsonl`` with the loss of each slot. The epoch order of the images is a
function of (seed, epoch) and the flip generator's state travels in the checkpoint, so a resumed run sees
the batches an uninterrupted one would.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from plip_runtime.device import autocast, grad_scaler, resolve_device
from plip_runtime.runs import Run, RunOptions, TrainResult, rng_state
from synth_pedes.schema import SLOTS

from .base import decode_image
from .classifier import (AttributeClassifier, ClassifierConfig, images_to_tensor, load_checkpoint, random_hflip,
                         save_checkpoint, warn_random_init)
from .labels import (IGNORE_INDEX, build_factorised_vocab, build_vocab, caption_texts, encode_factorised_labels,
                     encode_labels, labels_for_rows)

_log = logging.getLogger(__name__)
KIND = "spac-recognizer"


@dataclass
class TrainingData:
    """What training consumes: image bytes, keys, labels (AttributeSet) and the datasets they came from."""

    images: list
    keys: list
    labels: list
    sources: list  # [{"path", "id", "name", "rows"}]


def load_training_data(data_dirs: Sequence[str | os.PathLike], config: ClassifierConfig, limit: int | None = None,
                       verify: bool | str = True) -> TrainingData:
    """Rows of ``config.split`` (status ok) from every dataset, with their labels."""
    from synth_pedes import open_dataset

    label_col = "captions" if config.labels == "captions" else "attributes"
    images, keys, rows_for_labels, sources = [], [], [], []
    for d in data_dirs:
        ds = open_dataset(d, verify=verify)
        n = 0
        for row in ds.iter_records(columns=["key", "split", "image", label_col], status="ok"):
            if row["split"] != config.split or (limit is not None and len(keys) >= limit):
                continue
            img = row.get("image") or {}
            if not img.get("bytes"):
                continue
            images.append(img["bytes"])
            keys.append(row["key"])
            rows_for_labels.append({"key": row["key"], label_col: row.get(label_col)})
            n += 1
        sources.append({"path": str(d), "id": ds.id, "name": ds.manifest.name, "rows": n})
        _log.info("%s: %d %s rows (dataset id %s)", d, n, config.split, ds.id)
    if not keys:
        raise ValueError(f"no rows of split {config.split!r} with status ok in {', '.join(map(str, data_dirs))}; "
                         "pick another --split")
    if config.labels == "captions":
        bare = sum(not caption_texts(r, config.caption_kinds) for r in rows_for_labels)
        if bare == len(rows_for_labels):
            raise ValueError(f"no {config.split} row has a caption of kind {'/'.join(config.caption_kinds)} to mine "
                             "labels from; train with --labels attributes or set caption_kinds in the config")
        if bare:
            _log.warning("%d of %d rows have no %s caption: their labels are all unknown", bare,
                         len(rows_for_labels), "/".join(config.caption_kinds))
    labels = labels_for_rows(rows_for_labels, config.labels, config.label_rule, config.canonical_labels,
                             config.caption_kinds)
    return TrainingData(images, keys, labels, sources)


def _decode_batch(data: TrainingData, idx: list[int], config: ClassifierConfig,
                  flip_gen: torch.Generator) -> tuple[torch.Tensor, list[int]]:
    """Decoded, preprocessed, randomly flipped images of ``idx`` (unreadable ones skipped, logged)."""
    imgs, keep = [], []
    for i in idx:
        try:
            imgs.append(decode_image({"image": {"bytes": data.images[i]}}))
            keep.append(i)
        except ValueError as e:
            _log.warning("skipping %s: %s", data.keys[i], e)
    if not keep:
        return torch.empty(0), keep
    return random_hflip(images_to_tensor(imgs, config), config.hflip, flip_gen), keep


class FrozenFeatureCache:
    """The frozen backbone stages' output for every training image and, with flips on, its mirror image,
    computed once (bf16 in memory) so that training steps run only the trainable part."""

    def __init__(self, feats: torch.Tensor, flipped: torch.Tensor | None, ok: list[bool], n_frozen: int):
        self.feats, self.flipped, self.ok = feats, flipped, ok
        self.n_frozen = n_frozen  # the backbone stage a cached feature continues from

    @classmethod
    @torch.no_grad()
    def build(cls, model: AttributeClassifier, data: TrainingData, config: ClassifierConfig, dev: torch.device,
              precision: str, batch: int = 64) -> "FrozenFeatureCache":
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        n = len(data.keys)
        feats = flipped = None
        ok = [False] * n
        no_flip = torch.Generator().manual_seed(0)
        for lo in range(0, n, batch):
            idx = list(range(lo, min(n, lo + batch)))
            x, keep = _decode_batch(data, idx, config.replace(hflip=0.0), no_flip)
            if not keep:
                continue
            x = x.to(dev)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            views = [x, x.flip(-1)] if config.hflip > 0 else [x]
            outs = []
            for v in views:
                with autocast(dev, precision):
                    outs.append(model.frozen_features(v).to("cpu", torch.bfloat16).contiguous())
            if feats is None:
                shape = (n, *outs[0].shape[1:])
                feats = torch.zeros(shape, dtype=torch.bfloat16)
                flipped = torch.zeros(shape, dtype=torch.bfloat16) if len(outs) > 1 else None
            feats[keep] = outs[0]
            if flipped is not None:
                flipped[keep] = outs[1]
            for i in keep:
                ok[i] = True
        model.train(was_training)
        if feats is None:
            raise ValueError("no training image could be decoded")
        mb = (feats.numel() + (flipped.numel() if flipped is not None else 0)) * 2 / 2 ** 20
        _log.info("cached the %d frozen backbone stages for %d images (%s, %.0f MB) in %.1fs", model.n_frozen,
                  sum(ok), "with flips" if flipped is not None else "no flips", mb, time.perf_counter() - t0)
        return cls(feats, flipped, ok, model.n_frozen)

    def batch(self, idx: list[int], hflip: float, gen: torch.Generator) -> torch.Tensor:
        x = self.feats[idx]
        if self.flipped is not None and hflip > 0:
            mask = torch.rand(len(idx), generator=gen) < hflip
            if mask.any():
                x[mask] = self.flipped[torch.tensor(idx)[mask]]
        return x.float()


def lr_factor(step: int, total: int, config: ClassifierConfig) -> float:
    """Warm-up (linear) then constant or cosine decay to 0 over ``total`` steps."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(1, total - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - config.warmup_steps) / span)))


def slot_losses(logits: dict, targets: dict, label_smoothing: float) -> dict[str, torch.Tensor]:
    """Cross-entropy per head over the rows whose label is in the vocabulary (0 when none is)."""
    out = {}
    for s in targets:
        y = targets[s]
        if bool((y != IGNORE_INDEX).any()):
            out[s] = F.cross_entropy(logits[s].float(), y, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)
        else:
            out[s] = logits[s].float().sum() * 0.0
    return out


def train_classifier(config: ClassifierConfig, data_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                     options: RunOptions | None = None, *, limit: int | None = None) -> TrainResult:
    """Train (or resume) the classifier; ``limit``: use at most this many training rows (smoke runs)."""
    options = options or RunOptions()
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 row, got {limit}")
    run = Run(out_dir, kind=KIND, config=config.to_dict(), train=config.train, options=options,
              device=resolve_device(options.device), extendable=config.schedule_extendable())
    t_load = time.perf_counter()
    data = load_training_data(data_dirs, config, limit)
    if run.resume_from is not None:  # the run's vocabulary and weights (checked against its config)
        model, _, vocab, _ = load_checkpoint(run.resume_from, "cpu")
    else:
        warn_random_init(config)  # a new run: say so when a real backbone would start from random weights
        vocab, colours = (build_factorised_vocab(data.labels, config.min_count) if config.factorised
                          else (build_vocab(data.labels, config.min_count), None))
        model = AttributeClassifier(config, {s: len(vocab[s]) for s in SLOTS}, load_pretrained=True, colours=colours)
    encoded = (encode_factorised_labels(data.labels, vocab, model.colours) if model.colours is not None
               else encode_labels(data.labels, vocab))
    targets = {head: torch.tensor(v, dtype=torch.long) for head, v in encoded.items()}
    coverage = {head: float((y != IGNORE_INDEX).float().mean()) for head, y in targets.items()}
    _log.info("%d training images; head sizes %s; label coverage %s (%.1fs)", len(data.keys),
              model.num_classes, {head: round(c, 3) for head, c in coverage.items()}, time.perf_counter() - t_load)
    run.plan(max(1, math.ceil(len(data.keys) / config.batch_size)), data.sources, train_images=len(data.keys),
             label_coverage=coverage, vocab_sizes=dict(model.num_classes))
    try:
        return _fit(run, config, model, vocab, data, targets)
    finally:
        run.close()


def _fit(run: Run, config: ClassifierConfig, model: AttributeClassifier, vocab: dict, data: TrainingData,
         targets: dict[str, torch.Tensor]) -> TrainResult:
    device, n = run.device, len(data.keys)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.param_groups(config.lr, config.weight_decay, config.backbone_lr_scale),
                                  lr=config.lr)
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    scaler = grad_scaler(device, run.precision)
    flip_gen = torch.Generator().manual_seed(config.train.seed * 1000003)
    if run.trainer_state is not None:
        optimizer.load_state_dict(run.trainer_state["optimizer"])
        scaler.load_state_dict(run.trainer_state["scaler"])
        flip_gen.set_state(run.trainer_state["flip_generator"])
        run.restore_rng()
    extra = {"data": data.sources, "train_images": n, "precision": run.precision, "device": device.type}

    def write_weights(directory: Path, step: int) -> None:
        save_checkpoint(directory, model, vocab, extra)

    def trainer_state() -> dict:
        return {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": [rng_state()],
                "flip_generator": flip_gen.get_state()}

    cache, cache_seconds = None, 0.0
    if config.cache_frozen and model.n_frozen > 0:
        t_cache = time.perf_counter()
        cache = FrozenFeatureCache.build(model, data, config, device, run.precision)
        cache_seconds = time.perf_counter() - t_cache
    model.train()
    losses, running = [], {}
    for step in range(run.start_step, run.end_step):
        batch = _training_batch(step, run, config, data, cache, flip_gen)
        if batch is None:  # no image of this batch could be decoded (logged)
            continue
        x, keep, start = batch
        y = {head: labels[keep].to(device) for head, labels in targets.items()}
        factor = lr_factor(step, run.total_steps, config)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        with autocast(device, run.precision):
            logits = model(x.to(device), start=start)
        per_slot = slot_losses(logits, y, config.label_smoothing)
        loss = sum(per_slot.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _update_accuracy(running, logits, y)
        terms = {"loss": float(loss.detach()), **{f"{s}_loss": float(v.detach()) for s, v in per_slot.items()},
                 **{f"{s}_train_acc": v for s, v in running.items()}}
        losses.append(terms)
        run.log(step, terms, optimizer.param_groups[0]["lr"], len(keep))
        if run.checkpoint_due(step + 1):
            run.save(step + 1, write_weights, trainer_state())
    checkpoint = run.finish(write_weights, trainer_state())
    return run.result(losses, checkpoint, cache_seconds=round(cache_seconds, 2), train_images=n,
                      vocab_sizes=dict(model.num_classes), device=str(device), precision=run.precision)


def _training_batch(step: int, run: Run, config: ClassifierConfig, data: TrainingData,
                    cache: FrozenFeatureCache | None, flip_gen: torch.Generator):
    """``(inputs, row indices, first backbone stage to run)`` of ``step``'s batch, or None when none decoded. The
    epoch order is a permutation drawn from (seed, epoch)."""
    epoch, position = divmod(step, run.steps_per_epoch)
    order = torch.randperm(len(data.keys), generator=torch.Generator().manual_seed(config.train.seed * 7919 + epoch))
    idx = order[position * config.batch_size:(position + 1) * config.batch_size].tolist()
    if cache is not None:
        keep = [i for i in idx if cache.ok[i]]
        x, start = cache.batch(keep, config.hflip, flip_gen), cache.n_frozen
    else:
        x, keep = _decode_batch(data, idx, config, flip_gen)
        start = 0
    if not keep:
        return None
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, keep, start


@torch.no_grad()
def _update_accuracy(running: dict, logits: dict, targets: dict) -> None:
    """An exponential moving average (0.9) of each head's training accuracy over its labelled rows."""
    for s in targets:
        valid = targets[s] != IGNORE_INDEX
        if valid.any():
            acc = float((logits[s].argmax(-1)[valid] == targets[s][valid]).float().mean())
            running[s] = acc if s not in running else 0.9 * running[s] + 0.1 * acc
