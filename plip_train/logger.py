"""Training logs: ``metrics.jsonl`` (one line per logged step), TensorBoard scalars under ``tb/``, and
a tqdm bar with the loss terms and samples/s. Only rank 0 writes."""
from __future__ import annotations

import json
import time
from pathlib import Path


class MetricLogger:
    def __init__(self, run_dir: Path, enabled: bool, every: int, start: int, end: int, samples_per_step: int):
        self.enabled, self.every, self.samples_per_step = enabled, every, samples_per_step
        self.start, self.end = start, end
        self._t0, self._window, self._window_t = time.perf_counter(), [], time.perf_counter()
        self._steps_done = 0
        self._jsonl = self._tb = self._bar = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            from tqdm import tqdm

            self._jsonl = open(Path(run_dir) / "metrics.jsonl", "a")
            self._tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=start)
            self._bar = tqdm(total=end, initial=start, desc="plip train", unit="step", dynamic_ncols=True)

    def log(self, step: int, terms: dict, lrs: list[float]) -> None:
        self._steps_done += 1
        self._window.append(terms)
        if not self.enabled:
            return
        self._bar.update(1)
        if (step + 1) % self.every and step != self.start and step + 1 != self.end:
            return
        now = time.perf_counter()
        mean = {k: sum(t.get(k, 0.0) for t in self._window) / len(self._window) for k in self._window[-1]}
        rate = len(self._window) * self.samples_per_step / max(now - self._window_t, 1e-9)
        record = {"step": step + 1, **{k: round(v, 6) for k, v in mean.items()}, "lr": lrs[0],
                  "samples_per_s": round(rate, 2), "elapsed_s": round(now - self._t0, 2)}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for k, v in mean.items():
            self._tb.add_scalar(f"train/{k}", v, step + 1)
        self._tb.add_scalar("train/lr", lrs[0], step + 1)
        self._tb.add_scalar("train/samples_per_s", rate, step + 1)
        shown = {k: f"{v:.3g}" for k, v in mean.items() if k.endswith("loss")}
        self._bar.set_postfix(**shown, img_s=f"{rate:.1f}")
        self._window, self._window_t = [], now

    def samples_per_second(self) -> float:
        return self._steps_done * self.samples_per_step / max(time.perf_counter() - self._t0, 1e-9)

    def close(self) -> None:
        if self.enabled:
            self._bar.close()
            self._jsonl.close()
            self._tb.close()
