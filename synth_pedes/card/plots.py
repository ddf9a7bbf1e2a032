"""The card's pictures: distribution plots (PNG, matplotlib) and the sample rows' images.

Figures are built with the object API (``matplotlib.figure.Figure``) rather than ``pyplot``, so the
library neither switches the process's backend nor keeps global figure state. Each plot function takes
the card's statistics and returns its figure, or None when the dataset has nothing to show for it (e.g.
no attributes); ``draw_all`` writes them. The samples' captions are text on the report page (``html``),
not baked into a picture, so only their images are written here, one file each under ``samples/``.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from ..schema import SLOTS
from . import reference
from .faithfulness import MAX_DISTINCT_2, MIN_BIGRAMS

DPI = 110
COLOURS = {"exact": "#2b8a3e", "consistent": "#8ce99a", "contradict": "#e03131", "unsupported": "#f59f00"}
SAMPLES_DIR = "samples"  # report/samples/NN.jpg, one per doc["samples"] entry, in that order
SYNTH_PEDES = next(r for r in reference.PUBLISHED if r["dataset"] == "SYNTH-PEDES")
SAMPLE_SIZE = (256, 512)  # larger sample images are shrunk to fit this (width, height) box


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _hist_bars(ax, histogram: dict, colour: str = "#1c7ed6") -> None:
    """Bars of a histogram of whole numbers: integer ticks, and at least 1 to either side of the values so
    that a single value is one bar of its own width, not a block stretched over fractional ticks."""
    from matplotlib.ticker import MaxNLocator

    xs = [int(k) for k in histogram]
    ax.bar(xs, [histogram[k] for k in histogram], color=colour, width=0.8)
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)


def _legend_below(fig, ax, ncols: int, title: str) -> None:
    """The title on top, the legend in a row under the axes (outside them: it never covers a bar)."""
    fig.suptitle(title)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)


def images_per_identity(stats: dict):
    dist = stats["identities"]["images_per_identity"]
    if not dist.get("count"):
        return None
    fig = _figure(6, 3)
    ax = fig.add_subplot()
    _hist_bars(ax, dist["histogram"])
    ax.set(xlabel="images per identity", ylabel="identities",
           title=f"{dist['count']:,} identities, mean {dist['mean']} images (min {dist['min']}, max {dist['max']})")
    return fig


def captions_per_image(stats: dict):
    dist = stats["captions"]["per_image"]
    if not dist.get("count") or not stats["captions"]["total"]:
        return None
    fig = _figure(5, 3)
    ax = fig.add_subplot()
    _hist_bars(ax, dist["histogram"], "#7048e8")
    ax.set(xlabel="captions per image", ylabel="images",
           title=f"mean {dist['mean']} captions per image (SYNTH-PEDES: {SYNTH_PEDES['captions_per_image']})")
    return fig


def caption_length(stats: dict):
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
    return fig


def diversity(stats: dict):
    """distinct-1/2 per style, with each bar's value, its corpus size (distinct-n falls as a corpus grows,
    so a value means little without it) and the card's near-zero warning line; published datasets report
    no distinct-n to compare with (``reference``)."""
    div = stats["diversity"]
    if not div:
        return None
    names = list(div)
    fig = _figure(max(5, 1.3 * len(names) + 2.5), 3.6)
    ax = fig.add_subplot()
    xs = range(len(names))
    for offset, n, colour in ((-0.2, 1, "#1c7ed6"), (0.2, 2, "#f76707")):
        bars = ax.bar([x + offset for x in xs], [div[g][f"distinct_{n}"] or 0 for g in names], 0.4, color=colour,
                      label=f"distinct-{n}")
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.axhline(MAX_DISTINCT_2, color="#e03131", linestyle="--", linewidth=1,
               label=f"warning: distinct-2 < {MAX_DISTINCT_2} (styles with >= {MIN_BIGRAMS:,} bigrams)")
    ax.set_xticks(list(xs), [f"{g}\n{div[g]['ngrams_2']:,} bigrams" for g in names], fontsize=8)
    ax.set_ylim(0, max(0.1, 1.15 * max(max(div[g]["distinct_1"] or 0, div[g]["distinct_2"] or 0) for g in names)))
    ax.set(xlabel="caption style (and its number of bigrams)", ylabel="distinct n-grams / n-grams")
    _legend_below(fig, ax, 3, "lexical diversity by caption style")
    return fig


def attribute_values(stats: dict):
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
                     fontsize=9)
        ax.set_xlabel("images", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=8)
    return fig


def attribute_unknown(stats: dict):
    attrs = stats["attributes"]
    if not attrs.get("rows"):
        return None
    fig = _figure(6, 3)
    ax = fig.add_subplot()
    rates = [100 * (attrs["slots"][s]["unknown_rate"] or 0) for s in SLOTS]
    bars = ax.bar(SLOTS, rates, color="#adb5bd")
    ax.bar_label(bars, [f"{r:.1f}%" for r in rates], fontsize=8, padding=1)
    ax.set_ylim(0, max(5, 1.15 * max(rates)))  # room for the labels above the tallest bar
    ax.set(xlabel="attribute slot", ylabel="% of images", title="attribute slots recorded as unknown")
    return fig


def _stacked(ax, labels: list[str], entries: list[dict]) -> None:
    left = [0.0] * len(labels)
    for outcome, colour in COLOURS.items():
        shares = [(e[outcome] / e["spans"]) if e["spans"] else 0 for e in entries]
        ax.barh(labels, shares, left=left, color=colour, label=outcome)
        left = [a + b for a, b in zip(left, shares)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of caption phrases", fontsize=8)
    ax.tick_params(labelsize=8)


def faithfulness(stats: dict):
    f = stats["faithfulness"]
    if not f.get("measurable"):
        return None
    fig = _figure(10, 3.9)
    left, right = fig.subplots(1, 2)
    slots = [s for s in SLOTS if f["by_slot"][s]["spans"]]
    _stacked(left, slots, [f["by_slot"][s] for s in slots])
    left.set_title("by attribute slot", fontsize=9)
    groups = list(f["by_group"])
    _stacked(right, groups, [f["by_group"][g] for g in groups])
    right.set_title("by caption kind / style", fontsize=9)
    _legend_below(fig, right, len(COLOURS), "caption phrases vs the row's own attributes (self-agreement)")
    return fig


def ground_truth(stats: dict):
    gt = stats["ground_truth"]
    if not gt.get("rows"):
        return None
    fig = _figure(6, 3.3)
    ax = fig.add_subplot()
    acc = [100 * (gt["attributes"][s]["accuracy"] or 0) for s in SLOTS]
    exact = [100 * (gt["attributes"][s]["exact_accuracy"] or 0) for s in SLOTS]
    xs = range(len(SLOTS))
    ax.bar([x - 0.2 for x in xs], acc, 0.4, label="true (possibly less specific)", color="#2b8a3e")
    ax.bar([x + 0.2 for x in xs], exact, 0.4, label="exact", color="#8ce99a")
    ax.set_xticks(list(xs), SLOTS)
    ax.set(xlabel="attribute slot", ylabel="% of images", ylim=(0, 105))
    _legend_below(fig, ax, 2, f"attributes vs ProcPedes ground truth ({gt['rows']:,} rows)")
    return fig


def status_reasons(stats: dict):
    bars = [("ok", stats["status_counts"].get("ok", 0))]
    for status, reasons in stats["reasons"].items():
        bars += [(f"{status}: {textwrap.shorten(r, 40)}", n) for r, n in reasons.items()]
    fig = _figure(7, 1.1 + 0.32 * len(bars))
    ax = fig.add_subplot()
    labels, counts = zip(*bars[::-1])
    colours = ["#2b8a3e" if lab == "ok" else "#e03131" if lab.startswith("error") else "#f59f00" for lab in labels]
    drawn = ax.barh(labels, counts, color=colours)
    ax.bar_label(drawn, [f" {n:,}" for n in counts], fontsize=8)
    ax.set_xlim(0, 1.1 * max(max(counts), 1))  # room for the count beside the longest bar
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="rows", title=f"rows by status and reason ({stats['rows']:,} rows)")
    ax.tick_params(labelsize=8)
    return fig


def sample_images(samples: list[dict], out: Path) -> list[str]:
    """One image file per sample, in order (``SAMPLES_DIR``/NN.jpg); the report page puts each sample's
    captions beside it as text. An image that does not decode becomes a picture saying why."""
    from ..imaging import open_rgb

    (out / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    names = []
    for i, s in enumerate(samples):
        try:
            if not s.get("image"):
                raise ValueError("no image bytes stored in this row")
            img = open_rgb(s["image"])
        except (OSError, ValueError) as e:  # an unverified dataset may hold anything: show it, do not fail
            names.append(_save(_unreadable(f"{s['key']}: image does not decode: {e}"), out,
                               f"{SAMPLES_DIR}/{i:02d}.png"))
            continue
        img.thumbnail(SAMPLE_SIZE)
        img.save(out / SAMPLES_DIR / f"{i:02d}.jpg", quality=90)
        names.append(f"{SAMPLES_DIR}/{i:02d}.jpg")
    return names


def _unreadable(message: str):
    fig = _figure(2, 3)
    fig.text(0.5, 0.5, textwrap.fill(message, 22), ha="center", va="center", fontsize=9, color="#e03131")
    return fig


PLOTS = {"status.png": status_reasons, "images_per_identity.png": images_per_identity,
         "captions_per_image.png": captions_per_image, "caption_length.png": caption_length,
         "diversity.png": diversity, "attribute_unknown.png": attribute_unknown,
         "attribute_values.png": attribute_values, "faithfulness.png": faithfulness, "ground_truth.png": ground_truth}


def _save(fig, out: Path, name: str) -> str:
    fig.savefig(out / name, format="png")
    return name


def draw_all(stats: dict, samples: list[dict], out: Path) -> list[str]:
    """Write every plot that applies to this dataset, then the samples' images, into ``out``; return the file
    names (relative to ``out``) in order."""
    out.mkdir(parents=True, exist_ok=True)
    files = [_save(fig, out, name) for name, draw in PLOTS.items() if (fig := draw(stats)) is not None]
    return files + sample_images(samples, out)
