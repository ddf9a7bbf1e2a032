"""Retrieval metrics for text-to-image and image-to-image person re-identification.

``retrieval_metrics(similarity, query_ids, gallery_ids)`` returns CMC R@k, mAP, mINP (all in percent) and
``mAP_official``, the trapezoidal AP of the official PLIP evaluation script (``utils.test_map``, itself the
Market-1501 ``compute_mAP``). Conventions, all deterministic:

* **Ranking.** Each query sorts the gallery by descending score; equal scores are broken by gallery index,
  lower index first. This is the order of a stable sort (``torch.sort(-score, stable=True)``). Scores are compared
  exactly in their own dtype (float16/bfloat16 are widened to float32 first, which keeps every order and tie);
  -0.0 equals 0.0; NaN scores are rejected.
* **Positives.** Gallery items with the query's id. Ranks are 0-based positions in the ranked gallery after
  removing excluded ("junk") items, which are not counted at all, neither as positives nor as negatives.
* **R@k** (CMC): 1 if the first positive is in the top k. **AP**: mean over the positives of precision at each
  positive (IRRA / torchreid / AGW). **INP**: ``num_positives / (rank of the last positive + 1)`` (AGW, IRRA).
* **mAP_official**: for the i-th positive (0-based) at rank r_i, ``precision = (i + 1) / (r_i + 1)``,
  ``old_precision = i / r_i`` (1.0 when r_i == 0), ``ap += (old_precision + precision) / 2 / num_positives``;
  summed over the queries that have a positive and divided by **all** queries, as the official script does.
  Since ``i / r_i <= (i + 1) / (r_i + 1)`` it is never higher than the standard AP (equal when every positive
  directly follows another or sits at rank 0). The official script ranks with an unstable ``np.argsort``, so
  only its order among tied scores can differ from this one.
* **Queries without a positive** (after exclusions) are "invalid". With ``invalid_queries="skip"`` (the default,
  as torchreid / AGW / IRRA-style Market-1501 evaluation) R@k, mAP and mINP average over the valid queries only;
  with ``"zero"`` they count as 0 and the denominator is every query (the official PLIP ``test_map``). In both
  cases ``num_valid_queries`` is reported; when no query is valid the averages are 0.0.
* **Image ReID protocol** (pass ``query_cams`` and ``gallery_cams``): for each query, gallery items with the same id
  **and** the same camera are excluded, and gallery items whose id is in ``junk_ids`` (default ``(-1,)``, the
  Market-1501 junk images) are excluded for every query. Distractors (Market-1501 id 0) are ordinary negatives.

Implementation: queries are processed in chunks of about ``CHUNK_CELLS`` (query, gallery) cells, so memory stays
O(chunk x gallery) beside the similarity itself. Positives come from the gallery grouped by id (no Q x G match
matrix). Excluded items get a NaN score in a per-chunk copy (made only when something is excluded), and NaN is
never ranked. When no query of a chunk has more than ``LOOP_MAX_POSITIVES`` positives, each positive's rank is
counted directly, ``#{score > s} + #{score == s, lower index}``, one vectorised pass per positive and no sort of the
gallery (the equality pass only flags the rare rows with exact ties, which are then counted exactly); otherwise
each row is stable-sorted.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["retrieval_metrics", "similarity_matrix", "format_table", "bench_retrieval"]

# (query, gallery) cells per chunk when chunk_size is None.
CHUNK_CELLS = 1 << 23
# Up to this many positives per query in a chunk, rank by counting (two passes per positive), else by sorting.
LOOP_MAX_POSITIVES = 48
# On CPU, count with numpy (several times faster than torch's bool reductions there); torch elsewhere.
NUMPY_ON_CPU = True
TABLE_COLUMNS = ("R1", "R5", "R10", "mAP", "mINP")


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a tensor, a numpy array or a list, got {type(x).__name__}") from e


def _ids(x, name: str, device: torch.device) -> torch.Tensor:
    t = _as_tensor(x, name)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if t.is_floating_point():
        if not bool((t == t.round()).all()):
            raise ValueError(f"{name} must hold integer ids")
    return t.to(device=device, dtype=torch.int64)


def _score_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype == torch.float64:
        return torch.float64
    if dtype in (torch.float32, torch.float16, torch.bfloat16):
        return torch.float32
    return torch.float64  # integer or bool scores


def _group_gallery(gallery_ids: torch.Tensor):
    """Gallery indices grouped by id (index ascending inside a group): ``order, ids, starts, counts``."""
    order = torch.sort(gallery_ids, stable=True).indices
    ids, counts = torch.unique_consecutive(gallery_ids[order], return_counts=True)
    return order, ids, torch.cumsum(counts, 0) - counts, counts


def _query_groups(query_ids: torch.Tensor, ids: torch.Tensor, starts: torch.Tensor, counts: torch.Tensor):
    """Where each query's positives start in the grouped gallery order, and how many there are."""
    if ids.numel() == 0:
        zero = torch.zeros_like(query_ids)
        return zero, zero
    at = torch.searchsorted(ids, query_ids).clamp_(max=ids.numel() - 1)
    return starts[at], torch.where(ids[at] == query_ids, counts[at], torch.zeros_like(at))


def _sorted_positives(scores: torch.Tensor, row: torch.Tensor, col: torch.Tensor):
    """Positives (listed by row, then gallery index) reordered by (row, score descending, gallery index ascending).

    Returns ``row, col, k`` and ``npos`` (c,): k is the positive's order within its row (0 = best ranked).
    """
    npos = torch.bincount(row, minlength=scores.shape[0])
    s = scores[row, col] + 0.0  # -0.0 -> 0.0 so that the sort agrees with comparisons
    order = torch.sort(s, descending=True, stable=True).indices
    order = order[torch.sort(row[order], stable=True).indices]
    row, col = row[order], col[order]
    k = torch.arange(row.numel(), device=row.device) - (torch.cumsum(npos, 0) - npos)[row]
    return row, col, k, npos


def _count_columns(scores: torch.Tensor, thresholds: torch.Tensor, op: str, before: torch.Tensor | None = None):
    """``out[r, j] = #{g: scores[r, g] <op> thresholds[r, j]}`` for op "gt" or "eq", one pass per column j.

    With ``before`` (same shape as thresholds), only gallery indices g < before[r, j] are counted.
    """
    c, p = thresholds.shape
    if scores.device.type != "cpu" or not NUMPY_ON_CPU:
        cmp = torch.gt if op == "gt" else torch.eq
        gallery = torch.arange(scores.shape[1], device=scores.device)
        cols = []
        for j in range(p):
            hit = cmp(scores, thresholds[:, j:j + 1])
            cols.append((hit if before is None else hit & (gallery < before[:, j:j + 1])).sum(1))
        return torch.stack(cols, 1)
    x, t = scores.numpy(), thresholds.numpy()
    cmp = np.greater if op == "gt" else np.equal
    buf, out = np.empty(x.shape, dtype=bool), np.zeros((c, p), dtype=np.int64)
    if before is not None:
        gallery, b, mask = np.arange(x.shape[1]), before.numpy(), np.empty(x.shape, dtype=bool)
    for j in range(p):
        cmp(x, t[:, j:j + 1], out=buf)
        if before is not None:
            np.less(gallery, b[:, j:j + 1], out=mask)
            buf &= mask
        out[:, j] = buf.view(np.uint8).sum(1, dtype=np.int32)
    return torch.from_numpy(out)


def _positive_ranks(scores: torch.Tensor, row: torch.Tensor, col: torch.Tensor):
    """Rank of every positive of a chunk of queries.

    ``scores`` (c, G) with excluded items set to NaN; ``row``, ``col`` the positives, by row then gallery index.
    Returns flat tensors ``(row, k, rank)`` listed by (row, k), where k is the positive's order among its query's
    positives (0 = best ranked) and rank its 0-based rank among the non-excluded gallery items, plus ``npos`` (c,).
    """
    row, col, k, npos = _sorted_positives(scores, row, col)
    if row.numel() == 0:
        return row, k, row, npos
    pmax = int(npos.max())
    if pmax > LOOP_MAX_POSITIVES:
        pos = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        pos[row, col] = True
        return row, k, _ranks_by_sort(scores, pos), npos
    # rank = #{g: score_g > s} + #{g: score_g == s, g < index}. NaN (excluded items, padding) never compares true.
    kdesc = torch.full((scores.shape[0], pmax), math.nan, dtype=scores.dtype, device=scores.device)
    kdesc[row, k] = scores[row, col]
    rank = _count_columns(scores, kdesc, "gt").to(row.device)
    # Exact ties with a positive's score (other than itself) are rare: fix those rows only.
    tie_rows = (_count_columns(scores, kdesc, "eq").to(row.device) > 1).any(1).nonzero().flatten()
    if tie_rows.numel():
        index = torch.zeros_like(kdesc, dtype=torch.int64)
        index[row, k] = col
        ties = _count_columns(scores[tie_rows], kdesc[tie_rows], "eq", before=index[tie_rows])
        rank[tie_rows] += ties.to(rank.device)
    return row, k, rank[row, k], npos


def _ranks_by_sort(scores: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Ranks of the positives (listed by row, rank) from a full stable sort of each row; for many positives."""
    x = scores + 0.0  # -0.0 -> 0.0; NaN (excluded) is not counted, wherever the sort puts it
    order = torch.sort(x, dim=1, descending=True, stable=True).indices
    kept = ~torch.isnan(x.gather(1, order))
    eff_rank = torch.cumsum(kept, 1) - 1
    return eff_rank[pos.gather(1, order)]


def retrieval_metrics(similarity, query_ids, gallery_ids, *, query_cams=None, gallery_cams=None,
                      junk_ids: Sequence[int] | None = None, ranks: Sequence[int] = (1, 5, 10),
                      invalid_queries: str = "skip", chunk_size: int | None = None, device=None) -> dict:
    """CMC R@k, mAP, mINP and mAP_official (percent) of a (Q, G) similarity matrix (higher = more similar).

    ``query_ids`` (Q,) and ``gallery_ids`` (G,) are integer identities (tensors, arrays or lists). Pass
    ``query_cams`` and ``gallery_cams`` for the image-ReID protocol (same id + same camera excluded; ``junk_ids``,
    default ``(-1,)`` under that protocol and ``()`` otherwise, excluded for every query). ``invalid_queries`` is
    ``"skip"`` or ``"zero"`` (see the module docstring). ``chunk_size`` queries are ranked at a time (default: about
    8M cells per chunk); ``device`` defaults to the similarity's.

    Returns ``{"R1", "R5", "R10", "mAP", "mINP", "mAP_official"}`` as floats in percent plus ``num_queries`` and
    ``num_valid_queries`` as ints.
    """
    if invalid_queries not in ("skip", "zero"):
        raise ValueError(f"invalid_queries must be 'skip' or 'zero', got {invalid_queries!r}")
    sim = _as_tensor(similarity, "similarity").detach()
    if sim.ndim != 2:
        raise ValueError(f"similarity must be a 2-D (queries, gallery) matrix, got shape {tuple(sim.shape)}")
    num_q, num_g = sim.shape
    dev = torch.device(device) if device is not None else sim.device
    qid, gid = _ids(query_ids, "query_ids", dev), _ids(gallery_ids, "gallery_ids", dev)
    if qid.numel() != num_q or gid.numel() != num_g:
        raise ValueError(f"similarity is {num_q} x {num_g} but there are {qid.numel()} query ids and "
                         f"{gid.numel()} gallery ids")
    if (query_cams is None) != (gallery_cams is None):
        raise ValueError("pass both query_cams and gallery_cams, or neither")
    protocol = query_cams is not None
    if protocol:
        qcam, gcam = _ids(query_cams, "query_cams", dev), _ids(gallery_cams, "gallery_cams", dev)
        if qcam.numel() != num_q or gcam.numel() != num_g:
            raise ValueError("query_cams / gallery_cams must have one entry per query / gallery item")
    ranks = sorted({int(r) for r in ranks})
    if not ranks or ranks[0] < 1:
        raise ValueError(f"ranks must be positive integers, got {ranks}")
    junk = tuple(junk_ids) if junk_ids is not None else ((-1,) if protocol else ())
    gallery_junk = torch.isin(gid, torch.tensor(junk, dtype=torch.int64, device=dev)) if junk else None
    junk_cols = gallery_junk.nonzero().flatten() if gallery_junk is not None else None
    dtype = _score_dtype(sim.dtype)
    if chunk_size is None:
        chunk_size = max(1, CHUNK_CELLS // max(num_g, 1))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    gallery_order, *groups = _group_gallery(gid)
    group_start, group_count = _query_groups(qid, *groups)
    rank_t = torch.tensor(ranks, dtype=torch.int64, device=dev)
    hits = torch.zeros(len(ranks), dtype=torch.int64, device=dev)
    sums = torch.zeros(3, dtype=torch.float64, device=dev)  # AP, INP, official AP over valid queries
    num_valid = 0
    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        scores = sim[start:stop].to(device=dev, dtype=dtype)
        if bool(torch.isnan(scores.sum())) and bool(torch.isnan(scores).any()):  # the sum is a cheap pre-check
            raise ValueError(f"similarity has NaN scores (query rows {start}..{stop - 1})")
        # Gallery items with the query's id, by (row, gallery index), then the excluded ones taken out.
        count = group_count[start:stop]
        row = torch.repeat_interleave(torch.arange(stop - start, device=dev), count)
        within = torch.arange(row.numel(), device=dev) - (torch.cumsum(count, 0) - count)[row]
        col = gallery_order[group_start[start:stop][row] + within]
        drop = torch.zeros_like(row, dtype=torch.bool)
        if protocol:
            drop |= gcam[col] == qcam[start + row]
        if gallery_junk is not None:
            drop |= gallery_junk[col]
        if bool(drop.any()) or (junk_cols is not None and junk_cols.numel()):
            scores = scores.clone()  # excluded items get NaN, which is never ranked
            scores[row[drop], col[drop]] = math.nan
            if junk_cols is not None:
                scores[:, junk_cols] = math.nan
            row, col = row[~drop], col[~drop]
        row, k, rank, npos = _positive_ranks(scores, row, col)
        del scores
        num_valid += int((npos > 0).sum())
        if row.numel() == 0:
            continue
        n = npos[row].double()
        kf, rf = k.double(), rank.double()
        first = rank[k == 0]
        hits += (first[:, None] < rank_t[None, :]).sum(0)
        last = k == npos[row] - 1
        old = torch.where(rank > 0, kf / rf.clamp(min=1.0), torch.ones_like(rf))
        sums[0] += ((kf + 1) / (rf + 1) / n).sum()
        sums[1] += (n[last] / (rf[last] + 1)).sum()
        sums[2] += ((old + (kf + 1) / (rf + 1)) / 2 / n).sum()

    denom = num_valid if invalid_queries == "skip" else num_q
    out = {}
    for r, h in zip(ranks, hits.tolist()):
        out[f"R{r}"] = 100.0 * h / denom if denom else 0.0
    s = sums.tolist()
    out["mAP"] = 100.0 * s[0] / denom if denom else 0.0
    out["mINP"] = 100.0 * s[1] / denom if denom else 0.0
    out["mAP_official"] = 100.0 * s[2] / num_q if num_q else 0.0
    out["num_queries"] = int(num_q)
    out["num_valid_queries"] = int(num_valid)
    return out


def similarity_matrix(query_embeddings, gallery_embeddings, chunk_size: int = 4096) -> torch.Tensor:
    """Cosine similarity (Q, G) as the official script computes it: ``x / (||x|| + 1e-12)``, then dot products.

    Float64 inputs stay float64; everything else is computed in float32. ``chunk_size`` query rows per matmul.
    """
    q = _as_tensor(query_embeddings, "query_embeddings")
    g = _as_tensor(gallery_embeddings, "gallery_embeddings")
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"embeddings must be (N, D) with the same D, got {tuple(q.shape)} and {tuple(g.shape)}")
    dtype = torch.float64 if torch.float64 in (q.dtype, g.dtype) else torch.float32
    q, g = q.to(dtype), g.to(device=q.device, dtype=dtype)
    g = g / (g.norm(dim=1, keepdim=True) + 1e-12)
    out = torch.empty((q.shape[0], g.shape[0]), dtype=dtype, device=q.device)
    for start in range(0, q.shape[0], max(1, chunk_size)):
        qc = q[start:start + chunk_size]
        out[start:start + chunk_size] = (qc / (qc.norm(dim=1, keepdim=True) + 1e-12)) @ g.T
    return out


def format_table(results: dict[str, dict], columns: Sequence[str] = TABLE_COLUMNS, digits: int = 2) -> str:
    """An aligned plain-text table: one row per name, one column per metric (missing ones shown as "-")."""
    header = ["", *columns]
    body = [[str(name), *(f"{m[c]:.{digits}f}" if m.get(c) is not None else "-" for c in columns)]
            for name, m in results.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = []
    for r in [header, *body]:
        lines.append("  ".join([r[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(r[1:], widths[1:]))]).rstrip())
    return "\n".join(lines)


class _PeakRSS:
    """Samples this process's resident memory in a thread; ``peak`` and ``start`` in bytes (Linux /proc)."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.start, self.peak = interval, 0, 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> _PeakRSS:
        self.start = self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def bench_retrieval(num_queries: int = 20000, num_gallery: int = 20000, positives_per_query: int = 5,
                    chunk_size: int | None = None, seed: int = 0, device: str | torch.device = "cpu") -> dict:
    """Time ``retrieval_metrics`` on a random float32 similarity with ``positives_per_query`` positives per query,
    computed on ``device`` (the similarity already there, as after encoding on a GPU).

    Returns seconds, queries/s, the similarity's size and the peak memory added while computing (MiB: resident
    memory on the CPU, allocated GPU memory on a GPU).
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    num_ids = max(1, num_gallery // positives_per_query)
    gallery_ids = torch.arange(num_gallery) % num_ids
    query_ids = torch.randint(0, num_ids, (num_queries,), generator=gen)
    sim = torch.rand((num_queries, num_gallery), generator=gen).to(device)
    cuda = device.type == "cuda"
    if cuda:
        retrieval_metrics(sim[:64], query_ids[:64], gallery_ids)  # kernels loaded outside the timed part
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start_gpu = torch.cuda.memory_allocated(device)
    with _PeakRSS() as mem:
        t0 = time.perf_counter()
        res = retrieval_metrics(sim, query_ids, gallery_ids, chunk_size=chunk_size)
        if cuda:
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    extra = (torch.cuda.max_memory_allocated(device) - start_gpu if cuda else mem.peak - mem.start) / 2**20
    return {"num_queries": num_queries, "num_gallery": num_gallery, "positives_per_query": positives_per_query,
            "device": str(device), "seconds": round(seconds, 3), "queries_per_s": round(num_queries / seconds, 1),
            "similarity_mib": round(sim.numel() * sim.element_size() / 2**20, 1),
            "peak_extra_mib": round(extra, 1), "peak_rss_mib": round(mem.peak / 2**20, 1),
            "threads": torch.get_num_threads(), "R1": round(res["R1"], 3), "mAP": round(res["mAP"], 3)}
