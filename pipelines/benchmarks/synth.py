"""SPAC synthesis job throughput: 1 vs 2 Dask workers, the whole job vs the model forward alone on the
same images in one process, and peak memory per worker.

The captioner is ``cpu-small`` (real EfficientNet-Lite0 weights, random-init decoder with the vocabulary
shortlist training would give it), so every sequence runs to its maximum length: a lower bound on a
trained model's speed, the same for both sides of each ratio.
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import torch


def _captioner(workdir: Path, n: int) -> Path:
    """cpu-small with a random-init decoder and, as training would give it, the vocabulary shortlist of a
    ProcPedes caption corpus (without it the LM head spans all 30,522 tokens and is 37% of the time)."""
    from spac.captioner import CaptionTokenizer, SpacCaptioner, load_config, save_checkpoint
    from spac.captioner.data import load_corpus

    cfg = load_config("cpu-small")
    tok = CaptionTokenizer.from_config(cfg)
    torch.manual_seed(0)
    model = SpacCaptioner(cfg, tok.vocab_size, tok.eos_id).eval()
    model.set_shortlist(load_corpus([_render(workdir / "corpus", n, captions=2)], cfg, tok, split=None).token_ids())
    return save_checkpoint(workdir / "captioner", model, tok)


def _render(out: Path, n: int, captions: int) -> Path:
    from pipelines.cli import main

    per = 8
    main(["render", "--out", str(out), "--identities", str(n // per), "--images-per-identity", str(per),
          "--captions-per-image", str(captions), "--workers", "0", "--shard-rows", "32"])  # 32-row units
    return out


def _forward_alone(images: Path, ckpt: Path, batch_size: int, precision: str, threads: int,
                   core: int | None = None) -> float:
    """Images/s of decode + captioner on the same images in this process, no job machinery, after one
    warm-up batch (as the job's workers get); ``core``: run on that core only."""
    from spac.captioner import load_captioner
    from spac.captioner.data import image_tensor
    from synth_pedes.malloc import keep_heap
    from synth_pedes import open_dataset

    keep_heap()  # as in the job's workers: the comparison is of the pipeline, not of malloc settings
    captioner = load_captioner(ckpt)
    opts = captioner.options(precision=precision)
    rows = list(open_dataset(images).iter_records(columns=["image"]))
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    affinity, before = os.sched_getaffinity(0) if core is not None else None, torch.get_num_threads()
    try:
        if core is not None:
            os.sched_setaffinity(0, {core})
        torch.set_num_threads(threads)
        for i, batch in enumerate([batches[0]] + batches):  # the first is the warm-up
            if i == 1:
                t0 = time.perf_counter()
            tensors = [image_tensor(r["image"]["bytes"], captioner.config.image_size) for r in batch]
            captioner.caption_tensors(torch.stack(tensors), opts)
        return len(rows) / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
        if affinity is not None:
            os.sched_setaffinity(0, affinity)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pin_process(core: int) -> int:
    """Pin every thread of this process (torch's pool and Dask's included) to one core; threads started
    later inherit it. Returns the number of threads pinned."""
    tids = os.listdir("/proc/self/task")
    for tid in tids:
        os.sched_setaffinity(int(tid), {core})
    return len(tids)


def _warm_up(config, unit) -> int:
    """Load the models and annotate one row group, in a worker: what every worker pays once per job."""
    from spac.synth import SpacAnnotator

    return len(list(SpacAnnotator(config)(unit)))


def _job(images: Path, ckpt: Path, out: Path, workers: int, batch_size: int, threads: int, shard_rows: int,
         pin: bool = False) -> tuple:
    """(images/s of the job on warm workers, peak RSS of the biggest worker in MiB). ``pin``: worker i runs
    on core i only, so one worker cannot borrow an idle core for its decode thread and Dask's threads."""
    from pipelines.cluster import dask_client
    from pipelines.synth import plan_units, run_synth
    from spac.captioner import find_checkpoint
    from spac.synth import SynthConfig
    from synth_pedes import open_dataset

    config = SynthConfig(captioner=str(find_checkpoint(ckpt).resolve()), batch_size=batch_size, threads=threads)
    with dask_client(workers) as client:
        if pin:
            for core, address in enumerate(sorted(client.scheduler_info()["workers"])):
                client.run(_pin_process, core, workers=[address])
        # once per worker, not what we time: loading the models and the first batch's kernel set-up
        client.run(_warm_up, config.resolved(), plan_units(open_dataset(images))[0])
        t0 = time.perf_counter()
        manifest = run_synth(images, out, config, shard_rows=shard_rows, client=client)
        seconds = time.perf_counter() - t0
        peak = max(client.run(_peak_rss_mib).values())
    return manifest.num_rows / seconds, peak


def _median(values: list) -> float:
    return sorted(values)[len(values) // 2]


def _fmt(values: list) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def run(quick: bool, workdir: Path) -> dict:
    from spac.synth import SynthConfig

    n, batch_size, pairs = (64, 16, 1) if quick else (512, 32, 3)
    shard_rows = 2 * batch_size  # 8 shards of two batches: decode overlaps the models, as in a real job
    ckpt, images = _captioner(workdir, n), _render(workdir / "images", n, captions=0)
    cores = len(os.sched_getaffinity(0))
    precision = SynthConfig(captioner=str(ckpt)).resolved().precision  # the job's default, for both sides
    alone = _forward_alone(images, ckpt, batch_size, precision, threads=cores)
    alone_core = _forward_alone(images, ckpt, batch_size, precision, threads=1, core=0)
    # Scaling over workers (one torch thread each): 1- and 2-worker runs alternate, and the ratio is the
    # median over pairs, because on a shared host a neighbour's load drifts over minutes.
    ones, twos, mems = [], [], []
    for r in range(pairs):
        one, mem1 = _job(images, ckpt, workdir / f"one-{r}", 1, batch_size, 1, shard_rows)
        two, mem2 = _job(images, ckpt, workdir / f"two-{r}", 2, batch_size, 1, shard_rows)
        ones.append(one), twos.append(two), mems.append((mem1, mem2))
    ratios = [t / o for o, t in zip(ones, twos)]
    pinned = {w: _job(images, ckpt, workdir / f"pinned-{w}", w, batch_size, 1, shard_rows, pin=True)[0]
              for w in (1, 2)}
    one_all, _ = _job(images, ckpt, workdir / "one-all", 1, batch_size, cores, shard_rows)
    rows = [
        {"metric": f"forward alone: decode + cpu-small {precision}, one process, {cores} threads",
         "value": round(alone, 2), "unit": "images/s"},
        {"metric": "forward alone, 1 thread on one core", "value": round(alone_core, 2), "unit": "images/s"},
        {"metric": "plip synth, 1 worker x 1 thread", "value": round(_median(ones), 2), "unit": "images/s",
         "note": f"median of {pairs} runs: {_fmt(ones)}"},
        {"metric": f"plip synth, {2} workers x 1 thread (the default here)", "value": round(_median(twos), 2),
         "unit": "images/s", "note": f"median of {pairs} runs: {_fmt(twos)}"},
        {"metric": "2 workers / 1 worker", "value": round(_median(ratios), 2), "unit": "ratio", "goal": ">= 1.7",
         "pass": _median(ratios) >= 1.7, "note": f"median of {pairs} alternating pairs: {_fmt(ratios)}"},
        {"metric": "plip synth, 1 / 2 workers x 1 thread, worker i pinned to core i",
         "value": f"{pinned[1]:.2f} / {pinned[2]:.2f}", "unit": "images/s"},
        {"metric": "2 workers / 1 worker, pinned (per-core scaling)", "value": round(pinned[2] / pinned[1], 2),
         "unit": "ratio", "goal": ">= 1.7", "pass": pinned[2] / pinned[1] >= 1.7,
         "note": "one pair; unpinned, a lone worker also uses the idle core (decode thread, scheduler)"},
        {"metric": "job / forward alone: the default job against one process on all cores",
         "value": round(_median(twos) / alone, 2), "unit": "ratio", "goal": ">= 0.85",
         "pass": _median(twos) / alone >= 0.85, "note": f"2 single-thread workers vs one {cores}-thread process"},
        {"metric": "job / forward alone, per core: 1 pinned worker vs 1 thread on one core",
         "value": round(pinned[1] / alone_core, 2), "unit": "ratio", "goal": ">= 0.85",
         "pass": pinned[1] / alone_core >= 0.85},
        {"metric": f"plip synth, 1 worker x {cores} threads (vs forward alone, same threads)",
         "value": round(one_all, 2), "unit": "images/s", "note": f"ratio {one_all / alone:.2f}: the worker's decode "
         "and event-loop threads stall the OpenMP team, which is why the default is a worker per core"},
        {"metric": "peak RSS per worker (1 / 2 workers)",
         "value": f"{max(m[0] for m in mems):.0f} / {max(m[1] for m in mems):.0f}", "unit": "MiB"},
    ]
    return {"rows": rows, "images": n, "batch_size": batch_size, "shard_rows": shard_rows, "precision": precision,
            "gpu": "not measured (no GPU in this run)" if not torch.cuda.is_available() else "see caption suite"}
