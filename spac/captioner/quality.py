"""Caption quality against ground truth: attributes, attribute phrases, style fidelity, diversity.

``evaluate_captioner`` captions every image of a split (the test identities) and measures:

* **attribute accuracy** per slot: the generated attribute phrase vs the ground-truth ``attributes``
  column. *exact*: same canonical phrase (synonyms such as gray/grey, trainers/sneakers,
  lady/woman mapped to one word, word order ignored); *true*: a true wording of the slot, possibly
  less specific ("black hair" for "long black hair"); ``unknown`` is right only where the truth is
  ``unknown``. The majority baseline predicts the most frequent training value of each slot.
* **phrase precision / recall** of the captions: ``spac.phrases.extract`` finds the attribute
  phrases of every caption; a phrase is correct when it is a true wording of its slot. A phrase for
  a slot that is not visible (hallucinated) or with a wrong colour/type is a false positive. Recall:
  the share of the image's known slots that a caption names correctly.
* **style fidelity** per style: caption length (words) vs the human references of that style
  (mean, sd, Wasserstein-1 distance of the length distributions), and a style classifier (logistic
  regression over word 1-2-grams, trained on the human reference captions of the training split):
  the share of style-j captions it assigns to style j, next to its accuracy on held-out references.
* **diversity**: distinct-1/2 (unique n-grams / n-grams, per style) and the mean cosine similarity
  (1-2-gram counts) between the captions of one image, all next to the human references.

True wordings come from ProcPedes' generator when a record carries its appearance (``extra``):
every wording its captions could use, secondary garments and hair under a hat included. For other
datasets the rule is: the phrase's canonical words are a subset of the ground truth's, type word
included.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Sequence

import torch

from synth_pedes.schema import SLOTS, UNKNOWN

from .generate import Captioner, DecodingOptions

_log = logging.getLogger(__name__)


# --- canonical phrases ------------------------------------------------------------------------
@dataclass(frozen=True)
class CanonicalWords:
    """The tables :func:`canonical` works with, built once from ProcPedes' vocabulary (:func:`canonical_words`)."""

    synonyms: Mapping[str, str]  # written form -> canonical token (multi-word canonical forms joined by '_')
    written_longest_first: tuple[str, ...]  # the written forms, longest first, so "t shirt" goes before "shirt"
    type_tokens: frozenset[str]  # canonical garment/headwear type words (and "hair")


@functools.cache
def canonical_words() -> CanonicalWords:
    """The synonym table and type words, built on first use and shared (immutable) afterwards."""
    from synth_pedes.procpedes.vocab import (COLOUR_SYNONYMS, HAIR_LENGTH_WORDS, HEADWEAR, PERSON_SYNONYMS,
                                             TYPE_SYNONYMS)

    table: dict[str, str] = {}
    for group in (COLOUR_SYNONYMS, TYPE_SYNONYMS, PERSON_SYNONYMS, HAIR_LENGTH_WORDS):
        for canon, written in group.items():
            for w in (canon, *written):
                table[w] = canon.replace(" ", "_")
    table.update({"plaid": "checked", "grey": "grey", "gray": "grey", "tshirt": "t-shirt", "t shirt": "t-shirt",
                  "trouser": "trousers", "pant": "trousers", "sneaker": "sneakers", "jean": "jeans"})
    return CanonicalWords(synonyms=MappingProxyType(table),
                          written_longest_first=tuple(sorted(table, key=len, reverse=True)),
                          type_tokens=frozenset({t.replace(" ", "_") for t in TYPE_SYNONYMS} | set(HEADWEAR) | {"hair"}))


_DETAIL_WORDS = {"long-sleeved", "short-sleeved", "sleeveless", "pair", "of"}


def canonical(phrase: str) -> frozenset:
    """The canonical words of an attribute phrase: synonyms unified, sleeve details dropped, unordered."""
    words = canonical_words()
    text = " " + normalise(phrase) + " "
    for written in words.written_longest_first:
        if written in text:
            text = re.sub(rf"(?<![\w-]){re.escape(written)}(?![\w-])", words.synonyms[written], text)
    return frozenset(w for w in text.split() if w not in _DETAIL_WORDS)


def normalise(text: str) -> str:
    text = re.sub(r"\s*-\s*", "-", text.lower())
    return " ".join(re.sub(r"[^\w\s-]", " ", text).split())


def _subset_rule(pred: str, truth: str) -> bool:
    p, t = canonical(pred), canonical(truth)
    types = t & canonical_words().type_tokens
    return bool(p) and p <= t and (not types or bool(p & types))


class Truth:
    """Ground truth of one image: its attributes and every true wording per slot."""

    def __init__(self, record: dict):
        self.attributes = {s: (record.get("attributes") or {}).get(s) or UNKNOWN for s in SLOTS}
        extra = json.loads(record["extra"]) if record.get("extra") else {}
        self.wordings: dict[str, set] | None = None
        if "appearance" in extra:
            self.wordings = _procpedes_wordings(extra)

    def known(self, slot: str) -> bool:
        return self.attributes[slot] != UNKNOWN

    def is_true(self, slot: str, phrase: str) -> bool:
        """``phrase`` is a true description of ``slot`` (never true for an unknown slot)."""
        if not self.known(slot):
            return False
        if self.wordings is not None:
            return normalise(phrase) in self.wordings[slot]
        return _subset_rule(phrase, self.attributes[slot])


def _procpedes_wordings(extra: dict) -> dict[str, set]:
    from synth_pedes.procpedes.people import Appearance
    from synth_pedes.procpedes.phrases import options

    a = Appearance(**extra["appearance"])
    visible = extra.get("visible", {})
    details = extra.get("details", {})
    out = {}
    for slot in SLOTS:
        if not visible.get(slot, True):
            out[slot] = set()
            continue
        words = set(options(slot, a))
        if slot == "upper" and details.get("inner_visible") and a.inner_type != "none":
            words |= options("upper", a, "inner")
        if slot == "head" and a.headwear != "none":
            words |= options("head", a, "hair")
        out[slot] = {normalise(w) for w in words if w}
    return out


# --- text statistics --------------------------------------------------------------------------
def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*", text.lower())


def ngrams(ws: list[str], n: int) -> list[tuple]:
    return [tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def cosine(a: str, b: str) -> float:
    ca = Counter(ngrams(words(a), 1) + ngrams(words(a), 2))
    cb = Counter(ngrams(words(b), 1) + ngrams(words(b), 2))
    dot = sum(v * cb[k] for k, v in ca.items())
    na, nb = math.sqrt(sum(v * v for v in ca.values())), math.sqrt(sum(v * v for v in cb.values()))
    return dot / (na * nb) if na and nb else 0.0


def mean_pairwise_similarity(groups: Sequence[Sequence[str]]) -> float | None:
    sims = [cosine(g[i], g[j]) for g in groups for i in range(len(g)) for j in range(i + 1, len(g))]
    return sum(sims) / len(sims) if sims else None


def wasserstein_1d(a: Sequence[float], b: Sequence[float]) -> float:
    """W1 distance between two empirical distributions (area between the CDFs)."""
    if not a or not b:
        return float("nan")
    pts = sorted(set(a) | set(b))
    sa, sb = sorted(a), sorted(b)
    import bisect

    total = 0.0
    for x, nxt in zip(pts, pts[1:]):
        fa, fb = bisect.bisect_right(sa, x) / len(sa), bisect.bisect_right(sb, x) / len(sb)
        total += abs(fa - fb) * (nxt - x)
    return total


def mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


class StyleClassifier:
    """Multinomial logistic regression over binary word 1-2-gram features (L2-regularised, full batch)."""

    def __init__(self, styles: Sequence[str], min_count: int = 2, l2: float = 1e-3, steps: int = 300):
        self.styles, self.min_count, self.l2, self.steps = list(styles), min_count, l2, steps
        self.vocab: dict = {}
        self.weight = self.bias = None

    def _features(self, texts: Sequence[str]) -> torch.Tensor:
        x = torch.zeros(len(texts), len(self.vocab))
        for r, t in enumerate(texts):
            ws = words(t)
            for g in set(ngrams(ws, 1) + ngrams(ws, 2)):
                j = self.vocab.get(g)
                if j is not None:
                    x[r, j] = 1.0
        return x

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> "StyleClassifier":
        counts = Counter(g for t in texts for g in set(ngrams(words(t), 1) + ngrams(words(t), 2)))
        self.vocab = {g: i for i, g in enumerate(sorted(g for g, c in counts.items() if c >= self.min_count))}
        x, y = self._features(texts), torch.tensor(list(labels))
        w = torch.zeros(len(self.vocab), len(self.styles), requires_grad=True)
        b = torch.zeros(len(self.styles), requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=0.05)
        for _ in range(self.steps):
            loss = torch.nn.functional.cross_entropy(x @ w + b, y) + self.l2 * (w * w).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.weight, self.bias = w.detach(), b.detach()
        return self

    def predict(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return (self._features(texts) @ self.weight + self.bias).argmax(1).tolist()

    def accuracy(self, texts: Sequence[str], label: int) -> float | None:
        pred = self.predict(texts)
        return sum(p == label for p in pred) / len(pred) if pred else None


# --- scoring given predictions and captions ----------------------------------------------------
def read_records(dirs: Sequence[str | os.PathLike], split: str, limit: int | None = None,
                 images: bool = True) -> list[dict]:
    """The ok rows of ``split`` in ``dirs`` with what scoring needs (ground truth, human captions, image)."""
    from synth_pedes import open_dataset

    columns = ["key", "split", "source", "attributes", "captions", "status", "extra"] + (["image"] if images else [])
    out = []
    for d in dirs:
        for rec in open_dataset(d, verify="quick").iter_records(columns=columns, status="ok"):
            if rec["split"] == split and (not images or rec["image"] is not None):
                out.append(rec)
                if limit is not None and len(out) >= limit:
                    return out
    return out


def reference_captions(cfg, records: list[dict]) -> dict[str, list[tuple[int, str]]]:
    """style name -> [(record index, human caption)] under the config's style assignment."""
    from .data import caption_style_index

    refs: dict[str, list] = defaultdict(list)
    for i, rec in enumerate(records):
        human = [c for c in rec["captions"] or [] if c["kind"] == "human"]
        for position, caption in enumerate(human):
            style = caption_style_index(cfg, caption, rec, position)
            if style is not None:
                refs[cfg.styles[style]].append((i, caption["text"]))
    return refs


def majority_attributes(records: Sequence[dict]) -> dict[str, str]:
    """Per slot, the most frequent value of ``records`` (counted by canonical words, so synonyms pool), as its
    most frequent wording: the majority baseline's prediction (``unknown`` without data)."""
    out = {}
    for slot in SLOTS:
        values = [(r["attributes"] or {}).get(slot) or UNKNOWN for r in records]
        top = Counter(canonical(v) for v in values).most_common(1)
        out[slot] = Counter(v for v in values if canonical(v) == top[0][0]).most_common(1)[0][0] if top else UNKNOWN
    return out


def attribute_accuracy(predicted: Sequence[Mapping[str, str]], truths: Sequence[Truth]) -> dict[str, dict]:
    """Per slot, the share of ``predicted[i][slot]`` that is *exact* (same canonical phrase as the truth) and
    *true* (a true wording, possibly less specific); ``unknown`` is right only where the truth is unknown."""
    out = {}
    for slot in SLOTS:
        exact = true = 0
        for pred, truth in zip(predicted, truths, strict=True):
            phrase, gt = pred.get(slot) or UNKNOWN, truth.attributes[slot]
            if gt == UNKNOWN:
                hit = normalise(phrase) == UNKNOWN
                exact, true = exact + hit, true + hit
            else:
                exact += canonical(phrase) == canonical(gt)
                true += truth.is_true(slot, phrase)
        scored = max(len(truths), 1)
        out[slot] = {"exact": exact / scored, "true": true / scored,
                     "unknown_rate": sum(not t.known(slot) for t in truths) / scored}
    return out


def phrase_scores(texts_by_image: list[tuple[int, str]], truths: list[Truth]) -> dict:
    """Phrase precision, recall, hallucinated and wrong shares of captions ``[(truth index, text)]``."""
    from spac.phrases import extract_many

    spans_per_text = extract_many([text for _, text in texts_by_image])
    true_phrases = false_phrases = hallucinated = wrong = 0  # hallucinated/wrong: the false ones, split
    recall_hits = recall_total = 0
    for (image, _), spans in zip(texts_by_image, spans_per_text):
        truth, named = truths[image], set()
        for span in spans:
            if truth.is_true(span.slot, span.text):
                true_phrases += 1
                named.add(span.slot)
            else:
                false_phrases += 1
                hallucinated += not truth.known(span.slot)
                wrong += truth.known(span.slot)
        known = [slot for slot in SLOTS if truth.known(slot)]
        recall_total += len(known)
        recall_hits += sum(slot in named for slot in known)
    phrases = true_phrases + false_phrases
    return {"phrases": phrases, "precision": true_phrases / phrases if phrases else None,
            "recall": recall_hits / recall_total if recall_total else None,
            "hallucinated": hallucinated / phrases if phrases else None,
            "wrong": wrong / phrases if phrases else None,
            "phrases_per_caption": phrases / len(texts_by_image) if texts_by_image else None}


def fit_style_classifier(cfg, train_records: list[dict]) -> tuple[StyleClassifier | None, int]:
    """The style classifier trained on the human captions of ``train_records`` (None with fewer than two
    styles among them), and how many captions it saw."""
    train_refs = reference_captions(cfg, train_records)
    texts = [text for style in cfg.styles for _, text in train_refs.get(style, [])]
    labels = [label for label, style in enumerate(cfg.styles) for _ in train_refs.get(style, [])]
    return (StyleClassifier(cfg.styles).fit(texts, labels) if len(set(labels)) > 1 else None), len(texts)


def style_scores(styles: Sequence[str], generated: Mapping[str, list[tuple[int, str]]],
                 refs: Mapping[str, list[tuple[int, str]]], truths: list[Truth],
                 classifier: StyleClassifier | None) -> dict[str, dict]:
    """Per style: phrases, length, distinctness and style fidelity of the generated captions
    ``[(truth index, text)]`` next to the same measures of the human references."""
    out = {}
    for label, style in enumerate(styles):
        ours, references = generated.get(style, []), refs.get(style, [])
        generated_texts, reference_texts = [t for _, t in ours], [t for _, t in references]
        generated_lengths = [len(words(t)) for t in generated_texts]
        reference_lengths = [len(words(t)) for t in reference_texts]
        out[style] = {
            "generated": phrase_scores(ours, truths) | {
                "length": mean_sd(generated_lengths), "distinct_1": distinct_n(generated_texts, 1),
                "distinct_2": distinct_n(generated_texts, 2),
                "classified_as_style": classifier.accuracy(generated_texts, label) if classifier else None},
            "reference": (phrase_scores(references, truths) if references else {}) | {
                "captions": len(references), "length": mean_sd(reference_lengths),
                "distinct_1": distinct_n(reference_texts, 1), "distinct_2": distinct_n(reference_texts, 2),
                "classified_as_style": (classifier.accuracy(reference_texts, label)
                                        if classifier and references else None)},
            "length_w1": wasserstein_1d(generated_lengths, reference_lengths) if references else None}
    return out


# --- evaluation -------------------------------------------------------------------------------
def evaluate_captioner(captioner: Captioner, data_dirs: Sequence[str | os.PathLike], split: str = "test",
                       opts: DecodingOptions | None = None, batch_size: int = 32, limit: int | None = None,
                       train_split: str = "train", samples: int = 8) -> dict:
    """Caption the ``split`` images of ``data_dirs`` and measure them (see the module docstring)."""
    cfg = captioner.config
    records = read_records(data_dirs, split, limit)
    if not records:
        raise ValueError(f"no ok images in split {split!r} of {[str(d) for d in data_dirs]}")
    results = captioner.caption([r["image"]["bytes"] for r in records], opts, batch_size=batch_size,
                                names=[r["key"] for r in records])
    ok = [(i, r) for i, r in enumerate(results) if r.ok]
    truths = [Truth(r) for r in records]

    # attributes, next to the majority baseline
    train_recs = read_records(data_dirs, train_split, images=False)
    ok_truths = [truths[i] for i, _ in ok]
    attr_rows = attribute_accuracy([result.attributes for _, result in ok], ok_truths)
    baseline = attribute_accuracy([majority_attributes(train_recs)] * len(ok), ok_truths)
    attr_rows = {slot: {**row, "majority": baseline[slot]["exact"]} for slot, row in attr_rows.items()}

    # captions per style: phrases, style, diversity
    refs = reference_captions(cfg, records)
    classifier, classifier_captions = fit_style_classifier(cfg, train_recs)
    generated = {style: [(i, result.captions[style]) for i, result in ok] for style in cfg.styles}
    styles = style_scores(cfg.styles, generated, refs, truths, classifier)
    references_per_image: dict[int, list] = defaultdict(list)
    for style in cfg.styles:
        for i, text in refs.get(style, []):
            references_per_image[i].append(text)
    all_generated = [text for _, result in ok for text in result.captions.values()]
    diversity = {
        "same_image_similarity": mean_pairwise_similarity([list(result.captions.values()) for _, result in ok]),
        "reference_same_image_similarity": mean_pairwise_similarity(list(references_per_image.values())),
        "distinct_1_all": distinct_n(all_generated, 1),
        "distinct_2_all": distinct_n(all_generated, 2)}

    step = max(1, len(ok) // max(samples, 1))
    sample_rows = [{"key": records[i]["key"], "truth": truths[i].attributes,
                    "references": [f"[{c['style']}] {c['text']}" for c in records[i]["captions"]
                                   if c["kind"] == "human"],
                    "attributes": result.attributes, "captions": result.captions}
                   for i, result in ok[::step][:samples]]
    return {"split": split, "images": len(records), "failed": len(records) - len(ok),
            "decoding": (opts or captioner.options()).method, "attributes": attr_rows, "styles": styles,
            "diversity": diversity,
            "classifier": {"train_captions": classifier_captions,
                           "features": len(classifier.vocab) if classifier else 0},
            "samples": sample_rows}


# --- report -----------------------------------------------------------------------------------
def _f(x, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.2f}"


def format_quality(report: dict) -> str:
    """The report as Markdown tables (percentages unless stated)."""
    lines = [f"Quality on split `{report['split']}`: {report['images']} images ({report['failed']} failed), "
             f"{report['decoding']} decoding.", "",
             "| attribute slot | exact % | true wording % | majority baseline % | truth unknown % |",
             "|---|---|---|---|---|"]
    for slot, row in report["attributes"].items():
        lines.append(f"| {slot} | {_f(row['exact'])} | {_f(row['true'])} | {_f(row['majority'])} | "
                     f"{_f(row['unknown_rate'])} |")
    slots = len(report["attributes"])
    mean = {k: sum(row[k] for row in report["attributes"].values()) / slots for k in ("exact", "true", "majority")}
    lines.append(f"| **mean** | {_f(mean['exact'])} | {_f(mean['true'])} | {_f(mean['majority'])} | |")
    lines += ["", "| captions | style | phrases/caption | precision % | recall % | hallucinated % | wrong % |",
              "|---|---|---|---|---|---|---|"]
    for style, row in report["styles"].items():
        for who in ("generated", "reference"):
            scores = row[who]
            if "precision" in scores:
                lines.append(f"| {who} | {style} | {_f(scores['phrases_per_caption'], False)} | "
                             f"{_f(scores['precision'])} | {_f(scores['recall'])} | {_f(scores['hallucinated'])} | "
                             f"{_f(scores['wrong'])} |")
    lines += ["", "| style | words gen (mean ± sd) | words ref (mean ± sd) | length W1 | classified as style: "
                  "gen % | ref % | distinct-1 gen / ref | distinct-2 gen / ref |", "|---|---|---|---|---|---|---|---|"]
    for style, row in report["styles"].items():
        gen, ref = row["generated"], row["reference"]
        lines.append(f"| {style} | {gen['length'][0]:.1f} ± {gen['length'][1]:.1f} | {ref['length'][0]:.1f} ± "
                     f"{ref['length'][1]:.1f} | {_f(row['length_w1'], False)} | {_f(gen['classified_as_style'])} | "
                     f"{_f(ref['classified_as_style'])} | {_f(gen['distinct_1'], False)} / "
                     f"{_f(ref['distinct_1'], False)} | "
                     f"{_f(gen['distinct_2'], False)} / {_f(ref['distinct_2'], False)} |")
    diversity = report["diversity"]
    lines += ["", f"Mean 1-2-gram cosine similarity between the captions of one image: generated "
                  f"{_f(diversity['same_image_similarity'], False)}, human references "
                  f"{_f(diversity['reference_same_image_similarity'], False)}. "
                  f"Distinct-1/2 over all generated captions: {_f(diversity['distinct_1_all'], False)} / "
                  f"{_f(diversity['distinct_2_all'], False)}."]
    return "\n".join(lines) + "\n"


def format_samples(report: dict) -> str:
    out = []
    for sample in report["samples"]:
        out.append(f"### {sample['key']}")
        out.append("truth:     " + ", ".join(f"{k}={v}" for k, v in sample["truth"].items()))
        out.append("generated: " + ", ".join(f"{k}={v}" for k, v in sample["attributes"].items()))
        for style, caption in sample["captions"].items():
            out.append(f"  [{style}] {caption}")
        for reference in sample["references"]:
            out.append(f"  human {reference}")
        out.append("")
    return "\n".join(out)


def write_report(report: dict, out_dir) -> tuple:
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "quality.md").write_text(format_quality(report) + "\n## Samples\n\n" + format_samples(report))
    return out / "quality.json", out / "quality.md"
