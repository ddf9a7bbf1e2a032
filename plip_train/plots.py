"""A run's loss curves as a PNG (``RUN/losses.png``), drawn from ``metrics.jsonl`` at the end of training."""
from __future__ import annotations

import json
from pathlib import Path

TERMS = ("loss", "ivlc_loss", "tic_loss", "iap_loss")


def plot_losses(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """One panel per loss term (their scales differ by 100x), the learning rate on the last. None when the
    run has no logged step yet."""
    run_dir = Path(run_dir)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").exists() else []
    records = [json.loads(x) for x in lines if x.strip()]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms = [t for t in TERMS if any(t in r for r in records)] + ["lr"]
    fig, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 2.8), constrained_layout=True)
    for ax, term in zip(axes, terms):
        pts = [(r["step"], r[term]) for r in records if term in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 30 else None)
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run_dir.name}: training losses")
    out = Path(out) if out else run_dir / "losses.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
