"""Few-shot training subsets (docs/evaluation.md#few-shot-subsets): a fraction of the training identities (all
their images), or a fraction of every identity's images, picked by a seeded rule from the data alone, so the same
(dataset, fraction, seed) gives the same subset on any machine and any shard layout. The run writes what it picked
to ``RUN/subset.json``: the identities and the image keys, with a digest, for anyone to reproduce or reuse."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pyarrow.parquet as pq

from ..data import TrainIndex

SUBSET_FORMAT = "plip-subset/1"


def entry_keys(index: TrainIndex) -> np.ndarray:
    """The image key of every index entry (reads the ``key`` column of the row groups the index uses)."""
    keys = np.empty(len(index), dtype=object)
    order = np.lexsort((index.group, index.shard))
    shard, group = index.shard[order], index.group[order]
    bounds = np.flatnonzero(np.diff(shard.astype(np.int64) << 32 | group) != 0) + 1
    for part in np.split(order, bounds):
        if len(part) == 0:
            continue
        s, g = int(index.shard[part[0]]), int(index.group[part[0]])
        column = pq.ParquetFile(index.paths[s]).read_row_group(g, columns=["key"]).column("key").to_pylist()
        keys[part] = [column[r] for r in index.row[part]]
    return keys


def kept_count(total: int, fraction: float) -> int:
    """How many of ``total`` a fraction keeps: rounded, at least one."""
    return max(1, min(total, math.floor(fraction * total + 0.5)))


def choose_subset(index: TrainIndex, fraction: float, of: str, seed: int) -> tuple[np.ndarray, dict]:
    """``(mask over index entries, description)``: identities are chosen among the sorted identity list, images
    among each identity's keys in sorted order, by ``numpy.random.default_rng(seed)``."""
    keys = entry_keys(index)
    rng = np.random.default_rng(seed)
    identities = np.unique(index.identity)
    if of == "identities":
        chosen = np.sort(rng.choice(identities, kept_count(len(identities), fraction), replace=False))
        mask = np.isin(index.identity, chosen)
    else:
        mask = np.zeros(len(index), bool)
        for identity in identities:  # sorted: the draw order is fixed by the data
            mine = np.flatnonzero(index.identity == identity)
            images = np.unique(keys[mine].astype(str))
            picked = rng.choice(images, kept_count(len(images), fraction), replace=False)
            mask[mine[np.isin(keys[mine].astype(str), picked)]] = True
    images = sorted(set(keys[mask].tolist()))
    digest = hashlib.sha256("\n".join(images).encode()).hexdigest()
    doc = {"format": SUBSET_FORMAT, "fraction": fraction, "of": of, "seed": seed,
           "counts": {"identities": int(len(np.unique(index.identity[mask]))), "images": len(images),
                      "entries": int(mask.sum()), "of_identities": int(len(identities)),
                      "of_images": int(len(set(keys.tolist())))},
           "identities": [int(i) for i in np.unique(index.identity[mask])],
           "images_sha256": digest, "images": images}
    return mask, doc


def write_subset(path, doc: dict, dataset, split: str | None) -> None:
    """``subset.json`` for ``split`` of ``dataset`` (its id and name first, so a reader can check it is the same
    data)."""
    body = {"format": doc["format"], "dataset": {"id": dataset.id, "name": dataset.manifest.name}, "split": split,
            **{k: v for k, v in doc.items() if k != "format"}}
    path.write_text(json.dumps(body, indent=1) + "\n")
