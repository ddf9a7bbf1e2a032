"""Small PA100k, PETA, RAPv1 and RAPv2 annotation files in the structure Rethinking_of_PAR's preprocess scripts index
(github.com/valencebond/Rethinking_of_PAR, dataset/pedes_attr/preprocess/format_*.py), for the readers' tests
(test_finetune_par.py) and the importers' (test_sources_par.py)."""
from __future__ import annotations

import numpy as np
import scipy.io


def cell(items, shape):
    """A MATLAB cell array (savemat writes object arrays as cells, dicts as structs, str as char arrays)."""
    out = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        out.flat[i] = item
    return out


# MATLAB indices, 1-based. Integers, since the scripts index numpy arrays with them; the PETA fixture stores
# doubles (MATLAB's default) to check that the readers take those too.
def one_based_column(indices, dtype=np.int32):
    return (np.asarray(indices) + 1).reshape(-1, 1).astype(dtype)


def one_based_row(indices, dtype=np.int32):
    return (np.asarray(indices) + 1).reshape(1, -1).astype(dtype)


def save(path, content):
    scipy.io.savemat(path, content)
    return path


def pa100k_content(rng, sizes=(5, 2, 3)):
    content = {"attributes": cell([f"attr{i}" for i in range(26)], (26, 1))}
    start = 0
    for split, size in zip(("train", "val", "test"), sizes):
        content[f"{split}_images_name"] = cell([f"{start + i:06}.jpg" for i in range(size)], (size, 1))
        content[f"{split}_label"] = (rng.random((size, 26)) < 0.4).astype(np.uint8)
        start += size
    return content


PETA_IMAGES, PETA_RAW_ATTRIBUTES = 12, 40  # the published file: 19000 images, 105 attributes


def peta_content(rng):
    label = (rng.random((PETA_IMAGES, PETA_RAW_ATTRIBUTES)) < 0.4).astype(np.float64)
    bookkeeping = np.tile(np.arange(4.0), (PETA_IMAGES, 1))
    partitions = []
    for k in range(5):
        order = rng.permutation(PETA_IMAGES)
        partitions.append({"train_index": one_based_column(order[:6], np.float64),
                           "val_index": one_based_column(order[6:8], np.float64),
                           "test_index": one_based_column(order[8:], np.float64)})
    peta = {
        "data": np.concatenate([bookkeeping, label], axis=1),
        "attribute": cell([f"peta{i}" for i in range(PETA_RAW_ATTRIBUTES)], (PETA_RAW_ATTRIBUTES, 1)),
        "selected_attribute": one_based_column(range(35)),
        "partition_attribute": cell(partitions, (5, 1)),
    }
    return {"peta": peta}, label


RAP1_IMAGES, RAP1_RAW_ATTRIBUTES = 10, 60  # the published file: 41585 images, 92 attributes


def rap1_content(rng):
    label = rng.integers(0, 3, (RAP1_IMAGES, RAP1_RAW_ATTRIBUTES)).astype(np.float64)  # 2: uncertain
    partitions = []
    for k in range(5):
        order = rng.permutation(RAP1_IMAGES)
        partitions.append({"train_index": one_based_row(order[:7]), "test_index": one_based_row(order[7:])})
    # Field order as the script indexes it: 0 partitions, 1 labels, 3 English names, 5 image names.
    rap = {
        "partion": cell(partitions, (5, 1)),
        "data": label,
        "attribute_chinese": cell([f"zh{i}" for i in range(RAP1_RAW_ATTRIBUTES)], (RAP1_RAW_ATTRIBUTES, 1)),
        "attribute_eng": cell([f"rap{i}" for i in range(RAP1_RAW_ATTRIBUTES)], (RAP1_RAW_ATTRIBUTES, 1)),
        "position": np.zeros((RAP1_IMAGES, 4)),
        "imagesname": cell([f"CAM01-{i}.png" for i in range(RAP1_IMAGES)], (RAP1_IMAGES, 1)),
    }
    return {"RAP_annotation": rap}


RAP2_IMAGES, RAP2_RAW_ATTRIBUTES = 14, 70  # the published file: 84928 images, 152 attributes


def rap2_content(rng):
    label = rng.integers(0, 3, (RAP2_IMAGES, RAP2_RAW_ATTRIBUTES)).astype(np.float64)
    selected = rng.choice(RAP2_RAW_ATTRIBUTES, 54, replace=False)
    partitions = []
    for k in range(5):
        order = rng.permutation(RAP2_IMAGES)
        partitions.append({"train_index": one_based_row(order[:8]), "val_index": one_based_row(order[8:11]),
                           "test_index": one_based_row(order[11:])})
    rap = {
        "name": cell([f"CAM{i:02}.png" for i in range(RAP2_IMAGES)], (RAP2_IMAGES, 1)),
        "position": np.zeros((RAP2_IMAGES, 4)),
        "attribute": cell([f"rap2_{i}" for i in range(RAP2_RAW_ATTRIBUTES)], (RAP2_RAW_ATTRIBUTES, 1)),
        "data": label,
        "selected_attribute": one_based_row(selected),
        "partition_attribute": cell(partitions, (1, 5)),
    }
    return {"RAP_annotation": rap}, selected
