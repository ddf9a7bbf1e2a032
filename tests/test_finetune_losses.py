"""CMPC (the fine-tune's identity classification loss) against a hand-computed case and against the official
formula, and the objective that combines it with CMPM."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from plip_train.finetune.config import FinetuneConfig
from plip_train.finetune.objective import TextReidObjective, cmpc_loss
from plip_train.tasks import cmpm_loss


def official_cmpc(image_embeddings, text_embeddings, labels, W):
    """``compute_cmpc_loss`` of Downstreams/CMPM-C/loss.py (official PLIP repository), transcribed line by line."""
    criterion = nn.CrossEntropyLoss(reduction="mean")
    W_norm = W / W.norm(dim=0)
    image_norm = image_embeddings / image_embeddings.norm(dim=1, keepdim=True)
    text_norm = text_embeddings / text_embeddings.norm(dim=1, keepdim=True)
    image_proj_text = torch.sum(image_embeddings * text_norm, dim=1, keepdim=True) * text_norm
    text_proj_image = torch.sum(text_embeddings * image_norm, dim=1, keepdim=True) * image_norm
    image_logits = torch.matmul(image_proj_text, W_norm)
    text_logits = torch.matmul(text_proj_image, W_norm)
    return criterion(image_logits, labels) + criterion(text_logits, labels)


def test_cmpc_by_hand():
    # V = diag(1, 2), T = identity: each image projects onto its own caption's axis -> image logits diag(1, 2),
    # text logits diag(1, 1); W's columns have norms 2 and 3, which the normalisation removes.
    v = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 1])
    image_ce = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2
    text_ce = math.log(1 + math.exp(-1))
    assert cmpc_loss(v, t, labels, w).item() == pytest.approx(image_ce + text_ce, abs=1e-6)
    # a caption orthogonal to its image: the projection is zero, every class equally likely
    v2, t2 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert cmpc_loss(v2, t2, torch.tensor([1]), w).item() == pytest.approx(2 * math.log(2), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cmpc_equals_the_official_formula_in_value_and_gradient(seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(12, 16, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(12, 16, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(16, 5, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 5, (12,), generator=g)
    ours = cmpc_loss(v, t, labels, w)
    ref = official_cmpc(v, t, labels, w)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    grads = torch.autograd.grad(ours, (v, t, w))
    ref_grads = torch.autograd.grad(ref, (v, t, w))
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


class _Towers(nn.Module):
    """Identity towers: the batch's images and input ids are the embeddings themselves."""

    def encode_image(self, images):
        return images

    def encode_text(self, ids, mask):
        return ids


def test_objective_sums_cmpm_and_cmpc_with_classes_from_the_identities():
    g = torch.Generator().manual_seed(3)
    v, t = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    identities = torch.tensor([40, 7, 40, 12, 7, 12])  # raw ids: classes are their sorted order (7, 12, 40)
    head = TextReidObjective(FinetuneConfig(), 8, np.array([12, 7, 40, 40]))
    assert head.num_classes == 3 and tuple(head.classifier.shape) == (8, 3)
    out = head(_Towers(), {"images": v, "input_ids": t, "attention_mask": None, "identities": identities}, 0.0)
    labels = torch.tensor([2, 0, 2, 1, 0, 1])
    assert out["cmpm_loss"].item() == pytest.approx(cmpm_loss(v, t, labels).item(), rel=1e-6)
    assert out["cmpc_loss"].item() == pytest.approx(official_cmpc(v, t, labels, head.classifier).item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(out["cmpm_loss"].item() + out["cmpc_loss"].item(), rel=1e-6)
    assert 0.0 <= out["cmpc_image_acc"].item() <= 1.0
    # CMPM only: no classifier, no CMPC term
    only = TextReidObjective(FinetuneConfig(loss="cmpm"), 8, np.array([7, 12, 40]))
    assert only.classifier is None and not list(only.parameters())
    res = only(_Towers(), {"images": v, "input_ids": t, "attention_mask": None, "identities": identities}, 0.0)
    assert set(res) == {"loss", "cmpm_loss"}
    with pytest.raises(ValueError, match=r"identities \[99\] are not among the 3 training identities"):
        only.labels(torch.tensor([7, 99]))
