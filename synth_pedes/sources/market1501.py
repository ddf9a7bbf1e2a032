"""Market-1501 (Zheng et al., ICCV 2015) as an image Re-ID benchmark dataset.

Layout as distributed (``gt_bbox/`` and ``gt_query/`` are not imported)::

    SRC/bounding_box_train/   12,936 images -> split "train"
    SRC/query/                 3,368 images -> split "query"
    SRC/bounding_box_test/    19,732 images -> split "gallery"

File names are ``PPPP_cXsY_FFFFFF_NN.jpg``: person id ``PPPP`` (``identity = int(PPPP)``), camera ``X``
(``camera = "c<X>"``), sequence ``Y``, frame ``FFFFFF``, DPM box ``NN`` (``00``: hand-drawn); the
sequence, frame and box go to ``extra`` with the folder. Files are imported in path order.

Evaluation protocol (the dataset's README and evaluation code): for each query, the gallery images of
the **same identity and the same camera** are excluded (neither correct nor wrong), and so are the
**junk** images, person id ``-1`` (boxes that are neither good nor bad detections: "zero impact on
accuracy"). Person id ``0000`` are **distractors** (false DPM detections): they stay in the gallery as
negatives, they never match a query. Both are kept as rows so nothing is lost: ``-1`` keeps identity
-1 and gets ``extra["junk"] = true``; ``0000`` keeps identity 0 and gets ``extra["distractor"] = true``
(every row carries both flags). An evaluator drops ``junk`` rows and same-identity-same-camera
matches, and keeps distractors.

Files whose name does not follow the pattern are bad entries under the ``on_bad`` policy of
``benchmarks.resolve_bad_entries``; hidden files and ``Thumbs.db`` (which some copies of the archive
carry) are ignored and counted (``counts["ignored_files"]``). Subfolders inside the three folders are
not scanned. A file that resolves outside ``SRC`` through a symlink is a bad entry, never read, unless
``allow_outside`` (``--allow-outside-root``). Images that exist but cannot be decoded are ``status=error`` rows.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .benchmarks import (MAX_ID, EntryItem, EntrySource, ScanResult, check_on_bad, check_text, entry_image_size,
                         resolve_bad_entries)
from .images import stored_path

_log = logging.getLogger(__name__)

SOURCE = "market1501"
FOLDERS = {"bounding_box_train": "train", "query": "query", "bounding_box_test": "gallery"}
IGNORED_NAMES = ("Thumbs.db",)
NAME_RE = re.compile(r"(-1|\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.(?:jpe?g|png)", re.IGNORECASE)


def parse_name(name: str) -> dict:
    """``0002_c1s1_000451_03.jpg`` -> identity, camera and the rest; ValueError for other names."""
    m = NAME_RE.fullmatch(name)
    if m is None:
        raise ValueError(f"unexpected file name: {name!r} is not PPPP_cXsY_FFFFFF_NN.jpg")
    pid = int(m.group(1))
    if pid > MAX_ID:
        raise ValueError(f"unexpected file name: {name!r}: person id {pid} is larger than the schema stores ({MAX_ID})")
    return {"identity": pid, "camera": f"c{int(m.group(2))}", "sequence": int(m.group(3)),
            "frame": int(m.group(4)), "bbox": int(m.group(5)), "junk": pid == -1, "distractor": pid == 0}


def _list_files(folder: Path) -> tuple[list[str], int]:
    """The names of the files (and of symlinks not to a folder) in ``folder``, sorted, and how many were
    ignored. A symlink's target is not looked at here: ``entry_image_size`` checks it stays inside SRC."""
    names, ignored = [], 0
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(".") or entry.name in IGNORED_NAMES:
                ignored += entry.is_file()
                continue
            if entry.is_file(follow_symlinks=False) or (entry.is_symlink() and not entry.is_dir()):
                names.append(entry.name)
    return sorted(names), ignored


def _market_item(index: int, src: Path, folder: str, name: str, allow_outside: bool, source: str = SOURCE,
                 parse: Callable[[str], dict] = parse_name) -> EntryItem:
    """One file as an item; a name that ``parse`` refuses (Market-1501's ``PPPP_cXsY_FFFFFF_NN.jpg`` by default) or
    that is not UTF-8, or a symlink leading outside ``src`` (unless ``allow_outside``), sets ``error``. What ``parse``
    returns beside identity and camera goes into ``extra``."""
    relpath = f"{folder}/{name}"
    item = EntryItem(index=index, key=f"{source}/{relpath}", relpath=relpath, size=0, split=FOLDERS[folder],
                     extra=(("folder", folder),))
    try:
        check_text(name, "the file name")
    except ValueError:  # os.scandir hands non-UTF-8 bytes over as surrogates, which no key can hold
        shown = stored_path(relpath)
        return replace(item, key=f"{source}/{shown}#entry-{index}", relpath=shown,
                       error=f"unexpected file name: {stored_path(name)!r} is not UTF-8 text; rename the file")
    try:
        item = replace(item, size=entry_image_size(src, relpath, allow_outside))
        info = parse(name)
    except ValueError as e:
        return replace(item, error=str(e))
    extra = (("folder", folder), *((k, v) for k, v in info.items() if k not in ("identity", "camera")))
    return replace(item, identity=info["identity"], camera=info["camera"], extra=extra)


def scan_three_folders(src: str | os.PathLike, on_bad: str, allow_outside: bool, *, source: str,
                       parse: Callable[[str], dict], dataset: str, archive: str) -> ScanResult:
    """List and parse the Market-1501 folder layout (``FOLDERS``) under ``src``, file names read by ``parse``; the
    messages name ``dataset`` and the ``archive`` it ships as. Shared by Market-1501 and DukeMTMC-reID."""
    check_on_bad(on_bad)
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: not a directory; pass the {dataset} root folder holding "
                                f"{', '.join(f + '/' for f in FOLDERS)}")
    missing = [f for f in FOLDERS if not (src / f).is_dir()]
    if missing:
        raise FileNotFoundError(f"{src}: no {', '.join(f + '/' for f in missing)} here; a {dataset} root holds "
                                f"{', '.join(f + '/' for f in FOLDERS)} (as in {archive})")
    items, ignored = [], 0
    for folder in sorted(FOLDERS):
        names, n_ignored = _list_files(src / folder)
        ignored += n_ignored
        items += [_market_item(len(items) + k, src, folder, name, allow_outside, source, parse)
                  for k, name in enumerate(names)]
    if ignored:
        _log.info("%s: ignored %d hidden or Thumbs.db files", src, ignored)
    result = resolve_bad_entries(items, on_bad, str(src))
    result.counts["ignored_files"] = ignored
    result.files = {"images": str(src)}
    return result


def scan_market1501(src: str | os.PathLike, on_bad: str = "error",
                    allow_outside: bool = False) -> tuple[ScanResult, EntrySource]:
    """List and parse the three folders under ``src`` (see the module docstring). A file that resolves
    outside ``src`` (through a symlink) is a bad entry, never read, unless ``allow_outside``."""
    result = scan_three_folders(src, on_bad, allow_outside, source=SOURCE, parse=parse_name, dataset="Market-1501",
                                archive="Market-1501-v15.09.15.zip")
    result.counts["junk"] = sum(1 for i in result.items if i.identity == -1 and not i.error)
    result.counts["distractors"] = sum(1 for i in result.items if i.identity == 0 and not i.error)
    return result, EntrySource(root=str(Path(src).resolve()), source=SOURCE)
