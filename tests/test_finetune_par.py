"""Pedestrian attribute recognition pieces (plip_train.finetune.par: loss and metrics) against hand-computed cases and
against Rethinking_of_PAR's own code (github.com/valencebond/Rethinking_of_PAR), transcribed below; the annotation
readers (synth_pedes.sources.par_annotations) on small .mat files written in the structure the repository's
preprocess scripts index (_par_fixtures.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F
from _par_fixtures import (
    PETA_IMAGES,
    RAP1_IMAGES,
    RAP1_RAW_ATTRIBUTES,
    RAP2_IMAGES,
    RAP2_RAW_ATTRIBUTES,
    pa100k_content,
    peta_content,
    rap1_content,
    rap2_content,
    save,
)

from plip_train.finetune.par import par_metrics, positive_ratio, weighted_bce
from synth_pedes.sources.par_annotations import (
    PA100K_GROUP_ORDER,
    PETA_GROUP_ORDER,
    RAP1_GROUP_ORDER,
    RAP2_GROUP_ORDER,
    read_pa100k,
    read_peta,
    read_rap,
)

# ---------------------------------------------------------------------------------------------------------------
# The repository's code, transcribed (only .cuda() and the EasyDict dropped)
# ---------------------------------------------------------------------------------------------------------------


def repo_ratio2weight(targets, ratio):
    """tools/function.py ratio2weight."""
    ratio = torch.from_numpy(ratio).type_as(targets)
    pos_weights = targets * (1 - ratio)
    neg_weights = (1 - targets) * ratio
    weights = torch.exp(neg_weights + pos_weights)
    weights[targets > 1] = 0.0
    return weights


def repo_bceloss(logits, targets, sample_weight, size_sum=True):
    """losses/bceloss.py BCELoss.forward (smoothing None), logits already unwrapped from their list."""
    loss_m = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    targets_mask = torch.where(targets.detach().cpu() > 0.5, torch.ones(1), torch.zeros(1))
    if sample_weight is not None:
        sample_weight = repo_ratio2weight(targets_mask, sample_weight)
        loss_m = (loss_m * sample_weight)
    loss = loss_m.sum(1).mean() if size_sum else loss_m.sum()
    return loss


def repo_get_pedestrian_metrics(gt_label, preds_probs, threshold=0.5):
    """metrics/pedestrian_metrics.py get_pedestrian_metrics (index=None)."""
    pred_label = preds_probs > threshold
    eps = 1e-20
    result = {}
    gt_pos = np.sum((gt_label == 1), axis=0).astype(float)
    gt_neg = np.sum((gt_label == 0), axis=0).astype(float)
    true_pos = np.sum((gt_label == 1) * (pred_label == 1), axis=0).astype(float)
    true_neg = np.sum((gt_label == 0) * (pred_label == 0), axis=0).astype(float)
    false_pos = np.sum(((gt_label == 0) * (pred_label == 1)), axis=0).astype(float)
    false_neg = np.sum(((gt_label == 1) * (pred_label == 0)), axis=0).astype(float)
    label_pos_recall = 1.0 * true_pos / (gt_pos + eps)
    label_neg_recall = 1.0 * true_neg / (gt_neg + eps)
    label_ma = (label_pos_recall + label_neg_recall) / 2
    result['label_pos_recall'] = label_pos_recall
    result['label_neg_recall'] = label_neg_recall
    result['label_prec'] = true_pos / (true_pos + false_pos + eps)
    result['label_acc'] = true_pos / (true_pos + false_pos + false_neg + eps)
    result['label_f1'] = 2 * result['label_prec'] * result['label_pos_recall'] / (
        result['label_prec'] + result['label_pos_recall'] + eps)
    result['label_ma'] = label_ma
    result['ma'] = np.mean(label_ma)
    gt_pos = np.sum((gt_label == 1), axis=1).astype(float)
    true_pos = np.sum((pred_label == 1), axis=1).astype(float)
    intersect_pos = np.sum((gt_label == 1) * (pred_label == 1), axis=1).astype(float)
    union_pos = np.sum(((gt_label == 1) + (pred_label == 1)), axis=1).astype(float)
    instance_acc = intersect_pos / (union_pos + eps)
    instance_prec = intersect_pos / (true_pos + eps)
    instance_recall = intersect_pos / (gt_pos + eps)
    instance_acc = np.mean(instance_acc)
    instance_prec = np.mean(instance_prec)
    instance_recall = np.mean(instance_recall)
    instance_f1 = 2 * instance_prec * instance_recall / (instance_prec + instance_recall + eps)
    result['instance_acc'] = instance_acc
    result['instance_prec'] = instance_prec
    result['instance_recall'] = instance_recall
    result['instance_f1'] = instance_f1
    result['error_num'], result['fn_num'], result['fp_num'] = false_pos + false_neg, false_neg, false_pos
    return result


# ---------------------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------------------


def test_weighted_bce_by_hand():
    # Ratios 0.25 and 0.5. Weights: positive exp(1 - r), negative exp(r).
    #   (0,0) target 1, logit  2: BCE ln(1 + e^-2), weight e^0.75
    #   (0,1) target 0, logit -1: BCE ln(1 + e^-1), weight e^0.5
    #   (1,0) target 0, logit  0: BCE ln 2,         weight e^0.25
    #   (1,1) target 1, logit  3: BCE ln(1 + e^-3), weight e^0.5
    # Sum over the two attributes of each row, mean over the two rows.
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    ratio = np.array([0.25, 0.5])
    row0 = math.exp(0.75) * math.log1p(math.exp(-2)) + math.exp(0.5) * math.log1p(math.exp(-1))
    row1 = math.exp(0.25) * math.log(2) + math.exp(0.5) * math.log1p(math.exp(-3))
    assert weighted_bce(logits, targets, ratio).item() == pytest.approx((row0 + row1) / 2, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_bce_matches_the_repository(seed):
    generator = torch.Generator().manual_seed(seed)
    batch, attributes = 16, 7
    train_labels = (torch.rand(200, attributes, generator=generator) < 0.3).numpy().astype(np.uint8)
    ratio = positive_ratio(train_labels)
    np.testing.assert_allclose(ratio, train_labels.mean(0))  # train.py: labels.mean(0)
    logits = torch.randn(batch, attributes, generator=generator) * 3
    targets = (torch.rand(batch, attributes, generator=generator) < 0.3).float()
    ours = weighted_bce(logits, targets, ratio)
    assert ours.item() == pytest.approx(repo_bceloss(logits, targets, ratio).item(), rel=1e-6)
    # Gradients flow to the logits only (the weights are constants).
    logits.requires_grad_(True)
    weighted_bce(logits, targets, ratio).backward()
    reference = logits.detach().clone().requires_grad_(True)
    repo_bceloss(reference, targets, ratio).backward()
    torch.testing.assert_close(logits.grad, reference.grad)


def test_positive_ratio_rejects_non_binary_labels():
    with pytest.raises(ValueError, match="0/1"):
        positive_ratio(np.array([[0, 2], [1, 0]]))
    with pytest.raises(ValueError, match="N x A"):
        positive_ratio(np.array([0, 1]))


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


def test_par_metrics_by_hand():
    gt = np.array([[1, 0, 1],
                   [0, 1, 0],
                   [1, 1, 0]])
    probs = np.array([[0.9, 0.6, 0.2],    # -> 1 1 0
                      [0.1, 0.7, 0.5],    # -> 0 1 0  (0.5 is not above the threshold)
                      [0.8, 0.3, 0.4]])   # -> 1 0 0
    result = par_metrics(probs, gt, from_logits=False)
    # Label-based, per attribute (column):
    #   attribute 0: gt 1 0 1, pred 1 0 1: pos recall 2/2, neg recall 1/1 -> 1
    #   attribute 1: gt 0 1 1, pred 1 1 0: pos recall 1/2, neg recall 0/1 -> 0.25
    #   attribute 2: gt 1 0 0, pred 0 0 0: pos recall 0/1, neg recall 2/2 -> 0.5
    np.testing.assert_allclose(result["label_pos_recall"], [1, 0.5, 0])
    np.testing.assert_allclose(result["label_neg_recall"], [1, 0, 1])
    np.testing.assert_allclose(result["label_ma"], [1, 0.25, 0.5])
    assert result["ma"] == pytest.approx(1.75 / 3)
    # label_acc is TP / (TP + FP + FN): 2/2, 1/3, 0/1.
    np.testing.assert_allclose(result["label_acc"], [1, 1 / 3, 0])
    np.testing.assert_array_equal(result["fp_num"], [0, 1, 0])
    np.testing.assert_array_equal(result["fn_num"], [0, 1, 1])
    # Instance-based, per row:
    #   row 0: gt {0, 2}, pred {0, 1}: |n| 1, |u| 3 -> acc 1/3, prec 1/2, rec 1/2
    #   row 1: gt {1},    pred {1}:    acc 1, prec 1, rec 1
    #   row 2: gt {0, 1}, pred {0}:    |n| 1, |u| 2 -> acc 1/2, prec 1, rec 1/2
    # acc = (1/3 + 1 + 1/2) / 3 = 11/18, prec = 2.5/3 = 5/6, rec = 2/3,
    # F1 = 2 (5/6)(2/3) / (5/6 + 2/3) = 20/27 (the mean of the per-row F1s, 0.5, 1, 2/3, would be 13/18).
    assert result["instance_acc"] == pytest.approx(11 / 18)
    assert result["instance_prec"] == pytest.approx(5 / 6)
    assert result["instance_recall"] == pytest.approx(2 / 3)
    assert result["instance_f1"] == pytest.approx(20 / 27)
    for key in ("ma", "instance_acc", "instance_prec", "instance_recall", "instance_f1"):
        assert type(result[key]) is float


def test_par_metrics_empty_rows_and_columns_score_zero_not_nan():
    # An instance with nothing predicted and nothing true, and an attribute with no positives: the repository's
    # epsilon turns 0/0 into 0.
    gt = np.array([[0, 0], [1, 0]])
    probs = np.array([[0.1, 0.2], [0.9, 0.1]])
    result = par_metrics(probs, gt, from_logits=False)
    assert result["instance_prec"] == pytest.approx(0.5)  # row 0 scores 0, row 1 scores 1
    assert result["label_pos_recall"][1] == 0.0
    assert all(np.isfinite(v).all() for v in result.values())


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_par_metrics_matches_the_repository(seed):
    rng = np.random.default_rng(seed)
    n, attributes = 50, 6  # few attributes, so that some rows are all-negative
    gt = (rng.random((n, attributes)) < 0.3).astype(np.float32)
    probs = rng.random((n, attributes)).astype(np.float32)
    probs[rng.random((n, attributes)) < 0.1] = 0.5  # exactly at the threshold
    ours = par_metrics(probs, gt, from_logits=False)
    reference = repo_get_pedestrian_metrics(gt, probs)
    assert set(ours) == set(reference)
    for key, value in reference.items():
        np.testing.assert_allclose(ours[key], value, rtol=0, atol=0, err_msg=key)
    # The same scores as logits (float64 so that the round trip keeps the threshold side), and as tensors.
    logits = np.log(probs.astype(np.float64)) - np.log1p(-probs.astype(np.float64))
    from_logits = par_metrics(torch.from_numpy(logits), torch.from_numpy(gt), from_logits=True)
    for key, value in reference.items():
        np.testing.assert_allclose(from_logits[key], value, rtol=1e-12, err_msg=key)


def test_par_metrics_needs_matching_shapes():
    with pytest.raises(ValueError, match="N x A"):
        par_metrics(np.zeros((2, 3)), np.zeros((2, 2)), from_logits=False)


# ---------------------------------------------------------------------------------------------------------------
# Annotation readers: small files in the published structure
# ---------------------------------------------------------------------------------------------------------------


# PA100k ------------------------------------------------------------------------------------------------------


def test_read_pa100k(tmp_path):
    content = pa100k_content(np.random.default_rng(0))
    path = save(tmp_path / "annotation.mat", content)
    annotations = read_pa100k(path)
    # format_pa100k.py, transcribed (sizes 5 / 2 / 3 instead of 80000 / 10000 / 10000):
    d = scipy.io.loadmat(path)
    image_name = ([d['train_images_name'][i][0][0] for i in range(5)]
                  + [d['val_images_name'][i][0][0] for i in range(2)]
                  + [d['test_images_name'][i][0][0] for i in range(3)])
    label = np.concatenate((d['train_label'], d['val_label'], d['test_label']), axis=0)
    attr_name = [d['attributes'][i][0][0] for i in range(26)]
    assert annotations.image_names == image_name == [f"{i:06}.jpg" for i in range(10)]
    np.testing.assert_array_equal(annotations.labels, label[:, PA100K_GROUP_ORDER])
    assert annotations.labels.dtype == np.uint8
    assert annotations.attribute_names == [attr_name[i] for i in PA100K_GROUP_ORDER]
    assert annotations.attribute_names[:2] == ["attr7", "attr8"]  # Hat, Glasses come first
    np.testing.assert_array_equal(annotations.partition["train"], np.arange(0, 5))
    np.testing.assert_array_equal(annotations.partition["val"], np.arange(5, 7))
    np.testing.assert_array_equal(annotations.partition["test"], np.arange(7, 10))
    np.testing.assert_array_equal(annotations.partition["trainval"], np.arange(0, 7))


def test_read_pa100k_names_the_missing_field(tmp_path):
    content = pa100k_content(np.random.default_rng(0))
    del content["val_label"]
    path = save(tmp_path / "annotation.mat", content)
    with pytest.raises(ValueError, match=r"annotation\.mat: no field 'val_label'.*not the PA100k annotation file"):
        read_pa100k(path)
    content = pa100k_content(np.random.default_rng(0))
    content["test_label"] = content["test_label"][:, :20]
    with pytest.raises(ValueError, match=r"annotation\.mat: 'test_label' has 20 columns"):
        read_pa100k(save(tmp_path / "annotation.mat", content))


def test_readers_reject_files_that_are_not_mat(tmp_path):
    path = tmp_path / "PETA.mat"
    path.write_text("not a mat file")
    with pytest.raises(ValueError, match=r"PETA\.mat: cannot read it"):
        read_peta(path)


# PETA --------------------------------------------------------------------------------------------------------


def test_read_peta(tmp_path):
    content, label = peta_content(np.random.default_rng(1))
    path = save(tmp_path / "PETA.mat", content)
    annotations = read_peta(path)
    # format_peta.py, transcribed (partition idx 0, the one pedes.py takes):
    peta_data = scipy.io.loadmat(path)
    raw_attr_name = [i[0][0] for i in peta_data['peta'][0][0][1]]
    raw_label = peta_data['peta'][0][0][0][:, 4:]
    train = peta_data['peta'][0][0][3][0][0][0][0][0][:, 0] - 1
    val = peta_data['peta'][0][0][3][0][0][0][0][1][:, 0] - 1
    test = peta_data['peta'][0][0][3][0][0][0][0][2][:, 0] - 1
    np.testing.assert_array_equal(raw_label, label)
    assert annotations.image_names == [f"{i + 1:05}.png" for i in range(PETA_IMAGES)]
    assert annotations.image_names[0] == "00001.png"
    np.testing.assert_array_equal(annotations.labels, raw_label[:, PETA_GROUP_ORDER])
    assert annotations.labels.shape == (PETA_IMAGES, 35) and annotations.labels.dtype == np.uint8
    assert annotations.attribute_names == [raw_attr_name[i] for i in PETA_GROUP_ORDER]
    assert "peta35" not in annotations.attribute_names  # only the first 35 are evaluated
    np.testing.assert_array_equal(annotations.partition["train"], train)
    np.testing.assert_array_equal(annotations.partition["val"], val)
    np.testing.assert_array_equal(annotations.partition["test"], test)
    np.testing.assert_array_equal(annotations.partition["trainval"], np.concatenate((train, val)))


def test_read_peta_names_the_missing_field(tmp_path):
    content, _ = peta_content(np.random.default_rng(1))
    with pytest.raises(ValueError, match=r"PETA\.mat: no field 'peta'.*not the PETA annotation file "
                                         r"\(expected the struct 'peta'"):
        read_peta(save(tmp_path / "PETA.mat", {"other": content["peta"]}))
    del content["peta"]["partition_attribute"]
    with pytest.raises(ValueError, match=r"PETA\.mat: no field at position 3 of 'peta' \(the partitions\)"):
        read_peta(save(tmp_path / "PETA.mat", content))
    content, _ = peta_content(np.random.default_rng(1))
    content["peta"]["data"] = content["peta"]["data"][:, :30]
    with pytest.raises(ValueError, match=r"PETA\.mat: peta\[0\]\[0\]\[0\] \(the data\) has 30 columns"):
        read_peta(save(tmp_path / "PETA.mat", content))


# RAPv1 -------------------------------------------------------------------------------------------------------


def test_read_rap_v1(tmp_path):
    path = save(tmp_path / "RAP_annotation.mat", rap1_content(np.random.default_rng(2)))
    annotations = read_rap(path, version=1)
    # format_rap.py, transcribed (partition idx 0), with pedes.py's `attr_label[attr_label == 2] = 0`:
    data = scipy.io.loadmat(path)
    image_name = [data['RAP_annotation'][0][0][5][i][0][0] for i in range(RAP1_IMAGES)]
    raw_attr_name = [data['RAP_annotation'][0][0][3][i][0][0] for i in range(RAP1_RAW_ATTRIBUTES)]
    raw_label = data['RAP_annotation'][0][0][1].copy()
    raw_label[raw_label == 2] = 0
    trainval = data['RAP_annotation'][0][0][0][0][0][0][0][0][0, :] - 1
    test = data['RAP_annotation'][0][0][0][0][0][0][0][1][0, :] - 1
    assert annotations.image_names == image_name
    np.testing.assert_array_equal(annotations.labels, raw_label[:, RAP1_GROUP_ORDER])
    assert annotations.labels.shape == (RAP1_IMAGES, 51) and set(np.unique(annotations.labels)) <= {0, 1}
    assert annotations.attribute_names == [raw_attr_name[i] for i in RAP1_GROUP_ORDER]
    assert annotations.attribute_names[0] == "rap9"  # English names, head attributes first
    assert set(annotations.partition) == {"trainval", "test"}
    np.testing.assert_array_equal(annotations.partition["trainval"], trainval)
    np.testing.assert_array_equal(annotations.partition["test"], test)


def test_read_rap_v1_names_the_missing_field(tmp_path):
    content = rap1_content(np.random.default_rng(2))
    del content["RAP_annotation"]["imagesname"]  # the last field: position 5 (image names) is missing
    with pytest.raises(ValueError, match=r"RAP_annotation\.mat: no field at position 5 of 'RAP_annotation' "
                                         r"\(the image names\).*not the RAPv1 annotation file"):
        read_rap(save(tmp_path / "RAP_annotation.mat", content), version=1)
    with pytest.raises(ValueError, match=r"RAP_annotation\.mat: no field 'RAP_annotation'"):
        read_rap(save(tmp_path / "RAP_annotation.mat", {"RAP": np.zeros(2)}), version=1)
    with pytest.raises(ValueError, match="version must be 1 or 2"):
        read_rap(tmp_path / "RAP_annotation.mat", version=3)


# RAPv2 -------------------------------------------------------------------------------------------------------


def test_read_rap_v2(tmp_path):
    content, selected = rap2_content(np.random.default_rng(3))
    path = save(tmp_path / "RAP_annotation.mat", content)
    annotations = read_rap(path, version=2)
    # format_rap2.py, transcribed (partition idx 0), with pedes.py's `attr_label[attr_label == 2] = 0`:
    data = scipy.io.loadmat(path)['RAP_annotation']
    image_name = [data['name'][0][0][i][0][0] for i in range(RAP2_IMAGES)]
    raw_attr_name = [data['attribute'][0][0][i][0][0] for i in range(RAP2_RAW_ATTRIBUTES)]
    raw_label = data['data'][0][0].copy()
    raw_label[raw_label == 2] = 0
    selected_attr_idx = (data['selected_attribute'][0][0][0] - 1)[RAP2_GROUP_ORDER].tolist()
    train = data['partition_attribute'][0][0][0][0]['train_index'][0][0][0] - 1
    val = data['partition_attribute'][0][0][0][0]['val_index'][0][0][0] - 1
    test = data['partition_attribute'][0][0][0][0]['test_index'][0][0][0] - 1
    assert selected_attr_idx == selected[RAP2_GROUP_ORDER].tolist()
    assert annotations.image_names == image_name
    np.testing.assert_array_equal(annotations.labels, raw_label[:, selected_attr_idx])
    assert annotations.labels.shape == (RAP2_IMAGES, 54) and set(np.unique(annotations.labels)) <= {0, 1}
    assert annotations.attribute_names == [raw_attr_name[i] for i in selected_attr_idx]
    np.testing.assert_array_equal(annotations.partition["train"], train)
    np.testing.assert_array_equal(annotations.partition["val"], val)
    np.testing.assert_array_equal(annotations.partition["test"], test)
    np.testing.assert_array_equal(annotations.partition["trainval"], np.concatenate([train, val]))


def test_read_rap_v2_names_the_missing_field(tmp_path):
    content, _ = rap2_content(np.random.default_rng(3))
    del content["RAP_annotation"]["selected_attribute"]
    with pytest.raises(ValueError, match=r"RAP_annotation\.mat: no field 'selected_attribute' in "
                                         r"'RAP_annotation'.*not the RAPv2 annotation file"):
        read_rap(save(tmp_path / "RAP_annotation.mat", content), version=2)
    content, _ = rap2_content(np.random.default_rng(3))
    for partition in content["RAP_annotation"]["partition_attribute"].flat:
        del partition["val_index"]
    with pytest.raises(ValueError, match=r"RAP_annotation\.mat: no field 'val_index'"):
        read_rap(save(tmp_path / "RAP_annotation.mat", content), version=2)
    content, selected = rap2_content(np.random.default_rng(3))
    content["RAP_annotation"]["data"][0, selected[0]] = 5
    with pytest.raises(ValueError, match=r"RAP_annotation\.mat: .*values other than 0, 1 and 2"):
        read_rap(save(tmp_path / "RAP_annotation.mat", content), version=2)
