"""Image person-ReID losses of the BoT recipe ("Bag of Tricks and a Strong Baseline", Luo et al., CVPRW 2019),
configuration ``softmax_triplet_with_center`` of ``michuanhaohao/reid-strong-baseline``.

Each function computes what the named file of that repository computes, term by term, so numbers (and
gradients) can be compared with published logs:

* :func:`label_smoothing_ce`: ``CrossEntropyLabelSmooth`` (``layers/triplet_loss.py``).
* :func:`euclidean_dist`, :func:`batch_hard_triplet`: ``euclidean_dist``, ``hard_example_mining`` and
  ``TripletLoss`` (``layers/triplet_loss.py``).
* :class:`CenterLoss`: ``layers/center_loss.py`` (the masked-sum version, commit b84cf42 "Update center_loss.py").
* :func:`bot_loss`: ``make_loss_with_center`` (``layers/__init__.py``) with ``METRIC_LOSS_TYPE: triplet_center``
  and ``IF_LABELSMOOTH: on``.
* :func:`center_optimizer`, :func:`step_centers`: ``make_optimizer_with_center`` (``solver/build.py``) and
  ``create_supervised_trainer_with_center`` (``engine/trainer.py``).

With BNNeck the model returns ``(cls_score, global_feat)`` in training: ``global_feat`` is the pooled feature
*before* the BatchNorm neck and feeds the triplet and center losses; ``cls_score`` is the classifier applied to
the feature *after* the neck and feeds the ID loss (``modeling/baseline.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def label_smoothing_ce(logits: Tensor, labels: Tensor, epsilon: float = 0.1) -> Tensor:
    """Cross-entropy against smoothed targets ``(1 - epsilon) * onehot + epsilon / C`` (Szegedy et al. 2016),
    summed over the C classes and averaged over the batch, as BoT's ``CrossEntropyLabelSmooth``.

    C is the width of ``logits`` (BoT passes the number of training identities, which is the same thing)."""
    log_probs = F.log_softmax(logits, dim=1)
    num_classes = logits.size(1)
    targets = torch.zeros_like(log_probs).scatter_(1, labels.unsqueeze(1), 1)
    targets = (1 - epsilon) * targets + epsilon / num_classes
    return (-targets * log_probs).mean(0).sum()


def _l2_normalize(x: Tensor) -> Tensor:
    # BoT's ``normalize``: the 1e-12 is added to the norm (not a clamp), so a zero row stays zero
    return x / (torch.norm(x, 2, dim=-1, keepdim=True) + 1e-12)


def euclidean_dist(x: Tensor, y: Tensor) -> Tensor:
    """Pairwise euclidean distances (m x n) through ``|x|^2 + |y|^2 - 2 x.y``, clamped at 1e-12 before the
    square root as BoT's ``euclidean_dist``: the clamp keeps the gradient of sqrt finite on the diagonal
    (distance 0 would give an infinite derivative), at the price of a distance of 1e-6 there."""
    xx = x.pow(2).sum(1, keepdim=True)  # m x 1
    yy = y.pow(2).sum(1, keepdim=True).t()  # 1 x n
    dist = torch.addmm(xx + yy, x, y.t(), beta=1, alpha=-2)
    return dist.clamp(min=1e-12).sqrt()


def batch_hard_triplet(features: Tensor, labels: Tensor, margin: float | None = 0.3,
                       normalize: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Triplet loss with batch-hard mining (Hermans et al. 2017) as BoT's ``TripletLoss``:
    ``(loss, dist_ap, dist_an)``.

    For each anchor, ``dist_ap`` is the distance to its farthest same-identity sample (the anchor itself
    included, at distance 1e-6, as in BoT) and ``dist_an`` to its nearest other-identity sample. The loss is
    ``MarginRankingLoss(margin)(dist_an, dist_ap, 1) = mean(max(0, dist_ap - dist_an + margin))``, or with
    ``margin=None`` ``SoftMarginLoss(dist_an - dist_ap, 1) = mean(log(1 + exp(dist_ap - dist_an)))``.

    BoT selects the positives with ``dist_mat[is_pos].view(N, -1)``, which needs the same number of images
    per identity (its PK sampler guarantees it). Masking with -inf / +inf instead gives the same values and
    gradients on such batches and also works on unbalanced ones; an anchor with no negative is an error.
    """
    if normalize:
        features = _l2_normalize(features)
    dist_mat = euclidean_dist(features, features)
    is_pos = labels.unsqueeze(0) == labels.unsqueeze(1)
    if bool(is_pos.all(dim=1).any()):
        raise ValueError("batch_hard_triplet: an anchor has no sample of another identity in the batch; "
                         "sample at least two identities per batch (BoT samples P identities x K images)")
    dist_ap = dist_mat.masked_fill(~is_pos, float("-inf")).max(dim=1).values
    dist_an = dist_mat.masked_fill(is_pos, float("inf")).min(dim=1).values
    y = torch.ones_like(dist_an)
    if margin is not None:
        loss = F.margin_ranking_loss(dist_an, dist_ap, y, margin=margin)
    else:
        loss = F.soft_margin_loss(dist_an - dist_ap, y)
    return loss, dist_ap, dist_an


class CenterLoss(nn.Module):
    """Center loss (Wen et al., ECCV 2016) as BoT's ``layers/center_loss.py``: the squared euclidean distance
    of each feature to its identity's center, summed and divided by the batch size.

    The centers are a Parameter initialised ``randn(num_classes, feat_dim)`` (BoT: feat_dim 2048, the ResNet-50
    pooled feature). BoT does **not** train them with the model's optimiser: ``make_optimizer_with_center``
    gives them their own ``torch.optim.SGD(lr=CENTER_LR=0.5)`` (no momentum, no weight decay), and
    ``create_supervised_trainer_with_center`` does, each iteration, ``loss.backward(); optimizer.step()``, then
    multiplies every center gradient by ``1 / CENTER_LOSS_WEIGHT`` (1 / 0.0005) before
    ``optimizer_center.step()``, so the centers move as if the center loss had weight 1 while the features
    see weight 0.0005. :func:`center_optimizer` and :func:`step_centers` do that; keep the centers out of the
    model's optimiser (they are not in BoT's Adam, so they get no weight decay there).
    """

    def __init__(self, num_classes: int, feat_dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        if features.size(0) != labels.size(0):
            raise ValueError(f"CenterLoss: {features.size(0)} features but {labels.size(0)} labels")
        batch_size = features.size(0)
        distmat = (features.pow(2).sum(dim=1, keepdim=True)
                   + self.centers.pow(2).sum(dim=1, keepdim=True).t())  # batch x classes
        distmat = torch.addmm(distmat, features, self.centers.t(), beta=1, alpha=-2)
        classes = torch.arange(self.num_classes, device=labels.device)
        mask = labels.unsqueeze(1) == classes.unsqueeze(0)
        # As BoT: the clamp comes after masking, so each of the (num_classes - 1) masked-out zeros of a row
        # adds 1e-12 to the sum; negligible, kept so the value is theirs to the last digit.
        dist = distmat * mask.float()
        return dist.clamp(min=1e-12, max=1e12).sum() / batch_size


def center_optimizer(center_loss: CenterLoss, lr: float = 0.5) -> torch.optim.SGD:
    """BoT's optimiser of the centers: plain SGD at ``SOLVER.CENTER_LR`` 0.5 (``make_optimizer_with_center``)."""
    return torch.optim.SGD(center_loss.parameters(), lr=lr)


def step_centers(center_loss: CenterLoss, optimizer: torch.optim.Optimizer, center_weight: float = 5e-4) -> None:
    """After ``loss.backward()``: undo the loss weight on the center gradients (x ``1 / center_weight``) and
    step the centers' optimiser, as ``create_supervised_trainer_with_center``. Zero its gradients before the
    next backward (BoT calls ``optimizer_center.zero_grad()`` at the start of each iteration)."""
    for param in center_loss.parameters():
        if param.grad is not None:
            param.grad.mul_(1.0 / center_weight)
    optimizer.step()


def bot_loss(cls_score: Tensor, global_feat: Tensor, labels: Tensor, center_loss: CenterLoss,
             center_weight: float = 5e-4, margin: float | None = 0.3, epsilon: float = 0.1) -> dict[str, Tensor]:
    """The ``softmax_triplet_with_center`` objective, ``make_loss_with_center`` with ``triplet_center`` and
    label smoothing on: ``loss = id_loss + triplet_loss + center_weight * center_loss``.

    ``cls_score`` is the classifier output on the post-BNNeck feature (ID loss); ``global_feat`` is the
    pre-BNNeck feature (triplet and center losses). The terms are returned unweighted, by name, for logging;
    only ``loss`` carries the weight."""
    id_loss = label_smoothing_ce(cls_score, labels, epsilon)
    triplet_loss = batch_hard_triplet(global_feat, labels, margin)[0]
    center = center_loss(global_feat, labels)
    return {"loss": id_loss + triplet_loss + center_weight * center, "id_loss": id_loss,
            "triplet_loss": triplet_loss, "center_loss": center}
