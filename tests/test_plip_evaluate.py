"""plip_train.evaluate: retrieval metrics on hand-computed cases, against a plain per-query reference, chunking."""
import math
import random

import numpy as np
import pytest
import torch

from plip_train import evaluate
from plip_train.evaluate import bench_retrieval, format_table, retrieval_metrics, similarity_matrix


def approx(x):
    return pytest.approx(x, abs=1e-9)


# --- hand-computed cases --------------------------------------------------------------------------------------------

# Gallery ids [1, 2, 1, 3, 2].
# q0 (id 1): scores [.1 .9 .8 .3 .2] -> order g1 g2 g3 g4 g0; positives g2, g0 at ranks 1, 4.
#   AP = (1/2 + 2/5)/2 = .45; INP = 2/5 = .4;
#   official: (0 + 1/2)/2 = .25 and (1/4 + 2/5)/2 = .325 -> (.25 + .325)/2 = .2875.
# q1 (id 2): scores [.5 .7 .1 .2 .6] -> order g1 g4 g0 g3 g2; positives at ranks 0, 1: AP = INP = official = 1.
# q2 (id 3): scores [.9 .8 .7 .1 .6] -> order g0 g1 g2 g4 g3; positive at rank 4: AP = INP = 1/5;
#   official: (0/4 + 1/5)/2 = .1.
# R1 = 1/3, R2 = 2/3 (q0 at rank 1), R5 = R10 = 1; mAP = (.45 + 1 + .2)/3 = .55; mINP = (.4 + 1 + .2)/3;
# mAP_official = (.2875 + 1 + .1)/3 = .4625.
CASE_A_SIM = [[0.1, 0.9, 0.8, 0.3, 0.2], [0.5, 0.7, 0.1, 0.2, 0.6], [0.9, 0.8, 0.7, 0.1, 0.6]]
CASE_A_Q, CASE_A_G = [1, 2, 3], [1, 2, 1, 3, 2]


def test_three_queries_five_gallery():
    res = retrieval_metrics(torch.tensor(CASE_A_SIM), torch.tensor(CASE_A_Q), torch.tensor(CASE_A_G))
    assert res["R1"] == approx(100 / 3)
    assert res["R5"] == approx(100.0) and res["R10"] == approx(100.0)
    assert res["mAP"] == approx(55.0)
    assert res["mINP"] == approx(160 / 3)
    assert res["mAP_official"] == approx(46.25)
    assert res["num_queries"] == 3 and res["num_valid_queries"] == 3
    assert isinstance(res["num_queries"], int) and isinstance(res["R1"], float)
    assert set(res) == {"R1", "R5", "R10", "mAP", "mINP", "mAP_official", "num_queries", "num_valid_queries"}
    res = retrieval_metrics(torch.tensor(CASE_A_SIM), CASE_A_Q, CASE_A_G, ranks=(2, 1, 3))
    assert [k for k in res if k.startswith("R")] == ["R1", "R2", "R3"]
    assert res["R2"] == approx(200 / 3) and res["R3"] == approx(200 / 3)


def test_numpy_torch_and_list_inputs_agree():
    want = retrieval_metrics(torch.tensor(CASE_A_SIM), torch.tensor(CASE_A_Q), torch.tensor(CASE_A_G))
    for sim, q, g in [(np.array(CASE_A_SIM), np.array(CASE_A_Q), np.array(CASE_A_G)),  # float64 numpy
                      (np.array(CASE_A_SIM, dtype=np.float32), CASE_A_Q, CASE_A_G),
                      (CASE_A_SIM, CASE_A_Q, np.array(CASE_A_G, dtype=np.int32)),
                      (torch.tensor(CASE_A_SIM, dtype=torch.float16), torch.tensor(CASE_A_Q, dtype=torch.int32),
                       torch.tensor(CASE_A_G, dtype=torch.int16))]:
        got = retrieval_metrics(sim, q, g)
        assert got == pytest.approx(want, abs=1e-9)


# Ties: gallery ids [5, 7, 5, 7], scores [.5 .5 .5 .9]; stable order by index among equals: g3 g0 g1 g2.
# q0 (id 5): positives g0, g2 at ranks 1, 3: AP = (1/2 + 2/4)/2 = 1/2; INP = 2/4;
#   official: (0 + 1/2)/2 = 1/4, (1/3 + 2/4)/2 = 5/12 -> (1/4 + 5/12)/2 = 1/3.
# q1 (id 7): positives g3, g1 at ranks 0, 2: AP = (1 + 2/3)/2 = 5/6; INP = 2/3;
#   official: 1 and (1/2 + 2/3)/2 = 7/12 -> (1 + 7/12)/2 = 19/24.
# q2 (id 5), all scores equal [.3 .3 .3 .3]: positives g0, g2 at ranks 0, 2: AP = (1 + 2/3)/2 = 5/6, INP = 2/3, R1 hit.
# q3 (id 7), all scores equal: positives g1, g3 at ranks 1, 3: AP = (1/2 + 2/4)/2 = 1/2, INP = 1/2, R1 miss.
def test_ties_are_broken_by_gallery_index():
    sim = torch.tensor([[0.5, 0.5, 0.5, 0.9], [0.5, 0.5, 0.5, 0.9], [0.3] * 4, [0.3] * 4])
    q, g = torch.tensor([5, 7, 5, 7]), torch.tensor([5, 7, 5, 7])
    for i, (r1, ap, inp, off) in enumerate([(0, 1 / 2, 1 / 2, 1 / 3), (1, 5 / 6, 2 / 3, 19 / 24),
                                            (1, 5 / 6, 2 / 3, None), (0, 1 / 2, 1 / 2, None)]):
        res = retrieval_metrics(sim[i:i + 1], q[i:i + 1], g)
        assert (res["R1"], res["mAP"], res["mINP"]) == (approx(100 * r1), approx(100 * ap), approx(100 * inp))
        if off is not None:
            assert res["mAP_official"] == approx(100 * off)
    # The same order as a stable descending sort (what torch.sort(-score, stable=True) gives).
    assert torch.sort(-sim[0], stable=True).indices.tolist() == [3, 0, 1, 2]
    # -0.0 and 0.0 are equal scores: q (id 1) positive g1 ties with g0 -> rank 1.
    res = retrieval_metrics(torch.tensor([[0.0, -0.0, -1.0]]), [1], [2, 1, 3])
    assert (res["R1"], res["mAP"]) == (0.0, approx(50.0))
    res = retrieval_metrics(torch.tensor([[-0.0, 0.0, -1.0]]), [1], [1, 2, 3])
    assert (res["R1"], res["mAP"]) == (100.0, approx(100.0))
    # float64 scores are compared in float64: 1 and 1 + 1e-12 are not a tie (they would be in float32).
    res = retrieval_metrics(np.array([[1.0, 1.0 + 1e-12]]), [1], [1, 2])
    assert (res["R1"], res["mAP"]) == (0.0, approx(50.0))


# Gallery ids [1, 2], queries id 1 (score .9 on g0 -> rank 0: AP = 1) and id 9 (no positive).
def test_query_without_positive_skip_or_zero():
    sim, q, g = [[0.9, 0.1], [0.2, 0.3]], [1, 9], [1, 2]
    res = retrieval_metrics(sim, q, g)
    assert (res["num_queries"], res["num_valid_queries"]) == (2, 1)
    assert (res["R1"], res["mAP"], res["mINP"]) == (100.0, 100.0, 100.0)
    assert res["mAP_official"] == approx(50.0)  # official script: denominator = all queries
    res = retrieval_metrics(sim, q, g, invalid_queries="zero")
    assert (res["R1"], res["R10"], res["mAP"], res["mINP"], res["mAP_official"]) == (50.0, 50.0, 50.0, 50.0, 50.0)
    res = retrieval_metrics([[0.1, 0.2]], [9], [1, 2])
    assert res["num_valid_queries"] == 0 and res["mAP"] == 0.0 and res["R1"] == 0.0
    with pytest.raises(ValueError, match="invalid_queries"):
        retrieval_metrics(sim, q, g, invalid_queries="drop")


# Market-1501 protocol. Gallery ids [1 1 1 2 -1 0], cams [1 2 2 1 2 2], scores [.99 .5 .3 .6 .95 .4].
# q0 (id 1, cam 1): g0 (same id, same cam) and g4 (junk id -1) are removed; kept order g3 g1 g5 g2 (g5 = id 0 is a
#   distractor, kept as a negative): positives g1, g2 at ranks 1, 3 -> AP = (1/2 + 2/4)/2 = 1/2, INP = 2/4,
#   official 1/3 (as in the ties case).
# q1 (id 2, cam 1): its only positive g3 has the same camera -> invalid.
# Without cameras, q0's order is g0 g4 g3 g1 g5 g2: positives at 0, 3, 5 -> AP = (1 + 2/4 + 3/6)/3 = 2/3.
# With cameras but junk_ids=(): order g4 g3 g1 g5 g2: positives at 2, 4 -> AP = (1/3 + 2/5)/2 = 11/30.
def test_reid_camera_and_junk_exclusion():
    sim = torch.tensor([[0.99, 0.5, 0.3, 0.6, 0.95, 0.4]] * 2)
    q, qc = [1, 2], [1, 1]
    g, gc = [1, 1, 1, 2, -1, 0], [1, 2, 2, 1, 2, 2]
    res = retrieval_metrics(sim, q, g, query_cams=qc, gallery_cams=gc)
    assert sim[0, 0] == 0.99 and sim[1, 4] == 0.95  # the caller's matrix is left alone
    assert (res["num_queries"], res["num_valid_queries"]) == (2, 1)
    assert (res["R1"], res["R5"], res["mAP"], res["mINP"]) == (0.0, 100.0, approx(50.0), approx(50.0))
    assert res["mAP_official"] == approx(100 / 3 / 2)  # 1/3 summed over 1 valid query, divided by 2 queries
    res = retrieval_metrics(sim[:1], q[:1], g)
    assert (res["R1"], res["mAP"]) == (100.0, approx(200 / 3))
    res = retrieval_metrics(sim[:1], q[:1], g, query_cams=qc[:1], gallery_cams=gc, junk_ids=())
    assert res["mAP"] == approx(100 * 11 / 30)
    with pytest.raises(ValueError, match="both"):
        retrieval_metrics(sim, q, g, query_cams=qc)


def test_empty_inputs_and_autograd_tensors():
    res = retrieval_metrics(torch.zeros(0, 5), [], [1, 2, 3, 4, 5])
    assert res["num_queries"] == 0 and res["mAP"] == 0.0
    res = retrieval_metrics(torch.zeros(3, 0), [1, 2, 3], [])
    assert (res["num_queries"], res["num_valid_queries"], res["R1"]) == (3, 0, 0.0)
    sim = torch.tensor(CASE_A_SIM, requires_grad=True) * 1.0
    assert retrieval_metrics(sim, CASE_A_Q, CASE_A_G)["mAP"] == approx(55.0)


def test_input_validation():
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics([[0.1, float("nan")]], [1], [1, 2])
    with pytest.raises(ValueError, match="query ids"):
        retrieval_metrics([[0.1, 0.2]], [1, 2], [1, 2])
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics([0.1, 0.2], [1], [1, 2])
    with pytest.raises(ValueError, match="integer"):
        retrieval_metrics([[0.1, 0.2]], [1.5], [1, 2])


# --- against a plain per-query reference ----------------------------------------------------------------------------

def reference_metrics(sim, q, g, qc=None, gc=None, junk=(), ranks=(1, 5, 10)):
    """Straightforward per-query loop: Python sort by (-score, gallery index), excluded items dropped."""
    per_query, nq = [], len(q)
    for i in range(nq):
        same_cam = [qc is not None and g[j] == q[i] and gc[j] == qc[i] for j in range(len(g))]
        kept = [j for j in range(len(g)) if g[j] not in junk and not same_cam[j]]
        order = sorted(kept, key=lambda j: (-sim[i][j], j))
        hits = [r for r, j in enumerate(order) if g[j] == q[i]]
        if not hits:
            continue
        ap = sum((n + 1) / (r + 1) for n, r in enumerate(hits)) / len(hits)
        off = sum(((n / r if r else 1.0) + (n + 1) / (r + 1)) / 2 for n, r in enumerate(hits)) / len(hits)
        per_query.append((hits[0], ap, len(hits) / (hits[-1] + 1), off))
    nv = len(per_query)
    out = {f"R{k}": 100 * sum(f < k for f, *_ in per_query) / nv for k in ranks}
    out.update(mAP=100 * sum(p[1] for p in per_query) / nv, mINP=100 * sum(p[2] for p in per_query) / nv,
               mAP_official=100 * sum(p[3] for p in per_query) / nq, num_queries=nq, num_valid_queries=nv)
    return out


def random_case(seed, nq=30, ng=40, num_ids=6, decimals=1):
    rng = random.Random(seed)
    sim = [[round(rng.uniform(-1, 1), decimals) for _ in range(ng)] for _ in range(nq)]  # rounding -> many ties
    sim[0][0] = sim[1][1] = -math.inf
    q = [rng.randrange(num_ids + 1) for _ in range(nq)]  # id num_ids is never in the gallery
    g = [rng.randrange(-1, num_ids) for _ in range(ng)]
    qc, gc = [rng.randrange(3) for _ in range(nq)], [rng.randrange(3) for _ in range(ng)]
    return sim, q, g, qc, gc


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("path", ["sort", "count-numpy", "count-torch"])
def test_matches_reference_on_random_cases(seed, path, monkeypatch):
    monkeypatch.setattr(evaluate, "LOOP_MAX_POSITIVES", 0 if path == "sort" else 1000)
    monkeypatch.setattr(evaluate, "NUMPY_ON_CPU", path == "count-numpy")
    sim, q, g, qc, gc = random_case(seed)
    got = retrieval_metrics(torch.tensor(sim, dtype=torch.float64), q, g, chunk_size=7)
    assert got == pytest.approx(reference_metrics(sim, q, g), abs=1e-9)
    got = retrieval_metrics(np.array(sim), q, g, query_cams=qc, gallery_cams=gc, chunk_size=7)
    assert got == pytest.approx(reference_metrics(sim, q, g, qc, gc, junk=(-1,)), abs=1e-9)
    # Few identities -> many positives per query.
    sim, q, g, qc, gc = random_case(seed + 10, num_ids=2, decimals=2)
    got = retrieval_metrics(np.array(sim, dtype=np.float32), q, g, ranks=(1, 3, 20))
    want = reference_metrics(np.array(sim, dtype=np.float32).tolist(), q, g, ranks=(1, 3, 20))
    assert got == pytest.approx(want, abs=1e-9)


def test_chunked_equals_unchunked():
    gen = torch.Generator().manual_seed(0)
    sim = (torch.rand((50, 60), generator=gen) * 20).round()  # integers 0..20: ties everywhere
    q, g = torch.randint(0, 12, (50,), generator=gen), torch.randint(0, 12, (60,), generator=gen)
    qc, gc = torch.randint(0, 4, (50,), generator=gen), torch.randint(0, 4, (60,), generator=gen)
    for kw in ({}, {"query_cams": qc, "gallery_cams": gc}):
        whole = retrieval_metrics(sim, q, g, chunk_size=1000, **kw)
        for chunk_size in (1, 13, None):  # equal up to the order of the floating-point sums
            assert retrieval_metrics(sim, q, g, chunk_size=chunk_size, **kw) == pytest.approx(whole, abs=1e-9)


# --- similarity, table, bench ---------------------------------------------------------------------------------------

def test_similarity_matrix_is_cosine_like_the_official_script():
    q = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    g = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    sim = similarity_matrix(q, g, chunk_size=2)
    # [3, 4] / 5 = [.6, .8]; the zero vector stays zero thanks to the 1e-12 in the denominator.
    assert sim.shape == (3, 2) and sim.dtype == torch.float32
    assert torch.allclose(sim, torch.tensor([[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]]), atol=1e-6)
    assert similarity_matrix(np.ones((2, 3)), np.ones((1, 3))).dtype == torch.float64
    with pytest.raises(ValueError, match="same D"):
        similarity_matrix(torch.ones(2, 3), torch.ones(2, 4))


def test_format_table_aligns_rows():
    text = format_table({"zero-shot": {"R1": 1.5, "R5": 10.0, "R10": 20.25, "mAP": 3.0, "mINP": 0.5},
                         "fine-tuned (ours)": {"R1": 55.123, "R5": 80.0, "R10": 90.0, "mAP": 50.0}})
    lines = text.splitlines()
    assert lines[0].split() == ["R1", "R5", "R10", "mAP", "mINP"]
    assert lines[1].split() == ["zero-shot", "1.50", "10.00", "20.25", "3.00", "0.50"]
    assert lines[2].split()[-2:] == ["50.00", "-"]  # the missing mINP
    assert len({len(line) for line in lines}) == 1


def test_bench_retrieval_small():
    res = bench_retrieval(num_queries=300, num_gallery=500)
    assert res["num_queries"] == 300 and res["seconds"] > 0 and res["queries_per_s"] > 0
    assert 0 <= res["R1"] <= 100 and res["peak_extra_mib"] >= 0
