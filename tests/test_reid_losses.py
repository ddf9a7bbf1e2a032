"""BoT ReID losses (plip_train.finetune.reid_losses): hand-computed cases, and equality (values and gradients)
with references transcribed from michuanhaohao/reid-strong-baseline (layers/triplet_loss.py,
layers/center_loss.py, layers/__init__.py, engine/trainer.py). In the transcriptions, ``addmm_(1, -2, a, b)``
(beta, alpha positional, removed from torch) is written ``addmm_(a, b, beta=1, alpha=-2)``; ``.cuda()`` is
left out. Nothing else is changed."""
import math

import pytest
import torch
from torch import nn

from plip_train.finetune.reid_losses import (CenterLoss, batch_hard_triplet, bot_loss, center_optimizer,
                                             label_smoothing_ce, step_centers)

# ---------------------------------------------------------------- references transcribed from BoT


def ref_normalize(x, axis=-1):
    x = 1. * x / (torch.norm(x, 2, axis, keepdim=True).expand_as(x) + 1e-12)
    return x


def ref_euclidean_dist(x, y):
    m, n = x.size(0), y.size(0)
    xx = torch.pow(x, 2).sum(1, keepdim=True).expand(m, n)
    yy = torch.pow(y, 2).sum(1, keepdim=True).expand(n, m).t()
    dist = xx + yy
    dist.addmm_(x, y.t(), beta=1, alpha=-2)
    dist = dist.clamp(min=1e-12).sqrt()
    return dist


def ref_hard_example_mining(dist_mat, labels):
    N = dist_mat.size(0)
    is_pos = labels.expand(N, N).eq(labels.expand(N, N).t())
    is_neg = labels.expand(N, N).ne(labels.expand(N, N).t())
    dist_ap, relative_p_inds = torch.max(dist_mat[is_pos].contiguous().view(N, -1), 1, keepdim=True)
    dist_an, relative_n_inds = torch.min(dist_mat[is_neg].contiguous().view(N, -1), 1, keepdim=True)
    return dist_ap.squeeze(1), dist_an.squeeze(1)


class RefTripletLoss:
    def __init__(self, margin=None):
        self.margin = margin
        if margin is not None:
            self.ranking_loss = nn.MarginRankingLoss(margin=margin)
        else:
            self.ranking_loss = nn.SoftMarginLoss()

    def __call__(self, global_feat, labels, normalize_feature=False):
        if normalize_feature:
            global_feat = ref_normalize(global_feat, axis=-1)
        dist_mat = ref_euclidean_dist(global_feat, global_feat)
        dist_ap, dist_an = ref_hard_example_mining(dist_mat, labels)
        y = dist_an.new().resize_as_(dist_an).fill_(1)
        if self.margin is not None:
            loss = self.ranking_loss(dist_an, dist_ap, y)
        else:
            loss = self.ranking_loss(dist_an - dist_ap, y)
        return loss, dist_ap, dist_an


class RefCrossEntropyLabelSmooth(nn.Module):
    def __init__(self, num_classes, epsilon=0.1):
        super().__init__()
        self.num_classes = num_classes
        self.epsilon = epsilon
        self.logsoftmax = nn.LogSoftmax(dim=1)

    def forward(self, inputs, targets):
        log_probs = self.logsoftmax(inputs)
        targets = torch.zeros(log_probs.size()).scatter_(1, targets.unsqueeze(1).data.cpu(), 1)
        targets = (1 - self.epsilon) * targets + self.epsilon / self.num_classes
        loss = (- targets * log_probs).mean(0).sum()
        return loss


def ref_center_forward(centers, num_classes, x, labels):
    batch_size = x.size(0)
    distmat = torch.pow(x, 2).sum(dim=1, keepdim=True).expand(batch_size, num_classes) + \
        torch.pow(centers, 2).sum(dim=1, keepdim=True).expand(num_classes, batch_size).t()
    distmat.addmm_(x, centers.t(), beta=1, alpha=-2)
    classes = torch.arange(num_classes).long()
    labels = labels.unsqueeze(1).expand(batch_size, num_classes)
    mask = labels.eq(classes.expand(batch_size, num_classes))
    dist = distmat * mask.float()
    loss = dist.clamp(min=1e-12, max=1e+12).sum() / batch_size
    return loss


# ---------------------------------------------------------------- hand-computed cases


def test_triplet_hand_case():
    # ids 0: x0 = (0, 0), x1 = (3, 0); id 1: x2 = (0, 4), x3 = (6, 4). Pairwise distances:
    #   d01 = 3, d02 = 4, d03 = sqrt(36 + 16) = 7.211, d12 = sqrt(9 + 16) = 5, d13 = sqrt(9 + 16) = 5, d23 = 6
    # hardest positive / negative per anchor (the anchor itself is a positive at distance sqrt(1e-12) = 1e-6):
    #   x0: ap = d01 = 3, an = min(d02, d03) = 4  -> max(0, 3 - 4 + 0.3) = 0
    #   x1: ap = d01 = 3, an = min(d12, d13) = 5  -> max(0, 3 - 5 + 0.3) = 0
    #   x2: ap = d23 = 6, an = min(d02, d12) = 4  -> 6 - 4 + 0.3 = 2.3
    #   x3: ap = d23 = 6, an = min(d03, d13) = 5  -> 6 - 5 + 0.3 = 1.3
    # loss = (0 + 0 + 2.3 + 1.3) / 4 = 0.9
    x = torch.tensor([[0., 0.], [3., 0.], [0., 4.], [6., 4.]])
    labels = torch.tensor([0, 0, 1, 1])
    loss, dist_ap, dist_an = batch_hard_triplet(x, labels, margin=0.3)
    assert dist_ap.tolist() == pytest.approx([3, 3, 6, 6])
    assert dist_an.tolist() == pytest.approx([4, 5, 4, 5])
    assert loss.item() == pytest.approx(0.9, abs=1e-6)
    # margin None: soft margin, mean(log(1 + exp(ap - an)))
    soft = batch_hard_triplet(x, labels, margin=None)[0]
    expected = sum(math.log1p(math.exp(a - n)) for a, n in [(3, 4), (3, 5), (6, 4), (6, 5)]) / 4
    assert soft.item() == pytest.approx(expected, rel=1e-6)


def test_triplet_needs_a_negative():
    with pytest.raises(ValueError, match="no sample of another identity"):
        batch_hard_triplet(torch.randn(3, 2), torch.tensor([1, 1, 1]))


def test_label_smoothing_hand_case():
    # logits (0, ln 3): softmax = (1/4, 3/4); label 1, C = 2, eps = 0.1: targets (0.05, 0.95)
    logits = torch.tensor([[0.0, math.log(3.0)]])
    loss = label_smoothing_ce(logits, torch.tensor([1]), epsilon=0.1)
    assert loss.item() == pytest.approx(-(0.05 * math.log(0.25) + 0.95 * math.log(0.75)), rel=1e-6)
    # epsilon 0 is plain cross-entropy
    logits = torch.randn(5, 7)
    labels = torch.randint(0, 7, (5,))
    assert label_smoothing_ce(logits, labels, 0.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)


def test_center_loss_hand_case():
    # centers c0 = (0, 0), c1 = (1, 1); f0 = (3, 4) of id 0: |f0 - c0|^2 = 25; f1 = (1, 2) of id 1: |f1 - c1|^2 = 1
    # loss = (25 + 1) / 2 = 13 (plus 2 x 1e-12 from the clamped masked-out entries, as BoT)
    center = CenterLoss(num_classes=2, feat_dim=2)
    with torch.no_grad():
        center.centers.copy_(torch.tensor([[0., 0.], [1., 1.]]))
    loss = center(torch.tensor([[3., 4.], [1., 2.]]), torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(13.0, rel=1e-7)


# ---------------------------------------------------------------- equal to BoT on random inputs


def _pk_batch(p=4, k=4, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k)[torch.randperm(p * k, generator=g)]
    return torch.randn(p * k, d, generator=g, dtype=torch.float64), labels


@pytest.mark.parametrize("margin", [0.3, None])
@pytest.mark.parametrize("normalize", [False, True])
def test_triplet_equals_bot(margin, normalize):
    feats, labels = _pk_batch()
    a = feats.clone().requires_grad_()
    b = feats.clone().requires_grad_()
    ours = batch_hard_triplet(a, labels, margin=margin, normalize=normalize)
    ref = RefTripletLoss(margin)(b, labels, normalize_feature=normalize)
    for x, y in zip(ours, ref):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    ours[0].backward()
    ref[0].backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)
    assert a.grad.abs().sum() > 0


def test_label_smoothing_equals_bot():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 11, generator=g)
    labels = torch.randint(0, 11, (16,), generator=g)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = label_smoothing_ce(a, labels, 0.1)
    ref = RefCrossEntropyLabelSmooth(11, 0.1)(b, labels)
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_center_loss_equals_bot():
    torch.manual_seed(2)
    center = CenterLoss(num_classes=6, feat_dim=8)
    feats = torch.randn(12, 8)
    labels = torch.randint(0, 6, (12,))
    ref_centers = center.centers.detach().clone().requires_grad_()
    a, b = feats.clone().requires_grad_(), feats.clone().requires_grad_()
    ours = center(a, labels)
    ref = ref_center_forward(ref_centers, 6, b, labels)
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(center.centers.grad, ref_centers.grad)


def test_bot_loss_and_center_step_equal_bot_training_step():
    # make_loss_with_center (triplet_center, label smoothing on) + create_supervised_trainer_with_center
    torch.manual_seed(3)
    feats, labels = _pk_batch(d=8, seed=3)
    feats = feats.float()
    scores = torch.randn(16, 4)
    center = CenterLoss(num_classes=4, feat_dim=8)
    ref_centers = center.centers.detach().clone().requires_grad_()
    a_f, a_s = feats.clone().requires_grad_(), scores.clone().requires_grad_()
    b_f, b_s = feats.clone().requires_grad_(), scores.clone().requires_grad_()

    terms = bot_loss(a_s, a_f, labels, center, center_weight=0.0005, margin=0.3)
    ref = (RefCrossEntropyLabelSmooth(4)(b_s, labels) + RefTripletLoss(0.3)(b_f, labels)[0]
           + 0.0005 * ref_center_forward(ref_centers, 4, b_f, labels))
    torch.testing.assert_close(terms["loss"], ref)
    torch.testing.assert_close(terms["loss"], terms["id_loss"] + terms["triplet_loss"]
                               + 0.0005 * terms["center_loss"])

    opt = center_optimizer(center)  # SGD lr 0.5
    ref_opt = torch.optim.SGD([ref_centers], lr=0.5)
    opt.zero_grad()
    ref_opt.zero_grad()
    terms["loss"].backward()
    ref.backward()
    torch.testing.assert_close(a_f.grad, b_f.grad)
    torch.testing.assert_close(a_s.grad, b_s.grad)
    step_centers(center, opt, center_weight=0.0005)
    for param in [ref_centers]:  # BoT: param.grad.data *= (1. / cetner_loss_weight); optimizer_center.step()
        param.grad.data *= (1. / 0.0005)
    ref_opt.step()
    torch.testing.assert_close(center.centers.detach(), ref_centers.detach())
    # the centers moved by lr x the gradient of the *unweighted* center loss
    assert opt.param_groups[0]["lr"] == 0.5
