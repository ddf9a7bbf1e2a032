"""One shard's statistics as a small mergeable object: the unit of work of the card's Dask pass.

``shard_partial(path)`` streams one shard in record batches (never the image column, which is most
of a shard's bytes) and returns a ``PartialStats``; partials merge associatively on the client, so
memory is bounded by one batch per worker plus summaries whose size does not grow with the row count
(counters are truncated to their heads, distinct counts are sketches; see ``sketch``). The one
exception is the per-identity image count, which grows with the number of identities (a few MB for
SYNTH-PEDES' 312k identities). Content statistics describe the rows with ``status == "ok"``; every
row counts in the status and reason counts.
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from ..schema import SLOTS, UNKNOWN
from .faithfulness import caption_phrases, repeated_word, share_agreeing
from .sketch import DistinctSketch, merge_top, stable_hash
from .text import judge, ngrams, opening, words
from .truth import load_truth_table, truth_from, truth_of

READ_COLUMNS = ["key", "identity", "source", "split", "status", "error", "width", "height", "image_sha256",
                "attributes", "captions", "extra"]  # everything but the image bytes (most of a shard) and the scores
EXAMPLE_CHARS = 120  # a repeating caption quoted in a warning is cut to this
BATCH_ROWS = 1024
TOP_WORDS, TOP_OPENINGS, TOP_VALUES = 20000, 2000, 2000  # counter heads kept when merging
SAMPLE_CANDIDATES = 16  # bottom-k of key hashes per shard: the sample grid picks the global bottom-k


def caption_style(caption: dict) -> str:
    return caption.get("style") or caption.get("kind") or "?"


def reason_of(status: str, error: str | None) -> str:
    """The reason a row is not ok, without its row-specific detail ("gender-vote: ... identity 11")."""
    return (error or status).split(":")[0].strip()


@dataclass
class PartialStats:
    shards: int = 0
    rows: int = 0
    status_counts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)  # (status, reason) -> rows
    splits: Counter = field(default_factory=Counter)  # ok rows per split
    sources: Counter = field(default_factory=Counter)  # ok rows per source
    identities: Counter = field(default_factory=Counter)  # identity -> ok images (identity >= 0)
    unknown_identity: int = 0
    sizes: Counter = field(default_factory=Counter)  # "WxH" -> ok images
    captions_per_image: Counter = field(default_factory=Counter)
    caption_groups: Counter = field(default_factory=Counter)  # (kind, style) -> captions
    lengths: defaultdict = field(default_factory=lambda: defaultdict(Counter))  # (kind, style) -> words -> n
    words: Counter = field(default_factory=Counter)
    vocab: DistinctSketch = field(default_factory=DistinctSketch)
    ngram_totals: Counter = field(default_factory=Counter)  # (style, n) -> n-grams
    distinct: defaultdict = field(default_factory=lambda: defaultdict(DistinctSketch))  # (style, n)
    openings: defaultdict = field(default_factory=lambda: defaultdict(Counter))  # style -> opening -> n
    attr_rows: int = 0
    attr_values: defaultdict = field(default_factory=lambda: defaultdict(Counter))  # slot -> value -> n
    attr_distinct: defaultdict = field(default_factory=lambda: defaultdict(DistinctSketch))
    unknown_slots: Counter = field(default_factory=Counter)  # unknown slots per image -> images
    faith: Counter = field(default_factory=Counter)  # (kind, style, slot, outcome) -> spans
    coverage: Counter = field(default_factory=Counter)  # (kind, style, "known" | "named") -> slots
    scores: Counter = field(default_factory=Counter)  # (kind, style, per-caption faithfulness) -> captions
    unscored: Counter = field(default_factory=Counter)  # (kind, style) -> captions naming no attribute phrase
    repeating: Counter = field(default_factory=Counter)  # (kind, style) -> captions repeating a word (not scored)
    repeating_example: dict = field(default_factory=dict)  # (kind, style) -> one such caption
    label_rows: Counter = field(default_factory=Counter)  # split -> ok rows with attribute_labels
    label_positives: dict = field(default_factory=dict)  # split -> [positives per attribute position]
    truth_rows: int = 0
    truth_table_rows: int = 0  # rows (any status) whose image the --truth table lists
    truth_attr: Counter = field(default_factory=Counter)  # (slot, outcome) -> rows
    truth_spans: Counter = field(default_factory=Counter)  # (kind, style, slot, outcome) -> spans
    samples: list = field(default_factory=list)  # (-hash, key, shard, row): a max-heap of the smallest hashes
    sha256: dict = field(default_factory=dict)  # shard path -> digest (when the pass verifies)

    skipped = False  # read by the progress display, which also shows resumed (skipped) shards of writes

    def merge(self, other: "PartialStats") -> "PartialStats":
        """Fold ``other`` into this one (associative and commutative up to the truncated tails)."""
        for name in ("shards", "rows", "unknown_identity", "attr_rows", "truth_rows", "truth_table_rows"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("status_counts", "reasons", "splits", "sources", "identities", "sizes", "captions_per_image",
                     "caption_groups", "ngram_totals", "unknown_slots", "faith", "coverage", "truth_attr",
                     "truth_spans", "scores", "unscored", "repeating", "label_rows"):
            getattr(self, name).update(getattr(other, name))
        for split, positives in other.label_positives.items():
            mine = self.label_positives.setdefault(split, [0] * len(positives))
            self.label_positives[split] = [a + b for a, b in zip(mine, positives)]
        self.words = merge_top(self.words, other.words, TOP_WORDS)
        self.vocab.merge(other.vocab)
        for k, c in other.lengths.items():
            self.lengths[k].update(c)
        for k, s in other.distinct.items():
            self.distinct[k].merge(s)
        for k, c in other.openings.items():
            self.openings[k] = merge_top(self.openings[k], c, TOP_OPENINGS)
        for k, c in other.attr_values.items():
            self.attr_values[k] = merge_top(self.attr_values[k], c, TOP_VALUES)
        for k, s in other.attr_distinct.items():
            self.attr_distinct[k].merge(s)
        for item in other.samples:
            _offer_sample(self.samples, item)
        self.sha256.update(other.sha256)
        for group, text in other.repeating_example.items():
            self.repeating_example.setdefault(group, text)
        return self


def _offer_sample(heap: list, item: tuple) -> None:
    if len(heap) < SAMPLE_CANDIDATES:
        heapq.heappush(heap, item)
    elif item > heap[0]:  # items are (-hash, ...): larger means a smaller hash
        heapq.heapreplace(heap, item)


def shard_partial(path: str, verify_sha256: bool = False, truth_table: str | None = None) -> PartialStats:
    """Statistics of one shard file (a Dask task: it takes a path and returns a small object).

    ``truth_table``: a truth table's path (``truth.TRUTH_TABLE_NAME``); rows whose ``image_sha256`` it
    lists are scored against it, the others against the ground truth in their ``extra``, if any."""
    part = PartialStats(shards=1)
    table = load_truth_table(truth_table) if truth_table else {}
    grams: defaultdict = defaultdict(set)  # (style, n) -> this shard's distinct n-grams (bounded by the shard)
    row_index = 0
    file = pq.ParquetFile(path)
    columns = [*READ_COLUMNS, *(["attribute_labels"] if "attribute_labels" in file.schema_arrow.names else [])]
    for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=columns):  # (record schema v1 has no labels)
        for row in batch.to_pylist():
            _add_row(part, row, path, row_index, grams, table)
            row_index += 1
    _close_sets(part, grams)
    if verify_sha256:
        from ..writer import file_sha256

        part.sha256[str(path)] = file_sha256(path)
    return part


def _close_sets(part: PartialStats, grams: dict) -> None:
    """Hash the shard's distinct n-grams, words and attribute values into the mergeable sketches."""
    for n in (1, 2):
        everything = set().union(*(g for (style, m), g in grams.items() if m == n))
        part.distinct[("*", n)].update(everything)
        if n == 1:
            part.vocab.update(everything)
    for key, g in grams.items():
        part.distinct[key].update(g)
    for slot, values in part.attr_values.items():
        part.attr_distinct[slot].update(values.keys())  # within a shard the counter is complete


def _add_row(part: PartialStats, row: dict, shard: str, index: int, grams: dict, table: dict) -> None:
    part.rows += 1
    listed = table.get(row["image_sha256"]) if table else None
    part.truth_table_rows += listed is not None
    status = row["status"]
    part.status_counts[status] += 1
    if status != "ok":
        part.reasons[(status, reason_of(status, row["error"]))] += 1
        return
    part.splits[row["split"] or ""] += 1
    part.sources[row["source"] or ""] += 1
    if row["identity"] is not None and row["identity"] >= 0:
        part.identities[row["identity"]] += 1
    else:
        part.unknown_identity += 1
    if row["width"] and row["height"]:
        part.sizes[f"{row['width']}x{row['height']}"] += 1
    _offer_sample(part.samples, (-stable_hash(row["key"]), row["key"], str(shard), index))
    captions = row["captions"] or []
    part.captions_per_image[len(captions)] += 1
    attributes = row["attributes"]
    if attributes is not None:
        _add_attributes(part, attributes)
    labels = row.get("attribute_labels")
    if labels is not None:
        split = row["split"] or ""
        part.label_rows[split] += 1
        counts = part.label_positives.setdefault(split, [0] * len(labels))
        part.label_positives[split] = [c + v for c, v in zip(counts, labels)]
    truth = truth_from(listed) if listed is not None else truth_of(row["extra"])
    if truth is not None:
        part.truth_rows += 1
        for slot in SLOTS:
            part.truth_attr[(slot, truth.attribute_outcome(slot, (attributes or {}).get(slot)))] += 1
    for caption in captions:
        _add_caption(part, caption, attributes, truth, grams)


def _add_attributes(part: PartialStats, attributes: dict) -> None:
    part.attr_rows += 1
    unknown = 0
    for slot in SLOTS:
        value = attributes.get(slot) or UNKNOWN
        unknown += value == UNKNOWN
        part.attr_values[slot][value] += 1
    part.unknown_slots[unknown] += 1


def _add_caption(part: PartialStats, caption: dict, attributes: dict | None, truth, grams: dict) -> None:
    kind, style = caption.get("kind") or "?", caption_style(caption)
    text = caption.get("text") or ""
    ws = words(text)
    part.caption_groups[(kind, style)] += 1
    part.lengths[(kind, style)][len(ws)] += 1
    part.words.update(ws)
    if ws:
        part.openings[style][opening(ws)] += 1
    for n in (1, 2):
        these = ngrams(ws, n) if n > 1 else ws
        part.ngram_totals[(style, n)] += len(these)
        part.ngram_totals[("*", n)] += len(these)
        grams[(style, n)].update(these)
    named, verdicts = set(), []
    for slot, phrase in caption_phrases(text, caption.get("spans")):
        if phrase is None:
            part.faith[(kind, style, slot, "bad_offsets")] += 1
            continue
        if attributes is not None:
            verdicts.append(judge(phrase, attributes.get(slot)))
            part.faith[(kind, style, slot, verdicts[-1])] += 1
            named.add(slot)
        if truth is not None:
            part.truth_spans[(kind, style, slot, truth.span_outcome(slot, phrase))] += 1
    if attributes is not None:
        known = {s for s in SLOTS if (attributes.get(s) or UNKNOWN) != UNKNOWN}
        part.coverage[(kind, style, "known")] += len(known)
        part.coverage[(kind, style, "named")] += len(known & named)
        _add_score(part, (kind, style), text, share_agreeing(verdicts))


def _add_score(part: PartialStats, group: tuple, text: str, score: float | None) -> None:
    """One caption's faithfulness into the distribution; a caption repeating a word like a decoding loop is
    counted apart instead (its few phrases may well agree: it must not read as faithful)."""
    if repeated_word(text):
        part.repeating[group] += 1
        part.repeating_example.setdefault(group, text[:EXAMPLE_CHARS])
    elif score is None:
        part.unscored[group] += 1
    else:
        part.scores[(*group, score)] += 1
