"""SPAC synthesis job throughput on the CPU: 1 vs 2 Dask workers, the whole job vs the model forward alone on the
same images in one process, and peak memory per worker. Paper size per GPU is ``plip bench gpu``'s
(pipelines/benchmarks/gpu.py), which reuses ``_job`` from here.

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


def _render(out: Path, n: int, captions: int, size: tuple = (256, 128), shard_rows: int = 32, per_identity: int = 8,
            workers: int = 0, seed: int = 0, split: str | None = None) -> Path:
    """``n`` ProcPedes images (``per_identity`` each) of corpus ``seed``, rendered by ``workers`` Dask workers (0:
    this process); row groups of min(shard_rows, 256) rows are the synth job's units of work. ``split``: only the
    identities of that split (then about 80 % (train) or 10 % (val, test) of ``n``)."""
    from pipelines.cli import main

    argv = ["render", "--out", str(out), "--identities", str(max(1, n // per_identity)), "--images-per-identity",
            str(per_identity), "--captions-per-image", str(captions), "--height", str(size[0]), "--width", str(size[1]),
            "--workers", str(workers), "--shard-size", str(shard_rows), "--seed", str(seed),
            *(["--split", split] if split else [])]
    if main(argv) != 0:  # main prints the reason and returns 2; a benchmark must not go on without its data
        raise RuntimeError(f"plip {' '.join(argv)} failed")
    return out


def _forward_alone(images: Path, ckpt: Path, batch_size: int, precision: str, threads: int,
                   core: int | None = None, start_at: float | None = None) -> float:
    """Images/s of decode + captioner on the same images in this process, no job machinery, after one
    warm-up batch (as the job's workers get). ``core``: run on that core only; ``start_at``: a wall-clock
    time to start the timed part at (so that several processes run it together)."""
    from spac.captioner import load_captioner
    from spac.captioner.data import image_tensor
    from synth_pedes import open_dataset
    from synth_pedes.malloc import keep_heap

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
                time.sleep(max(0.0, (start_at or 0) - time.time()))
                t0 = time.perf_counter()
            tensors = [image_tensor(r["image"]["bytes"], captioner.config.image_size) for r in batch]
            captioner.caption_tensors(torch.stack(tensors), opts)
        return len(rows) / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
        if affinity is not None:
            os.sched_setaffinity(0, affinity)


def _bare_processes(n: int, *args) -> float:
    """Summed images/s of ``n`` plain processes (no Dask) running the forward alone together, process i
    on core i: the most that ``n`` workers could reach on this machine."""
    import concurrent.futures
    import multiprocessing

    start_at = time.time() + 15  # after every process has started and warmed up
    with concurrent.futures.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_forward_alone, *args, threads=1, core=i, start_at=start_at) for i in range(n)]
        return sum(f.result() for f in futures)


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
    from spac.annotator import SpacAnnotator

    return len(list(SpacAnnotator(config)(unit)))


def _peak_gpu_mib() -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0


def _job(images: Path, ckpt: Path | str, out: Path, workers: int, batch_size: int, threads: int, shard_rows: int,
         pin: bool = False, device: str = "cpu", **settings) -> tuple:
    """(images/s of the job on warm workers, peak RSS of the biggest worker in MiB, peak GPU memory of the
    biggest worker in MiB). ``ckpt``: a SPAC captioner checkpoint, or ``vlm:DIR``; ``settings``: more SynthConfig
    fields. ``pin``: worker i runs on core i only, so one worker cannot borrow an idle core for its decode thread
    and Dask's threads."""
    from pipelines.cluster import dask_client
    from pipelines.synth_job import plan_units, run_synth
    from spac.captioner import find_checkpoint
    from spac.annotator import SynthConfig
    from synth_pedes import open_dataset

    captioner = ckpt if str(ckpt).startswith("vlm:") else str(find_checkpoint(ckpt).resolve())
    config = SynthConfig(captioner=captioner, batch_size=batch_size, threads=threads, device=device, **settings)
    with dask_client(workers) as client:
        if pin:
            for core, address in enumerate(sorted(client.scheduler_info()["workers"])):
                client.run(_pin_process, core, workers=[address])
        # once per worker, not what we time: loading the models and the first batch's kernel set-up
        client.run(_warm_up, config.resolved(), plan_units(open_dataset(images))[0][0])
        t0 = time.perf_counter()
        manifest = run_synth(images, out, config, shard_rows=shard_rows, client=client)
        seconds = time.perf_counter() - t0
        peak, gpu = max(client.run(_peak_rss_mib).values()), max(client.run(_peak_gpu_mib).values())
    return manifest.num_rows / seconds, peak, gpu


def _median(values: list) -> float:
    return sorted(values)[len(values) // 2]


def _fmt(values: list) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _bare_rows(runs: dict, job_ratios: list) -> list:
    """The machine's ceiling (bare processes) and the job against it, per pair."""
    bare = [t / o for o, t in zip(runs["bare", 1], runs["bare", 2])]
    per_core = [j / b for j, b in zip(runs["pinned", 1], runs["bare", 1])]
    return [
        {"metric": "bare processes, no Dask: 1 / 2 (one per core)",
         "value": f"{_median(runs['bare', 1]):.2f} / {_median(runs['bare', 2]):.2f}", "unit": "images/s",
         "note": f"runs {_fmt(runs['bare', 1])} and {_fmt(runs['bare', 2])}"},
        {"metric": "bare 2 / 1: this machine's own 2-core scaling", "value": round(_median(bare), 2), "unit": "ratio",
         "note": f"per pair {_fmt(bare)}"},
        {"metric": "job scaling / machine's scaling", "value": round(_median([j / b for j, b in zip(job_ratios, bare)]), 2),
         "unit": "ratio", "note": "1.0: the job loses nothing to Dask when it adds a worker"},
        {"metric": "job / forward alone, per core: 1 pinned worker vs 1 bare process on one core",
         "value": round(_median(per_core), 2), "unit": "ratio", "goal": ">= 0.85", "pass": _median(per_core) >= 0.85,
         "note": f"per pair {_fmt(per_core)}"},
    ]


def run(quick: bool, workdir: Path) -> dict:
    from spac.annotator import SynthConfig

    n, batch_size, pairs = (64, 16, 1) if quick else (512, 32, 3)
    shard_rows = 2 * batch_size  # 8 shards of two batches: decode overlaps the models, as in a real job
    ckpt, images = _captioner(workdir, n), _render(workdir / "images", n, captions=0)
    cores = len(os.sched_getaffinity(0))
    precision = SynthConfig(captioner=str(ckpt)).resolved().precision  # the job's default, for both sides
    alone = _forward_alone(images, ckpt, batch_size, precision, threads=cores)
    # 1 and 2 workers (one torch thread each), beside the same with bare processes (no Dask, one per core):
    # the machine's own ceiling. The runs alternate and each ratio is the median over pairs, because a
    # neighbour's load on a shared host drifts over minutes.
    keys = ("job", 1), ("job", 2), ("pinned", 1), ("bare", 1), ("bare", 2)
    runs: dict = {k: [] for k in keys}
    mems = []
    bare_ok = cores >= 2  # pinning needs a core per process
    for r in range(pairs):
        for kind, w in keys:
            if kind == "job":
                speed, mem, _ = _job(images, ckpt, workdir / f"w{w}-{r}", w, batch_size, 1, shard_rows)
                mems.append((w, mem))
            elif not bare_ok:
                continue
            elif kind == "pinned":
                speed = _job(images, ckpt, workdir / f"pinned-{r}", 1, batch_size, 1, shard_rows, pin=True)[0]
            else:
                speed = _bare_processes(w, images, ckpt, batch_size, precision)
            runs[kind, w].append(speed)
    job_ratios = [t / o for o, t in zip(runs["job", 1], runs["job", 2])]
    one_all = _job(images, ckpt, workdir / "one-all", 1, batch_size, cores, shard_rows)[0]
    one, two = _median(runs["job", 1]), _median(runs["job", 2])
    rows = [
        {"metric": f"forward alone: decode + cpu-small {precision}, one process, {cores} threads",
         "value": round(alone, 2), "unit": "images/s"},
        {"metric": "plip synth, 1 worker x 1 thread", "value": round(one, 2), "unit": "images/s",
         "note": f"median of {pairs} runs: {_fmt(runs['job', 1])}"},
        {"metric": "plip synth, 2 workers x 1 thread (the default here)", "value": round(two, 2), "unit": "images/s",
         "note": f"median of {pairs} runs: {_fmt(runs['job', 2])}"},
        {"metric": "2 workers / 1 worker", "value": round(_median(job_ratios), 2), "unit": "ratio", "goal": ">= 1.7",
         "pass": _median(job_ratios) >= 1.7, "note": f"median of {pairs} alternating pairs: {_fmt(job_ratios)}"},
        {"metric": "job / forward alone: the default job against one process on all cores",
         "value": round(two / alone, 2), "unit": "ratio", "goal": ">= 0.85", "pass": two / alone >= 0.85,
         "note": f"2 single-thread workers vs one {cores}-thread process"},
        *(_bare_rows(runs, job_ratios) if bare_ok else []),
        {"metric": f"plip synth, 1 worker x {cores} threads (vs forward alone, same threads)",
         "value": round(one_all, 2), "unit": "images/s", "note": f"ratio {one_all / alone:.2f}: the worker's decode "
         "and event-loop threads stall the OpenMP team, which is why the default is a worker per core"},
        {"metric": "peak RSS per worker (1 / 2 workers)", "unit": "MiB",
         "value": " / ".join(f"{max(m for k, m in mems if k == w):.0f}" for w in (1, 2))},
    ]
    rows.append({"metric": "images/s per GPU at paper size, end to end", "value": None, "unit": "images/s",
                 "note": "measured by plip bench gpu (paper size, 1-8 workers per GPU, GPU utilisation)"})
    return {"rows": rows, "images": n, "batch_size": batch_size, "shard_rows": shard_rows, "precision": precision}
