"""Paper size on one GPU: everything the product does there, measured in one run of a few minutes and written
to one JSON (``plip bench gpu --out gpu.json``).

Sections, each a few rows:

* **ceiling**: the bf16 matrix-product rate measured now (8192^3), the physical limit the ratios below use;
* **pretrain**: PLIP ``paper-rn50-bert`` at batch 128 per GPU, bf16, channels_last, the four forward passes:
  images/s from in-memory batches and through the data pipeline, peak GPU memory, FLOPs per image and the
  fraction of the ceiling reached (against the goal of 800 images/s per H100-class GPU);
* **loader**: the training stream alone (decode, flip, grayscale copy, tokenise, IAP masks, collate in the
  DataLoader workers) in images/s for 0 to all cores' workers, against twice the pre-training step rate;
* **caption**: the ``paper`` captioner's generation alone (ResNet-101 + FPN, GPT-2-small decoder, batch 256,
  bf16, KV cache; random-init decoder cut at trained-model caption lengths);
* **synth**: ``plip synth`` end to end at paper size with 1, 2, 4 and 8 Dask workers per GPU: images/s per GPU,
  GPU utilisation, peak GPU memory, and LUPerson's 4.18 M images in hours (goal: 1,000 images/s per GPU);
* **finetune**: ``plip finetune text-reid`` at the paper configuration (``paper-rn50-bert``, the official 32 images
  per GPU, bf16, the whole BERT trainable, CMPM + CMPC): images/s in memory and through the data pipeline, peak GPU
  memory; and BoT image-ReID fine-tuning (the same image tower, 64 images per step) likewise;
* **retrieval**: ``retrieval_metrics`` on a 20k x 20k similarity on the GPU.

Without a GPU (the test suite, or ``--quick``) the same code runs with the tiny configs and small sizes, so the
first run on a GPU is not the code's first run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import traceback
from pathlib import Path

import torch

LUPERSON_IMAGES = 4_180_000
# sizes of a run: paper size on a GPU; tiny for the CPU (tests and smoke runs)
SIZES = {
    "gpu": {"pretrain_config": "paper-rn50-bert", "batch": 128, "steps": 10, "warmup": 5, "train_images": 4096,
            "loader_steps": 8, "caption_config": "paper", "caption_batch": 256, "synth_images": 4096,
            "finetune_batch": 32, "finetune_images": 2048, "bot_batch": 64, "par_batch": 64,
            "vlm_size": "small", "vlm_batch": 32, "vlm_tokens": 64, "vlm_images": 512,
            "synth_batch": 256, "workers_per_gpu": (1, 2, 4, 8), "retrieval": 20000, "matmul": 8192},
    "cpu": {"pretrain_config": "tiny", "batch": 8, "steps": 1, "warmup": 1, "train_images": 64,
            "loader_steps": 2, "caption_config": "tiny", "caption_batch": 4, "synth_images": 32, "synth_batch": 8,
            "finetune_batch": 8, "finetune_images": 48, "bot_batch": 8, "par_batch": 8,
            "vlm_size": "tiny", "vlm_batch": 4, "vlm_tokens": 8, "vlm_images": 8,
            "workers_per_gpu": (1, 2), "retrieval": 500, "matmul": 256},
}


def sizes(quick: bool) -> dict:
    return SIZES["gpu" if torch.cuda.is_available() and not quick else "cpu"]


# ---- measuring helpers ------------------------------------------------------------------------------------------
class GpuSampler:
    """``nvidia-smi`` sampled every 200 ms while the block runs: mean utilisation (%) and peak memory used (MiB)
    over the whole GPU, every process included (Dask workers are other processes). Empty without nvidia-smi."""

    def __init__(self, interval_ms: int = 200):
        self.interval_ms, self.samples, self._proc = interval_ms, [], None

    def __enter__(self) -> "GpuSampler":
        if torch.cuda.is_available() and shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                           "--format=csv,noheader,nounits", f"-lms={self.interval_ms}", "-i", "0"],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=10)
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                self.samples.append((int(parts[0]), int(parts[1])))

    @property
    def utilisation(self) -> float | None:
        return round(sum(u for u, _ in self.samples) / len(self.samples), 1) if self.samples else None

    @property
    def peak_memory_mib(self) -> int | None:
        return max(m for _, m in self.samples) if self.samples else None


def matmul_ceiling(size: int) -> dict:
    """The bf16 (GPU) or fp32 (CPU) matrix-product rate in TFLOP/s: the mean of 10 products after 3 warm-ups."""
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    sync()
    seconds = (time.perf_counter() - t0) / 10
    return {"tflops": round(2 * size ** 3 / seconds / 1e12, 3), "dtype": str(dtype).split(".")[-1], "size": size}


# ---- sections ---------------------------------------------------------------------------------------------------
def pretrain_and_loader(workdir: Path, size: dict, ceiling: dict, cores: int) -> tuple[list, dict]:
    """PLIP pre-training throughput (in memory and through the pipeline) and the stream alone per worker count."""
    from pipelines.benchmarks.synth import _render
    from pipelines.benchmarks.train import measure_trainer, open_trainer, stream_rates

    data = _render(workdir / "captions", size["train_images"], captions=2, shard_rows=256, per_identity=4,
                   workers=0 if cores < 4 else cores)
    workers = min(8, cores)
    total = size["warmup"] + 4 * size["steps"]
    trainer = open_trainer(size["pretrain_config"], data, workdir / "pretrain", size["batch"], total, workers)
    try:
        m = measure_trainer(trainer, size["steps"], size["warmup"], workers)
        rates = stream_rates(trainer, sorted({0, 1, 2, 4, 8, 16, cores} & set(range(cores + 1))),
                             size["loader_steps"])
    finally:
        trainer.close()
    achieved = m["flops_per_sample"] * m["in_memory"] / 1e12
    where = f"{m['config']}, batch {m['batch_size']}, {m['precision']}, {m['device']}"
    gpu = m["device"].startswith("cuda")
    best_loader = max(rates.values())
    rows = [
        {"metric": f"pre-training images/s, in-memory batches ({where})", "value": m["in_memory"],
         "unit": "images/s", "goal": ">= 800 per GPU" if gpu else "", "pass": m["in_memory"] >= 800 if gpu else None},
        {"metric": f"pre-training images/s through the data pipeline ({workers} loader workers)",
         "value": m["end_to_end"], "unit": "images/s", "note": f"pipeline / in-memory {m['ratio']:.2f} (goal >= 0.95)"},
        {"metric": "pre-training peak GPU memory", "value": m["peak_gpu_mib"], "unit": "MiB"},
        {"metric": "pre-training FLOPs per image (forward + backward, 4 forward passes)",
         "value": round(m["flops_per_sample"] / 1e9, 1), "unit": "GFLOP"},
        {"metric": "pre-training share of the measured matrix-product ceiling", "value": round(
            achieved / ceiling["tflops"], 3), "unit": "fraction",
         "note": f"{achieved:.1f} of {ceiling['tflops']} TFLOP/s ({ceiling['dtype']})"},
        {"metric": "training stream alone, images/s by DataLoader workers",
         "value": ", ".join(f"{k}: {v:.0f}" for k, v in rates.items()), "unit": "images/s",
         "goal": ">= 2x the pre-training rate", "pass": best_loader >= 2 * m["in_memory"],
         "note": f"decode, flip, gray copy, tokenise, IAP masks, collate; best {best_loader:.0f} = "
                 f"{best_loader / m['in_memory']:.1f}x the in-memory step rate"},
    ]
    paper_days = 70 * 4_791_711 / (8 * m["in_memory"]) / 86400  # SYNTH-PEDES's 4.79 M images, 70 epochs, 8 GPUs
    if gpu:
        rows.append({"metric": "projected: the paper's 70 epochs of SYNTH-PEDES on 8 such GPUs", "value": round(
            paper_days, 2), "unit": "days", "goal": "< 1", "pass": paper_days < 1,
            "note": "linear scaling assumed; the paper took 15.2 days on 4 RTX 3090s"})
    return rows, {**m, "loader_images_per_s": rates, "loader_workers_in_pipeline": workers,
                  "achieved_tflops": round(achieved, 2)}


def caption(size: dict) -> tuple[list, dict]:
    from plip_runtime.device import resolve_device, resolve_precision
    from spac.captioner.speed import build_random_captioner, measure_captioning

    device = resolve_device("auto")
    precision = resolve_precision("auto", device)
    captioner = build_random_captioner(size["caption_config"], str(device))
    m = measure_captioning(captioner, batch_size=size["caption_batch"], batches=3, precision=precision)
    rows = [{"metric": f"captioner generation alone ({size['caption_config']}, batch {size['caption_batch']}, "
                       f"{precision}, {device.type})", "value": m["images_per_s"], "unit": "images/s",
             "note": f"6 attributes + {m['rows_per_image'] - 6} captions per image, greedy with the KV cache, "
                     f"cut at {m['attribute_tokens']}/{m['caption_tokens']} tokens (a trained model's lengths: the "
                     f"random decoder never ends); peak GPU {m.get('peak_gpu_mb', '-')} MB"}]
    return rows, m


def synth(workdir: Path, size: dict, cores: int) -> tuple[list, dict]:
    """``plip synth`` end to end at the caption config's size, per worker count per GPU."""
    from pipelines.benchmarks.synth import _job, _render
    from spac.captioner import load_config, save_checkpoint
    from spac.captioner.speed import build_random_captioner

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    gpus = torch.cuda.device_count() if cuda else 1
    config = size["caption_config"]
    captioner = build_random_captioner(config)  # random-init decoder: every caption runs to its length limit
    ckpt = save_checkpoint(workdir / "captioner", captioner.model, captioner.tokenizer)
    images = _render(workdir / "images", size["synth_images"], captions=0, size=tuple(load_config(config).image_size),
                     shard_rows=256, per_identity=4, workers=0 if cores < 4 else cores)
    rows, runs = [], {}
    for per_gpu in size["workers_per_gpu"]:
        workers = min(cores, per_gpu * gpus)
        with GpuSampler() as sampler:
            speed, rss, gpu_mib = _job(images, ckpt, workdir / f"synth-{per_gpu}", workers, size["synth_batch"],
                                       max(1, cores // workers), shard_rows=2 * size["synth_batch"], device=device)
        runs[per_gpu] = {"images_per_s_per_gpu": round(speed / gpus, 1), "workers": workers,
                         "gpu_utilisation_pct": sampler.utilisation, "gpu_memory_used_mib": sampler.peak_memory_mib,
                         "peak_rss_mib_per_worker": round(rss), "peak_gpu_mib_per_worker": round(gpu_mib)}
        rows.append({"metric": f"plip synth {config} end to end, {per_gpu} worker(s) per GPU ({device})",
                     "value": round(speed / gpus, 1), "unit": "images/s per GPU",
                     "note": f"{size['synth_images']} images, batch {size['synth_batch']}; GPU busy "
                             f"{sampler.utilisation}%, {sampler.peak_memory_mib} MiB used; worker peak RSS "
                             f"{rss:.0f} MiB"})
    best = max(r["images_per_s_per_gpu"] for r in runs.values())
    best_per_gpu = max(runs, key=lambda k: runs[k]["images_per_s_per_gpu"])
    hours = LUPERSON_IMAGES / best / 3600
    rows += [{"metric": f"plip synth images/s per GPU, best ({best_per_gpu} workers per GPU)", "value": best,
              "unit": "images/s", "goal": ">= 1000 per H100-class GPU" if cuda else "",
              "pass": best >= 1000 if cuda else None},
             {"metric": "projected: LUPerson's 4.18 M images on one such GPU", "value": round(hours, 2),
              "unit": "hours", "note": f"{hours / 8:.2f} h on 8"}]
    return rows, {"runs": runs, "best_workers_per_gpu": best_per_gpu}


def vlm(workdir: Path, size: dict, cores: int) -> tuple[list, dict]:
    """The vision-language captioner (``plip synth --captioner vlm:DIR``) on a random-weight LLaVA-architecture
    model (spac.vlm.random_model, ``small``: ~190 M parameters, the compute of a small real VLM; its random decoder
    never ends, so every caption runs to max_new_tokens): generation alone (images/s, tokens/s) and the whole job
    per worker count per GPU, beside SPAC's rows."""
    from PIL import Image

    from pipelines.benchmarks.synth import _job, _render
    from plip_runtime.device import resolve_device, resolve_precision
    from spac.vlm import VlmCaptioner
    from spac.vlm.random_model import write_random_vlm

    cuda = torch.cuda.is_available()
    device = resolve_device("auto")
    gpus = torch.cuda.device_count() if cuda else 1
    directory = write_random_vlm(workdir / "vlm", "llava", size["vlm_size"])
    tokens, batch = size["vlm_tokens"], size["vlm_batch"]
    captioner = VlmCaptioner.load(directory, device=str(device), styles=2, batch_size=2 * batch)
    opts = captioner.options(max_new_tokens=tokens, precision=resolve_precision("auto", device))
    images = [Image.new("RGB", (128, 256), (40 * k % 255, 90, 160)) for k in range(batch)]
    captioner.caption(images, [str(k) for k in range(batch)], opts)  # warm-up: kernels, caches
    rounds, t0 = 3, time.perf_counter()
    outputs = [captioner.caption(images, [f"{r}-{k}" for k in range(batch)], opts)[0] for r in range(rounds)]
    seconds = time.perf_counter() - t0
    generated = sum(len(captioner.processor.tokenizer(text, add_special_tokens=False)["input_ids"])
                    for per_round in outputs for per_image in per_round for text in per_image.values())
    m = {"parameters": captioner.parameter_count(), "images_per_s": round(rounds * batch / seconds, 2),
         "tokens_per_s": round(generated / seconds, 1), "precision": opts.precision, "device": device.type,
         "batch_images": batch, "styles": 2, "max_new_tokens": tokens}
    del captioner
    where = f"{m['parameters'] / 1e6:.0f} M-parameter LLaVA, {batch} images x 2 styles, {opts.precision}"
    rows = [{"metric": f"VLM captioner generation alone ({where}, {device.type})", "value": m["images_per_s"],
             "unit": "images/s", "note": f"{m['tokens_per_s']} tokens/s generated; {tokens} new tokens per "
                                         "caption (a random decoder never ends)"}]
    data = _render(workdir / "vlm-images", size["vlm_images"], captions=0, size=(256, 128), shard_rows=256,
                   per_identity=4, workers=0 if cores < 4 else cores)
    m["runs"] = {}
    for per_gpu in size["workers_per_gpu"][:2]:
        workers = min(cores, per_gpu * gpus)
        with GpuSampler() as sampler:
            speed, rss, gpu_mib = _job(data, f"vlm:{directory}", workdir / f"vlm-synth-{per_gpu}", workers, batch,
                                       max(1, cores // workers), shard_rows=2 * batch,
                                       device="cuda" if cuda else "cpu", max_new_tokens=tokens)
        m["runs"][per_gpu] = {"images_per_s_per_gpu": round(speed / gpus, 2), "workers": workers,
                              "gpu_utilisation_pct": sampler.utilisation, "peak_gpu_mib_per_worker": round(gpu_mib),
                              "peak_rss_mib_per_worker": round(rss)}
        rows.append({"metric": f"plip synth --captioner vlm:DIR end to end, {per_gpu} worker(s) per GPU "
                               f"({'cuda' if cuda else 'cpu'})", "value": round(speed / gpus, 2),
                     "unit": "images/s per GPU", "note": f"{size['vlm_images']} images; GPU busy "
                                                         f"{sampler.utilisation}%; worker peak GPU {gpu_mib:.0f} MiB"})
    return rows, m


def retrieval(size: dict) -> tuple[list, dict]:
    from plip_train.evaluate import bench_retrieval

    n = size["retrieval"]
    res = bench_retrieval(num_queries=n, num_gallery=n, device="cuda" if torch.cuda.is_available() else "cpu")
    return [{"metric": f"retrieval_metrics {n} x {n} on {res['device']}", "value": res["seconds"], "unit": "s",
             "note": f"{res['queries_per_s']:.0f} queries/s; {res['peak_extra_mib']} MiB extra at peak"}], res


def finetune(workdir: Path, size: dict, cores: int) -> tuple[list, dict]:
    """Text-ReID fine-tuning throughput at the paper configuration: the pre-training measurement on the fine-tune's
    trainer (random initial weights: the speed does not depend on them)."""
    from pipelines.benchmarks.synth import _render
    from pipelines.benchmarks.train import measure_trainer
    from plip_runtime.runs import RunOptions
    from plip_train.finetune.text_reid import TextReidTrainer, make_config

    data = _render(workdir / "finetune-bench", size["finetune_images"], captions=2, shard_rows=256, per_identity=4,
                   workers=0 if cores < 4 else cores)
    workers = min(8, cores)
    total = size["warmup"] + 4 * size["steps"]
    cfg = make_config(init_config=size["pretrain_config"], overrides=[
        f"data.batch_size={size['finetune_batch']}", f"data.num_workers={workers}", f"train.max_steps={total}",
        "finetune.select_on=null"])
    trainer = TextReidTrainer(cfg, data, workdir / "finetune", RunOptions(device="auto"))
    try:
        m = measure_trainer(trainer, size["steps"], size["warmup"], workers)
    finally:
        trainer.close()
    where = f"{m['config']} {cfg.model.name}, batch {m['batch_size']}, {m['precision']}, {m['device']}"
    rows = [{"metric": f"text-ReID fine-tune (CMPM/C) images/s, in-memory batches ({where})", "value": m["in_memory"],
             "unit": "images/s"},
            {"metric": f"text-ReID fine-tune images/s through the data pipeline ({workers} loader workers)",
             "value": m["end_to_end"], "unit": "images/s", "note": f"pipeline / in-memory {m['ratio']:.2f}"},
            {"metric": "text-ReID fine-tune peak GPU memory", "value": m["peak_gpu_mib"], "unit": "MiB"}]
    epoch_hours = 68_126 / m["end_to_end"] / 3600  # CUHK-PEDES's training pairs (one caption per sample)
    rows.append({"metric": "projected: the official 30 epochs on CUHK-PEDES, one such device", "unit": "hours",
                 "value": round(30 * epoch_hours, 2), "note": "68,126 image-caption pairs per epoch"})
    bot_rows, bot = image_reid(workdir, size, workers)
    par_rows, par = attributes(workdir, size, workers)
    return rows + bot_rows + par_rows, {**m, "image_reid": bot, "attributes": par}


def measure_task(workdir: Path, size: dict, workers: int, fmt: str, task, trainer_class, batch: int) -> dict:
    """A fine-tune trainer's images/s and memory at paper size (the paper configuration's image tower) on ProcPedes
    rendered in ``fmt``'s layout and imported by its importer."""
    from pipelines.benchmarks.train import measure_trainer
    from pipelines.cli import main
    from plip_runtime.runs import RunOptions

    raw, data = workdir / f"{fmt}-raw", workdir / fmt
    ids = max(8, size["finetune_images"] // 8)
    if main(["render", "--out", str(raw), "--format", fmt, "--identities", str(ids), "--images-per-identity", "8",
             "--workers", "0"]) or main(["import", fmt, str(raw), "--out", str(data), "--workers", "0"]):
        raise RuntimeError(f"rendering the {fmt}-layout benchmark failed")
    total = size["warmup"] + 4 * size["steps"]
    cfg = task.make_config(init_config=size["pretrain_config"], overrides=[
        f"data.batch_size={batch}", f"data.num_workers={workers}", f"train.max_steps={total}"])
    trainer = trainer_class(cfg, data, workdir / fmt / "run", RunOptions(device="auto"))
    try:
        m = measure_trainer(trainer, size["steps"], size["warmup"], workers)
    finally:
        trainer.close()
    return {**m, "image_size": list(cfg.model.image.image_size),
            "where": f"{cfg.model.name} image tower at {'x'.join(map(str, cfg.model.image.image_size))}, batch "
                     f"{m['batch_size']}, {m['precision']}, {m['device']}"}


def image_reid(workdir: Path, size: dict, workers: int) -> tuple[list, dict]:
    """BoT at paper size (P=16 x K=4, 256x128) on ProcPedes in the Market-1501 layout: images/s and peak memory."""
    from plip_train.finetune import image_reid as task

    m = measure_task(workdir, size, workers, "market1501", task, task.ImageReidTrainer, size["bot_batch"])
    epoch_minutes = 12_936 / m["end_to_end"] / 60  # Market-1501's training images
    return [{"metric": f"image-ReID fine-tune (BoT) images/s, in-memory batches ({m['where']})",
             "value": m["in_memory"], "unit": "images/s"},
            {"metric": f"image-ReID fine-tune images/s through the data pipeline ({workers} loader workers)",
             "value": m["end_to_end"], "unit": "images/s", "note": f"pipeline / in-memory {m['ratio']:.2f}"},
            {"metric": "image-ReID fine-tune peak GPU memory", "value": m["peak_gpu_mib"], "unit": "MiB"},
            {"metric": "projected: BoT's 120 epochs on Market-1501, one such device", "unit": "hours",
             "value": round(120 * epoch_minutes / 60, 2), "note": "12,936 training images per epoch"}], m


def attributes(workdir: Path, size: dict, workers: int) -> tuple[list, dict]:
    """The Rethinking_of_PAR baseline at paper size (batch 64, 256x192) on ProcPedes in the PA-100K layout."""
    from plip_train.finetune import attributes as task

    m = measure_task(workdir, size, workers, "pa100k", task, task.AttributesTrainer, size["par_batch"])
    epoch_minutes = 80_000 / m["end_to_end"] / 60  # PA-100K's training images
    return [{"metric": f"attribute fine-tune images/s, in-memory batches ({m['where']})", "value": m["in_memory"],
             "unit": "images/s"},
            {"metric": f"attribute fine-tune images/s through the data pipeline ({workers} loader workers)",
             "value": m["end_to_end"], "unit": "images/s", "note": f"pipeline / in-memory {m['ratio']:.2f}"},
            {"metric": "attribute fine-tune peak GPU memory", "value": m["peak_gpu_mib"], "unit": "MiB"},
            {"metric": "projected: the recipe's 30 epochs on PA-100K, one such device", "unit": "hours",
             "value": round(30 * epoch_minutes / 60, 2), "note": "80,000 training images per epoch"}], m


def run(quick: bool, workdir: Path) -> dict:
    size = sizes(quick)
    cores = len(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    ceiling = matmul_ceiling(size["matmul"])
    rows = [{"metric": f"matrix-product ceiling ({ceiling['dtype']}, {ceiling['size']}^3)", "value": ceiling["tflops"],
             "unit": "TFLOP/s", "note": "measured in this run: the limit the fractions below use"}]
    details, timings = {"ceiling": ceiling}, {}
    for name, section in (("retrieval", lambda: retrieval(size)),
                          ("pretrain", lambda: pretrain_and_loader(workdir, size, ceiling, cores)),
                          ("caption", lambda: caption(size)), ("synth", lambda: synth(workdir, size, cores)),
                          ("vlm", lambda: vlm(workdir, size, cores)),
                          ("finetune", lambda: finetune(workdir, size, cores))):
        start = time.perf_counter()
        try:
            section_rows, details[name] = section()
        except Exception as e:  # one section's failure must not lose the others' figures (a GPU run is scarce)
            section_rows = [{"metric": f"{name}: failed", "value": None, "unit": "",
                             "note": f"{type(e).__name__}: {e}"[:500]}]
            details[name] = {"error": traceback.format_exc()}
        rows += section_rows
        timings[name] = round(time.perf_counter() - start, 1)
        print(json.dumps({"section": name, "seconds": timings[name], "rows": section_rows}, default=str), flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    for row in rows:  # a goal that does not apply here (no GPU) is left out, not shown as missed
        if row.get("pass", True) is None:
            row.pop("pass")
            row.pop("goal", None)
    return {"rows": rows, "details": details, "section_seconds": timings, "sizes": size, "cores": cores,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "seconds_total": round(time.perf_counter() - t0, 1)}
