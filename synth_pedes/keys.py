"""Every row's key is unique in its dataset (docs/formats.md#columns): find the keys that are not.

Reads only the ``key`` column, one shard at a time, and keeps 8 bytes per row (a 64-bit digest of each key);
a second pass reads back only the keys whose digests repeat, so the answer is exact. Used by the writer
before it finishes a dataset and by ``validate_dataset``.
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq

EXAMPLES = 3  # repeated keys named in a message (all are counted)


@dataclass(frozen=True)
class RepeatedKey:
    key: str
    places: tuple[tuple[str, int], ...]  # (shard path, row in that shard) of every row holding the key

    def __str__(self) -> str:
        return f"{self.key!r} in " + " and ".join(f"{path} row {row}" for path, row in self.places)


def _keys(directory: Path, shard: str) -> list[str]:
    return pq.read_table(directory / shard, columns=["key"]).column("key").to_pylist()


def _digests(keys: list[str]) -> np.ndarray:
    return np.fromiter((int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little")
                        for k in keys), dtype=np.uint64, count=len(keys))


def repeated_keys(directory: str | os.PathLike, shards: Sequence[str]) -> list[RepeatedKey]:
    """The keys held by more than one row of the shards ``shards`` (paths relative to ``directory``)."""
    directory = Path(directory)
    digests = [_digests(_keys(directory, shard)) for shard in shards]
    values, counts = np.unique(np.concatenate(digests or [np.empty(0, np.uint64)]), return_counts=True)
    suspects = values[counts > 1]
    places: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for shard, shard_digests in zip(shards, digests):
        rows = np.flatnonzero(np.isin(shard_digests, suspects)) if len(suspects) else []
        if len(rows):
            keys = _keys(directory, shard)
            for row in rows:
                places[keys[row]].append((shard, int(row)))
    return [RepeatedKey(key, tuple(where)) for key, where in places.items() if len(where) > 1]


def describe_repeats(repeats: Sequence[RepeatedKey]) -> str:
    """'N keys appear more than once, e.g. ...; ... (and M more)': a few examples and the count."""
    if len(repeats) == 1:
        return f"1 key appears more than once: {repeats[0]}"
    more = f" (and {len(repeats) - EXAMPLES} more)" if len(repeats) > EXAMPLES else ""
    return f"{len(repeats)} keys appear more than once, e.g. " + "; ".join(map(str, repeats[:EXAMPLES])) + more
