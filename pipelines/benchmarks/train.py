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


def _timed(trainer, batches, steps: list[int]) -> float:
    """Seconds of ``train_step`` over ``steps`` (one batch from ``batches`` each)."""
    sync = torch.cuda.synchronize if trainer.env.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for step in steps:
        trainer.train_step(step, next(batches))
    sync()
    return time.perf_counter() - t0


def measure(config: str, data: Path, run_dir: Path, batch_size: int, steps: int, warmup: int = 4,
            workers: int = 1, device: str | None = None) -> dict:
    """End-to-end (shards -> DataLoader -> step) and in-memory samples/s.

    In-memory batches are the stream's own batches for those steps, read beforehand: the IAP mask ratio grows
    with the step, so a reused early batch would be less work. The first CPU steps are slow (oneDNN
    primitive creation, optimizer state) and a machine's speed drifts, so after ``warmup`` steps the two
    sides are measured in alternating blocks (A B A B) of ``steps`` each."""
    from plip_train.config import load_config
    from plip_train.data import make_loader
    from plip_runtime.runs import RunOptions
    from plip_train.trainer import Trainer

    k = 4 if batch_size % 4 == 0 else 2
    total = warmup + 4 * steps
    cfg = load_config(config, [f"data.batch_size={batch_size}", f"data.images_per_identity={k}", "data.split=null",
                               f"data.num_workers={workers}", f"train.max_steps={total}"])
    trainer = Trainer(cfg, data, run_dir, RunOptions(device=device or "auto"))
    try:
        held = list(trainer.stream())  # every step's batch, in memory (small sizes: a benchmark)
        loader = iter(make_loader(trainer.stream(), workers, trainer.env.device.type == "cuda"))
        for step in range(warmup):
            next(loader)
        _timed(trainer, iter(held[:warmup]), list(range(warmup)))
        e2e = mem = 0.0
        for block in range(2):
            a = warmup + 2 * block * steps
            e2e += _timed(trainer, loader, list(range(a, a + steps)))
            for _ in range(steps):  # keep the loader at the step the next block starts from
                next(loader)
            mem += _timed(trainer, iter(held[a + steps:a + 2 * steps]), list(range(a + steps, a + 2 * steps)))
    finally:
        trainer.close()
    n = 2 * steps * batch_size
    return {"config": config, "batch_size": batch_size, "end_to_end": round(n / e2e, 2),
            "in_memory": round(n / mem, 2), "ratio": round(mem / e2e, 3), "steps_per_side": 2 * steps,
            "precision": trainer.precision, "device": str(trainer.env.device)}


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
                     "unit": "images/s", "goal": ">= 800", "note": "not measured: no CUDA device on this machine"})
    rows.append({"metric": "train peak RSS (this process)", "value": round(_peak_rss_mib()), "unit": "MiB",
                 "goal": "", "note": "largest of the configurations above"})
    return {"rows": rows, "details": details}
