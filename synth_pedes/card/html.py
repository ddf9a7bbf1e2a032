"""``report/index.html``: every plot and table of the card on one self-contained page.

Plain HTML with inline CSS and relative links to the PNGs and ``stats.json`` beside it, so the report
opens from disk, from a web server or from a Hub repository alike. Every value is escaped.
"""
from __future__ import annotations

from html import escape

from ..schema import SLOTS
from . import reference
from .plots import SAMPLES_DIR

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left}th{background:#f1f3f5}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.warn{background:#fff3bf;border:1px solid #f59f00;padding:.6em}figure{margin:1.2em 0}
figcaption{font-size:.85em;color:#555}code{background:#f1f3f5;padding:0 .2em}
.samples{display:grid;grid-template-columns:repeat(auto-fill,minmax(30em,1fr));gap:1em}
.sample{display:flex;gap:.8em;margin:0;font-size:.9em}.sample img{width:8em;height:auto;align-self:flex-start;margin:0}
.sample figcaption{font-size:1em;color:#222}.sample ul{margin:.3em 0;padding-left:1.1em}.sample li{margin:.2em 0}"""
PLOT_TEXT = {
    "status.png": ("Rows by status and reason", "Every row of the dataset: ok, filtered (by which filter) or "
                   "error (why the image could not be used)."),
    "images_per_identity.png": ("Images per identity", "How many ok images each identity has."),
    "captions_per_image.png": ("Captions per image", "SYNTH-PEDES has 2-3 captions per image (2.53 on average)."),
    "caption_length.png": ("Caption length", "Words per caption, by caption kind and style."),
    "diversity.png": ("Lexical diversity", "distinct-n: distinct n-grams over all n-grams of a style; low values "
                      "mean repetitive wording, but the value also falls as a style's captions grow in number, so "
                      "each style shows its count of bigrams. Published datasets report no distinct-n; the dashed "
                      "line is where the card warns (docs/formats.md#card-warnings)."),
    "attribute_unknown.png": ("Unknown attributes", "Share of images whose slot is recorded as not visible."),
    "attribute_values.png": ("Attribute values", "The most common values of each slot."),
    "faithfulness.png": ("Caption faithfulness", "Each attribute phrase of a caption (its stored span) compared "
                         "with the row's attribute: exact, consistent (true but less specific), contradicting, or "
                         "naming a slot recorded as unknown."),
    "ground_truth.png": ("Accuracy against ground truth", "Attributes compared with the ProcPedes ground truth."),
}
SAMPLES_TEXT = "A deterministic sample of ok rows (smallest key hashes), each with its captions and attributes."


def table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _faith_table(doc: dict) -> str:
    f = doc["faithfulness"]
    if not f.get("measurable"):
        return f"<p>Not measurable: {escape(f.get('why', ''))}.</p>"
    rows = [[g, e["spans"], _pct(e["agreement"]), _pct(e["exact_rate"]), _pct(e["contradiction_rate"]),
             _pct(e["unsupported_rate"]), _pct(e.get("coverage"))] for g, e in f["by_group"].items()]
    rows += [[f"slot: {s}", e["spans"], _pct(e["agreement"]), _pct(e["exact_rate"]), _pct(e["contradiction_rate"]),
              _pct(e["unsupported_rate"]), ""] for s, e in f["by_slot"].items() if e["spans"]]
    return table(["group", "phrases", "agree", "exact", "contradict", "unsupported", "coverage of known slots"], rows)


def _scores_table(doc: dict) -> str:
    c = doc.get("caption_faithfulness", {})
    if not c.get("measurable"):
        return ""
    rows = [[g, e["count"], e.get("mean", ""), e.get("p10", ""), e.get("median", ""), _pct(e.get("below_0_5")),
             e["unscored"], e["repeating"]] for g, e in c["by_group"].items()]
    return (f"<p>Per caption: {escape(c['what'])}.</p>"
            + table(["group", "scored captions", "mean", "p10", "median", f"below {c['low_threshold']}",
                     "no attribute phrase", "repeating (not scored)"], rows))


def _warnings(doc: dict) -> str:
    return "".join(f'<p class="warn"><b>Warning ({escape(w["code"])})</b>: {escape(w["message"])} '
                   f"(threshold {escape(str(w['threshold']))}).</p>" for w in doc.get("warnings", []))


def _truth_table(doc: dict) -> str:
    gt = doc["ground_truth"]
    if not gt.get("rows"):
        return f"<p>{escape(gt.get('why', ''))}.</p>"
    rows = [[s, _pct(a["accuracy"]), _pct(a["exact_accuracy"]), a["wrong"], a["missed"], a["hallucinated"]]
            for s, a in gt["attributes"].items()]
    spans = [[g, e["spans"], _pct(e["precision"]), e["wrong"], e["unsupported"]]
             for g, e in gt["caption_phrases"].items()]
    return (table(["slot", "accuracy", "exact", "wrong", "missed", "hallucinated"], rows)
            + table(["caption group", "phrases", "true", "wrong", "not visible"], spans))


def _openings(doc: dict) -> str:
    rows = [[style, o, n, _pct(r)] for style, top in doc["openings"].items() for o, n, r in top[:5]]
    return table(["style", "opening", "captions", "share"], rows) if rows else ""


def _attributes(doc: dict) -> str:
    a = doc["attributes"]
    if not a.get("rows"):
        return f"<p>{escape(a.get('why', ''))}</p>"
    rows = [[s, _pct(a["slots"][s]["unknown_rate"]), a["slots"][s]["distinct_values"],
             ", ".join(v for v, _, _ in a["slots"][s]["top"][:5])] for s in SLOTS]
    return table(["slot", "unknown", "distinct values", "most common"], rows)


def _sample(sample: dict, image: str) -> str:
    """One sample row: its image, and beside it the captions and attributes as text (readable at any width)."""
    captions = "".join(f"<li><b>{escape(c.get('style') or c.get('kind') or '')}</b>: {escape(c['text'])}</li>"
                       for c in sample["captions"])
    attrs = sample.get("attributes")
    attributes = ("<p>" + "; ".join(f"{slot}: {escape(attrs[slot] or '?')}" for slot in SLOTS) + "</p>"
                  if attrs else "")
    return (f'<figure class="sample"><img src="{escape(image)}" alt="{escape(sample["key"])}">'
            f"<figcaption><b>identity {escape(str(sample['identity']))}</b>, <code>{escape(sample['key'])}</code>"
            f"<ul>{captions}</ul>{attributes}</figcaption></figure>")


def _samples(doc: dict, files: list[str]) -> str:
    images = [f for f in files if f.startswith(SAMPLES_DIR + "/")]  # one per doc["samples"] entry, in order
    if not images:
        return ""
    cards = "\n".join(_sample(s, image) for s, image in zip(doc["samples"], images))
    return f'<h2>Samples</h2><p>{escape(SAMPLES_TEXT)}</p>\n<div class="samples">\n{cards}\n</div>'


def _figures(plots: list[str]) -> str:
    out = []
    for name in (p for p in plots if not p.startswith(SAMPLES_DIR + "/")):
        title, text = PLOT_TEXT.get(name, (name, ""))
        out.append(f'<figure><h3>{escape(title)}</h3><img src="{escape(name)}" alt="{escape(title)}">'
                   f"<figcaption>{escape(text)}</figcaption></figure>")
    return "\n".join(out)


def render(doc: dict, plots: list[str], card_link: str) -> str:
    d = doc["dataset"]
    warn = (f'<p class="warn"><b>Not verified</b>: {escape(d["verify_note"])}</p>' if d["verified"] == "none" else "")
    comparison = table(list(reference.HEADERS), [[reference.fmt(r.get(c)) for c in reference.COLUMNS]
                                                 for r in doc["comparison"]])
    reasons = table(["status", "reason", "rows"],
                    [[s, r, n] for s, rs in doc["reasons"].items() for r, n in rs.items()])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(d['pretty_name'])}: statistics</title>
<style>{CSS}</style></head><body>
<h1>{escape(d['pretty_name'])}</h1>
<p>Manifest id <code>{escape(d['id'])}</code>, {escape(d['kind'])}, version {escape(d['version'])}.
Verification: {escape(d['verify_note'])}. Dataset card: <a href="{escape(card_link)}">README.md</a>;
numbers: <a href="stats.json">stats.json</a>. Computed in {doc['timing']['seconds']} s
({doc['timing']['rows_per_s']:,} rows/s) by plip {escape(doc['generated']['package_version'])}.</p>{warn}{_warnings(doc)}
<h2>Compared with published datasets</h2>{comparison}<p>n/r: not reported in the published sources.</p>
<h2>Rows not ok</h2>{reasons if doc['reasons'] else '<p>none</p>'}
<h2>Ground truth</h2>{_truth_table(doc)}
<h2>Caption self-agreement (captions vs the row's own attributes, not the truth)</h2>{_faith_table(doc)}
{_scores_table(doc)}
<h2>Attributes</h2>{_attributes(doc)}
<h2>Most frequent openings</h2>{_openings(doc)}
<h2>Plots</h2>
{_figures(plots)}
{_samples(doc, plots)}
</body></html>
"""
