"""SPAC synthesis job throughput: 1 vs 2 Dask workers, the whole job vs the model forward alone on the
same images in one process, and peak memory per worker.

The captioner is ``cpu-small`` (real EfficientNet-Lite0 weights, random-init decoder), so every
sequence runs to its maximum length: a lower bound on a trained model's speed, the same for both
sides of each ratio.
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import torch


def _captioner(workdir: Path) -> Path:
    from spac.captioner import CaptionTokenizer, SpacCaptioner, load_config, save_checkpoint

    cfg = load_config("cpu-small")
    tok = CaptionTokenizer.from_config(cfg)
    torch.manual_seed(0)
    return save_checkpoint(workdir / "captioner", SpacCaptioner(cfg, tok.vocab_size, tok.eos_id).eval(), tok)


def _images(workdir: Path, n: int) -> Path:
    from pipelines.cli import main

    per = 8
    main(["render", "--out", str(workdir / "images"), "--identities", str(n // per), "--images-per-identity",
          str(per), "--captions-per-image", "0", "--workers", "0", "--shard-rows", "32"])  # 32-row units
    return workdir / "images"


def _forward_alone(images: Path, ckpt: Path, batch_size: int) -> float:
    """Images/s of decode + captioner on the same images, one process, no job machinery."""
    from spac.captioner import load_captioner
    from spac.captioner.data import image_tensor
    from synth_pedes import open_dataset

    captioner = load_captioner(ckpt)
    rows = list(open_dataset(images).iter_records(columns=["image"]))
    t0 = time.perf_counter()
    for start in range(0, len(rows), batch_size):
        batch = [image_tensor(r["image"]["bytes"], captioner.config.image_size) for r in rows[start:start + batch_size]]
        captioner.caption_tensors(torch.stack(batch))
    return len(rows) / (time.perf_counter() - t0)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _threads_in_task() -> int:
    return torch.get_num_threads()


def _pin_process(core: int) -> int:
    """Pin every thread of this process (torch's pool and Dask's included) to one core; threads started
    later inherit it. Returns the number of threads pinned."""
    import os

    tids = os.listdir("/proc/self/task")
    for tid in tids:
        os.sched_setaffinity(int(tid), {core})
    return len(tids)


def _job(images: Path, ckpt: Path, out: Path, workers: int, batch_size: int, threads: int,
         pin: bool = False) -> tuple:
    """(images/s of the job with warm workers, peak RSS of the biggest worker in MiB). ``pin``: worker i runs
    on core i only, so one worker cannot borrow an idle core for its decode thread and Dask's threads."""
    from pipelines.cluster import dask_client
    from pipelines.synth import run_synth
    from spac.synth import SynthConfig, load_models

    from spac.captioner import find_checkpoint

    config = SynthConfig(captioner=str(find_checkpoint(ckpt).resolve()), batch_size=batch_size, threads=threads)
    with dask_client(workers) as client:
        client.run(load_models, config)  # model loading is per worker, once: not what we time
        if pin:
            for core, address in enumerate(sorted(client.scheduler_info()["workers"])):
                client.run(_pin_process, core, workers=[address])

        t0 = time.perf_counter()
        manifest = run_synth(images, out, config, shard_rows=32, client=client)  # several shards per worker
        seconds = time.perf_counter() - t0
        peak = max(client.run(_peak_rss_mib).values())
    return manifest.num_rows / seconds, peak


def run(quick: bool, workdir: Path) -> dict:
    n, batch_size = (64, 16) if quick else (256, 32)
    ckpt, images = _captioner(workdir), _images(workdir, n)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    alone = _forward_alone(images, ckpt, batch_size)
    # scaling over workers is measured with one torch thread per worker; the default (2 threads for a
    # single worker on 2 cores) is shown too, against the forward alone with the same 2 threads
    one, mem1 = _job(images, ckpt, workdir / "one", 1, batch_size, threads=1)
    two, mem2 = _job(images, ckpt, workdir / "two", 2, batch_size, threads=1)
    one_all, _ = _job(images, ckpt, workdir / "one-all", 1, batch_size, threads=torch.get_num_threads())
    pinned = {}
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        pinned = {w: _job(images, ckpt, workdir / f"pinned-{w}", w, batch_size, threads=1, pin=True)[0]
                  for w in (1, 2)}
    rows = [
        {"metric": f"forward alone (decode + cpu-small, {n} images, one process, "
                   f"{torch.get_num_threads()} threads)", "value": round(alone, 2), "unit": "images/s"},
        {"metric": "plip synth, 1 worker x 1 thread", "value": round(one, 2), "unit": "images/s"},
        {"metric": "plip synth, 2 workers x 1 thread", "value": round(two, 2), "unit": "images/s"},
        {"metric": f"plip synth, 1 worker x {torch.get_num_threads()} threads", "value": round(one_all, 2),
         "unit": "images/s"},
        {"metric": "2 workers / 1 worker", "value": round(two / one, 2), "unit": "ratio", "goal": ">= 1.7",
         "pass": two / one >= 1.7},
        *([{"metric": "plip synth, 1 / 2 workers x 1 thread, each worker pinned to its own core",
            "value": f"{pinned[1]:.2f} / {pinned[2]:.2f}", "unit": "images/s"},
           {"metric": "2 workers / 1 worker, pinned (per-core scaling)", "value": round(pinned[2] / pinned[1], 2),
            "unit": "ratio", "goal": ">= 1.7", "pass": pinned[2] / pinned[1] >= 1.7,
            "note": "unpinned, one worker also uses the idle second core (decode thread, Dask threads)"}]
          if pinned else []),
        {"metric": "job / forward alone (same threads)", "value": round(one_all / alone, 2), "unit": "ratio",
         "goal": ">= 0.85", "pass": one_all / alone >= 0.85},
        {"metric": "peak RSS per worker (1 / 2 workers)", "value": f"{mem1:.0f} / {mem2:.0f}", "unit": "MiB"},
    ]
    return {"rows": rows, "images": n, "batch_size": batch_size, "gpu": "not measured (no GPU in this run)"
            if not torch.cuda.is_available() else "see caption suite"}
