"""Tests of plip_train.tasks: the three PLIP pretext tasks (docs/reimplementation.md#pretext-tasks).

Expected values are computed here by hand (plain Python / math on 2x2 and 3x3 examples), not with the code under test.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from plip_train.tasks import (
    IAPConfig,
    IVLCConfig,
    NonFiniteLossError,
    PretextTasks,
    TasksConfig,
    TICConfig,
    build_tasks,
    check_finite,
    cmpm_loss,
    mask_attribute_phrases,
    mask_ratio,
    tic_loss,
)
from plip_train.tasks import iap as iap_mod
from plip_train.tasks.iap import AttributePredictor, IAPTask
from plip_train.tasks.ivlc import IVLCTask
from plip_train.tasks.tic import ColorizationDecoder, SEBlockMM, TICTask

EPS = 1e-8
R2 = math.sqrt(2.0)


# ------------------------------------------------------------------------------------------------ hand helpers
def _row_term(logits: list[float], q: list[float]) -> float:
    """sum_j p_j (log p_j - log(q_j + eps)) with p = softmax(logits), in plain Python."""
    m = max(logits)
    z = sum(math.exp(x - m) for x in logits)
    logp = [x - m - math.log(z) for x in logits]
    return sum(math.exp(lp) * (lp - math.log(qj + EPS)) for lp, qj in zip(logp, q))


def _hand_cmpm(s_i2t, s_t2i, q) -> float:
    n = len(q)
    return (sum(_row_term(s_i2t[i], q[i]) for i in range(n)) / n
            + sum(_row_term(s_t2i[i], q[i]) for i in range(n)) / n)


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------------ IVLC
def test_cmpm_two_samples_hand_computed():
    v = _t([[1.0, 0.0], [0.0, 2.0]])
    t = _t([[2.0, 0.0], [0.0, 1.0]])
    # T^ = I, V^ = I  =>  S_i2t = V . T^T = V ; S_t2i = T . V^T = T ; distinct identities => Q = I
    s_i2t = [[1.0, 0.0], [0.0, 2.0]]
    s_t2i = [[2.0, 0.0], [0.0, 1.0]]
    q = [[1.0, 0.0], [0.0, 1.0]]
    expected = _hand_cmpm(s_i2t, s_t2i, q)
    got = cmpm_loss(v, t, torch.tensor([0, 1]))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # spelled out for row 0 of i2t: p = softmax([1, 0]) = [e/(e+1), 1/(e+1)]
    p0 = math.e / (math.e + 1)
    row0 = p0 * (math.log(p0) - math.log(1 + EPS)) + (1 - p0) * (math.log(1 - p0) - math.log(EPS))
    assert _row_term(s_i2t[0], q[0]) == pytest.approx(row0)


def test_cmpm_three_samples_two_share_identity():
    v = _t([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t = _t([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    ids = torch.tensor([3, 3, 8])
    # T^ rows: [1,0], [1/r2, 1/r2], [0,1];  V^ rows: [1,0], [0,1], [1/r2, 1/r2]
    s_i2t = [[1.0, 1 / R2, 0.0],
             [0.0, 1 / R2, 1.0],
             [1.0, R2, 1.0]]
    s_t2i = [[1.0, 0.0, 1 / R2],
             [1.0, 1.0, R2],
             [0.0, 2.0, R2]]
    # rows of the same-identity mask divided by their L2 norm (not their sum)
    q = [[1 / R2, 1 / R2, 0.0],
         [1 / R2, 1 / R2, 0.0],
         [0.0, 0.0, 1.0]]
    expected = _hand_cmpm(s_i2t, s_t2i, q)
    assert cmpm_loss(v, t, ids).item() == pytest.approx(expected, rel=1e-6)
    # identities are compared by value, not position: relabelling gives the same loss
    assert cmpm_loss(v, t, torch.tensor([0, 0, -5])).item() == pytest.approx(expected, rel=1e-6)


def test_cmpm_properties():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(6, 5, generator=g, dtype=torch.float64)
    t = torch.randn(6, 5, generator=g, dtype=torch.float64)
    ids = torch.arange(6)
    base = cmpm_loss(v, t, ids)
    assert base.item() >= -1e-6  # one positive per row: a KL divergence (up to eps)
    assert cmpm_loss(t, v, ids).item() == pytest.approx(base.item(), rel=1e-9)  # modality swap
    perm = torch.randperm(6, generator=g)
    assert cmpm_loss(v[perm], t[perm], ids[perm]).item() == pytest.approx(base.item(), rel=1e-9)
    # perfectly matched with a large norm (the implicit temperature) -> loss close to 0
    big = 50 * torch.eye(3, dtype=torch.float64)
    assert cmpm_loss(big, big, torch.arange(3)).item() < 1e-10
    # gradients finite (also with a zero row and large embeddings)
    v2 = torch.cat([torch.zeros(1, 5, dtype=torch.float64), 1e3 * v[1:]]).requires_grad_(True)
    t2 = t.clone().requires_grad_(True)
    loss = cmpm_loss(v2, t2, torch.tensor([0, 1, 1, 2, 3, 4]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(v2.grad).all() and torch.isfinite(t2.grad).all()


def test_ivlc_task_unknown_identity_error_and_instance_mode():
    v = torch.randn(3, 4)
    t = torch.randn(3, 4)
    task = IVLCTask(mode="identity")
    with pytest.raises(ValueError) as err:
        task(v, t, torch.tensor([5, -1, 5]), keys=["a/0", "b/1", "c/2"])
    msg = str(err.value)
    assert "IVLC needs identities" in msg and "1 of 3 rows have identity -1" in msg and "b/1" in msg
    assert "a/0" not in msg and "tasks.ivlc.mode='instance'" in msg
    with pytest.raises(ValueError, match="IVLC needs identities"):
        task(v, t, None)
    inst = IVLCTask(mode="instance")(v, t, torch.full((3,), -1))
    assert inst["ivlc_loss"].item() == pytest.approx(cmpm_loss(v, t, torch.arange(3)).item(), rel=1e-6)
    assert IVLCTask(mode="instance")(v, t, None)["ivlc_loss"].item() == pytest.approx(inst["ivlc_loss"].item())


def test_ivlc_metrics_and_world_size_one_gather():
    v = 5 * torch.eye(3)
    t = 5 * torch.eye(3)
    t_shuf = t[[1, 0, 2]]
    out = IVLCTask(gather=True)(v, t, torch.tensor([0, 1, 2]))
    assert out["ivlc_i2t_acc"].item() == 1.0 and out["ivlc_t2i_acc"].item() == 1.0
    assert out["ivlc_positives"].item() == 1.0
    out2 = IVLCTask()(v, t_shuf, torch.tensor([0, 1, 2]))  # rows 0, 1 now match the other identity
    assert out2["ivlc_i2t_acc"].item() == pytest.approx(1 / 3)
    out3 = IVLCTask()(v, t_shuf, torch.tensor([7, 7, 2]))  # ... which is their own identity here
    assert out3["ivlc_i2t_acc"].item() == 1.0 and out3["ivlc_positives"].item() == pytest.approx(5 / 3)
    assert not out["ivlc_i2t_acc"].requires_grad
    # not distributed: gather=True is the plain loss
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    ids = torch.tensor([0, 0, 1, 2])
    assert IVLCTask(gather=True)(a, b, ids)["ivlc_loss"].item() == pytest.approx(cmpm_loss(a, b, ids).item())


def _gloo_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(123)
        v_all = torch.randn(4, 6, generator=g, dtype=torch.float64)
        t_all = torch.randn(4, 6, generator=g, dtype=torch.float64)
        ids_all = torch.tensor([0, 2, 0, 1])  # identity 0 on both ranks: a cross-rank positive
        sl = slice(2 * rank, 2 * rank + 2)
        v = v_all[sl].clone().requires_grad_(True)
        t = t_all[sl].clone().requires_grad_(True)
        out = IVLCTask(gather=True)(v, t, ids_all[sl])
        out["ivlc_loss"].backward()
        bad_ids = ids_all[sl].clone()
        if rank == 1:
            bad_ids[0] = -1
        try:
            IVLCTask(gather=True)(v.detach(), t.detach(), bad_ids, keys=[f"r{rank}a", f"r{rank}b"])
            raised = ""
        except ValueError as e:  # must raise on every rank (checked on the gathered ids), not hang
            raised = str(e)
        n = 2 if rank == 0 else 1  # unequal local batches: a clear error on every rank, not a hang
        try:
            IVLCTask(gather=True)(v[:n].detach(), t[:n].detach(), ids_all[sl][:n])
            unequal = ""
        except ValueError as e:
            unequal = str(e)
        torch.save({"loss": out["ivlc_loss"].item(), "gv": v.grad, "gt": t.grad, "unequal": unequal,
                    "acc": out["ivlc_i2t_acc"].item(), "raised": raised}, os.path.join(out_dir, f"r{rank}.pt"))
        dist.barrier()  # neither rank tears gloo down while the other still uses it (seen once: both aborted)
    finally:
        dist.destroy_process_group()


def test_ivlc_gather_two_gloo_processes(tmp_path):
    import torch.multiprocessing as mp

    world = 2
    ctx = mp.spawn(_gloo_worker, args=(world, str(tmp_path / "rdv"), str(tmp_path)), nprocs=world, join=False)
    deadline = time.monotonic() + 60
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("gloo workers did not finish in 60 s")
    g = torch.Generator().manual_seed(123)
    v_all = torch.randn(4, 6, generator=g, dtype=torch.float64).requires_grad_(True)
    t_all = torch.randn(4, 6, generator=g, dtype=torch.float64).requires_grad_(True)
    ids_all = torch.tensor([0, 2, 0, 1])
    ref = cmpm_loss(v_all, t_all, ids_all)
    ref.backward()
    for rank in range(world):
        r = torch.load(tmp_path / f"r{rank}.pt", weights_only=True)
        assert r["loss"] == pytest.approx(ref.item(), rel=1e-9)  # the loss is over the global batch
        sl = slice(2 * rank, 2 * rank + 2)
        # all-gather backward sums the world's identical losses: world x the global gradient, which DDP's
        # gradient averaging divides back
        torch.testing.assert_close(r["gv"] / world, v_all.grad[sl])
        torch.testing.assert_close(r["gt"] / world, t_all.grad[sl])
        assert "1 of 4 rows have identity -1" in r["raised"]
        assert "same batch size" in r["unequal"] and "[2, 1]" in r["unequal"]
    assert "r1a" in torch.load(tmp_path / "r1.pt", weights_only=True)["raised"]


# ------------------------------------------------------------------------------------------------------- TIC
def test_tic_loss_hand_computed():
    pred = torch.zeros(2, 3, 1, 2)
    target = torch.zeros(2, 3, 1, 2)
    target[0, 0, 0, 0] = 3.0
    target[0, 2, 0, 1] = -4.0  # image 0: distance sqrt(9 + 16) = 5
    target[1] = 1.0  # image 1: six values of 1 -> sqrt(6)
    assert tic_loss(pred, target).item() == pytest.approx((5.0 + math.sqrt(6.0)) / 2, rel=1e-6)
    # not a per-pixel MSE: scales with the square root of the number of values
    assert tic_loss(torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)).item() == pytest.approx(math.sqrt(48))
    x = torch.randn(2, 3, 2, 2, requires_grad=True)
    tic_loss(x, x.detach()).backward()  # zero distance: gradient finite (0)
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="differ"):
        tic_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 3))


MRN_CHANNELS = (256, 512, 1024, 2048)


def _features(b, h, w, channels=MRN_CHANNELS, ceil=False):
    rnd = math.ceil if ceil else (lambda x: int(x))
    return [torch.randn(b, c, rnd(h / s), rnd(w / s)) for c, s in zip(channels, (4, 8, 16, 32))]


@pytest.mark.parametrize("h,w", [(64, 32), (256, 128)])
def test_decoder_output_matches_input_resolution(h, w):
    torch.manual_seed(0)
    dec = ColorizationDecoder(MRN_CHANNELS, text_dim=8, fpn_dim=4)
    assert dec.se1.fc1.in_features == 4 * 4 + 8 and dec.deconv1.in_channels == 16
    out = dec(_features(2, h, w), torch.randn(2, 8))
    assert out.shape == (2, 3, h, w)  # 4x the stride-4 map, no resize needed


def test_decoder_resizes_when_strides_do_not_divide():
    dec = ColorizationDecoder((8, 8, 8, 8), text_dim=4, fpn_dim=2)
    feats = _features(1, 70, 30, channels=(8, 8, 8, 8), ceil=True)  # 18x8, 9x4, 5x2, 3x1
    out = TICTask((8, 8, 8, 8), 4, 2)(feats, torch.randn(1, 4), torch.zeros(1, 3, 70, 30))
    assert dec(feats, torch.randn(1, 4), output_size=(70, 30)).shape == (1, 3, 70, 30)
    assert out["tic_loss"].ndim == 0 and out["tic_mse"].ndim == 0


def test_se_block_gate():
    torch.manual_seed(0)
    se = SEBlockMM(3, 2)
    f = torch.randn(2, 3, 4, 4)
    t1, t2 = torch.randn(2, 2), torch.randn(2, 2)
    gate = se.gate(f, t1)
    assert gate.shape == (2, 3) and bool(((gate > 0) & (gate < 1)).all())
    torch.testing.assert_close(se(f, t1), f * gate[:, :, None, None])
    assert not torch.allclose(se(f, t1), se(f, t2))  # the text modulates the features
    with torch.no_grad():  # zero weights and biases: sigmoid(0) = 0.5 exactly
        for fc in (se.fc1, se.fc2):
            fc.weight.zero_()
            fc.bias.zero_()
    torch.testing.assert_close(se(f, t1), 0.5 * f)
    with torch.no_grad():  # only fc2's bias: gate = sigmoid(b) per channel, b = [0, ln 3, -ln 3]
        se.fc2.bias.copy_(torch.tensor([0.0, math.log(3.0), -math.log(3.0)]))
    torch.testing.assert_close(se.gate(f, t1), torch.tensor([[0.5, 0.75, 0.25]] * 2))


def test_tic_task_gradients_reach_text_and_features():
    feats = [x.requires_grad_(True) for x in _features(2, 32, 16, channels=(4, 4, 8, 8), ceil=True)]
    text = torch.randn(2, 6, requires_grad=True)
    out = TICTask((4, 4, 8, 8), 6, 3)(feats, text, torch.randn(2, 3, 32, 16))
    out["tic_loss"].backward()
    assert text.grad is not None and text.grad.abs().sum() > 0
    assert all(f.grad is not None for f in feats)
    assert not out["tic_mse"].requires_grad


# ------------------------------------------------------------------------------------------------------- IAP
def test_mask_ratio_curves():
    assert mask_ratio(0.0, 0.2, 0.8, "sqrt") == pytest.approx(0.2)
    assert mask_ratio(0.25, 0.2, 0.8, "sqrt") == pytest.approx(0.5)  # 0.5 * 0.6 + 0.2
    assert mask_ratio(1.0, 0.2, 0.8, "sqrt") == pytest.approx(0.8)
    assert mask_ratio(0.25, 0.2, 0.8, "linear") == pytest.approx(0.35)
    assert mask_ratio(0.5, 0.2, 0.8, "square") == pytest.approx(0.35)
    assert mask_ratio(0.7, 0.2, 0.8, "constant") == pytest.approx(0.2)
    assert mask_ratio(1.5, 0.2, 0.8, "sqrt") == pytest.approx(0.8)  # clamped
    with pytest.raises(ValueError, match="curve"):
        mask_ratio(0.5, 0.2, 0.8, "cubic")


CLS, SEP, PAD, MASK, UNK = 1, 2, 0, 4, 3
SPECIAL = (PAD, CLS, SEP, UNK, MASK)


def _caption_batch():
    # caption 0: 3 phrases ; caption 1: 1 phrase ; caption 2: 4 phrases ; caption 3: no phrase (dataset without spans)
    ids = torch.tensor([
        [CLS, 10, 11, 12, 13, 14, 15, 16, 17, 18, SEP, PAD],
        [CLS, 20, 21, 22, 23, SEP, PAD, PAD, PAD, PAD, PAD, PAD],
        [CLS, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, SEP],
        [CLS, 40, 41, 42, 43, 44, SEP, PAD, PAD, PAD, PAD, PAD],
    ])
    pi = torch.tensor([
        [-1, 0, 0, -1, 1, 1, 1, -1, 2, 2, -1, -1],
        [-1, -1, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1],
        [-1, 0, -1, 1, 1, -1, 2, -1, 3, 3, 3, -1],
        [-1] * 12,
    ])
    am = (ids != PAD).long()
    return ids, am, pi


def _masked_phrases(labels_row, pi_row):
    """The set of phrases with masked tokens, asserting that each is masked completely."""
    masked = labels_row != -100
    phrases = set(pi_row[masked].tolist())
    for p in phrases:
        assert p >= 0, "a token outside any phrase was masked"
        assert bool(masked[pi_row == p].all()), f"phrase {p} only partly masked"
    return phrases


def test_mask_attribute_phrases_whole_phrases_and_counts():
    ids, am, pi = _caption_batch()
    g = torch.Generator().manual_seed(0)
    # ratio 0.5: round_half_up(1.5) = 2 of 3 ; round_half_up(0.5) = 1 of 1 ; 2 of 4
    masked, labels = mask_attribute_phrases(ids[:3], am[:3], pi[:3], 0.5, MASK, SPECIAL, g)
    for row, expected in zip(range(3), (2, 1, 2)):
        assert len(_masked_phrases(labels[row], pi[row])) == expected
    sel = labels != -100
    assert torch.equal(labels[sel], ids[:3][sel])  # original ids at the masked positions
    assert bool((masked[sel] == MASK).all()) and torch.equal(masked[~sel], ids[:3][~sel])
    # ratio 0.2: 0.6 -> 1 ; 0.2 -> 0 but at least 1 ; 0.8 -> 1
    _, labels = mask_attribute_phrases(ids[:3], am[:3], pi[:3], 0.2, MASK, SPECIAL, g)
    assert [len(_masked_phrases(labels[r], pi[r])) for r in range(3)] == [1, 1, 1]
    # ratio 0.8: 2.4 -> 2 ; 0.8 -> 1 ; 3.2 -> 3 ; ratio 1: everything ; ratio 0: nothing
    _, labels = mask_attribute_phrases(ids[:3], am[:3], pi[:3], 0.8, MASK, SPECIAL, g)
    assert [len(_masked_phrases(labels[r], pi[r])) for r in range(3)] == [2, 1, 3]
    _, labels = mask_attribute_phrases(ids[:3], am[:3], pi[:3], 1.0, MASK, SPECIAL, g)
    assert torch.equal(labels != -100, pi[:3] >= 0)
    _, labels = mask_attribute_phrases(ids[:3], am[:3], pi[:3], 0.0, MASK, SPECIAL, g)
    assert bool((labels == -100).all())


def test_mask_attribute_phrases_deterministic_and_uniform():
    ids, am, pi = _caption_batch()

    def run(seed):
        return mask_attribute_phrases(ids[:3], am[:3], pi[:3], 0.5, MASK, SPECIAL,
                                      torch.Generator().manual_seed(seed))

    a, b = run(7), run(7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    seen = Counter(frozenset(_masked_phrases(run(s)[1][0], pi[0])) for s in range(60))
    assert len(seen) == 3  # all 3 pairs of the 3 phrases of caption 0 occur


def test_mask_fallback_random_words_warns_once(caplog):
    ids, am, pi = _caption_batch()
    g = torch.Generator().manual_seed(0)
    stats = {}
    once = iap_mod.WarnOnce()  # what a PretextTasks holds for its run
    with caplog.at_level(logging.WARNING, logger="plip_train.tasks.iap"):
        masked, labels = mask_attribute_phrases(ids, am, pi, 0.5, MASK, SPECIAL, g, stats=stats, warn_once=once)
        mask_attribute_phrases(ids, am, pi, 0.5, MASK, SPECIAL, g, warn_once=once)
    warnings = [r for r in caplog.records if "random words" in r.getMessage()]
    assert len(warnings) == 1 and "on_missing_spans" in warnings[0].getMessage()
    assert stats["fallback_captions"] == 1
    sel = labels[3] != -100
    # caption 3 has 5 ordinary tokens (40..44): round_half_up(2.5) = 3, never CLS/SEP/PAD
    assert int(sel.sum()) == 3 and set(ids[3][sel].tolist()) <= {40, 41, 42, 43, 44}
    assert bool((masked[3][sel] == MASK).all())
    assert len(_masked_phrases(labels[0], pi[0])) == 2  # captions with phrases unaffected


def test_mask_fallback_skip_and_error():
    ids, am, pi = _caption_batch()
    g = torch.Generator().manual_seed(0)
    _, labels = mask_attribute_phrases(ids, am, pi, 0.5, MASK, SPECIAL, g, on_missing="skip")
    assert bool((labels[3] == -100).all()) and int((labels[:3] != -100).sum()) > 0
    with pytest.raises(ValueError) as err:
        mask_attribute_phrases(ids, am, pi, 0.5, MASK, SPECIAL, g, on_missing="error",
                               keys=["k0", "k1", "k2", "k3"])
    msg = str(err.value)
    assert "1 of 4 captions" in msg and "k3" in msg and "k0" not in msg and "on_missing_spans" in msg


def _layer_norm(x):
    m = sum(x) / len(x)
    var = sum((a - m) ** 2 for a in x) / len(x)
    return [(a - m) / math.sqrt(var + 1e-5) for a in x]


def test_iap_loss_hand_computed_cross_entropy():
    pred_task = IAPTask(dim=2, vocab_size=3, heads=1, layers=1)
    p = pred_task.predictor
    w = [[1.0, 2.0], [0.0, -1.0], [3.0, 0.0]]
    bias = [0.1, 0.2, 0.3]
    with torch.no_grad():  # make the block the identity (residual branches output 0): logits = head(LN(h + v))
        blk = p.blocks[0]
        for mod in (blk.attn.out_proj, blk.mlp[2]):
            mod.weight.zero_()
            mod.bias.zero_()
        p.head.weight.copy_(torch.tensor(w))
        p.head.bias.copy_(torch.tensor(bias))
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])
    image = torch.tensor([[0.5, -0.5]])
    labels = torch.tensor([[-100, 2, 0]])
    expected = []
    for pos, target in ((1, 2), (2, 0)):
        x = [hidden[0, pos, k].item() + image[0, k].item() for k in range(2)]
        n = _layer_norm(x)
        logits = [w[c][0] * n[0] + w[c][1] * n[1] + bias[c] for c in range(3)]
        expected.append(-(logits[target] - math.log(sum(math.exp(z) for z in logits))))
    out = pred_task(hidden, image, labels)
    assert out["iap_loss"].item() == pytest.approx(sum(expected) / 2, rel=1e-5)
    assert out["iap_masked_tokens"].item() == 2
    # position 1: x = [0.5, 0.5] -> LN = [0, 0] -> logits = bias -> argmax 2 = target ; position 2: LN = [~1, ~-1]
    # -> logits [-0.9, 1.2, 3.3] -> argmax 2 != 0
    assert out["iap_acc"].item() == pytest.approx(0.5)


def test_iap_image_added_to_every_token():
    torch.manual_seed(0)
    p = AttributePredictor(dim=8, vocab_size=11, heads=2, mlp_ratio=4, layers=1)
    hidden = torch.randn(2, 5, 8)
    img1, img2 = torch.randn(2, 8), torch.randn(2, 8)
    l1, l2 = p(hidden, img1), p(hidden, img2)
    assert l1.shape == (2, 5, 11)
    assert bool(((l1 - l2).abs().amax(dim=-1) > 1e-6).all())  # every position of every caption changes
    l3 = p(hidden, torch.cat([img1[:1], img2[1:]]))
    torch.testing.assert_close(l3[0], l1[0])  # ... and only through its own caption's image
    sel = torch.zeros(2, 5, dtype=torch.bool)
    sel[1, 3] = True
    torch.testing.assert_close(p(hidden, img1, select=sel), l1[1, 3][None])
    # masked mean of the MLP: hidden 32 = 8 * 4 ; default heads: largest of 12..1 dividing the dim
    assert p.blocks[0].mlp[0].out_features == 32
    assert AttributePredictor(768, 5).blocks[0].attn.num_heads == 12
    assert AttributePredictor(20, 5).blocks[0].attn.num_heads == 10
    with pytest.raises(ValueError, match="heads=3 must divide"):
        AttributePredictor(8, 5, heads=3)


def test_iap_no_masked_tokens_gives_zero_loss_with_graph():
    task = IAPTask(dim=4, vocab_size=5, heads=2)
    hidden = torch.randn(2, 3, 4, requires_grad=True)
    out = task(hidden, torch.randn(2, 4), torch.full((2, 3), -100))
    assert out["iap_loss"].item() == 0.0 and out["iap_masked_tokens"].item() == 0
    out["iap_loss"].backward()


# ---------------------------------------------------------------------------------------- PretextTasks / config
class FakeModel(nn.Module):
    """Exactly the interface PretextTasks uses; counts its calls."""

    def __init__(self, dim=16, vocab=50):
        super().__init__()
        self.embed_dim = dim
        chans = (4, 8, 8, 16)
        self.image_tower = SimpleNamespace(feature_channels=chans)
        self.text_tower = SimpleNamespace(hidden_size=dim, vocab_size=vocab)
        self.stem = nn.Conv2d(3, chans[0], 3, stride=4, padding=1)
        self.stages = nn.ModuleList([nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(chans, chans[1:])])
        self.img_proj = nn.Linear(chans[-1], dim)
        self.emb = nn.Embedding(vocab, dim)
        self.txt = nn.Linear(dim, dim)
        self.calls = Counter()
        self.seen = {}

    def _features(self, images):
        x = self.stem(images)
        feats = [x]
        for s in self.stages:
            x = s(torch.relu(x))
            feats.append(x)
        return feats

    def image_features(self, images):
        self.calls["image_features"] += 1
        self.seen["image_features"] = images
        return self._features(images)

    def encode_image(self, images):
        self.calls["encode_image"] += 1
        self.seen["encode_image"] = images
        return self.img_proj(self._features(images)[-1].amax(dim=(2, 3)))

    def _text(self, ids, mask):
        hidden = self.txt(self.emb(ids))
        m = mask.unsqueeze(-1).float()
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1), hidden

    def encode_text(self, ids, mask):
        self.calls["encode_text"] += 1
        return self._text(ids, mask)[0]

    def text_forward(self, ids, mask):
        self.calls["text_forward"] += 1
        self.seen["text_forward"] = ids
        return self._text(ids, mask)


def _batch(b=4, h=32, w=16):
    ids, am, pi = _caption_batch()
    g = torch.Generator().manual_seed(5)
    images = torch.randn(b, 3, h, w, generator=g)
    gray = images.mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    return {"images": images, "gray": gray, "identities": torch.tensor([0, 0, 1, 2]),
            "input_ids": ids, "attention_mask": am, "phrase_index": pi, "keys": [f"rec{i}" for i in range(b)]}


def _cfg(**sections):
    base = {"iap": {"heads": 2}}
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return TasksConfig.from_dict(base)


def test_pretext_tasks_all_enabled_weighted_sum():
    torch.manual_seed(0)
    model = FakeModel()
    tasks = PretextTasks(_cfg(iap={"on_missing_spans": "skip"}), model, mask_token_id=MASK, special_ids=SPECIAL)
    batch = _batch()
    out = tasks(model, batch, progress=0.25, generator=torch.Generator().manual_seed(0))
    for name in ("ivlc_loss", "tic_loss", "iap_loss", "loss"):
        assert torch.isfinite(out[name]) and out[name].ndim == 0
    expected = out["ivlc_loss"] + 0.02 * out["tic_loss"] + 0.1 * out["iap_loss"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["iap_mask_ratio"].item() == pytest.approx(0.5)
    assert out["iap_fallback_captions"].item() == 1 and out["iap_masked_tokens"].item() > 0
    for metric in ("ivlc_i2t_acc", "ivlc_t2i_acc", "iap_acc", "tic_mse"):
        assert not out[metric].requires_grad
    assert dict(model.calls) == {"encode_image": 1, "image_features": 1, "encode_text": 1, "text_forward": 1}
    assert model.seen["image_features"] is batch["gray"] and model.seen["encode_image"] is batch["images"]
    assert bool((model.seen["text_forward"] == MASK).any())  # IAP runs the text tower on the masked caption
    out["loss"].backward()
    assert model.emb.weight.grad is not None and model.stem.weight.grad is not None
    assert all(p.grad is not None for p in tasks.tic.parameters())
    assert tasks.iap.predictor.head.weight.grad is not None
    check_finite(out, step=1, keys=batch["keys"])


def test_pretext_tasks_disabled_tasks_skip_their_passes():
    model = FakeModel()
    tasks = PretextTasks(_cfg(tic={"enabled": False}), model, mask_token_id=MASK, special_ids=SPECIAL)
    assert tasks.tic is None
    out = tasks(model, _batch(), progress=0.0)
    assert model.calls["image_features"] == 0 and "tic_loss" not in out
    assert out["loss"].item() == pytest.approx((out["ivlc_loss"] + 0.1 * out["iap_loss"]).item(), rel=1e-6)

    model = FakeModel()
    only_tic = PretextTasks(_cfg(ivlc={"enabled": False}, iap={"enabled": False}), model)
    batch = _batch()
    batch.pop("identities")
    out = only_tic(model, batch, progress=0.5)
    assert dict(model.calls) == {"image_features": 1, "encode_text": 1}
    assert set(out) == {"loss", "tic_loss", "tic_mse"}
    assert out["loss"].item() == pytest.approx(0.02 * out["tic_loss"].item(), rel=1e-6)


def test_pretext_tasks_bad_input():
    model = FakeModel()
    batch = _batch()
    batch["identities"] = torch.full((4,), -1)
    tasks = PretextTasks(_cfg(), model, mask_token_id=MASK, special_ids=SPECIAL)
    with pytest.raises(ValueError, match=r"4 of 4 rows have identity -1 \(keys \['rec0'"):
        tasks(model, batch, progress=0.1)
    inst = PretextTasks(_cfg(ivlc={"mode": "instance"}, iap={"on_missing_spans": "skip"}), model,
                        mask_token_id=MASK, special_ids=SPECIAL)
    batch.pop("phrase_index")  # dataset without spans: skip -> IAP loss 0
    out = inst(model, batch, progress=0.1)
    assert out["iap_loss"].item() == 0.0 and out["iap_fallback_captions"].item() == 4
    err = PretextTasks(_cfg(iap={"on_missing_spans": "error"}, ivlc={"mode": "instance"}), model,
                       mask_token_id=MASK, special_ids=SPECIAL)
    with pytest.raises(ValueError, match="4 of 4 captions"):
        err(model, batch, progress=0.1)
    with pytest.raises(ValueError, match="mask_token_id"):
        PretextTasks(_cfg(), model)


def test_build_tasks_with_tokenizer():
    model = FakeModel()
    tok = SimpleNamespace(mask_token_id=MASK, all_special_ids=[PAD, CLS, SEP, UNK, MASK])
    tasks = build_tasks({"iap": {"heads": 4}}, model, tok)
    assert tasks.mask_token_id == MASK and tasks.special_ids == (0, 1, 2, 3, 4)
    assert tasks.iap.predictor.head.out_features == 50 and tasks.tic.decoder.feature_channels == (4, 8, 8, 16)
    with pytest.raises(ValueError, match="tokenizer"):
        build_tasks(TasksConfig(), model, None)
    assert build_tasks(_cfg(iap={"enabled": False}), model, None).iap is None


def test_check_finite_message():
    keys = [f"shard-0/{i:05d}" for i in range(10)]
    losses = {"loss": torch.tensor(float("nan")), "ivlc_loss": torch.tensor(1.0),
              "tic_loss": torch.tensor(float("inf")), "iap_acc": torch.tensor(float("nan"))}
    with pytest.raises(NonFiniteLossError) as err:
        check_finite(losses, step=17, keys=keys)
    msg = str(err.value)
    assert isinstance(err.value, ValueError) and err.value.step == 17
    assert "step 17" in msg and "loss=nan" in msg and "tic_loss=inf" in msg
    assert "ivlc_loss" not in msg and "iap_acc" not in msg  # metrics are not checked
    assert "shard-0/00000" in msg and "shard-0/00007" in msg and "shard-0/00008" not in msg and "10 in all" in msg
    assert set(err.value.terms) == {"loss", "tic_loss"}
    check_finite({"loss": torch.tensor(2.0), "tic_loss": 3.0}, step=1, keys=keys)  # no error


def test_tasks_config_validation_and_round_trip():
    cfg = TasksConfig()
    assert (cfg.ivlc.weight, cfg.tic.weight, cfg.iap.weight) == (1.0, 0.02, 0.1)
    assert (cfg.iap.mask_lower, cfg.iap.mask_upper, cfg.iap.curve) == (0.2, 0.8, "sqrt")
    d = _cfg(tic={"fpn_dim": 32}).to_dict()
    assert d["tic"]["fpn_dim"] == 32 and TasksConfig.from_dict(d) == _cfg(tic={"fpn_dim": 32})
    bad = [
        ({"ivlc": {"mode": "pairs"}}, r"tasks\.ivlc\.mode: must be one of identity, instance, got 'pairs'"),
        ({"iap": {"curve": "cubic"}}, r"tasks\.iap\.curve: must be one of sqrt, linear, square, constant, got 'cubic'"),
        ({"iap": {"on_missing_spans": "mlm"}}, r"tasks\.iap\.on_missing_spans: must be one of random-words"),
        ({"iap": {"mask_lower": 0.9}}, r"tasks\.iap\.mask_lower: must be <= tasks\.iap\.mask_upper \(0\.8\), got 0\.9"),
        ({"tic": {"weight": -1}}, r"tasks\.tic\.weight: must be a number in \[0, inf\], got -1"),
        ({"tic": {"fpn_dim": 0}}, r"tasks\.tic\.fpn_dim: must be an integer >= 1, got 0"),
        ({"iap": {"heads": 0}}, r"tasks\.iap\.heads: must be an integer >= 1 or null, got 0"),
        ({"tic": {"colour": 1}}, r"tasks\.tic: unknown field\(s\) \['colour'\]"),
        ({"sic": {}}, r"tasks: unknown field\(s\) \['sic'\]"),
        ({"ivlc": {"enabled": False}, "tic": {"enabled": False}, "iap": {"enabled": False}},
         r"tasks\.\{ivlc,tic,iap\}\.enabled: at least one task must be enabled"),
    ]
    for data, pattern in bad:
        with pytest.raises(ValueError, match=pattern):
            TasksConfig.from_dict(data)
    with pytest.raises(ValueError, match=r"tasks\.ivlc\.gather: must be true or false, got 'yes'"):
        IVLCConfig(gather="yes")
    assert IAPConfig(curve="constant").curve == "constant" and TICConfig(enabled=False).enabled is False
