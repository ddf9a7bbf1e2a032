"""Throughput of captioning (and of a training step), for ``plip bench caption``.

A random-init decoder almost never emits END, so every row decodes exactly to its maximum length:
a fixed, reproducible workload. ``lengths`` picks it: ``"typical"`` (attributes 5 tokens, captions 45:
about ProcPedes' means, END included) or ``"max"`` (the config's maxima). The timed path is the
library's own: JPEG bytes -> decode/resize -> prefixes -> batched KV-cached decoding -> text.
Images/s is the median over the timed batches (best and worst kept too): on a shared machine single
batches can be several times slower when another process competes for the cores.
"""
from __future__ import annotations

import logging
import os
import threading
import time

import torch

from plip_runtime.device import autocast

from .config import CaptionerConfig, load_config
from .generate import Captioner, DecodingOptions
from .model import SpacCaptioner
from .tokenizer import CaptionTokenizer

_log = logging.getLogger(__name__)
TYPICAL_LENGTHS = (5, 45)  # attribute, caption tokens (END included)


class PeakRSS:
    """Samples this process' resident memory in a thread; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.005):
        import psutil

        self.proc, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.start_rss = self.proc.memory_info().rss
        self.peak = self.start_rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def _images(n: int, cfg: CaptionerConfig) -> list[bytes]:
    from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record

    pc = ProcPedesConfig(identities=max(1, n // 4), images_per_identity=4, height=cfg.image_size[0],
                         width=cfg.image_size[1])
    return [render_record(it, pc)["image"]["bytes"] for it in plan_items(pc)[:n]]


def build_random_captioner(config: str | CaptionerConfig, device: str = "cpu") -> Captioner:
    """A captioner with the config's backbone weights (if local) and a random-init decoder."""
    cfg = load_config(config) if isinstance(config, str) else config
    tok = CaptionTokenizer.from_config(cfg)
    torch.manual_seed(0)
    model = SpacCaptioner(cfg, tok.vocab_size, tok.eos_id).to(device).eval()
    return Captioner(model, tok, torch.device(device))


def measure_captioning(captioner: Captioner, batch_size: int = 32, batches: int = 3, warmup: int = 1,
                       precision: str = "fp32", method: str = "greedy", lengths: str = "typical") -> dict:
    """Images/s and peak memory of ``Captioner.caption`` on ``batch_size``-image batches."""
    cfg = captioner.config
    la, lc = (cfg.max_attribute_tokens, cfg.max_caption_tokens)
    if lengths == "typical":
        la, lc = min(la, TYPICAL_LENGTHS[0]), min(lc, TYPICAL_LENGTHS[1])
    opts = DecodingOptions.from_config(cfg, method=method, precision=precision, max_attribute_tokens=la,
                                       max_caption_tokens=lc)
    images = _images(batch_size, cfg)
    cuda = captioner.device.type == "cuda"
    for _ in range(warmup):
        captioner.caption(images, opts, batch_size=batch_size)
    if cuda:
        torch.cuda.synchronize(captioner.device)
        torch.cuda.reset_peak_memory_stats(captioner.device)
    times = []
    load = os.getloadavg()[0]
    with PeakRSS() as mem:
        for _ in range(batches):
            t0 = time.perf_counter()
            captioner.caption(images, opts, batch_size=batch_size)
            if cuda:
                torch.cuda.synchronize(captioner.device)
            times.append(time.perf_counter() - t0)
    median = sorted(times)[len(times) // 2]
    out = {"images_per_s": round(batch_size / median, 2), "best_images_per_s": round(batch_size / min(times), 2),
           "worst_images_per_s": round(batch_size / max(times), 2), "seconds": round(sum(times), 2),
           "load_average_before": round(load, 2), "threads": torch.get_num_threads(),
           "batch_size": batch_size, "batches": batches, "rows_per_image": 6 + cfg.num_styles,
           "attribute_tokens": la, "caption_tokens": lc, "precision": precision, "method": method,
           "peak_rss_mb": round(mem.peak / 2**20, 1), "rss_growth_mb": round((mem.peak - mem.start_rss) / 2**20, 1)}
    if cuda:
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(captioner.device) / 2**20, 1)
    return out


def measure_training_step(config: str | CaptionerConfig, batch_size: int = 32, steps: int = 3,
                          precision: str = "bf16", device: str = "cpu") -> dict:
    """Images/s of forward + backward + AdamW on synthetic caption batches of typical length."""
    from .data import Collate, image_tensor

    cap = build_random_captioner(config, device)
    model, tok, cfg = cap.model, cap.tokenizer, cap.config
    images = _images(batch_size, cfg)
    text = ("a woman with long black hair is wearing a black jacket over a green shirt, a pair of grey "
            "denim pants and white sneakers. she is carrying a black shoulder bag.")
    items = [{"image": image_tensor(b, cfg.image_size), "attribute_ids": tok.encode_many(["black jacket"] * 6, 12),
              "caption_ids": [(s, tok.encode(text, cfg.max_caption_tokens)) for s in range(cfg.num_styles)]}
             for b in images]
    batch = {k: v.to(device) for k, v in Collate(tok.pad_id, cfg.caption_condition_tokens, tok.eos_id)(items).items()}
    if cfg.vocab_shortlist:  # the batch's tokens plus filler: about ProcPedes' few hundred
        model.set_shortlist(set(batch["caption_tokens"].flatten().tolist()) | set(range(1000, 1300)))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    dev = torch.device(device)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with autocast(dev, precision):
            loss = model(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    per_step = sorted(times[1:])[steps // 2]  # median step
    return {"images_per_s": round(batch_size / per_step, 2), "seconds_per_step": round(per_step, 3),
            "batch_size": batch_size, "precision": precision}
