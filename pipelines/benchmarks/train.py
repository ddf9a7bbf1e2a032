"""PLIP pre-training throughput: samples/s end-to-end from shards against the same model on one
in-memory batch repeated (the ratio isolates the data pipeline: goal >= 0.95), for ``cpu-small``
and ``paper-rn50-bert``, with peak memory. On a GPU: ``paper-rn50-bert`` at batch 128, bf16, all
four forward passes (goal >= 800 images/s on an H100).
"""
from __future__ import annotations

import resource
import time
from pathlib import Path

import torch


def _captions(workdir: Path, identities: int) -> Path:
    from pipelines.cli import main

    out = workdir / "captions"
    main(["render", "--out", str(out), "--identities", str(identities), "--images-per-identity", "4",
          "--captions-per-image", "2", "--workers", "0", "--shard-rows", "64"])
    return out


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rate(trainer, batches, steps: int, warmup: int) -> float:
    """Samples/s of ``train_step`` over ``steps`` steps after ``warmup`` untimed ones."""
    it = iter(batches)
    for step in range(warmup):
        trainer.train_step(step, next(it))
    sync = torch.cuda.synchronize if trainer.env.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for step in range(warmup, warmup + steps):
        trainer.train_step(step, next(it))
    sync()
    return steps * trainer.cfg.data.batch_size / (time.perf_counter() - t0)


def measure(config: str, data: Path, run_dir: Path, batch_size: int, steps: int, warmup: int = 2,
            workers: int = 1, device: str | None = None) -> dict:
    """End-to-end (shards -> DataLoader -> step) and in-memory (one batch reused) samples/s."""
    from plip_train.config import load_config
    from plip_train.data import make_loader
    from plip_train.trainer import Trainer

    k = 4 if batch_size % 4 == 0 else 2
    cfg = load_config(config, [f"data.batch_size={batch_size}", f"data.images_per_identity={k}", "data.split=null",
                               f"data.num_workers={workers}", f"train.max_steps={steps + warmup}"])
    trainer = Trainer(cfg, data, run_dir, device=device)
    try:
        loader = make_loader(trainer.stream(), workers, trainer.env.device.type == "cuda")
        end_to_end = _rate(trainer, loader, steps, warmup)
        first = next(iter(trainer.stream()))
        in_memory = _rate(trainer, (first for _ in range(steps + warmup)), steps, warmup)
    finally:
        trainer.close()
    return {"config": config, "batch_size": batch_size, "end_to_end": round(end_to_end, 2),
            "in_memory": round(in_memory, 2), "ratio": round(end_to_end / in_memory, 3),
            "precision": trainer.precision, "device": str(trainer.env.device)}


def run(quick: bool, workdir: Path) -> dict:
    data = _captions(workdir, 16 if quick else 48)
    cases = [("cpu-small", 8 if quick else 16, 3 if quick else 8)]
    if not quick:
        cases.append(("paper-rn50-bert", 8, 3))
    if torch.cuda.is_available():
        cases.append(("paper-rn50-bert", 128, 20))
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
    rows.append({"metric": "train peak RSS (this process)", "value": round(_peak_rss_mib()), "unit": "MiB",
                 "goal": "", "note": "largest of the configurations above"})
    return {"rows": rows, "details": details}
