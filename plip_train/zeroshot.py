"""Zero-shot retrieval evaluation of an embedder on an imported benchmark (the runner; the metric maths is in
:mod:`plip_train.evaluate`).

Two protocols, chosen from the dataset's splits:

* **Text-based person retrieval** (CUHK-PEDES, ICFG-PEDES, RSTPReid, ProcPedes;
  docs/evaluation.md#text-to-image-retrieval): on one split, ``t2i`` ranks the gallery of every ``ok`` image of the
  split for each query, every caption of those images; ``i2t`` swaps the roles (images query, captions gallery);
  ``both`` does both. Ids are the identities. Rows with identity -1 (unknown) stay in the gallery as negatives and
  do not query.
* **Image ReID** (Market-1501 layout: splits ``query`` and ``gallery``, no captions): ``i2i``, every query image
  against the gallery with the Market-1501 protocol: gallery images of the same identity *and* camera are
  excluded, and so are junk images (identity -1); distractors (identity 0) stay as negatives.

Images are streamed from the shards in batches (memory: one batch of image bytes plus the embeddings).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .evaluate import retrieval_metrics, similarity_matrix

DIRECTIONS = ("t2i", "i2t", "both", "i2i")
REID_SPLITS = ("query", "gallery")
# (query, gallery) similarity cells per metric chunk: bounds the similarity matrix in memory (128 MiB of float32).
METRIC_CELLS = 1 << 25


class EvaluationError(ValueError):
    """The dataset cannot be evaluated as asked (wrong split, no captions, no identities); the message says why."""


@dataclass
class _Rows:
    """Metadata of the evaluated images of one split, in shard order."""

    keys: list[str] = field(default_factory=list)
    identities: list[int] = field(default_factory=list)
    cameras: list[str] = field(default_factory=list)
    captions: list[list[str]] = field(default_factory=list)
    skipped: int = 0  # rows of the split whose status is not ok


def _open(dataset):
    if isinstance(dataset, (str, os.PathLike)):
        from synth_pedes import open_dataset

        return open_dataset(dataset)
    return dataset


def _describe_splits(splits: dict) -> str:
    return ", ".join(f"{s} ({n} rows)" for s, n in sorted(splits.items())) or "none"


def resolve_protocol(splits: dict, split: str | None, direction: str | None) -> tuple[str, str, str]:
    """``(mode, split, direction)``: mode ``text`` or ``reid``; ``split`` is the text split, or ``"query+gallery"``.

    ``split=None`` means ``test`` (or query/gallery on Market-1501-style data); ``direction=None`` means ``t2i``
    (``i2i`` on query/gallery data). Raises :class:`EvaluationError` naming the available splits."""
    if direction is not None and direction not in DIRECTIONS:
        raise EvaluationError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    reid_data = all(s in splits for s in REID_SPLITS)
    reid = split in REID_SPLITS or split == "query+gallery" or (
        reid_data and (split is None or (split == "test" and "test" not in splits)))
    if reid:
        if not reid_data:
            raise EvaluationError(f"split {split!r}: image ReID evaluation needs both a 'query' and a 'gallery' "
                                  f"split; this dataset has {_describe_splits(splits)}")
        if direction not in (None, "i2i"):
            raise EvaluationError(f"direction {direction!r} needs captions, but query/gallery splits are an image ReID "
                                  "benchmark (Market-1501 layout, no captions): use --direction i2i, or evaluate "
                                  "text retrieval on a captioned benchmark (CUHK-PEDES, ICFG-PEDES, RSTPReid)")
        return "reid", "query+gallery", "i2i"
    split = split or "test"
    if split not in splits:
        hint = ""
        if reid_data:
            hint = ("; it is an image ReID benchmark (Market-1501 layout): leave --split out (or give query/gallery) "
                    "to evaluate query vs gallery")
        elif set(splits) == {"train", "test"}:
            hint = " (only train and test, like ICFG-PEDES: select checkpoints on another benchmark's val split)"
        raise EvaluationError(f"split {split!r} is not in this dataset; it has {_describe_splits(splits)}{hint}")
    if direction == "i2i":
        raise EvaluationError("direction 'i2i' (image ReID) needs 'query' and 'gallery' splits (Market-1501 "
                              f"layout); this dataset has {_describe_splits(splits)}: use t2i, i2t or both")
    return "text", split, direction or "t2i"


def _scan(dataset, split: str, caption_kinds, batch_size: int, caption_styles=None) -> _Rows:
    """Pass 1 (no image bytes): the split's ok rows, their identities, cameras and caption texts."""
    rows = _Rows()
    kinds = set(caption_kinds) if caption_kinds else None
    styles = set(caption_styles) if caption_styles else None
    for batch in dataset.iter_batches(["key", "identity", "split", "camera", "status", "captions"], batch_size):
        batch = batch.filter(pc.equal(batch.column("split"), split))
        if batch.num_rows == 0:
            continue
        ok = pc.equal(batch.column("status"), "ok")
        rows.skipped += batch.num_rows - int(pc.sum(ok.cast(pa.int64())).as_py() or 0)
        batch = batch.filter(ok)
        rows.keys += batch.column("key").to_pylist()
        rows.identities += batch.column("identity").to_pylist()
        rows.cameras += [c or "" for c in batch.column("camera").to_pylist()]
        for caps in batch.column("captions").to_pylist():
            rows.captions.append([c["text"] for c in caps or [] if (kinds is None or c["kind"] in kinds)
                                  and (styles is None or c.get("style") in styles)])
    return rows


def _embed_images(embedder, dataset, split: str, rows: _Rows, batch_size: int) -> torch.Tensor:
    """Pass 2: the split's ok images, streamed in batches of ``batch_size``, in pass-1 order."""
    out = torch.empty((len(rows.keys), embedder.embed_dim), dtype=torch.float32)
    n = 0
    for batch in dataset.iter_batches(["key", "image"], batch_size, status="ok", split=split):  # its files alone
        if batch.num_rows == 0:
            continue
        keys = batch.column("key").to_pylist()
        if keys != rows.keys[n:n + len(keys)]:
            raise RuntimeError(f"{dataset.directory}: rows changed between the two reading passes (at {keys[0]!r})")
        data = batch.column("image").field("bytes").to_pylist()
        missing = [k for k, b in zip(keys, data) if b is None]
        if missing:
            raise EvaluationError(f"{dataset.directory}: row {missing[0]!r} has status ok but no image bytes")
        out[n:n + len(keys)] = embedder.encode_image(data)
        n += len(keys)
    if n != len(rows.keys):
        raise RuntimeError(f"{dataset.directory}: {len(rows.keys)} rows in pass 1 but {n} images in pass 2")
    return out


def chunked_metrics(query_emb: torch.Tensor, gallery_emb: torch.Tensor, query_ids, gallery_ids, *,
                    query_cams=None, gallery_cams=None, device=None) -> dict:
    """:func:`retrieval_metrics` of the cosine similarities, a chunk of queries at a time (the similarity never
    exceeds ``METRIC_CELLS`` cells). Per-chunk results combine exactly: R@k, mAP and mINP are means over valid
    queries, ``mAP_official`` over all queries."""
    device = torch.device(device) if device is not None else query_emb.device
    g = gallery_emb.to(device)
    qid, gid = torch.as_tensor(query_ids, dtype=torch.int64), torch.as_tensor(gallery_ids, dtype=torch.int64)
    qcam = None if query_cams is None else torch.as_tensor(query_cams, dtype=torch.int64)
    gcam = None if gallery_cams is None else torch.as_tensor(gallery_cams, dtype=torch.int64)
    num_q = query_emb.shape[0]
    step = max(1, METRIC_CELLS // max(1, g.shape[0]))
    parts = []
    for start in range(0, max(num_q, 1), step):
        stop = min(num_q, start + step)
        sim = similarity_matrix(query_emb[start:stop].to(device), g)
        parts.append(retrieval_metrics(sim, qid[start:stop], gid,
                                       query_cams=None if qcam is None else qcam[start:stop], gallery_cams=gcam))
    if len(parts) == 1:
        return parts[0]
    valid = sum(p["num_valid_queries"] for p in parts)
    out = {}
    for key in parts[0]:
        if key in ("num_queries", "num_valid_queries"):
            out[key] = sum(p[key] for p in parts)
        elif key == "mAP_official":
            out[key] = sum(p[key] * p["num_queries"] for p in parts) / max(num_q, 1)
        else:
            out[key] = sum(p[key] * p["num_valid_queries"] for p in parts) / valid if valid else 0.0
    return out


def evaluate_dataset(embedder, dataset, split: str | None = "test", direction: str | None = None, *,
                     caption_kinds: list[str] | None = None, caption_styles: list[str] | None = None,
                     batch_size: int | None = None, device=None, rerank: bool = False) -> dict:
    """Retrieval metrics of ``embedder`` (an :class:`plip_train.embed.Embedder`, or anything with ``embed_dim``,
    ``encode_image(list[bytes])`` and ``encode_text(list[str])`` returning unit-norm (N, D) tensors) on one split of
    ``dataset`` (a ``synth_pedes.Dataset`` or its path). See the module docstring for the protocols.

    ``direction``: t2i | i2t | both | i2i, None = t2i (i2i for query/gallery data). ``caption_kinds``: use only
    captions of these kinds (default: all); ``caption_styles``: of these annotator styles (default: all). Returns ``{"mode", "split", "direction", "protocol", "metrics":
    {direction: retrieval_metrics dict}, "counts", "seconds", "throughput"}``. ``rerank`` (image ReID only): also
    ``"metrics_reranked"``, the same metrics after k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3:
    :mod:`plip_train.rerank`).
    """
    t0 = time.perf_counter()
    dataset = _open(dataset)
    mode, split, direction = resolve_protocol(dict(dataset.manifest.splits), split, direction)
    batch_size = batch_size or getattr(embedder, "batch_size", 128)
    device = device if device is not None else getattr(embedder, "device", None)
    if mode == "reid":
        return _evaluate_reid(embedder, dataset, batch_size, device, t0, rerank)
    if rerank:
        raise EvaluationError("re-ranking is for image ReID (query/gallery splits); text retrieval is reported "
                              "without it")

    rows = _scan(dataset, split, caption_kinds, batch_size, caption_styles)
    where = f"split {split!r} of {dataset.directory}"
    if not rows.keys:
        raise EvaluationError(f"{where}: no row with status ok ({rows.skipped} rows of other status)")
    ids = np.asarray(rows.identities, dtype=np.int64)
    if (ids == -1).all():
        raise EvaluationError(f"{where}: every row has identity -1 (unknown), and retrieval is scored by identity; "
                              "this is an image dataset without identities: evaluate on a benchmark (plip import "
                              "cuhk-pedes|icfg-pedes|rstpreid|market1501, or plip render)")
    cap_texts = [t for caps in rows.captions for t in caps]
    cap_ids = np.repeat(ids, [len(c) for c in rows.captions])
    if not cap_texts:
        kinds = f" of kind {', '.join(caption_kinds)}" if caption_kinds else ""
        kinds += f" of style {', '.join(caption_styles)}" if caption_styles else ""
        raise EvaluationError(f"{where}: no captions{kinds}, so there is nothing to query with ({direction} needs "
                              "captions). For an image ReID benchmark (query/gallery splits, e.g. plip import "
                              "market1501) use --direction i2i; otherwise evaluate on a captioned benchmark "
                              "(CUHK-PEDES, ICFG-PEDES, RSTPReid, ProcPedes)")

    t1 = time.perf_counter()
    img_emb = _embed_images(embedder, dataset, split, rows, batch_size)
    t2 = time.perf_counter()
    txt_emb = embedder.encode_text(cap_texts)
    t3 = time.perf_counter()

    metrics = {}
    known_img, known_cap = ids != -1, cap_ids != -1  # unknown identities never query (they stay as negatives)
    if direction in ("t2i", "both"):
        metrics["t2i"] = chunked_metrics(txt_emb[torch.from_numpy(known_cap)], img_emb, cap_ids[known_cap], ids,
                                         device=device)
    if direction in ("i2t", "both"):
        metrics["i2t"] = chunked_metrics(img_emb[torch.from_numpy(known_img)], txt_emb, ids[known_img], cap_ids,
                                         device=device)
    t4 = time.perf_counter()
    counts = {"images": len(rows.keys), "captions": len(cap_texts), "identities": int(len(set(ids[known_img]))),
              "unknown_identity_images": int((~known_img).sum()), "skipped_rows": rows.skipped}
    return {"mode": "text", "split": split, "direction": direction,
            "protocol": "text-based person retrieval: queries are the split's captions (t2i) or images (i2t), the "
                        "gallery the other modality; positives share the identity; cosine similarity",
            "metrics": metrics, "counts": counts, **_timing(t0, t1, t2, t3, t4, len(rows.keys), len(cap_texts))}


def _timing(t0, t1, t2, t3, t4, n_images, n_captions) -> dict:
    return {"seconds": {"scan": round(t1 - t0, 3), "images": round(t2 - t1, 3), "text": round(t3 - t2, 3),
                        "metrics": round(t4 - t3, 3), "total": round(t4 - t0, 3)},
            "throughput": {"images_per_s": round(n_images / max(t2 - t1, 1e-9), 1),
                           "captions_per_s": round(n_captions / max(t3 - t2, 1e-9), 1) if n_captions else None}}


def _camera_codes(query: list[str], gallery: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Cameras as integers; a missing camera gets a code of its own (it can never be "the same camera")."""
    codes: dict[str, int] = {}
    missing = 0

    def code(cam: str) -> int:
        nonlocal missing
        if not cam:
            missing += 1
            return -missing
        return codes.setdefault(cam, len(codes))

    q = np.asarray([code(c) for c in query], dtype=np.int64)
    g = np.asarray([code(c) for c in gallery], dtype=np.int64)
    return q, g, missing


def _evaluate_reid(embedder, dataset, batch_size: int, device, t0: float, rerank: bool = False) -> dict:
    q_rows = _scan(dataset, "query", None, batch_size)
    g_rows = _scan(dataset, "gallery", None, batch_size)
    where = f"{dataset.directory} (query/gallery)"
    if not q_rows.keys or not g_rows.keys:
        raise EvaluationError(f"{where}: the query split has {len(q_rows.keys)} ok rows and the gallery "
                              f"{len(g_rows.keys)}; both need images")
    qid = np.asarray(q_rows.identities, dtype=np.int64)
    gid = np.asarray(g_rows.identities, dtype=np.int64)
    if (qid == -1).all():
        raise EvaluationError(f"{where}: every query image has identity -1 (unknown); image ReID is scored by "
                              "identity")
    qcam, gcam, missing = _camera_codes(q_rows.cameras, g_rows.cameras)
    t1 = time.perf_counter()
    q_emb = _embed_images(embedder, dataset, "query", q_rows, batch_size)
    g_emb = _embed_images(embedder, dataset, "gallery", g_rows, batch_size)
    t2 = time.perf_counter()
    known = qid != -1  # a junk query (never in Market-1501) has no positives by definition
    metrics = {"i2i": chunked_metrics(q_emb[torch.from_numpy(known)], g_emb, qid[known], gid, query_cams=qcam[known],
                                      gallery_cams=gcam, device=device)}
    extra = {}
    if rerank:  # the standard k-reciprocal re-ranking of the same embeddings (a distance: lower is closer)
        from .evaluate import retrieval_metrics
        from .rerank import k_reciprocal_rerank

        distance = k_reciprocal_rerank(q_emb[torch.from_numpy(known)], g_emb)
        extra["metrics_reranked"] = retrieval_metrics(-torch.from_numpy(distance), qid[known], gid,
                                                      query_cams=qcam[known], gallery_cams=gcam)
    t4 = time.perf_counter()
    n = len(q_rows.keys) + len(g_rows.keys)
    counts = {"query_images": len(q_rows.keys), "gallery_images": len(g_rows.keys),
              "identities": int(len(set(qid[known]))), "junk_gallery_images": int((gid == -1).sum()),
              "distractor_gallery_images": int((gid == 0).sum()), "rows_without_camera": missing,
              "skipped_rows": q_rows.skipped + g_rows.skipped}
    return {"mode": "reid", "split": "query+gallery", "direction": "i2i",
            "protocol": "image ReID (Market-1501): each query against the gallery; gallery images of the same "
                        "identity and camera are excluded, and junk images (identity -1); distractors (identity 0) "
                        "are negatives",
            "metrics": metrics, **extra, "counts": counts, **_timing(t0, t1, t2, t2, t4, n, 0)}


def select_checkpoint(run_dir, dataset, split: str = "val", direction: str | None = None, metric: str = "R1",
                      **load_kwargs) -> dict:
    """Evaluate every complete checkpoint of ``run_dir`` on ``split`` and choose the best by ``metric`` of the first
    direction evaluated (ties: the later step). Returns ``{"split", "direction", "metric", "candidates": [{"step",
    "checkpoint", "metrics"}], "chosen": {...}, "reason"}``. Model selection belongs on a validation split; the
    caller reports the test split for the chosen checkpoint only."""
    from plip_runtime.runs import complete_checkpoints

    from .embed import load

    dataset = _open(dataset)
    _, split, direction = resolve_protocol(dict(dataset.manifest.splits), split, direction)
    paths = complete_checkpoints(run_dir)
    if not paths:
        raise EvaluationError(f"{run_dir}: no complete checkpoint to select from")
    candidates = []
    for path in paths:
        embedder = load(run_dir, checkpoint=path, **load_kwargs)
        res = evaluate_dataset(embedder, dataset, split, direction)
        key = next(iter(res["metrics"]))
        candidates.append({"step": embedder.info["step"], "checkpoint": str(path), "direction": key,
                           "metrics": res["metrics"][key]})
        del embedder
    # best metric; ties go to the later step (candidates are in step order, so max() over (value, index))
    best = max(range(len(candidates)), key=lambda i: (candidates[i]["metrics"][metric], i))
    chosen = candidates[best]
    value = chosen["metrics"][metric]
    tied = [c["step"] for c in candidates if c["metrics"][metric] == value]
    reason = (f"highest {chosen['direction']} {metric} on {split} ({value:.2f}) of {len(candidates)} checkpoint(s)"
              + (f"; tied with step(s) {[s for s in tied if s != chosen['step']]}, the later step wins"
                 if len(tied) > 1 else ""))
    return {"split": split, "direction": direction, "metric": metric, "candidates": candidates,
            "chosen": {"step": chosen["step"], "checkpoint": chosen["checkpoint"]}, "reason": reason}
