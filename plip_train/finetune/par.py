"""Pedestrian attribute recognition (PAR), the Rethinking_of_PAR baseline (Jia et al., "Rethinking of pedestrian
attribute recognition", github.com/valencebond/Rethinking_of_PAR): the weighted BCE it trains with and the metrics it
reports (mA and the instance-based accuracy / precision / recall / F1). The readers of the annotation files that
PA100k, PETA, RAPv1 and RAPv2 ship as MATLAB .mat files are data code: ``synth_pedes/sources/par_annotations.py``.

Everything here follows that repository's code (commit 96e362c), not the papers' prose, so that our numbers are
comparable with the ones it reports. Where a function mirrors a file, the file is named in its docstring.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "par_metrics",
    "positive_ratio",
    "weighted_bce",
]


# ---------------------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------------------


def positive_ratio(labels) -> np.ndarray:
    """Per-attribute fraction of positives (A,) over the training labels (N x A, 0/1).

    The repository computes it as ``train_set.label.mean(0)`` (train.py) over the split it trains on, which is
    ``trainval`` in every pedestrian config; pass that split's labels.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"positive_ratio: expected non-empty N x A labels, got shape {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("positive_ratio: labels must be 0/1 (map RAP's 2, 'uncertain', to 0 first)")
    return labels.mean(axis=0, dtype=np.float64)


def weighted_bce(logits: Tensor, targets: Tensor, positive_ratio) -> Tensor:
    """The weighted BCE of Rethinking_of_PAR (scalar), as ``losses/bceloss.py`` ``BCELoss`` computes it with
    ``sample_weight`` set (``LOSS.SAMPLE_WEIGHT: 'weight'`` in every pedestrian config) and ``size_sum=True`` (the
    default ``LOSS.SIZESUM``)::

        loss_m = BCE_with_logits(logits, targets), elementwise
        w      = exp(1 - r_a)  where the target is positive,  exp(r_a)  where it is negative
        loss   = (loss_m * w).sum(over attributes).mean(over the batch)

    with r_a the attribute's positive ratio in the training set. ``ratio2weight`` in ``tools/function.py`` builds
    ``w``: a rare attribute's positives weigh up to e, its negatives about 1, which is what lifts mA.
    """
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"weighted_bce: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
                         "must both be B x A")
    targets = targets.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    # The repository thresholds the targets at 0.5 before weighting (targets_mask), so soft targets are
    # weighted as the hard label they round to. Its `weights[targets > 1] = 0` runs on that 0/1 mask, so it
    # never fires in BCELoss; it is left out.
    positive = (targets.detach() > 0.5).to(logits.dtype)
    ratio = torch.as_tensor(positive_ratio, dtype=logits.dtype, device=logits.device)  # an array or a tensor
    if ratio.shape != (logits.shape[1],):
        raise ValueError(f"weighted_bce: positive_ratio has shape {tuple(ratio.shape)}, expected "
                         f"({logits.shape[1]},), one ratio per attribute")
    weight = torch.exp(positive * (1 - ratio) + (1 - positive) * ratio)
    # Sum over attributes, mean over the batch (size_sum=True): the per-sample loss is the sum of its A terms.
    return (loss * weight).sum(dim=1).mean()


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------

# get_pedestrian_metrics adds this to every denominator: an attribute with no positives (or no negatives) in the
# evaluated set scores 0 on that side rather than NaN, and an instance predicted all-negative has precision 0.
_EPS = 1e-20


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def par_metrics(scores, targets, threshold: float = 0.5, *, from_logits: bool) -> dict:
    """Rethinking_of_PAR's ``get_pedestrian_metrics`` (``metrics/pedestrian_metrics.py``), on N x A scores and
    0/1 targets. A prediction is positive where its probability is strictly above ``threshold``; the repository
    passes sigmoid outputs (``batch_engine.py`` ``logits4pred``). ``from_logits`` has no default because logits
    thresholded at 0.5 would silently score a different classifier.

    Returns, as the repository names them (fractions, not percentages):

    * per attribute (arrays of A): ``label_pos_recall`` TP/P, ``label_neg_recall`` TN/N, ``label_ma`` their mean,
      ``label_prec`` TP/(TP+FP), ``label_acc`` TP/(TP+FP+FN) (the repository's "label accuracy" is this
      Jaccard ratio, not the mean of the two recalls, which is ``label_ma``), ``label_f1``, and the counts
      ``error_num`` (FP+FN), ``fn_num``, ``fp_num``;
    * floats: ``ma`` (mean of ``label_ma``), ``instance_acc`` |pred n gt| / |pred u gt|, ``instance_prec``
      |pred n gt| / |pred|, ``instance_recall`` |pred n gt| / |gt|, each averaged over instances, and
      ``instance_f1`` = 2PR/(P+R) from those means (the repository replaced the mean of per-instance F1s).
    """
    scores = _numpy(scores)
    gt_label = _numpy(targets)
    if scores.shape != gt_label.shape or scores.ndim != 2:
        raise ValueError(f"par_metrics: scores {scores.shape} and targets {gt_label.shape} must both be N x A")
    if from_logits:
        # The repository takes the sigmoid in torch in the logits' own dtype; so do we, so that a logit whose
        # sigmoid rounds to exactly 0.5 is thresholded the same way.
        scores = torch.sigmoid(torch.from_numpy(np.ascontiguousarray(scores))).numpy()
    pred_label = scores > threshold
    eps = _EPS

    # Label-based: counts per attribute (over instances, axis 0).
    gt_pos = np.sum(gt_label == 1, axis=0).astype(float)
    gt_neg = np.sum(gt_label == 0, axis=0).astype(float)
    true_pos = np.sum((gt_label == 1) * (pred_label == 1), axis=0).astype(float)
    true_neg = np.sum((gt_label == 0) * (pred_label == 0), axis=0).astype(float)
    false_pos = np.sum((gt_label == 0) * (pred_label == 1), axis=0).astype(float)
    false_neg = np.sum((gt_label == 1) * (pred_label == 0), axis=0).astype(float)

    label_pos_recall = 1.0 * true_pos / (gt_pos + eps)
    label_neg_recall = 1.0 * true_neg / (gt_neg + eps)
    label_ma = (label_pos_recall + label_neg_recall) / 2
    label_prec = true_pos / (true_pos + false_pos + eps)
    label_acc = true_pos / (true_pos + false_pos + false_neg + eps)
    label_f1 = 2 * label_prec * label_pos_recall / (label_prec + label_pos_recall + eps)

    # Instance-based: counts per image (over attributes, axis 1). The repository calls |pred| "true_pos".
    inst_gt = np.sum(gt_label == 1, axis=1).astype(float)
    inst_pred = np.sum(pred_label == 1, axis=1).astype(float)
    intersect = np.sum((gt_label == 1) * (pred_label == 1), axis=1).astype(float)
    union = np.sum((gt_label == 1) | (pred_label == 1), axis=1).astype(float)

    instance_acc = float(np.mean(intersect / (union + eps)))
    instance_prec = float(np.mean(intersect / (inst_pred + eps)))
    instance_recall = float(np.mean(intersect / (inst_gt + eps)))
    instance_f1 = 2 * instance_prec * instance_recall / (instance_prec + instance_recall + eps)

    return {
        "ma": float(np.mean(label_ma)),
        "instance_acc": instance_acc,
        "instance_prec": instance_prec,
        "instance_recall": instance_recall,
        "instance_f1": float(instance_f1),
        "label_pos_recall": label_pos_recall,
        "label_neg_recall": label_neg_recall,
        "label_ma": label_ma,
        "label_prec": label_prec,
        "label_acc": label_acc,
        "label_f1": label_f1,
        "error_num": false_pos + false_neg,
        "fn_num": false_neg,
        "fp_num": false_pos,
    }
