"""Bounded-memory summaries that merge across shards: distinct counts and truncated counters.

The card is one streaming pass over shards that may hold millions of captions, and the per-shard
summaries are merged on the client, so whatever they hold must stay bounded however big the dataset
is. ``DistinctSketch`` is a k-minimum-values sketch: it keeps the ``k`` smallest 64-bit hashes of the
items seen; the count is *exact* while fewer than ``k`` distinct items were seen (every test and
every small dataset) and an estimate with a relative error of about ``1/sqrt(k)`` (0.4 % at the
default) beyond. Hashes are blake2b, not Python's ``hash``, which differs between worker processes.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from typing import Iterable

import numpy as np

DEFAULT_K = 1 << 16


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process and on every machine."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class DistinctSketch:
    """Number of distinct strings, exact below ``k`` distinct items, estimated above."""

    __slots__ = ("k", "hashes")

    def __init__(self, k: int = DEFAULT_K):
        self.k = k
        self.hashes = np.empty(0, dtype=np.uint64)  # sorted, unique, at most k

    def update(self, items: Iterable[str]) -> "DistinctSketch":
        """Add items; pass a set where you can (each distinct item is hashed once)."""
        new = np.fromiter((stable_hash(s) for s in items), dtype=np.uint64)
        return self._absorb(new)

    def _absorb(self, new: np.ndarray) -> "DistinctSketch":
        if new.size:
            self.hashes = np.union1d(self.hashes, new)[:self.k]
        return self

    def merge(self, other: "DistinctSketch") -> "DistinctSketch":
        return self._absorb(other.hashes)

    @property
    def exact(self) -> bool:
        return self.hashes.size < self.k

    def count(self) -> int:
        if self.exact:
            return int(self.hashes.size)
        kth = float(self.hashes[-1]) / 2.0**64  # the k-th smallest hash, normalised to (0, 1)
        return int(round((self.k - 1) / kth))


def merge_top(a: Counter, b: Counter, keep: int) -> Counter:
    """``a + b`` keeping only the ``keep`` most common entries (counts of the rest are dropped).

    Used for word, opening and attribute-value counts: their heads are what the card reports, and
    a counter of every noise token of a large crawl must not grow without bound."""
    a.update(b)
    if len(a) > keep:
        a = Counter(dict(a.most_common(keep)))
    return a
