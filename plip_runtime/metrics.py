"""Training logs, the same for every trainer: ``metrics.jsonl`` (one JSON line per logged step), TensorBoard
scalars under ``tb/``, progress (a bar with the loss terms and samples/s on a terminal, a line every
``PLIP_PROGRESS_INTERVAL`` seconds in a log: plip_runtime.progress) and ``losses.png`` at the end.
Only the main rank writes; a resumed run first drops the lines logged after the checkpoint it resumes from,
so the log reads as one uninterrupted run."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .progress import Progress

METRICS_FILE, TENSORBOARD_DIR, PLOT_FILE = "metrics.jsonl", "tb", "losses.png"


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the lines of ``metrics.jsonl`` logged after ``step`` (written after the checkpoint a run resumes from)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))


class MetricLogger:
    """Logs steps ``start+1 .. end``: every ``every`` steps, plus the first and the last, a line with the means of
    the loss terms over the steps since the last line (``mean_of_steps`` of them), the learning rate, samples/s
    and the elapsed time. ``progress``: a bar (True), nothing (False), or None: a bar on a terminal, else lines."""

    def __init__(self, run_dir: Path, *, enabled: bool, every: int, start: int, end: int, name: str,
                 progress: bool | None = None):
        self.enabled, self.every, self.start, self.end = enabled, every, start, end
        self._t0 = self._window_t = time.perf_counter()
        self._window: list[dict] = []
        self._window_samples = self._samples = 0
        self._jsonl = self._tensorboard = self._progress = None
        self.last_record: dict | None = None  # the last line written to metrics.jsonl
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        truncate_metrics(Path(run_dir) / METRICS_FILE, start)
        self._jsonl = open(Path(run_dir) / METRICS_FILE, "a")
        self._tensorboard = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=start + 1)
        self._progress = Progress(name, end, unit="step", rate_unit="samples", initial=start, show=progress)

    def log(self, step: int, terms: dict, lr: float, samples: int) -> dict | None:
        """Record 0-based ``step`` (its terms are floats); returns the line written, if one was."""
        self._samples += samples
        self._window_samples += samples
        self._window.append(terms)
        if not self.enabled:
            return None
        if (step + 1) % self.every and step != self.start and step + 1 != self.end:
            self._progress.update(1, samples)
            return None
        now = time.perf_counter()
        names = [k for k in self._window[-1]]
        mean = {k: sum(t.get(k, 0.0) for t in self._window) / len(self._window) for k in names}
        rate = self._window_samples / max(now - self._window_t, 1e-9)
        record = {"step": step + 1, **{k: round(v, 6) for k, v in mean.items()}, "mean_of_steps": len(self._window),
                  "lr": lr, "samples_per_s": round(rate, 2), "elapsed_s": round(now - self._t0, 2)}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for k, v in mean.items():
            self._tensorboard.add_scalar(f"train/{k}", v, step + 1)
        self._tensorboard.add_scalar("train/lr", lr, step + 1)
        self._tensorboard.add_scalar("train/samples_per_s", rate, step + 1)
        shown = ["loss"] if "loss" in mean else [k for k in mean if k.endswith("_loss")]  # the total, if there is one
        self._progress.update(1, samples, **{k: f"{mean[k]:.3g}" for k in shown})
        self._window, self._window_samples, self._window_t = [], 0, now
        self.last_record = record
        return record

    def log_validation(self, step: int, split: str, metrics: dict) -> None:
        """A validation's metrics at ``step`` (steps done) as TensorBoard scalars ``<split>/<metric>``, beside the
        training curves (the history itself is the trainer's: run.json and results.json)."""
        if self.enabled:
            for name, value in metrics.items():
                self._tensorboard.add_scalar(f"{split}/{name}", value, step)
            self._tensorboard.flush()

    def samples_per_second(self) -> float:
        """Samples per second over every step logged by this process (set-up excluded)."""
        return self._samples / max(time.perf_counter() - self._t0, 1e-9)

    def close(self) -> None:
        if self.enabled:
            self._progress.close()
            self._jsonl.close()
            self._tensorboard.close()


def plot_losses(run_dir: str | Path, out: str | Path | None = None, max_panels: int = 6) -> Path | None:
    """``losses.png``: one panel per loss term (``loss`` and ``*_loss``; their scales differ by 100x), the
    learning rate on the last. None when the run has no logged step yet."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE
    records = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = dict.fromkeys(k for r in records for k in r)
    terms = [k for k in seen if k == "loss" or k.endswith("_loss")][:max_panels - 1] + ["lr"]
    fig, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 2.8), constrained_layout=True, squeeze=False)
    for ax, term in zip(axes[0], terms):
        points = [(r["step"], r[term]) for r in records if term in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 30 else None)
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run_dir.name}: training losses")
    out = Path(out) if out else run_dir / PLOT_FILE
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
