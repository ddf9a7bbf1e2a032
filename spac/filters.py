"""SYNTH-PEDES quality filters (docs/reimplementation.md#synth-pedes-filters): the data distribution
strategy and the seed filter.

Pure functions over small per-image facts (identity, the six attribute phrases, an embedding), so
they are tested on hand-made cases; ``pipelines.filter_job`` runs them over a dataset and writes the
result as a new dataset version. Every decision carries a reason, so nothing is dropped silently:

* ``unknown_slots``: an image with >= 3 of its 6 attributes unknown, or with upper and lower both
  unknown, is a bad image (blocked, blurred or several people);
* ``gender_vote``: within an identity, the most frequent gender relabels every image when its share
  is above 0.7; otherwise the identity is dropped;
* ``balance``: identities with fewer than 5 images are dropped; above 20, a seeded random 20 are kept;
* ``weak_captions`` (ours, off by default): generated and prompt captions whose faithfulness (the share of
  their attribute phrases the row's attributes agree with) is below ``min_faithfulness``; an image left
  with no caption is dropped;
* ``seed_filter`` (App. A.7.2, Algorithm 1): filter-out (sigma_s = 0.6), reassignment to a
  neighbouring identity (sigma_r = 0.65, r_a = 2), merger of neighbouring identities (sigma_m = 0.62,
  r_b = 2) over cosine similarities of image embeddings. Identities are "neighbours" by their order,
  because LUPerson-NL numbers tracklets in time order.
"""
from __future__ import annotations

import collections
import random
import re
from dataclasses import dataclass, field

import numpy as np

from plip_runtime.config import ConfigBase
from synth_pedes.schema import SLOTS, UNKNOWN

from .attributes import AttributeSet


@dataclass(frozen=True)
class FilterConfig(ConfigBase):
    """The filters' thresholds (paper defaults); validated on construction."""

    max_unknown: int = 2  # drop at >= 3 unknown slots of 6
    gender_threshold: float = 0.7
    min_images: int = 5
    max_images: int = 20
    seed: int = 0
    seed_filter: bool = True
    sigma_s: float = 0.6  # filter-out: min similarity to the rest of the identity
    sigma_r: float = 0.65  # reassignment: min similarity to a neighbouring identity's centre
    sigma_m: float = 0.62  # merger: centre-to-centre similarity
    neighbours: int = 2  # r_a = r_b
    # drop generated/prompt captions whose faithfulness (synth_pedes.card.faithfulness) is below this; None: off
    min_faithfulness: float | None = None

    def validate(self) -> None:
        self.require_int("max_unknown", 0, len(SLOTS))
        for name in ("gender_threshold", "sigma_s", "sigma_r", "sigma_m"):
            self.require_number(name, -1, 1)
        self.require_int("min_images", 1)
        self.require_int("max_images", 1)
        self.require("max_images", self.max_images >= self.min_images,
                     f"must be >= FilterConfig.min_images ({self.min_images})")
        self.require_int("seed")
        self.require_bool("seed_filter")
        self.require_int("neighbours", 0)
        self.require_number("min_faithfulness", 0, 1, optional=True)

    def to_record(self) -> dict:
        """The config as manifests record it: ``min_faithfulness`` only when set, so a filter run without it
        records what it recorded before the option existed (and gets the same manifest id)."""
        record = self.to_dict()
        if self.min_faithfulness is None:
            record.pop("min_faithfulness")
        return record


def unknown_slots_reason(attrs: AttributeSet, max_unknown: int = 2) -> str | None:
    """Why an image is bad by its attributes, or None."""
    unknown = [s for s in SLOTS if not attrs.is_known(s)]
    if len(unknown) > max_unknown:
        return f"unknown-slots: {len(unknown)} of {len(SLOTS)} attributes unknown"
    if not attrs.is_known("upper") and not attrs.is_known("lower"):
        return "unknown-slots: upper and lower both unknown"
    return None


_SWAP = {"male": {"woman": "man", "women": "men", "girl": "boy", "girls": "boys", "lady": "gentleman",
                  "ladies": "gentlemen", "female": "male"},
         "female": {"man": "woman", "men": "women", "boy": "girl", "boys": "girls", "gentleman": "lady",
                    "gentlemen": "ladies", "male": "female", "guy": "woman"}}


def relabel_person(person: str, gender: str) -> str:
    """The person phrase with its gender words switched to ``gender`` ("young woman" -> "young man")."""
    if person == UNKNOWN:
        return "man" if gender == "male" else "woman"
    swap = _SWAP[gender]
    return re.sub(r"[A-Za-z]+", lambda m: swap.get(m.group(0).lower(), m.group(0)), person)


_PRONOUNS = {"male": {"she": "he", "her": "his", "hers": "his", "herself": "himself"},
             "female": {"he": "she", "his": "her", "him": "her", "himself": "herself"}}


def _match_case(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


def relabel_caption(caption: dict, gender: str) -> dict:
    """The caption with its gender words and pronouns switched to ``gender``, its spans moved with the text.

    Gender voting relabels an image's person phrase; its captions must say the same, or a caption keeps
    "a young man" under attributes that now say "young woman" (the dataset card counts that as a
    contradiction). "her" becomes "his" (the possessive, by far the commoner use in person captions).
    """
    swap = {**_SWAP[gender], **_PRONOUNS[gender]}
    text, pieces, shift, starts = caption["text"], [], [], []
    last = 0
    for m in re.finditer(r"[A-Za-z]+", text):
        new = swap.get(m.group(0).lower())
        if new is None:
            continue
        pieces += [text[last:m.start()], _match_case(new, m.group(0))]
        starts.append(m.start())
        shift.append(len(new) - len(m.group(0)))
        last = m.end()
    if not starts:
        return caption
    pieces.append(text[last:])

    def moved(pos: int) -> int:  # every replaced word that starts before pos shifts it
        return pos + sum(d for s0, d in zip(starts, shift) if s0 < pos)

    spans = [{**sp, "start": moved(sp["start"]), "end": moved(sp["end"])} for sp in caption.get("spans") or []]
    return {**caption, "text": "".join(pieces), "spans": spans}


@dataclass
class GenderVote:
    gender: str | None  # the identity's gender, None when the vote failed
    share: float
    counts: dict = field(default_factory=dict)


def gender_vote(people: list[str], threshold: float = 0.7) -> GenderVote:
    """The majority gender of an identity's person phrases, when its share exceeds ``threshold``."""
    genders = [AttributeSet(person=p).gender() for p in people]
    counts = collections.Counter(genders)
    known = {g: n for g, n in counts.items() if g != UNKNOWN}
    if not known:
        return GenderVote(None, 0.0, dict(counts))
    best, n = max(sorted(known.items()), key=lambda kv: kv[1])
    share = n / len(genders)
    return GenderVote(best if share > threshold else None, share, dict(counts))


SYNTHETIC_KINDS = ("generated", "prompt")  # the captions --min-faithfulness may drop; human ones are never judged


def weak_captions(captions: list[dict], scores: list[float | None], min_faithfulness: float) -> list[int]:
    """Indices of the synthetic captions whose faithfulness is below ``min_faithfulness`` (a caption naming no
    attribute phrase has no score and is kept: there is nothing in it to contradict)."""
    return [i for i, (caption, score) in enumerate(zip(captions, scores))
            if caption.get("kind") in SYNTHETIC_KINDS and score is not None and score < min_faithfulness]


def balance(keys: list[str], min_images: int, max_images: int, seed: int) -> tuple[list[str], str | None]:
    """The keys an identity keeps, and why the rest go ("identity too small" drops all)."""
    if len(keys) < min_images:
        return [], f"balance: identity has {len(keys)} images, fewer than {min_images}"
    if len(keys) <= max_images:
        return list(keys), None
    kept = sorted(random.Random(f"{seed}:{sorted(keys)[0]}").sample(sorted(keys), max_images))
    return kept, f"balance: identity capped at {max_images} images"


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _leave_one_out_similarity(emb: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample to the centre of the *other* samples of its identity."""
    if len(emb) < 2:
        return np.ones(len(emb))
    others = (emb.sum(0, keepdims=True) - emb) / (len(emb) - 1)  # [n, d]
    return (_normalise(emb) * _normalise(others)).sum(-1)


@dataclass
class SeedFilterResult:
    identity: dict  # key -> final identity (after reassignment and merger)
    excluded: dict  # key -> reason, for samples that could not be reassigned
    reassigned: int = 0
    merged_pairs: list = field(default_factory=list)


def seed_filter(identities: list[int], keys: list[str], embeddings: np.ndarray,
                config: FilterConfig = FilterConfig()) -> SeedFilterResult:
    """Algorithm 1 of the paper over one batch of identities (all samples of each identity present)."""
    emb = _normalise(np.asarray(embeddings, dtype=np.float64))
    order = sorted(set(identities))
    members = {i: [j for j, ident in enumerate(identities) if ident == i] for i in order}
    excluded_from: dict[int, int] = {}  # sample -> identity it was removed from
    for ident in order:  # 1. filter-out: drop the least similar until every sample clears sigma_s
        idx = list(members[ident])
        while len(idx) > 1:
            sims = _leave_one_out_similarity(emb[idx])
            worst = int(np.argmin(sims))
            if sims[worst] >= config.sigma_s:
                break
            excluded_from[idx.pop(worst)] = ident
        members[ident] = idx
    centre = {i: _normalise(emb[m].mean(0)) for i, m in members.items() if m}
    position = {ident: p for p, ident in enumerate(order)}
    result = SeedFilterResult(identity={}, excluded={})
    for sample, ident in sorted(excluded_from.items()):  # 2. reassignment to a neighbouring identity
        p = position[ident]
        near = [order[q] for q in range(max(0, p - config.neighbours), min(len(order), p + config.neighbours + 1))
                if order[q] in centre]
        sims = {n: float(emb[sample] @ centre[n]) for n in near}
        best = max(sorted(sims), key=sims.get) if sims else None
        if best is not None and sims[best] >= config.sigma_r:
            members[best].append(sample)
            result.reassigned += 1
        else:
            result.excluded[keys[sample]] = (f"seed-filter: outlier of identity {ident} (best neighbour similarity "
                                             f"{max(sims.values(), default=float('nan')):.2f} < {config.sigma_r})")
    centre = {i: _normalise(emb[m].mean(0)) for i, m in members.items() if m}
    parent = {i: i for i in order}  # 3. merger: union-find over similar neighbouring centres

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for p, ident in enumerate(order):
        for q in range(p + 1, min(len(order), p + config.neighbours + 1)):
            other = order[q]
            if ident in centre and other in centre and float(centre[ident] @ centre[other]) > config.sigma_m:
                result.merged_pairs.append((ident, other))
                a, b = find(ident), find(other)
                parent[max(a, b)] = min(a, b)
    for ident, m in members.items():
        for sample in m:
            result.identity[keys[sample]] = find(ident)
    return result
