"""Attribute-classifier inference throughput on the CPU: the default EfficientNet-Lite0 classifier at 256x128,
batch 64, JPEG decode and preprocessing included (``ClassifierRecognizer.predict`` on dataset rows), in fp32
and with bf16 autocast; plus decode + preprocessing alone for reference. Each figure is the best of the repeats
(after a warm-up pass), as ``timeit`` reports, since development machines are shared."""
from __future__ import annotations

import time
from pathlib import Path

# Tests swap in a tiny backbone here; the benchmark itself runs the default config.
CONFIG_OVERRIDES: dict = {}
# Vocabulary sizes of a classifier trained on a 300-identity ProcPedes render (only the heads' width depends on it).
VOCAB_SIZES = {"person": 7, "head": 40, "upper": 110, "lower": 43, "shoes": 34, "belongings": 42}
BATCH = 64


def _rows(n: int, height: int, width: int) -> list[dict]:
    from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record

    cfg = ProcPedesConfig(identities=max(1, n // 4), images_per_identity=4, height=height, width=width,
                          captions_per_image=0)
    return [render_record(it, config=cfg) for it in plan_items(cfg)[:n]]


def _rate(fn, n: int, repeats: int) -> float:
    fn()  # warm-up (first-call allocations, oneDNN kernel selection)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / min(times)  # best of the repeats, like timeit: the CPU is often shared with other jobs


def run(quick: bool, workdir: Path, images: int | None = None, repeats: int | None = None) -> dict:
    import torch

    from spac.recognizers import AttributeClassifier, ClassifierConfig, ClassifierRecognizer
    from spac.recognizers.base import decode_rows
    from spac.recognizers.classifier import images_to_tensor
    from plip_runtime.device import cpu_supports_bf16
    from synth_pedes.schema import SLOTS, UNKNOWN

    n = images or (128 if quick else 512)
    repeats = repeats or (2 if quick else 5)
    config = ClassifierConfig(**CONFIG_OVERRIDES)
    rows = _rows(n, 256, 128)  # rendered at PLIP's 256x128, decoded and resized to the model's input
    vocab = {s: [UNKNOWN] + [f"{s} phrase {i}" for i in range(1, VOCAB_SIZES[s])] for s in SLOTS}
    model = AttributeClassifier(config, {s: len(v) for s, v in vocab.items()})
    threads = torch.get_num_threads()
    out = []

    def decode_only():
        imgs, _ = decode_rows(rows)
        for i in range(0, len(imgs), BATCH):
            images_to_tensor(imgs[i:i + BATCH], config)

    out.append({"metric": f"recognizer decode + preprocess {config.image_height}x{config.image_width}",
                "value": round(_rate(decode_only, n, repeats), 1), "unit": "images/s",
                "note": "PIL decode, resize, normalise; one process"})
    results = {}
    for precision in ("fp32", "bf16"):
        rec = ClassifierRecognizer(model=model, vocab=vocab, device="cpu", batch_size=BATCH, precision=precision)
        results[precision] = _rate(lambda r=rec: r.predict(rows), n, repeats)
        note = f"{config.backbone}, batch {BATCH}, channels_last={rec.channels_last}, {threads} threads, decode incl."
        if precision == "bf16":
            note += "; autocast bf16" + ("" if cpu_supports_bf16() else " NOT supported by this CPU: ran fp32")
            note += f"; {results['bf16'] / results['fp32']:.2f}x fp32"
        out.append({"metric": f"recognizer inference {precision} {config.image_height}x{config.image_width}",
                    "value": round(results[precision], 1), "unit": "images/s", "note": note})
    return {"rows": out, "images": n, "repeats": repeats, "threads": threads}
