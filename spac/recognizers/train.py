"""Training the attribute classifier on one or more datasets (``plip spac train-recognizer``).

Rows of ``config.split`` with status ``ok`` are read into memory (image bytes + labels; a JPEG crop is
~10 KB, so 100k images are ~1 GB), labels are mined from the captions (or read from ``attributes``), the
vocabulary is built, and the model is trained with AdamW on the sum over slots of the cross-entropy
(phrases outside the vocabulary are ignored), bf16 autocast and channels_last where they help. The first
``freeze_stages`` backbone stages stay frozen; with ``cache_frozen`` their output is computed once per image
(and its mirror image) before training, so each step runs only the trainable part (all stages frozen but the
last: ~150 images/s on 2 CPU cores instead of ~10-35).

Outputs in ``out_dir``: the checkpoint (``model.safetensors``, ``config.json``, ``vocab.json``), a loss log
``train_log.jsonl`` (one JSON object per logged step), ``run.json`` (what was consumed: dataset ids and
rows; steps, time, final loss, versions) and the resume state (``optimizer.pt``, ``trainer_state.json``).
Running again on the same ``out_dir`` resumes from the last saved step (the config's model fields must
match); the epoch order of the images is a function of (seed, epoch), so a resumed run sees the same
batches an uninterrupted one would.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from synth_pedes.schema import SLOTS

from .base import decode_image
from plip_runtime.device import autocast_dtype, resolve_device

from .classifier import (CONFIG_FILE, AttributeClassifier, ClassifierConfig, images_to_tensor, load_checkpoint,
                         random_hflip, save_checkpoint)
from .labels import IGNORE_INDEX, build_vocab, caption_texts, check_vocab, encode_labels, labels_for_rows

_log = logging.getLogger(__name__)

STATE_FILE, OPTIM_FILE, LOG_FILE, RUN_FILE = "trainer_state.json", "optimizer.pt", "train_log.jsonl", "run.json"


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

    def __init__(self, feats: torch.Tensor, flipped: torch.Tensor | None, ok: list[bool]):
        self.feats, self.flipped, self.ok = feats, flipped, ok

    @classmethod
    @torch.no_grad()
    def build(cls, model: AttributeClassifier, data: TrainingData, config: ClassifierConfig, dev: torch.device,
              amp: torch.dtype | None, batch: int = 64) -> "FrozenFeatureCache":
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
                with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
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
        return cls(feats, flipped, ok)

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
    """Cross-entropy per slot over the rows whose label is in the vocabulary (0 when none is)."""
    out = {}
    for s in SLOTS:
        y = targets[s]
        if bool((y != IGNORE_INDEX).any()):
            out[s] = F.cross_entropy(logits[s].float(), y, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)
        else:
            out[s] = logits[s].float().sum() * 0.0
    return out


def _versions() -> dict:
    import numpy

    try:
        from importlib.metadata import version
        plip = version("plip")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        plip = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__, "plip": plip}


def _check_resumable(out: Path, config: ClassifierConfig) -> dict | None:
    """The saved trainer state of ``out`` when it can be resumed with ``config`` (None when starting fresh)."""
    state_path = out / STATE_FILE
    if not state_path.is_file():
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"{out} is not empty and holds no training state to resume; use a new --out directory")
        return None
    state = json.loads(state_path.read_text())
    saved = ClassifierConfig.from_dict(json.loads((out / CONFIG_FILE).read_text())["config"])
    diff = {k: (v, config.model_fields()[k]) for k, v in saved.model_fields().items()
            if config.model_fields()[k] != v}
    if diff:
        raise ValueError(f"{out} holds a run with a different config; cannot resume it with this one "
                         f"(saved vs now: {diff}); use a new --out directory")
    return state


def train_classifier(data_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, config: ClassifierConfig,
                     device: str = "auto", limit: int | None = None, save_every: int = 0, log_every: int = 10,
                     progress: bool | None = None, on_step: Callable[[dict], None] | None = None,
                     command: list[str] | None = None) -> dict:
    """Train (or resume) the classifier; returns the run summary written to ``run.json``."""
    from tqdm import tqdm

    out = Path(out_dir)
    dev = resolve_device(device)
    state = _check_resumable(out, config)
    t_load = time.perf_counter()
    data = load_training_data(data_dirs, config, limit)
    if state is not None:
        vocab = check_vocab(json.loads((out / "vocab.json").read_text()), str(out / "vocab.json"))
    else:
        vocab = build_vocab(data.labels, config.min_count)
    targets_all = {s: torch.tensor(v, dtype=torch.long) for s, v in encode_labels(data.labels, vocab).items()}
    coverage = {s: float((targets_all[s] != IGNORE_INDEX).float().mean()) for s in SLOTS}
    _log.info("%d training images; vocabulary sizes %s; label coverage %s (%.1fs)", len(data.keys),
              {s: len(vocab[s]) for s in SLOTS}, {s: round(c, 3) for s, c in coverage.items()},
              time.perf_counter() - t_load)

    torch.manual_seed(config.seed)
    model = AttributeClassifier(config, {s: len(vocab[s]) for s in SLOTS}, load_pretrained=state is None)
    if state is not None:  # the saved weights (checked against the saved config), under this run's config
        model.load_state_dict(load_checkpoint(out, "cpu")[0].state_dict())
    model.to(dev)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.param_groups(config.lr, config.weight_decay, config.backbone_lr_scale),
                            lr=config.lr)
    for g in opt.param_groups:
        g["base_lr"] = g["lr"]
    n = len(data.keys)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    step = 0
    if state is not None:
        step = int(state["step"])
        opt.load_state_dict(torch.load(out / OPTIM_FILE, map_location=dev, weights_only=True))
        if step >= total:
            raise ValueError(f"{out} already holds {step} training steps (asked for {total}); raise --epochs or "
                             "--max-steps to train further, or use a new --out directory")
        _log.info("resuming %s at step %d of %d", out, step, total)
    amp = autocast_dtype(config.precision, dev)  # (interim: the run machinery replaces this)
    extra = {"data": data.sources, "label_coverage": coverage, "train_images": n,
             "precision": "bf16" if amp is not None else "fp32", "device": dev.type}
    out.mkdir(parents=True, exist_ok=True)
    log_mode = "a" if state is not None else "w"
    progress = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=total, initial=step, desc="train-recognizer", unit="step", disable=not progress,
               file=sys.stderr)
    t0, seen, last_loss, running = time.perf_counter(), 0, float("nan"), {}
    prev_seconds = float(state.get("seconds", 0.0)) if state else 0.0
    flip_gen = torch.Generator().manual_seed(config.seed * 1000003 + step)

    def save(finished: bool) -> None:
        save_checkpoint(out, model, vocab, extra)
        torch.save(opt.state_dict(), out / (OPTIM_FILE + ".tmp"))
        os.replace(out / (OPTIM_FILE + ".tmp"), out / OPTIM_FILE)
        st = {"step": step, "total_steps": total, "epoch": step // steps_per_epoch, "finished": finished,
              "seconds": prev_seconds + cache_seconds + time.perf_counter() - t0}
        (out / STATE_FILE).write_text(json.dumps(st, indent=2) + "\n")

    cache, cache_seconds = None, 0.0
    if config.cache_frozen and model.n_frozen > 0:
        t_cache = time.perf_counter()
        cache = FrozenFeatureCache.build(model, data, config, dev, amp)
        cache_seconds = time.perf_counter() - t_cache
        t0 = time.perf_counter()  # images/s counts training steps only
    model.train()
    try:
        with open(out / LOG_FILE, log_mode) as log:
            while step < total:
                epoch, pos = divmod(step, steps_per_epoch)
                order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed * 7919 + epoch))
                idx = order[pos * config.batch_size:(pos + 1) * config.batch_size].tolist()
                t_step = time.perf_counter()
                if cache is not None:
                    keep = [i for i in idx if cache.ok[i]]
                    x = cache.batch(keep, config.hflip, flip_gen).to(dev)
                    start = model.n_frozen
                else:
                    x, keep = _decode_batch(data, idx, config, flip_gen)
                    x, start = x.to(dev), 0
                if not keep:
                    step += 1
                    continue
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = {s: targets_all[s][keep].to(dev) for s in SLOTS}
                factor = lr_factor(step, total, config)
                for g in opt.param_groups:
                    g["lr"] = g["base_lr"] * factor
                with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                    logits = model(x, start=start)
                losses = slot_losses(logits, y, config.label_smoothing)
                loss = sum(losses.values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                seen += len(keep)
                last_loss = float(loss.detach())
                with torch.no_grad():
                    for s in SLOTS:
                        valid = y[s] != IGNORE_INDEX
                        if valid.any():
                            acc = float((logits[s].argmax(-1)[valid] == y[s][valid]).float().mean())
                            running[s] = acc if s not in running else 0.9 * running[s] + 0.1 * acc
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.3f}", epoch=epoch)
                if step % log_every == 0 or step == total:
                    rec = {"step": step, "epoch": epoch, "loss": round(last_loss, 5),
                           **{f"loss_{s}": round(float(v.detach()), 5) for s, v in losses.items()},
                           **{f"train_acc_{s}": round(v, 4) for s, v in running.items()},
                           "lr": opt.param_groups[0]["lr"], "step_seconds": round(time.perf_counter() - t_step, 4),
                           "images_per_s": round(seen / max(time.perf_counter() - t0, 1e-9), 2)}
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    if on_step is not None:
                        on_step(rec)
                if save_every and step % save_every == 0 and step < total:
                    save(finished=False)
    except KeyboardInterrupt:
        bar.close()
        save(finished=False)
        _log.warning("interrupted at step %d; state saved in %s", step, out)
        raise
    bar.close()
    save(finished=True)
    seconds = prev_seconds + cache_seconds + time.perf_counter() - t0
    summary = {"out": str(out), "steps": step, "epochs": round(step / steps_per_epoch, 3), "train_images": n,
               "final_loss": last_loss, "seconds": round(seconds, 2), "cache_seconds": round(cache_seconds, 2),
               "images_per_s": round(seen / max(time.perf_counter() - t0, 1e-9), 2),
               "vocab_sizes": {s: len(vocab[s]) for s in SLOTS}, "label_coverage": coverage,
               "data": data.sources, "config": config.to_dict(), "device": str(dev),
               "precision": extra["precision"], "command": command, "versions": _versions()}
    (out / RUN_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
