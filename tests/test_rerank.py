"""k-reciprocal re-ranking (plip_train.rerank): equal to a transcription of BoT's utils/re_ranking.py
(michuanhaohao/reid-strong-baseline) on random features, to one of the authors' Python port
(zhunzhong07/person-re-ranking python-version/re_ranking_ranklist.py) with float32 V, and a toy case where it
fixes an obvious mistake."""
import numpy as np
import pytest
import torch

from plip_train.rerank import k_reciprocal_rerank, k_reciprocal_rerank_distances


def ref_re_ranking(probFea, galFea, k1, k2, lambda_value, local_distmat=None, only_local=False):
    """BoT's re_ranking, transcribed; ``addmm_(1, -2, a, b)`` written with keywords, the prints left out."""
    query_num = probFea.size(0)
    all_num = query_num + galFea.size(0)
    if only_local:
        original_dist = local_distmat
    else:
        feat = torch.cat([probFea, galFea])
        distmat = torch.pow(feat, 2).sum(dim=1, keepdim=True).expand(all_num, all_num) + \
            torch.pow(feat, 2).sum(dim=1, keepdim=True).expand(all_num, all_num).t()
        distmat.addmm_(feat, feat.t(), beta=1, alpha=-2)
        original_dist = distmat.cpu().numpy()
        del feat
        if local_distmat is not None:
            original_dist = original_dist + local_distmat
    gallery_num = original_dist.shape[0]
    original_dist = np.transpose(original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float16)
    initial_rank = np.argsort(original_dist).astype(np.int32)

    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, :k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, :k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            candidate_forward_k_neigh_index = initial_rank[candidate, :int(np.around(k1 / 2)) + 1]
            candidate_backward_k_neigh_index = initial_rank[candidate_forward_k_neigh_index,
                                                            :int(np.around(k1 / 2)) + 1]
            fi_candidate = np.where(candidate_backward_k_neigh_index == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2 / 3 * len(
                    candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal_index)

        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = weight / np.sum(weight)
    original_dist = original_dist[:query_num, ]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float16)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
        del V_qe
    del initial_rank
    invIndex = []
    for i in range(gallery_num):
        invIndex.append(np.where(V[:, i] != 0)[0])

    jaccard_dist = np.zeros_like(original_dist, dtype=np.float16)

    for i in range(query_num):
        temp_min = np.zeros(shape=[1, gallery_num], dtype=np.float16)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(V[i, indNonZero[j]],
                                                                               V[indImages[j], indNonZero[j]])
        jaccard_dist[i] = 1 - temp_min / (2 - temp_min)

    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    final_dist = final_dist[:query_num, query_num:]
    return final_dist


def ref_zhong_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """The authors' Python port (re_ranking_ranklist.py), transcribed: it squares its input, V in float32."""
    original_dist = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1),
         np.concatenate([q_g_dist.T, g_g_dist], axis=1)],
        axis=0)
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1. * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist).astype(np.int32)

    query_num = q_g_dist.shape[0]
    gallery_num = q_g_dist.shape[0] + q_g_dist.shape[1]
    all_num = gallery_num

    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, :k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, :k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            candidate_forward_k_neigh_index = initial_rank[candidate, :int(np.around(k1 / 2.)) + 1]
            candidate_backward_k_neigh_index = initial_rank[candidate_forward_k_neigh_index,
                                                            :int(np.around(k1 / 2.)) + 1]
            fi_candidate = np.where(candidate_backward_k_neigh_index == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2. / 3 * len(
                    candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal_index)

        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = 1. * weight / np.sum(weight)
    original_dist = original_dist[:query_num, ]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
        del V_qe
    del initial_rank
    invIndex = []
    for i in range(gallery_num):
        invIndex.append(np.where(V[:, i] != 0)[0])

    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)

    for i in range(query_num):
        temp_min = np.zeros(shape=[1, gallery_num], dtype=np.float32)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(V[i, indNonZero[j]],
                                                                               V[indImages[j], indNonZero[j]])
        jaccard_dist[i] = 1 - temp_min / (2. - temp_min)

    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    final_dist = final_dist[:query_num, query_num:]
    return final_dist


def _features(q=7, g=40, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # a few identities so that neighbourhoods have structure, L2-normalised as BoT's evaluation does
    centers = torch.randn(6, d, generator=gen)
    feats = centers[torch.randint(0, 6, (q + g,), generator=gen)] + 0.5 * torch.randn(q + g, d, generator=gen)
    feats = torch.nn.functional.normalize(feats, dim=1)
    return feats[:q], feats[q:]


@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (5, 1, 0.5), (7, 3, 0.0)])
def test_equals_bot_on_random_features(k1, k2, lam):
    qf, gf = _features(seed=k1)
    ours = k_reciprocal_rerank(qf, gf, k1=k1, k2=k2, lambda_value=lam)
    ref = ref_re_ranking(qf, gf, k1, k2, lam)
    assert ours.shape == (7, 40) and ours.dtype == ref.dtype == np.float32
    np.testing.assert_array_equal(ours, ref)
    # numpy input gives the same
    np.testing.assert_array_equal(k_reciprocal_rerank(qf.numpy(), gf.numpy(), k1, k2, lam), ref)


def test_distances_interface_equals_bot_precomputed_path():
    # BoT's own precomputed-distance path (only_local=True) takes the full (Q+G) x (Q+G) matrix
    qf, gf = _features(seed=4)
    feats = torch.cat([qf, gf]).double()
    full = (torch.cdist(feats, feats) ** 2).float().numpy()
    ours = k_reciprocal_rerank_distances(full[:7, 7:], full[:7, :7], full[7:, 7:], k1=20, k2=6, lambda_value=0.3)
    ref = ref_re_ranking(qf, gf, 20, 6, 0.3, local_distmat=full, only_local=True)
    np.testing.assert_array_equal(ours, ref)


def test_toy_case_rerank_fixes_the_nearest_neighbour():
    # Gallery: identity A, four images in a tight square at the origin; a single image d of another person at
    # (1.8, 0.05), whose own four nearest neighbours are identity B's square at x = 2.3..2.4. The query (of A)
    # at (1.0, 0.05) is nearer d (squared distance 0.64) than any image of A (0.81 to 1.0): the plain ranking
    # puts d first. But d does not have the query in its top k1 + 1 = 5 (itself and B's four are nearer), so
    # d is not a k-reciprocal neighbour, while A's images do have the query in theirs: after re-ranking the
    # four images of A come before d.
    square = [(0.0, 0.0), (0.1, 0.0), (0.0, 0.1), (0.1, 0.1)]
    gallery = np.array(square + [(1.8, 0.05)] + [(x + 2.3, y) for x, y in square], dtype=np.float32)
    query = np.array([(1.0, 0.05)], dtype=np.float32)
    raw = ((query[:, None] - gallery[None]) ** 2).sum(-1)
    assert raw.argmin() == 4  # the mistake
    final = k_reciprocal_rerank(query, gallery, k1=4, k2=1, lambda_value=0.3)
    assert final[0, :4].max() < final[0, 4]  # all of A first
    assert set(np.argsort(final[0])[:4]) == {0, 1, 2, 3}


def test_distances_interface_equals_the_authors_port_with_float32():
    qf, gf = _features(seed=5)
    feats = torch.cat([qf, gf]).double()
    dist = torch.cdist(feats, feats).numpy()  # euclidean, float64: the port squares it, then casts to float32
    ref = ref_zhong_re_ranking(dist[:7, 7:], dist[:7, :7], dist[7:, 7:], k1=20, k2=6, lambda_value=0.3)
    sq = dist ** 2
    ours = k_reciprocal_rerank_distances(sq[:7, 7:], sq[:7, :7], sq[7:, 7:], k1=20, k2=6, lambda_value=0.3,
                                         v_dtype=np.float32)
    np.testing.assert_array_equal(ours, ref)
    # BoT's float16 differs from it only by rounding
    bot = k_reciprocal_rerank_distances(sq[:7, 7:], sq[:7, :7], sq[7:, 7:])
    np.testing.assert_allclose(bot, ref, atol=2e-3)
