"""Pedestrian-attribute-recognition benchmarks (PA-100K, PETA, RAPv1, RAPv2) as benchmark datasets with
``attribute_labels``.

Each is read from its folder as Rethinking_of_PAR (github.com/valencebond/Rethinking_of_PAR, commit 96e362c) expects
it: ``dataset/pedes_attr/preprocess/format_*.py`` load the annotation file from the root and set the image root
(``dataset.root``) to a folder next to it, and ``pedes.py`` opens ``os.path.join(root, image_name)``::

    PA-100K   SRC/annotation.mat                       SRC/data/          (names as annotation.mat lists them)
    PETA      SRC/PETA.mat                             SRC/images/        (00001.png ... 19000.png)
    RAPv1     SRC/RAP_annotation/RAP_annotation.mat    SRC/RAP_dataset/
    RAPv2     SRC/RAP_annotation/RAP_annotation.mat    SRC/RAP_dataset/

The annotation file is read by ``par_annotations`` (its ValueError names the file and the field when it is not the
expected one). Each image of partition 0 (the split Rethinking_of_PAR trains and reports on) becomes one row, in the
annotation's row order: key ``<source>/<image name>``, identity -1 (these datasets have no identities), the split
from the partition, ``attribute_labels`` = the image's evaluated labels in group order (the names go to the
manifest's ``attribute_names``), and ``extra`` = ``{"index": <row in the annotation>, "partition": <its name>}``.
PA-100K, PETA and RAPv2 have train / val / test, written as such (trainval is train + val, so it is not written);
RAPv1 has only trainval and test, and its trainval is written as split ``train``. Images in no partition are left
out and counted (``counts["not_in_partition"]``).

Missing image files, image names that leave the image folder and images named twice (by two rows, or by two
partitions) are bad entries under ``on_bad`` (``benchmarks.resolve_bad_entries``); images that exist but cannot be
decoded are ``status=error`` rows.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from .benchmarks import (EntryItem, EntrySource, ScanResult, check_on_bad, check_text, entry_image_size,
                         mark_duplicates, resolve_bad_entries)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParFormat:
    """Where one attribute dataset keeps its annotation file and its images, relative to its root."""
    source: str  # name used in keys and the ``source`` column
    dataset: str  # the name messages use
    annotation: str
    images_dir: str
    reader: str  # the ``par_annotations`` function that reads ``annotation``
    version: int | None = None  # read_rap's version

    def read(self, path: Path):
        from . import par_annotations  # scipy: loaded only when a .mat file is read

        read = getattr(par_annotations, self.reader)
        return read(path) if self.version is None else read(path, version=self.version)


PAR_FORMATS = {
    "pa100k": ParFormat("pa100k", "PA-100K", "annotation.mat", "data", "read_pa100k"),
    "peta": ParFormat("peta", "PETA", "PETA.mat", "images", "read_peta"),
    "rap": ParFormat("rap", "RAPv1", "RAP_annotation/RAP_annotation.mat", "RAP_dataset", "read_rap", 1),
    "rap2": ParFormat("rap2", "RAPv2", "RAP_annotation/RAP_annotation.mat", "RAP_dataset", "read_rap", 2),
}
SPLITS = ("train", "val", "test")  # in this order: an image listed in two keeps the first, the other is a duplicate


def partition_splits(partition: dict) -> dict:
    """Split name -> (partition name, row indices): train / val / test where the dataset has them, else (RAPv1)
    trainval as ``train`` and test. trainval = train + val is never a split of its own."""
    if all(name in partition for name in SPLITS):
        return {name: (name, partition[name]) for name in SPLITS}
    return {"train": ("trainval", partition["trainval"]), "test": ("test", partition["test"])}


def _par_item(index: int, fmt: ParFormat, images: Path, name: str, row: int, split: str, part: str, labels,
              allow_outside: bool) -> EntryItem:
    """One image of the partition as an item; a name that is not text (no key can hold it), leaves ``images`` or
    names no file sets ``error``."""
    item = EntryItem(index=index, key=f"{fmt.source}/{name}", relpath=name, size=0, split=split,
                     attribute_labels=tuple(int(v) for v in labels), extra=(("index", row), ("partition", part)))
    where = f"row {row} of {fmt.annotation}"
    try:
        check_text(name, "the image name")
    except ValueError as e:
        return replace(item, key=f"{fmt.source}/#entry-{index}", relpath="", error=f"{e} ({where})")
    try:
        return replace(item, size=entry_image_size(images, name, allow_outside))
    except ValueError as e:
        return replace(item, error=f"{e} ({where})")


def _require(path: Path, is_dir: bool, fmt: ParFormat, src: Path) -> Path:
    if path.is_dir() if is_dir else path.is_file():
        return path
    raise FileNotFoundError(
        f"{path}: {'no such folder' if is_dir else 'no such file'}; a {fmt.dataset} root holds {fmt.annotation} and "
        f"the images in {fmt.images_dir}/ (the layout Rethinking_of_PAR reads); pass that folder as SRC"
        + ("" if src.is_dir() else f" ({src} is not a directory)"))


def scan_par(src: str | os.PathLike, kind: str, on_bad: str = "error",
             allow_outside: bool = False) -> tuple[ScanResult, EntrySource]:
    """Read the annotation file of the attribute dataset ``kind`` (in PAR_FORMATS) under ``src`` and check the
    images of partition 0 (see the module docstring). Returns the items (annotation row order) with their counts
    and ``attribute_names``, and the transform that reads their images. Raises FileNotFoundError naming the
    expected annotation file or image folder, the reader's ValueError for an annotation file that is not the
    expected one, and BadEntriesError for bad entries when ``on_bad="error"``."""
    check_on_bad(on_bad)
    fmt = PAR_FORMATS[kind]
    src = Path(src)
    annotation = _require(src / fmt.annotation, False, fmt, src)
    images = _require(src / fmt.images_dir, True, fmt, src)
    annotations = fmt.read(annotation)
    rows = sorted((int(row), k, split, part) for k, (split, (part, indices)) in
                  enumerate(partition_splits(annotations.partition).items()) for row in indices)
    items = [_par_item(i, fmt, images, annotations.image_names[row], row, split, part, annotations.labels[row],
                       allow_outside) for i, (row, _, split, part) in enumerate(rows)]
    in_partition = len({row for row, *_ in rows})
    not_in_partition = len(annotations.image_names) - in_partition
    if not_in_partition:
        _log.info("%s: %d of %d images are in no split of partition 0; left out", annotation, not_in_partition,
                  len(annotations.image_names))
    result = resolve_bad_entries(mark_duplicates(items, fmt.source), on_bad, str(annotation))
    result.counts["not_in_partition"] = not_in_partition
    result.files = {"annotations": str(annotation), "images": str(images)}
    result.attribute_names = tuple(annotations.attribute_names)
    return result, EntrySource(root=str(images.resolve()), source=fmt.source)
