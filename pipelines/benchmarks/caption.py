"""SPAC captioner throughput: images/s and peak memory of batched greedy captioning (6 attributes +
2 styles per image, KV cache), on the CPU with ``cpu-small`` and, when CUDA is available, on the GPU
at ``paper`` size (bf16, batch 256). Decoders are random-init, so every row decodes exactly to its
length limit: "typical" = attributes 5 / captions 45 tokens (about ProcPedes' means), "max" = the
config's limits (12 / 64)."""
from __future__ import annotations

from pathlib import Path


def run(quick: bool, workdir: Path) -> dict:
    import torch

    from spac.captioner.speed import build_random_captioner, measure_captioning, measure_training_step

    batches = 1 if quick else 5
    rows, details = [], {}
    cap = build_random_captioner("cpu-small", "cpu")
    for precision in ("fp32", "bf16"):
        for lengths in (("typical",) if quick else ("typical", "max")):
            res = measure_captioning(cap, batch_size=32, batches=batches, precision=precision, lengths=lengths)
            details[f"cpu-small/{precision}/{lengths}"] = res
            rows.append({"metric": f"caption cpu-small, CPU, batch 32, greedy, {precision}, {lengths} lengths",
                         "value": res["images_per_s"], "unit": "images/s",
                         "note": f"median of {batches} batches (best {res['best_images_per_s']}, worst "
                                 f"{res['worst_images_per_s']}); {res['rows_per_image']} sequences/image, attr "
                                 f"{res['attribute_tokens']} + caption {res['caption_tokens']} tokens; "
                                 f"{res['threads']} threads, load average {res['load_average_before']}"})
    peak = max(d["peak_rss_mb"] for d in details.values())
    rows.append({"metric": "caption cpu-small, CPU, peak resident memory", "value": peak, "unit": "MB",
                 "note": "whole process: model, torch and the decoding buffers"})
    train = measure_training_step("cpu-small", batch_size=32, steps=1 if quick else 3, precision="bf16")
    details["cpu-small/train/bf16"] = train
    rows.append({"metric": "train cpu-small, CPU, batch 32, bf16 (fwd + bwd + AdamW)", "value": train["images_per_s"],
                 "unit": "images/s", "note": f"{train['seconds_per_step']} s/step, 2 captions of 32 words per image"})
    if torch.cuda.is_available():
        gpu = build_random_captioner("paper", "cuda")
        res = measure_captioning(gpu, batch_size=256, batches=batches, precision="bf16", lengths="typical")
        details["paper/cuda/bf16/typical"] = res
        rows.append({"metric": "caption paper size, GPU, batch 256, greedy, bf16", "value": res["images_per_s"],
                     "unit": "images/s", "note": f"peak GPU memory {res['peak_gpu_mb']:.0f} MB; "
                                                 f"{torch.cuda.get_device_name(0)}"})
        train = measure_training_step("paper", batch_size=64, steps=3, precision="bf16", device="cuda")
        rows.append({"metric": "train paper size, GPU, batch 64, bf16", "value": train["images_per_s"],
                     "unit": "images/s", "note": f"{train['seconds_per_step']} s/step"})
    else:
        rows.append({"metric": "caption paper size, GPU, batch 256, greedy, bf16", "value": None, "unit": "images/s",
                     "note": "not measured: no CUDA device on this machine"})
    return {"rows": rows, "details": details}
