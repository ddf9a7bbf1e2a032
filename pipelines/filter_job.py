"""``plip filter``'s job: the paper's quality filters as a new dataset version (parent = the input).

Pass 1 (one Dask task per shard) reads each row's identity, attributes and status, and embeds its
image when the seed filter is on (the encoder loads once per worker), and with ``--min-faithfulness``
which captions fall below it. The decisions are made here, over the whole dataset: seed filter (noisy
identities), unknown-slot rule, caption faithfulness (a row whose every caption is weak is dropped),
gender voting, identity balancing (``spac.filters``). Pass 2 (one task per shard) rewrites each parent shard into the child
shard with the same rows: dropped rows become ``status=filtered`` with the reason (nothing is
lost), identities are reassigned or merged, person phrases relabelled, weak captions removed; the original
values (and removed captions) go to ``extra["filter"]``. Counts per reason go into the manifest's producer.

Memory: pass 1 returns float16 embeddings to the client (~2.5 KB per image with EfficientNet-Lite0),
so one filter run holds ~2.5 GB per million images; larger datasets should filter per part.
"""
from __future__ import annotations

import collections
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow.parquet as pq

from spac.attributes import AttributeSet
from spac.embedding import EmbedderConfig
from spac.filters import (FilterConfig, balance, gender_vote, relabel_caption, relabel_person, seed_filter,
                          unknown_slots_reason, weak_captions)
from synth_pedes.card.faithfulness import captions_faithfulness, row_faithfulness

_EMBEDDERS: dict = {}  # per worker process: the encoder is built once, not per shard


def _embedder(config: EmbedderConfig):
    if config not in _EMBEDDERS:
        from spac.embedding import ImageEmbedder

        _EMBEDDERS[config] = ImageEmbedder(config)
    return _EMBEDDERS[config]


def shard_facts(path: str, embedder: EmbedderConfig | None, min_faithfulness: float | None = None) -> dict:
    """What the decisions need from one shard, read in row-group-sized batches (bounded memory). With
    ``min_faithfulness``, also each row's weak captions and how many captions it has."""
    columns = (["key", "identity", "attributes", "status"] + (["image"] if embedder else [])
               + (["captions", "extra"] if min_faithfulness is not None else []))
    keys, identities, attributes, statuses, embeddings, weak, captions = [], [], [], [], [], [], []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=columns):
        rows = batch.to_pylist()
        keys += [r["key"] for r in rows]
        identities += [r["identity"] for r in rows]
        attributes += [r["attributes"] for r in rows]
        statuses += [r["status"] for r in rows]
        if embedder:
            emb, _ = _embedder(embedder).embed_rows(rows)
            embeddings.append(emb.astype(np.float16))
        if min_faithfulness is not None:
            weak += [_weak_captions(r, min_faithfulness) for r in rows]
            captions += [len(r["captions"] or []) for r in rows]
    return {"keys": keys, "identities": identities, "attributes": attributes, "statuses": statuses,
            "embeddings": np.concatenate(embeddings) if embeddings else None, "weak": weak, "captions": captions}


def _weak_captions(row: dict, min_faithfulness: float) -> list[int]:
    """The row's captions below ``min_faithfulness``, by the scores ``plip synth`` stored, or recomputed from
    the spans for datasets written before it stored them."""
    captions = row["captions"] or []
    scores = row_faithfulness(captions, row["attributes"], json.loads(row["extra"]) if row["extra"] else None)
    return weak_captions(captions, scores, min_faithfulness)


@dataclass
class Decision:
    status: str = "ok"
    reason: str = ""
    identity: int | None = None  # new identity, when it changed
    person: str | None = None  # relabelled person phrase, when it changed


def decide(facts: list[dict], config: FilterConfig) -> tuple[dict[str, Decision], dict[str, list[int]], dict]:
    """Decisions for every row that changes, the weak captions each kept row loses (``--min-faithfulness``),
    and counts by reason."""
    keys = [k for f in facts for k in f["keys"]]
    ident = dict(zip(keys, (i for f in facts for i in f["identities"])))
    attrs = dict(zip(keys, (a for f in facts for a in f["attributes"])))
    status = dict(zip(keys, (s for f in facts for s in f["statuses"])))
    decisions: dict[str, Decision] = {}
    counts: collections.Counter = collections.Counter(rows=len(keys))

    def drop(key: str, reason: str) -> None:
        decisions.setdefault(key, Decision()).status = "filtered"
        decisions[key].reason = reason
        counts[reason.split(":")[0]] += 1

    alive = [k for k in keys if status[k] == "ok"]
    counts["not ok before filtering"] = len(keys) - len(alive)
    if config.seed_filter and facts and facts[0]["embeddings"] is not None:
        emb = np.concatenate([f["embeddings"] for f in facts]).astype(np.float32)
        row = {k: i for i, k in enumerate(keys)}
        labelled = [k for k in alive if ident[k] >= 0]
        res = seed_filter([ident[k] for k in labelled], labelled, emb[[row[k] for k in labelled]], config)
        for k in labelled:
            if k in res.excluded:
                drop(k, res.excluded[k])
            elif res.identity[k] != ident[k]:
                decisions.setdefault(k, Decision()).identity = res.identity[k]
                ident[k] = res.identity[k]
        counts["seed-filter reassigned"] = res.reassigned
        counts["seed-filter merged identity pairs"] = len(res.merged_pairs)
        alive = [k for k in alive if k not in res.excluded]
    weak = _weak_by_key(facts, config)
    survivors = []
    for k in alive:
        reason = unknown_slots_reason(AttributeSet.from_dict(attrs[k] or {}), config.max_unknown) or weak.reason(k)
        if reason:
            drop(k, reason)
        else:
            survivors.append(k)
    by_identity = collections.defaultdict(list)
    for k in survivors:
        by_identity[ident[k]].append(k)
    counts["identity unknown (identity-level steps skipped)"] = len(by_identity.pop(-1, []))
    for identity, members in sorted(by_identity.items()):
        vote = gender_vote([attrs[k]["person"] for k in members], config.gender_threshold)
        if vote.gender is None:
            for k in members:
                drop(k, f"gender-vote: no gender above {config.gender_threshold} in identity {identity} "
                        f"(top share {vote.share:.2f})")
            continue
        for k in members:
            person = attrs[k]["person"]
            if AttributeSet(person=person).gender() != vote.gender:
                decisions.setdefault(k, Decision()).person = relabel_person(person, vote.gender)
                counts["gender-vote relabelled"] += 1
        kept, reason = balance(members, config.min_images, config.max_images, config.seed)
        for k in sorted(set(members) - set(kept)):
            drop(k, f"{reason} (identity {identity})")
    kept = [k for k in keys if status[k] == "ok" and decisions.get(k, Decision()).status == "ok"]
    counts["kept"] = len(kept)
    dropped_captions = {k: weak.indices[k] for k in kept if weak.indices.get(k)}
    if config.min_faithfulness is not None:
        counts["faithfulness captions dropped"] = sum(len(v) for v in dropped_captions.values())
    return decisions, dropped_captions, dict(counts)


@dataclass
class WeakCaptions:
    """``--min-faithfulness`` per row: which captions fall below it, and why a row left with none is dropped."""
    indices: dict  # key -> indices of its weak captions
    captions: dict  # key -> how many captions it has
    threshold: float | None

    def reason(self, key: str) -> str | None:
        weak = self.indices.get(key)
        if weak and len(weak) == self.captions[key]:
            return f"faithfulness: every caption below {self.threshold} ({len(weak)} dropped, none left)"
        return None


def _weak_by_key(facts: list[dict], config: FilterConfig) -> WeakCaptions:
    if config.min_faithfulness is None:
        return WeakCaptions({}, {}, None)
    return WeakCaptions({k: w for f in facts for k, w in zip(f["keys"], f["weak"]) if w},
                        {k: n for f in facts for k, n in zip(f["keys"], f["captions"])}, config.min_faithfulness)


def rewrite_shard(path: str, decisions: dict[str, dict], dropped_captions: dict[str, list[int]] | None = None
                  ) -> list[dict]:
    """The parent shard's rows with the decisions applied (same rows, same order); ``dropped_captions``: the
    weak captions each kept row loses (they go to ``extra["filter"]["dropped_captions"]``)."""
    rows = pq.read_table(path).to_pylist()
    dropped_captions = dropped_captions or {}
    for row in rows:
        d, weak = decisions.get(row["key"]), dropped_captions.get(row["key"])
        if d is None and weak is None:
            continue
        d = d or asdict(Decision())
        extra = json.loads(row["extra"]) if row["extra"] else {}
        extra["filter"] = {"identity": row["identity"], "person": (row["attributes"] or {}).get("person")}
        if weak:
            _drop_captions(row, extra, weak)
        if d["status"] != "ok":
            row["status"], row["error"] = d["status"], d["reason"]
        if d["identity"] is not None:
            row["identity"] = d["identity"]
        if d["person"] is not None:  # the captions must say what the relabelled attributes say
            row["attributes"] = {**row["attributes"], "person": d["person"]}
            gender = AttributeSet(person=d["person"]).gender()
            if gender in ("male", "female"):
                row["captions"] = [relabel_caption(c, gender) for c in row["captions"] or []]
        if "faithfulness" in extra.get("spac", {}):  # the stored scores describe the captions as they now are
            extra["spac"]["faithfulness"] = captions_faithfulness(row["captions"] or [], row["attributes"])
        row["extra"] = json.dumps(extra, sort_keys=True)
    return rows


def _drop_captions(row: dict, extra: dict, weak: list[int]) -> None:
    """Move the weak captions out of ``captions`` into ``extra["filter"]`` (nothing is lost)."""
    captions, weak = row["captions"] or [], set(weak)
    extra["filter"]["dropped_captions"] = [c for i, c in enumerate(captions) if i in weak]
    row["captions"] = [c for i, c in enumerate(captions) if i not in weak]


def _gather(client: Any, tasks: list) -> list:
    """The tasks' results in order, computed on ``client``'s cluster (the first failure raises; no workers for
    ``--worker-timeout`` seconds stops the job instead of a silent wait)."""
    from synth_pedes.futures import as_finished

    futures = client.compute(tasks)
    position = {future.key: i for i, future in enumerate(futures)}
    results = [None] * len(futures)
    for future, ok, value in as_finished(client, futures, what="shards to read"):
        if not ok:
            client.cancel(futures)
            raise value
        results[position[future.key]] = value
    return results


def run_filter(src: Path, out: Path, config: FilterConfig, embedder: EmbedderConfig | None, client: Any = None,
               on_progress: Callable | None = None):
    """Filter the dataset at ``src`` into a new dataset at ``out``; returns (manifest, counts)."""
    import dask
    import dask.bag as db

    from synth_pedes import open_dataset, write_dataset

    parent = open_dataset(src)
    paths = [str(p) for p in parent.shard_paths]
    tasks = [dask.delayed(shard_facts, pure=True)(p, embedder if config.seed_filter else None, config.min_faithfulness)
             for p in paths]
    facts = _gather(client, tasks) if client is not None else dask.compute(*tasks, scheduler="sync")
    decisions, dropped_captions, counts = decide(list(facts), config)
    per_shard = [{k: asdict(decisions[k]) for k in f["keys"] if k in decisions} for f in facts]
    # without --min-faithfulness the shard tasks keep the arguments (and plan fingerprint) they always had
    weak = [(({k: dropped_captions[k] for k in f["keys"] if k in dropped_captions},)
             if config.min_faithfulness is not None else ()) for f in facts]
    bag = db.from_delayed([dask.delayed(rewrite_shard, pure=True)(p, d, *w) for p, d, w in zip(paths, per_shard, weak)])
    producer = {"stage": "filter", "config": {"filter": config.to_record(),
                                              "embedder": asdict(embedder) if embedder else None},
                "counts": counts}
    manifest = write_dataset(bag, out, name=f"{parent.manifest.name}-filtered", kind=parent.manifest.kind,
                             version=parent.manifest.version, parents=[parent.id], producer=producer, client=client,
                             on_progress=on_progress, attribute_names=parent.manifest.attribute_names,
                             description=f"{parent.manifest.name} after the SYNTH-PEDES quality filters.")
    return manifest, counts
