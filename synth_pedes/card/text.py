"""Caption text measures: words, n-grams, openings, and whether an attribute phrase agrees with another.

Agreement follows the rule ``spac.captioner.quality`` uses for data without a generator (this package
may not import ``spac``, so the small rule lives here too, built on the same ProcPedes vocabulary):
phrases are compared by their *canonical words* (lower case, synonyms unified: "gray" -> "grey",
"denim pants" -> "jeans", "lady" -> "woman"; determiners, "a pair of" and sleeve details dropped;
order ignored). A phrase agrees *exactly* when its canonical words equal the reference's, and is
*consistent* when one is a less specific wording of the other ("black hair" for "long black hair",
"man" for "young man", "long black skirt" for "black skirt": the detail is unverifiable, not wrong)
and both name the same garment/item type and gender. Anything else contradicts.
"""
from __future__ import annotations

import functools
import re

WORD_RE = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
OPENING_WORDS = 3  # "most frequent openings": the first three words of a caption
_DROP = frozenset({"a", "an", "the", "pair", "pairs", "of", "some", "long-sleeved", "short-sleeved", "sleeveless"})
EXACT, CONSISTENT, CONTRADICT, UNSUPPORTED = "exact", "consistent", "contradict", "unsupported"


def words(text: str) -> list[str]:
    """Lower-case word tokens (hyphenated words and contractions stay one word)."""
    return WORD_RE.findall(text.lower())


def ngrams(ws: list[str], n: int) -> list[str]:
    return [" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1)]


def opening(ws: list[str]) -> str:
    return " ".join(ws[:OPENING_WORDS])


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[list[tuple[re.Pattern, str]], frozenset]:
    """Synonym rewrites (longest written form first) and the type words that must survive a subset."""
    from ..procpedes.vocab import COLOUR_SYNONYMS, HAIR_LENGTH_WORDS, HEADWEAR, PERSON_SYNONYMS, TYPE_SYNONYMS

    table: dict[str, str] = {}
    for group in (COLOUR_SYNONYMS, TYPE_SYNONYMS, PERSON_SYNONYMS, HAIR_LENGTH_WORDS):
        for canon, written in group.items():
            # person phrases stay separate words ("young man" = young + man) so "man" is a subset of it
            joined = canon if group is PERSON_SYNONYMS else canon.replace(" ", "_")
            for w in (canon, *written):
                table[w] = joined
    table.update({"gray": "grey", "plaid": "checked", "tshirt": "t-shirt", "t shirt": "t-shirt",
                  "trouser": "trousers", "pant": "trousers", "sneaker": "sneakers", "jean": "jeans"})
    rewrites = [(re.compile(rf"(?<![\w-]){re.escape(w)}(?![\w-])"), table[w])
                for w in sorted(table, key=len, reverse=True)]
    generic = {"hair", "man", "woman", "shoes", "bag"}  # nouns that also fix what a phrase is about
    types = frozenset({t.replace(" ", "_") for t in TYPE_SYNONYMS} | set(HEADWEAR) | generic)
    return rewrites, types


@functools.lru_cache(maxsize=1 << 16)
def canonical(phrase: str) -> frozenset:
    """The canonical words of an attribute phrase (cached: datasets repeat their phrases a lot)."""
    text = re.sub(r"\s*-\s*", "-", phrase.lower())
    text = " " + " ".join(re.sub(r"[^\w\s-]", " ", text).split()) + " "
    rewrites, _ = _tables()
    for pattern, canon in rewrites:
        if pattern.search(text):
            text = pattern.sub(canon, text)
    return frozenset(w for w in text.split() if w not in _DROP)


@functools.lru_cache(maxsize=1 << 16)
def judge(phrase: str, reference: str | None, unknown: str = "unknown") -> str:
    """How ``phrase`` (a caption's words for one slot) relates to ``reference`` (that slot's value)."""
    if reference is None or reference == unknown:
        return UNSUPPORTED  # the caption names something the record says is not visible
    p, r = canonical(phrase), canonical(reference)
    if p == r:
        return EXACT
    types = _tables()[1]
    if p and r and (p <= r or r <= p) and (p & types) == (r & types):
        return CONSISTENT
    return CONTRADICT
