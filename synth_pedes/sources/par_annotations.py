"""Annotation readers for the pedestrian-attribute-recognition (PAR) benchmarks PA100k, PETA, RAPv1 and RAPv2, which
ship their labels, attribute names and splits as MATLAB .mat files. They read them as Rethinking_of_PAR (Jia et al.,
"Rethinking of pedestrian attribute recognition", github.com/valencebond/Rethinking_of_PAR, commit 96e362c) does in
its ``dataset/pedes_attr/preprocess/format_*.py`` scripts, so that labels, names and splits are the ones its numbers
are reported on. ``plip import pa100k|peta|rap|rap2`` (``par_datasets.py``) turns them into datasets; the loss and
metrics that train and score on them are in ``plip_train/finetune/par.py``.

The readers return the evaluated attributes only (26 / 35 / 51 / 54), in the repository's "group order" (head,
upper body, lower body, feet, bags, age, gender, others; ``dataset/pedes_attr/annotation.md``), which is the
order its preprocess scripts write with ``reorder=True`` and its configs train on (``DATASET.LABEL: 'eval'``).
mA and the instance metrics do not depend on the order; the attribute names do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy.io import loadmat
from scipy.io.matlab import MatReadError

__all__ = [
    "PA100K_GROUP_ORDER",
    "PETA_GROUP_ORDER",
    "RAP1_GROUP_ORDER",
    "RAP2_GROUP_ORDER",
    "ParAnnotations",
    "read_pa100k",
    "read_peta",
    "read_rap",
]


@dataclass
class ParAnnotations:
    """One dataset's annotations: ``labels[i]`` are the evaluated attributes of ``image_names[i]`` (0/1, in
    group order), ``partition`` maps a split name to row indices (0-based) into both."""

    image_names: list[str]
    labels: np.ndarray
    attribute_names: list[str]
    partition: dict[str, np.ndarray] = field(default_factory=dict)


# Rethinking_of_PAR's group orders (the preprocess scripts' `group_order`): position k of the evaluated label
# vector is the dataset's attribute group_order[k] (0-based, among the evaluated attributes).
PA100K_GROUP_ORDER = [7, 8, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 9, 10, 11, 12, 1, 2, 3, 0, 4, 5, 6]
PETA_GROUP_ORDER = [10, 18, 19, 30, 15, 7, 9, 11, 14, 21, 26, 29, 32, 33, 34, 6, 8, 12, 25, 27, 31, 13, 23, 24, 28,
                    4, 5, 17, 20, 22, 0, 1, 2, 3, 16]
RAP1_GROUP_ORDER = [9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33,
                    34, 35, 36, 37, 38, 39, 40, 41, 42, 1, 2, 3, 0, 4, 5, 6, 7, 8, 43, 44, 45, 46, 47, 48, 49, 50]
RAP2_GROUP_ORDER = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33,
                    34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 1, 2, 3, 4, 0, 5, 6, 7, 8, 9, 45, 46, 47, 48, 49,
                    50, 51, 52, 53]


class _Mat:
    """A loaded .mat file that turns every failed lookup into a ValueError naming the file and the field, so a
    wrong or truncated download fails with a message a user can act on instead of an IndexError."""

    def __init__(self, path, dataset: str, expected: str):
        self.path = os.fspath(path)
        self.name = os.path.basename(self.path)
        self.dataset = dataset
        self.expected = expected
        try:
            self.data = loadmat(self.path)
        except (MatReadError, ValueError, NotImplementedError) as error:
            # NotImplementedError: a MATLAB v7.3 (HDF5) file, which scipy cannot read. A missing file is not
            # caught: FileNotFoundError already says what is wrong.
            raise ValueError(f"{self.name}: cannot read it as a MATLAB v5 .mat file ({error}); "
                             f"expected the {dataset} annotation file {expected} ({self.path})") from error

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.name}: {what}; this is not the {self.dataset} annotation file "
                          f"(expected {self.expected}) ({self.path})")

    def top(self, key: str) -> np.ndarray:
        if key not in self.data:
            raise self.fail(f"no field '{key}'")
        return self.data[key]

    def struct(self, key: str) -> np.void:
        """The 1 x 1 MATLAB struct ``key`` (``data[key][0][0]``)."""
        value = self.top(key)
        if value.dtype.names is None or value.shape != (1, 1):
            raise self.fail(f"'{key}' is not a 1 x 1 struct (got {value.dtype} of shape {value.shape})")
        return value[0][0]

    def member(self, record: np.void, where: str, key: int | str, role: str):
        """A struct's field by position (as the preprocess scripts index PETA and RAPv1) or by name (RAPv2)."""
        names = record.dtype.names
        if isinstance(key, int) and key >= len(names):
            raise self.fail(f"no field at position {key} of {where} ({role}); it has {len(names)} fields {names}")
        if isinstance(key, str) and key not in names:
            raise self.fail(f"no field '{key}' in {where} ({role})")
        return record[key]

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            raise self.fail(what)

    def strings(self, cell, where: str) -> list[str]:
        """A cell array of strings (N x 1 or 1 x N), read element by element as the scripts do (``c[i][0][0]``
        after flattening the singleton axis)."""
        self.check(isinstance(cell, np.ndarray) and cell.dtype == object and cell.ndim == 2 and 1 in cell.shape,
                   f"{where} is not a cell array of strings (got {getattr(cell, 'dtype', type(cell))} of shape "
                   f"{getattr(cell, 'shape', '?')})")
        out = []
        for i, item in enumerate(cell.reshape(-1)):
            item = np.asarray(item).reshape(-1)
            self.check(item.size == 1 and isinstance(item[0], str), f"{where}[{i}] is not a string")
            out.append(str(item[0]))
        return out

    def matrix(self, value, where: str, min_columns: int, rows: int | None = None) -> np.ndarray:
        self.check(isinstance(value, np.ndarray) and value.ndim == 2 and value.dtype != object,
                   f"{where} is not a numeric matrix (got {getattr(value, 'dtype', type(value))} of shape "
                   f"{getattr(value, 'shape', '?')})")
        self.check(value.shape[1] >= min_columns,
                   f"{where} has {value.shape[1]} columns, expected at least {min_columns}")
        if rows is not None:
            self.check(value.shape[0] == rows, f"{where} has {value.shape[0]} rows, expected {rows} (one per image)")
        return value

    def indices(self, value, where: str, n: int) -> np.ndarray:
        """MATLAB's 1-based image indices (a row or column vector) as 0-based row indices."""
        self.check(isinstance(value, np.ndarray) and value.dtype != object and value.ndim == 2 and 1 in value.shape
                   and value.size > 0, f"{where} is not a vector of image indices")
        flat = value.reshape(-1)
        self.check(np.all(flat == np.round(flat)) and flat.min() >= 1 and flat.max() <= n,
                   f"{where} holds indices outside 1..{n} (MATLAB indices into the {n} images)")
        return flat.astype(np.int64) - 1

    def labels(self, raw: np.ndarray, where: str) -> np.ndarray:
        # RAP marks some attributes 2 ("uncertain"); Rethinking_of_PAR counts them as negatives
        # (dataset/pedes_attr/pedes.py: attr_label[attr_label == 2] = 0).
        raw = np.where(raw == 2, 0, raw)
        self.check(np.isin(raw, (0, 1)).all(), f"{where} holds values other than 0, 1 and 2")
        return raw.astype(np.uint8)


def _first_partition(partitions, index):
    """Partition 0's struct record, or None where the cell array is not shaped as the scripts index it."""
    try:
        return index(partitions)
    except (IndexError, TypeError, AttributeError):
        return None


def read_pa100k(path) -> ParAnnotations:
    """PA100k's ``annotation.mat``, as ``dataset/pedes_attr/preprocess/format_pa100k.py`` reads it: the images
    are ``train_images_name`` + ``val_images_name`` + ``test_images_name`` (cells of N x 1 strings), the labels
    the three ``*_label`` matrices (N x 26) stacked in that order, the names ``attributes`` (26 x 1). Splits:
    train, val, test in file order (80000 / 10000 / 10000 in the published file) and trainval = train + val."""
    mat = _Mat(path, "PA100k", "'annotation.mat' with train/val/test_images_name, *_label and attributes")
    names = mat.strings(mat.top("attributes"), "'attributes'")
    mat.check(len(names) == len(PA100K_GROUP_ORDER),
              f"'attributes' has {len(names)} names, expected {len(PA100K_GROUP_ORDER)}")
    images, labels, partition, start = [], [], {}, 0
    for split in ("train", "val", "test"):
        split_images = mat.strings(mat.top(f"{split}_images_name"), f"'{split}_images_name'")
        split_labels = mat.matrix(mat.top(f"{split}_label"), f"'{split}_label'", len(names), rows=len(split_images))
        mat.check(split_labels.shape[1] == len(names),
                  f"'{split}_label' has {split_labels.shape[1]} columns, expected {len(names)}")
        images += split_images
        labels.append(split_labels)
        partition[split] = np.arange(start, start + len(split_images))
        start += len(split_images)
    partition["trainval"] = np.concatenate([partition["train"], partition["val"]])
    label = mat.labels(np.concatenate(labels, axis=0), "the labels")[:, PA100K_GROUP_ORDER]
    return ParAnnotations(images, label, [names[i] for i in PA100K_GROUP_ORDER], partition)


def read_peta(path) -> ParAnnotations:
    """PETA's ``PETA.mat``, as ``dataset/pedes_attr/preprocess/format_peta.py`` reads it, by position in the
    struct ``peta``: ``peta[0][0][0]`` the data (19000 x 109: four bookkeeping columns, then the 105 attribute
    labels), ``peta[0][0][1]`` the 105 attribute names, ``peta[0][0][3]`` the five random partitions, each
    ``[idx][0][0][0]`` holding 1-based train / val / test indices (column vectors) at positions 0 / 1 / 2.

    The 35 evaluated attributes are the first 35 of the 105 (``label_idx.eval``), in group order. Images are
    ``00001.png`` ... (the script numbers the rows). The split is partition 0, the one the repository's
    dataset class takes by default (``pedes.py``: "default partition 0"); trainval = train + val."""
    mat = _Mat(path, "PETA", "the struct 'peta' as shipped in PETA.mat")
    peta = mat.struct("peta")
    data = mat.matrix(mat.member(peta, "'peta'", 0, "the data: 4 columns, then the labels"),
                      "peta[0][0][0] (the data)", 4 + len(PETA_GROUP_ORDER))
    n = data.shape[0]
    raw_names = mat.strings(mat.member(peta, "'peta'", 1, "the attribute names"), "peta[0][0][1] (the names)")
    raw_label = data[:, 4:]
    mat.check(len(raw_names) == raw_label.shape[1],
              f"peta[0][0][1] has {len(raw_names)} names but the data has {raw_label.shape[1]} label columns")
    partitions = mat.member(peta, "'peta'", 3, "the partitions")
    split = _first_partition(partitions, lambda cell: cell[0][0][0][0])
    if not (isinstance(split, np.void) and len(split) >= 3):
        raise mat.fail("peta[0][0][3][0] (partition 0) is not a struct of train / val / test indices")
    partition = {name: mat.indices(split[k], f"peta[0][0][3][0] {name} indices (position {k})", n)
                 for k, name in enumerate(("train", "val", "test"))}
    partition["trainval"] = np.concatenate([partition["train"], partition["val"]])
    label = mat.labels(raw_label[:, PETA_GROUP_ORDER], "peta[0][0][0] (the labels)")
    images = [f"{i + 1:05}.png" for i in range(n)]
    return ParAnnotations(images, label, [raw_names[i] for i in PETA_GROUP_ORDER], partition)


def read_rap(path, version: int = 1) -> ParAnnotations:
    """RAP's ``RAP_annotation.mat``: version 1 as ``format_rap.py``, version 2 as ``format_rap2.py`` read it.

    RAPv1, by position in the struct ``RAP_annotation``: ``[0][0][0]`` the five partitions (each
    ``[idx][0][0][0]`` holding 1-based train and test indices as row vectors at positions 0 / 1), ``[0][0][1]``
    the labels (41585 x 92), ``[0][0][3]`` the 92 English attribute names, ``[0][0][5]`` the image names. The 51
    evaluated attributes are the first 51; the splits are partition 0's ``trainval`` and ``test`` (RAPv1 has no
    validation split).

    RAPv2, by name: ``data`` (84928 x 152), ``attribute`` (152 names), ``name`` (image names),
    ``selected_attribute`` (the 54 evaluated attributes, 1-based, taken in group order) and
    ``partition_attribute`` (five partitions, each with ``train_index`` / ``val_index`` / ``test_index``);
    partition 0 gives train, val, test and trainval = train + val.
    """
    if version == 1:
        return _read_rap1(path)
    if version == 2:
        return _read_rap2(path)
    raise ValueError(f"read_rap: version must be 1 or 2, got {version!r}")


def _read_rap1(path) -> ParAnnotations:
    mat = _Mat(path, "RAPv1", "the struct 'RAP_annotation' as shipped in RAPv1's RAP_annotation.mat")
    rap = mat.struct("RAP_annotation")
    raw_label = mat.matrix(mat.member(rap, "'RAP_annotation'", 1, "the labels"),
                           "RAP_annotation[0][0][1] (the labels)", len(RAP1_GROUP_ORDER))
    n = raw_label.shape[0]
    raw_names = mat.strings(mat.member(rap, "'RAP_annotation'", 3, "the attribute names"),
                            "RAP_annotation[0][0][3] (the attribute names)")
    mat.check(len(raw_names) == raw_label.shape[1], f"RAP_annotation[0][0][3] has {len(raw_names)} names but the "
              f"labels have {raw_label.shape[1]} columns")
    images = mat.strings(mat.member(rap, "'RAP_annotation'", 5, "the image names"),
                         "RAP_annotation[0][0][5] (the image names)")
    mat.check(len(images) == n, f"RAP_annotation[0][0][5] has {len(images)} image names but the labels have {n} rows")
    partitions = mat.member(rap, "'RAP_annotation'", 0, "the partitions")
    split = _first_partition(partitions, lambda cell: cell[0][0][0][0])
    if not (isinstance(split, np.void) and len(split) >= 2):
        raise mat.fail("RAP_annotation[0][0][0][0] (partition 0) is not a struct of train / test indices")
    partition = {name: mat.indices(split[k], f"RAP_annotation[0][0][0][0] {name} indices (position {k})", n)
                 for k, name in enumerate(("trainval", "test"))}
    label = mat.labels(raw_label[:, RAP1_GROUP_ORDER], "RAP_annotation[0][0][1] (the labels)")
    return ParAnnotations(images, label, [raw_names[i] for i in RAP1_GROUP_ORDER], partition)


def _read_rap2(path) -> ParAnnotations:
    mat = _Mat(path, "RAPv2", "the struct 'RAP_annotation' as shipped in RAPv2's RAP_annotation.mat")
    rap = mat.struct("RAP_annotation")
    where = "'RAP_annotation'"
    raw_label = mat.matrix(mat.member(rap, where, "data", "the labels"), "RAP_annotation.data", 1)
    n = raw_label.shape[0]
    raw_names = mat.strings(mat.member(rap, where, "attribute", "the attribute names"), "RAP_annotation.attribute")
    mat.check(len(raw_names) == raw_label.shape[1], f"RAP_annotation.attribute has {len(raw_names)} names but "
              f"RAP_annotation.data has {raw_label.shape[1]} columns")
    images = mat.strings(mat.member(rap, where, "name", "the image names"), "RAP_annotation.name")
    mat.check(len(images) == n, f"RAP_annotation.name has {len(images)} image names but the data has {n} rows")
    selected = mat.indices(mat.member(rap, where, "selected_attribute", "the evaluated attributes"),
                           "RAP_annotation.selected_attribute", raw_label.shape[1])
    mat.check(selected.size == len(RAP2_GROUP_ORDER), f"RAP_annotation.selected_attribute lists {selected.size} "
              f"attributes, expected {len(RAP2_GROUP_ORDER)}")
    columns = selected[RAP2_GROUP_ORDER]
    partitions = mat.member(rap, where, "partition_attribute", "the partitions")
    split = _first_partition(partitions, lambda cell: cell.reshape(-1)[0][0][0])
    if not (isinstance(split, np.void) and split.dtype.names is not None):
        raise mat.fail("RAP_annotation.partition_attribute{1} (partition 0) is not a struct of index vectors")
    partition = {}
    for name in ("train", "val", "test"):
        key = f"{name}_index"
        if key not in split.dtype.names:
            raise mat.fail(f"no field '{key}' in RAP_annotation.partition_attribute{{1}} (partition 0)")
        partition[name] = mat.indices(split[key], f"RAP_annotation.partition_attribute{{1}}.{key}", n)
    partition["trainval"] = np.concatenate([partition["train"], partition["val"]])
    label = mat.labels(raw_label[:, columns], "RAP_annotation.data (the labels)")
    return ParAnnotations(images, label, [raw_names[i] for i in columns], partition)
