"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017), computed as ``utils/re_ranking.py`` of BoT (``michuanhaohao/reid-strong-baseline``), which is what
BoT's published "+ re-ranking" numbers (``TEST.RE_RANKING: yes``, k1=20, k2=6, lambda=0.3) come from.

Outline, on the (Q + G) x (Q + G) matrix of original distances between all query and gallery samples:

1. each column is divided by its maximum and the matrix transposed, so row i holds the distances of
   sample i divided by the largest of them (for a symmetric distance);
2. for each sample, its k1-reciprocal neighbours R(i, k1) (i is in their top k1 + 1 and they are in i's),
   expanded by the round(k1 / 2)-reciprocal sets of its members that share more than 2/3 with R(i, k1);
3. V[i, j] = exp(-d(i, j)) over that set, normalised to sum 1 (a soft k-reciprocal encoding);
4. local query expansion: V[i] becomes the mean of V over i's top k2 neighbours (when k2 != 1);
5. Jaccard distance 1 - sum(min(V_i, V_j)) / sum(max(V_i, V_j)), computed as 1 - m / (2 - m) with
   m = sum(min) since each row of V sums to 1;
6. final = (1 - lambda) * jaccard + lambda * original, query rows and gallery columns returned.

Precision, kept as BoT for identical numbers: the original distances are float32 (torch's default); V, the
expanded V and the Jaccard accumulator are **float16** (BoT casts them to save memory). The final sum is
float16 * float + float32 = float32. ``v_dtype=np.float32`` keeps them in float32 instead, as the authors'
Python port does (``zhunzhong07/person-re-ranking`` ``python-version/re_ranking_ranklist.py``, "numpy.float16
is replaced by numpy.float32 for numerical precision"); everything else is the same code. Memory is
O((Q + G)^2): the float32 distance plus V, about 6 bytes per pair in float16 (Market-1501: 23,100 samples,
about 3.2 GB), 8 in float32.
"""
from __future__ import annotations

import numpy as np
import torch


def k_reciprocal_rerank(query_features, gallery_features, k1: int = 20, k2: int = 6,
                        lambda_value: float = 0.3, *, v_dtype=np.float16) -> np.ndarray:
    """Re-ranked Q x G distance between ``query_features`` (Q x D) and ``gallery_features`` (G x D), torch
    tensors or arrays. The original distance is the **squared** euclidean distance ``|q|^2 + |g|^2 - 2 q.g``
    in float32, as BoT computes it (no square root, no clamp). BoT L2-normalises the features first
    (``TEST.FEAT_NORM: yes``); do that before calling to reproduce its evaluation."""
    q = torch.as_tensor(query_features).detach().float().cpu()
    g = torch.as_tensor(gallery_features).detach().float().cpu()
    feat = torch.cat([q, g])
    sq = feat.pow(2).sum(dim=1, keepdim=True)
    dist = torch.addmm(sq + sq.t(), feat, feat.t(), beta=1, alpha=-2)
    return _rerank(dist.numpy(), q.size(0), k1, k2, lambda_value, v_dtype)


def k_reciprocal_rerank_distances(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6,
                                  lambda_value: float = 0.3, *, v_dtype=np.float16) -> np.ndarray:
    """The same re-ranking from precomputed distances (Q x G, Q x Q, G x G), the interface of the authors'
    Python port (``re_ranking_ranklist.py``), cast to float32 and used as given. That port squares the
    distances it receives (``np.power(original_dist, 2)``) and BoT ranks by squared euclidean distance, so
    pass squared distances to get their numbers (and ``v_dtype=np.float32`` for the port's)."""
    q_g = np.asarray(q_g_dist, dtype=np.float32)
    full = np.concatenate([np.concatenate([np.asarray(q_q_dist, dtype=np.float32), q_g], axis=1),
                           np.concatenate([q_g.T, np.asarray(g_g_dist, dtype=np.float32)], axis=1)], axis=0)
    return _rerank(full, q_g.shape[0], k1, k2, lambda_value, v_dtype)


def _k_reciprocal(initial_rank: np.ndarray, i: int, k: int) -> np.ndarray:
    """The samples among i's top k + 1 (i itself included) that have i among their own top k + 1."""
    forward = initial_rank[i, :k + 1]
    backward = initial_rank[forward, :k + 1]
    return forward[np.where(backward == i)[0]]


def _rerank(original_dist: np.ndarray, query_num: int, k1: int, k2: int, lambda_value: float,
            v_dtype=np.float16) -> np.ndarray:
    all_num = original_dist.shape[0]
    original_dist = np.transpose(original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(v_dtype)
    # np.argsort's default (quicksort, not stable) as BoT: ties between equal distances break the same way
    initial_rank = np.argsort(original_dist).astype(np.int32)
    half = int(np.around(k1 / 2))  # np.around rounds half to even (k1=5 -> 2), as BoT

    for i in range(all_num):
        k_reciprocal_index = _k_reciprocal(initial_rank, i, k1)
        expansion = k_reciprocal_index
        for candidate in k_reciprocal_index:
            candidate_index = _k_reciprocal(initial_rank, candidate, half)
            # a candidate's own reciprocal set joins when most of it (> 2/3) is already in i's
            if len(np.intersect1d(candidate_index, k_reciprocal_index)) > 2 / 3 * len(candidate_index):
                expansion = np.append(expansion, candidate_index)
        expansion = np.unique(expansion)
        weight = np.exp(-original_dist[i, expansion])
        V[i, expansion] = weight / np.sum(weight)  # float32 values stored in v_dtype (BoT: float16)
    original_dist = original_dist[:query_num]

    if k2 != 1:  # local query expansion over the k2 nearest (self included)
        V_qe = np.zeros_like(V, dtype=v_dtype)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    del initial_rank

    # inverted index: for each sample, the samples whose encoding is non-zero there
    inv_index = [np.where(V[:, j] != 0)[0] for j in range(all_num)]
    jaccard_dist = np.zeros_like(original_dist, dtype=v_dtype)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=v_dtype)  # sum of min(V_i, V_j), accumulated in v_dtype
        non_zero = np.where(V[i, :] != 0)[0]
        for j in non_zero:
            images = inv_index[j]
            temp_min[0, images] = temp_min[0, images] + np.minimum(V[i, j], V[images, j])
        jaccard_dist[i] = 1 - temp_min / (2 - temp_min)

    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]
