"""PLIP pre-training throughput: samples/s end-to-end from shards against the same model on one
in-memory batch repeated (the ratio isolates the data pipeline: goal >= 0.95), for ``cpu-small``
and ``paper-rn50-bert``, with peak memory. On a GPU: ``paper-rn50-bert`` at batch 128, bf16, all
four forward passes (goal >= 800 images/s on an H100).
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import torch


def _captions(workdir: Path, identities: int) -> Path:
    from pipelines.cli import main

    out = workdir / "captions"
    main(["render", "--out", str(out), "--identities", str(identities), "--images-per-identity", "4",
          "--captions-per-image", "2", "--workers", "0", "--shard-size", "64"])
    return out


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(trainer, batches, steps: list[int]) -> float:
    """Seconds of ``train_step`` over ``steps`` (one batch from ``batches`` each)."""
    sync = torch.cuda.synchronize if trainer.env.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for step in steps:
        trainer.train_step(step, next(batches))
    sync()
    return time.perf_counter() - t0


def open_trainer(config: str, data: Path, run_dir: Path, batch_size: int, total_steps: int, workers: int = 1,
                 device: str | None = None, overrides: tuple = ()):
    """A Trainer of ``config`` at ``batch_size`` (P x 4 identity batches) for ``total_steps`` steps on ``data``."""
    from plip_runtime.runs import RunOptions
    from plip_train.config import load_config
    from plip_train.trainer import Trainer

    k = 4 if batch_size % 4 == 0 else 2
    cfg = load_config(config, [f"data.batch_size={batch_size}", f"data.images_per_identity={k}", "data.split=null",
                               f"data.num_workers={workers}", f"train.max_steps={total_steps}", *overrides])
    return Trainer(cfg, data, run_dir, RunOptions(device=device or "auto"))


def measure_trainer(trainer, steps: int, warmup: int = 4, workers: int = 1) -> dict:
    """End-to-end (shards -> DataLoader -> step) and in-memory samples/s of an open trainer whose run is
    ``warmup + 4 * steps`` steps long; peak GPU memory and the FLOPs of one training step per sample.

    In-memory batches are the stream's own batches for those steps, read beforehand: the IAP mask ratio grows
    with the step, so a reused early batch would be less work. The first steps are slow (kernel selection,
    optimizer state) and a machine's speed drifts, so after ``warmup`` steps the two sides are measured in
    alternating blocks (A B A B) of ``steps`` each."""
    from plip_train.data import make_loader

    cuda = trainer.env.device.type == "cuda"
    batch_size = trainer.cfg.data.batch_size
    held = list(trainer.stream())  # every step's batch, in memory (small sizes: a benchmark)
    loader = iter(make_loader(trainer.stream(), workers, cuda))
    for step in range(warmup):
        next(loader)
    _timed(trainer, iter(held[:warmup]), list(range(warmup)))
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.env.device)
    e2e = mem = 0.0
    for block in range(2):
        a = warmup + 2 * block * steps
        e2e += _timed(trainer, loader, list(range(a, a + steps)))
        for _ in range(steps):  # keep the loader at the step the next block starts from
            next(loader)
        mem += _timed(trainer, iter(held[a + steps:a + 2 * steps]), list(range(a + steps, a + 2 * steps)))
    peak = torch.cuda.max_memory_allocated(trainer.env.device) / 2**20 if cuda else None
    n = 2 * steps * batch_size
    return {"config": trainer.cfg.name, "batch_size": batch_size, "end_to_end": round(n / e2e, 2),
            "in_memory": round(n / mem, 2), "ratio": round(mem / e2e, 3), "steps_per_side": 2 * steps,
            "precision": trainer.precision, "device": str(trainer.env.device),
            "peak_gpu_mib": None if peak is None else round(peak), "flops_per_sample": _flops_per_sample(trainer, held)}


def stream_rates(trainer, worker_counts, steps_per_worker: int) -> dict[int, float]:
    """The training stream alone (decode, flip, gray copy, tokenise, IAP masks, collate, in DataLoader workers):
    images/s for each worker count, over ``steps_per_worker`` steps per worker (at least one worker's worth)."""
    from plip_train.data import PlipStream, make_loader

    spec, rates = trainer.stream().spec, {}
    for count in worker_counts:
        steps = PlipStream(spec, trainer.tokenizer, trainer.cfg.model.text.max_length, 0,
                           steps_per_worker * max(1, count))
        t0 = time.perf_counter()
        images = sum(len(mb["keys"]) for micro_batches in make_loader(steps, count, False) for mb in micro_batches)
        rates[count] = round(images / (time.perf_counter() - t0), 1)
    return rates


def _flops_per_sample(trainer, held: list) -> float:
    """FLOPs (multiply-add = 2) of one training step, forward and backward, per sample (an extra step, untimed)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        trainer.train_step(len(held) - 1, held[-1])
    return counter.get_total_flops() / trainer.cfg.data.batch_size


def measure(config: str, data: Path, run_dir: Path, batch_size: int, steps: int, warmup: int = 4,
            workers: int = 1, device: str | None = None) -> dict:
    """``measure_trainer`` on a fresh trainer of ``config``."""
    trainer = open_trainer(config, data, run_dir, batch_size, warmup + 4 * steps, workers, device)
    try:
        return measure_trainer(trainer, steps, warmup, workers)
    finally:
        trainer.close()


def run(quick: bool, workdir: Path) -> dict:
    data = _captions(workdir, 16 if quick else 48)
    cases = [("cpu-small", 8 if quick else 16, 1 if quick else 6)]
    if not quick:
        cases.append(("paper-rn50-bert", 8, 3))
    if torch.cuda.is_available():
        cases.append(("paper-rn50-bert", 128, 10))
    rows, details = [], []
    for config, batch, steps in cases:
        m = measure(config, data, workdir / f"run-{config}-{batch}", batch, steps)
        details.append(m)
        where = f"{config}, batch {batch}, {m['precision']}, {m['device']}"
        rows.append({"metric": f"train samples/s end-to-end ({where})", "value": m["end_to_end"],
                     "unit": "images/s", "goal": "", "note": f"in-memory batches: {m['in_memory']} images/s"})
        rows.append({"metric": f"train data-pipeline ratio ({config}, batch {batch})", "value": m["ratio"],
                     "unit": "end-to-end / in-memory", "goal": ">= 0.95", "pass": m["ratio"] >= 0.95})
        if m["device"].startswith("cuda") and config == "paper-rn50-bert":
            rows.append({"metric": "paper-rn50-bert images/s per GPU (batch 128, bf16)", "value": m["end_to_end"],
                         "unit": "images/s", "goal": ">= 800", "pass": m["end_to_end"] >= 800})
    if not torch.cuda.is_available():
        rows.append({"metric": "paper-rn50-bert images/s per GPU (batch 128, bf16)", "value": None,
                     "unit": "images/s", "goal": ">= 800", "note": "measured by plip bench gpu"})
    if not quick:  # what one core feeds a GPU with at paper size: the stream alone, no model step
        cores = len(os.sched_getaffinity(0))
        trainer = open_trainer("paper-rn50-bert", data, workdir / "stream", 128, 1000, 0, "cpu")
        try:
            rates = stream_rates(trainer, range(cores + 1), 6)
        finally:
            trainer.close()
        per_core = max(rates.values()) / cores
        rows.append({"metric": "training stream alone, paper-rn50-bert at batch 128, by DataLoader workers",
                     "value": ", ".join(f"{k}: {v:.0f}" for k, v in rates.items()), "unit": "images/s",
                     "note": f"decode 256x128, flip, gray copy, tokenise, IAP masks, collate; {per_core:.0f} per core: "
                             f"a 16-core node at that rate feeds {16 * per_core:.0f} images/s, "
                             f"{16 * per_core / 800:.1f}x the 800 images/s per-GPU goal (linear scaling assumed)"})
    rows.append({"metric": "train peak RSS (this process)", "value": round(_peak_rss_mib()), "unit": "MiB",
                 "goal": "", "note": "largest of the configurations above"})
    return {"rows": rows, "details": details}
