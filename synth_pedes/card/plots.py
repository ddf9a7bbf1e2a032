"""The card's pictures: distribution plots and a sample grid, as PNG files (matplotlib).

Figures are built with the object API (``matplotlib.figure.Figure``) rather than ``pyplot``, so the
library neither switches the process's backend nor keeps global figure state. Each function returns
the file it wrote, or None when the dataset has nothing to show for it (e.g. no attributes).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from ..schema import SLOTS

DPI = 110
COLOURS = {"exact": "#2b8a3e", "consistent": "#8ce99a", "contradict": "#e03131", "unsupported": "#f59f00"}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, out: Path, name: str) -> str:
    fig.savefig(out / name, format="png")
    return name


def _hist_bars(ax, histogram: dict, colour: str = "#1c7ed6") -> None:
    xs = [int(k) for k in histogram]
    ax.bar(xs, [histogram[k] for k in histogram], color=colour, width=0.8)
    ax.grid(axis="y", alpha=0.3)


def images_per_identity(stats: dict, out: Path) -> str | None:
    dist = stats["identities"]["images_per_identity"]
    if not dist.get("count"):
        return None
    fig = _figure(6, 3)
    ax = fig.add_subplot()
    _hist_bars(ax, dist["histogram"])
    ax.set(xlabel="images per identity", ylabel="identities",
           title=f"{dist['count']:,} identities, mean {dist['mean']} images (min {dist['min']}, max {dist['max']})")
    return _save(fig, out, "images_per_identity.png")


def captions_per_image(stats: dict, out: Path) -> str | None:
    dist = stats["captions"]["per_image"]
    if not dist.get("count") or not stats["captions"]["total"]:
        return None
    fig = _figure(5, 3)
    ax = fig.add_subplot()
    _hist_bars(ax, dist["histogram"], "#7048e8")
    ax.set(xlabel="captions per image", ylabel="images", title=f"captions per image (mean {dist['mean']})")
    return _save(fig, out, "captions_per_image.png")


def caption_length(stats: dict, out: Path) -> str | None:
    groups = {g: d for g, d in stats["caption_length"].items() if g != "all" and d.get("count")}
    if not groups:
        return None
    fig = _figure(7, 3.4)
    ax = fig.add_subplot()
    for group, dist in groups.items():
        xs = [int(k) for k in dist["histogram"]]
        total = dist["count"]
        ax.plot(xs, [v / total for v in dist["histogram"].values()], drawstyle="steps-mid",
                label=f"{group} (mean {dist['mean']:.1f}, n={total:,})")
    ax.set(xlabel="words per caption", ylabel="share of captions", title="caption length by kind / style")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out, "caption_length.png")


def diversity(stats: dict, out: Path) -> str | None:
    div = stats["diversity"]
    if not div:
        return None
    names = list(div)
    fig = _figure(max(4.5, 1.1 * len(names) + 2), 3)
    ax = fig.add_subplot()
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [div[n]["distinct_1"] or 0 for n in names], 0.4, label="distinct-1")
    ax.bar([x + 0.2 for x in xs], [div[n]["distinct_2"] or 0 for n in names], 0.4, label="distinct-2")
    ax.set_xticks(list(xs), names, rotation=20, fontsize=8)
    ax.set(ylabel="distinct n-grams / n-grams", title="lexical diversity by caption style")
    ax.legend(fontsize=8)
    return _save(fig, out, "diversity.png")


def attribute_values(stats: dict, out: Path) -> str | None:
    attrs = stats["attributes"]
    if not attrs.get("rows"):
        return None
    fig = _figure(11, 6)
    axes = fig.subplots(2, 3)
    for ax, slot in zip(axes.flat, SLOTS):
        s = attrs["slots"][slot]
        top = s["top"][:8][::-1]
        colours = ["#adb5bd" if v == "unknown" else "#1c7ed6" for v, _, _ in top]
        ax.barh([textwrap.shorten(v, 28) for v, _, _ in top], [n for _, n, _ in top], color=colours)
        ax.set_title(f"{slot}: {s['distinct_values']} values, {100 * (s['unknown_rate'] or 0):.1f}% unknown",
                     fontsize=8)
        ax.tick_params(labelsize=7)
    return _save(fig, out, "attribute_values.png")


def attribute_unknown(stats: dict, out: Path) -> str | None:
    attrs = stats["attributes"]
    if not attrs.get("rows"):
        return None
    fig = _figure(6, 3)
    ax = fig.add_subplot()
    rates = [100 * (attrs["slots"][s]["unknown_rate"] or 0) for s in SLOTS]
    ax.bar(SLOTS, rates, color="#adb5bd")
    for x, r in enumerate(rates):
        ax.text(x, r, f"{r:.1f}%", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="% of images", title="attribute slots recorded as unknown")
    return _save(fig, out, "attribute_unknown.png")


def _stacked(ax, labels: list[str], entries: list[dict]) -> None:
    left = [0.0] * len(labels)
    for outcome, colour in COLOURS.items():
        shares = [(e[outcome] / e["spans"]) if e["spans"] else 0 for e in entries]
        ax.barh(labels, shares, left=left, color=colour, label=outcome)
        left = [a + b for a, b in zip(left, shares)]
    ax.set_xlim(0, 1)
    ax.tick_params(labelsize=8)


def faithfulness(stats: dict, out: Path) -> str | None:
    f = stats["faithfulness"]
    if not f.get("measurable"):
        return None
    fig = _figure(10, 3.6)
    left, right = fig.subplots(1, 2)
    slots = [s for s in SLOTS if f["by_slot"][s]["spans"]]
    _stacked(left, slots, [f["by_slot"][s] for s in slots])
    left.set_title("caption phrases vs the row's attributes, by slot", fontsize=9)
    groups = list(f["by_group"])
    _stacked(right, groups, [f["by_group"][g] for g in groups])
    right.set_title("by caption kind / style", fontsize=9)
    right.legend(fontsize=7, loc="lower right")
    return _save(fig, out, "faithfulness.png")


def ground_truth(stats: dict, out: Path) -> str | None:
    gt = stats["ground_truth"]
    if not gt.get("rows"):
        return None
    fig = _figure(6, 3)
    ax = fig.add_subplot()
    acc = [100 * (gt["attributes"][s]["accuracy"] or 0) for s in SLOTS]
    exact = [100 * (gt["attributes"][s]["exact_accuracy"] or 0) for s in SLOTS]
    xs = range(len(SLOTS))
    ax.bar([x - 0.2 for x in xs], acc, 0.4, label="true (possibly less specific)", color="#2b8a3e")
    ax.bar([x + 0.2 for x in xs], exact, 0.4, label="exact", color="#8ce99a")
    ax.set_xticks(list(xs), SLOTS)
    ax.set(ylabel="% of images", ylim=(0, 105), title=f"attributes vs ProcPedes ground truth ({gt['rows']:,} rows)")
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, out, "ground_truth.png")


def status_reasons(stats: dict, out: Path) -> str | None:
    bars = [("ok", stats["status_counts"].get("ok", 0))]
    for status, reasons in stats["reasons"].items():
        bars += [(f"{status}: {textwrap.shorten(r, 40)}", n) for r, n in reasons.items()]
    fig = _figure(7, 0.9 + 0.32 * len(bars))
    ax = fig.add_subplot()
    labels, counts = zip(*bars[::-1])
    colours = ["#2b8a3e" if lab == "ok" else "#e03131" if lab.startswith("error") else "#f59f00" for lab in labels]
    ax.barh(labels, counts, color=colours)
    for y, n in enumerate(counts):
        ax.text(n, y, f" {n:,}", va="center", fontsize=8)
    ax.set(xlabel="rows", title=f"rows by status and reason ({stats['rows']:,} rows)")
    ax.tick_params(labelsize=8)
    return _save(fig, out, "status.png")


def sample_grid(samples: list[dict], out: Path, columns: int = 4) -> str | None:
    """Images with their captions (and attributes) under them: what a reader should look at first."""
    from ..imaging import open_rgb

    samples = [s for s in samples if s.get("image")]
    if not samples:
        return None
    rows = -(-len(samples) // columns)
    fig = _figure(3.2 * columns, 5.0 * rows)
    grid = fig.add_gridspec(2 * rows, columns, height_ratios=[2.6, 2.4] * rows)
    for i, s in enumerate(samples):
        r, c = divmod(i, columns)
        ax = fig.add_subplot(grid[2 * r, c])
        try:
            ax.imshow(open_rgb(s["image"]))
        except (OSError, ValueError) as e:  # an unverified dataset may hold anything: show it, do not fail
            ax.text(0.5, 0.5, textwrap.fill(f"image does not decode: {e}", 24), ha="center", va="center",
                    fontsize=7, color="#e03131")
        ax.set_axis_off()
        ax.set_title(textwrap.shorten(f"id {s['identity']}: {s['key']}", 44), fontsize=6)
        tx = fig.add_subplot(grid[2 * r + 1, c])
        tx.set_axis_off()
        tx.text(0, 1, _sample_text(s), va="top", ha="left", fontsize=5.6, family="DejaVu Sans", wrap=False)
    return _save(fig, out, "samples.png")


def _sample_text(sample: dict) -> str:
    parts = []
    for cap in sample["captions"][:3]:
        parts.append(textwrap.fill(f"[{cap.get('style') or cap.get('kind')}] {textwrap.shorten(cap['text'], 260)}", 50))
    attrs = sample.get("attributes")
    if attrs:
        parts.append(textwrap.fill("attributes: " + ", ".join(attrs[s] or "?" for s in SLOTS), 50))
    return "\n".join(parts)


ALL = (status_reasons, images_per_identity, captions_per_image, caption_length, diversity, attribute_unknown,
       attribute_values, faithfulness, ground_truth)


def draw_all(stats: dict, samples: list[dict], out: Path) -> list[str]:
    """Write every plot that applies to this dataset into ``out``; return the file names in order."""
    out.mkdir(parents=True, exist_ok=True)
    files = [fn(stats, out) for fn in ALL]
    files.append(sample_grid(samples, out))
    return [f for f in files if f]
