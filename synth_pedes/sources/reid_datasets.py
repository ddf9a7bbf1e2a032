"""Image person-ReID benchmarks besides Market-1501 (``market1501.py``): DukeMTMC-reID and MSMT17.

**DukeMTMC-reID** (Zheng et al., ICCV 2017; Ristani et al., ECCVW 2016) is distributed in Market-1501's layout::

    SRC/bounding_box_train/   16,522 images -> split "train"
    SRC/query/                 2,228 images -> split "query"
    SRC/bounding_box_test/    17,661 images -> split "gallery"

File names are ``PPPP_cX_fFFFFFFF.jpg``: person id ``PPPP`` (``identity = int(PPPP)``), camera ``X`` (1..8,
``camera = "c<X>"``), frame ``FFFFFFF`` (to ``extra`` with the folder). Unlike Market-1501 there are **no junk
(-1) and no distractor (0000) images**: BoT (``michuanhaohao/reid-strong-baseline``
``data/datasets/dukemtmcreid.py``) keeps every file and asserts ``1 <= camera <= 8``. The gallery's extra
identities (ones that never appear in a query) are ordinary ids and simply never match. The folders are listed
and checked by Market-1501's own code (``market1501.scan_three_folders``: hidden files and ``Thumbs.db``
ignored and counted, subfolders not scanned, path order); only the name pattern differs.

**MSMT17** (Wei et al., CVPR 2018) comes with list files of ``relative/path.jpg pid`` lines::

    SRC/list_train.txt    -> split "train"   (paths under SRC/train/)
    SRC/list_val.txt      -> split "val"     (paths under SRC/train/: held-out images of training identities)
    SRC/list_query.txt    -> split "query"   (paths under SRC/test/)
    SRC/list_gallery.txt  -> split "gallery" (paths under SRC/test/)

(``MSMT17_V1``: ``train/`` and ``test/``; ``MSMT17_V2`` names them ``mask_train_v2/`` and ``mask_test_v2/``, and
is found too.) As torchreid (``torchreid/data/datasets/image/msmt17.py``) and BoT read it: ``identity`` is the
list's pid, not relabelled, and the camera is the third ``_`` field of the name
``0000_000_01_0303morning_0015_0.jpg`` (``01`` -> ``camera = "c1"``, 1..15; torchreid subtracts 1 for a 0-based
index). The training and the test identities are numbered separately from 0, so ``identity`` 5 in ``train``
and ``identity`` 5 in ``query`` are **different people**: tell them apart by split. Conventional results train
on ``train`` only (torchreid adds ``val`` only with ``combineall``; BoT ignores it).

Malformed names or lines, missing images and images listed twice are bad entries under ``on_bad``
(``benchmarks.resolve_bad_entries``); a missing list file or folder stops the import with a message naming it.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from pathlib import Path

from .benchmarks import (MAX_ID, EntryItem, EntrySource, ScanResult, check_on_bad, check_text, entry_image_size,
                         mark_duplicates, resolve_bad_entries)
from .market1501 import scan_three_folders

_log = logging.getLogger(__name__)

# ------------------------------------------------------------------ DukeMTMC-reID

DUKE_SOURCE = "dukemtmc-reid"
DUKE_NAME_RE = re.compile(r"(\d+)_c(\d+)_f(\d+)\.(?:jpe?g|png)", re.IGNORECASE)
DUKE_CAMERAS = range(1, 9)


def parse_duke_name(name: str) -> dict:
    """``0001_c2_f0046182.jpg`` -> identity, camera and frame; ValueError for other names."""
    m = DUKE_NAME_RE.fullmatch(name)
    if m is None:
        raise ValueError(f"unexpected file name: {name!r} is not PPPP_cX_fFFFFFFF.jpg")
    pid, cam = int(m.group(1)), int(m.group(2))
    if pid > MAX_ID:
        raise ValueError(f"unexpected file name: {name!r}: person id {pid} is larger than the schema stores ({MAX_ID})")
    if cam not in DUKE_CAMERAS:  # BoT asserts 1 <= camid <= 8
        raise ValueError(f"unexpected file name: {name!r}: camera {cam} is not one of DukeMTMC's 1..8")
    return {"identity": pid, "camera": f"c{cam}", "frame": int(m.group(3))}


def scan_dukemtmc_reid(src: str | os.PathLike, on_bad: str = "error",
                       allow_outside: bool = False) -> tuple[ScanResult, EntrySource]:
    """List and parse DukeMTMC-reID's three folders under ``src`` (see the module docstring)."""
    result = scan_three_folders(src, on_bad, allow_outside, source=DUKE_SOURCE, parse=parse_duke_name,
                                dataset="DukeMTMC-reID", archive="DukeMTMC-reID.zip")
    return result, EntrySource(root=str(Path(src).resolve()), source=DUKE_SOURCE)


# ------------------------------------------------------------------ MSMT17

MSMT_SOURCE = "msmt17"
# list file -> (split, which image folder its paths are relative to)
MSMT_LISTS = {"list_train.txt": ("train", "train"), "list_val.txt": ("val", "train"),
              "list_query.txt": ("query", "test"), "list_gallery.txt": ("gallery", "test")}
# (train folder, test folder) of MSMT17_V1, then of MSMT17_V2 (as torchreid's VERSION_DICT)
MSMT_FOLDERS = (("train", "test"), ("mask_train_v2", "mask_test_v2"))
MSMT_CAMERAS = range(1, 16)


def msmt17_camera(name: str) -> str:
    """``0000_000_01_0303morning_0015_0.jpg`` -> ``"c1"``: the third ``_`` field of the file name (camera 1..15);
    ValueError for other names."""
    fields = name.split("_")
    if len(fields) < 4 or not fields[2].isdigit():
        raise ValueError(f"unexpected file name: {name!r} is not PPPP_NNN_CC_<time>_....jpg (camera CC)")
    cam = int(fields[2])
    if cam not in MSMT_CAMERAS:
        raise ValueError(f"unexpected file name: {name!r}: camera {cam} is not one of MSMT17's 1..15")
    return f"c{cam}"


def _msmt_folders(src: Path) -> tuple[str, str]:
    for train, test in MSMT_FOLDERS:
        if (src / train).is_dir() and (src / test).is_dir():
            return train, test
    present = [f for pair in MSMT_FOLDERS for f in pair if (src / f).is_dir()]
    raise FileNotFoundError(
        f"{src}: no train/ and test/ image folders here (nor MSMT17_V2's mask_train_v2/ and mask_test_v2/)"
        + (f"; only {', '.join(p + '/' for p in present)}" if present else "")
        + "; pass the MSMT17_V1 (or MSMT17_V2) folder that holds them and the list_*.txt files")


def _msmt_item(index: int, src: Path, list_name: str, line_no: int, line: str, folder: str,
               allow_outside: bool) -> EntryItem:
    """One list line ``relative/path.jpg pid`` as an item; errors set ``error``."""
    split = MSMT_LISTS[list_name][0]
    where = f"{list_name} line {line_no}"
    item = EntryItem(index=index, key=f"{MSMT_SOURCE}/{list_name}#line-{line_no}", relpath="", size=0, split=split,
                     extra=(("list", list_name), ("line", line_no)))
    fields = line.split()
    if len(fields) != 2 or not fields[1].isdigit():
        return replace(item, error=f"malformed line: {where} is {line.strip()!r}, not 'relative/path.jpg pid'")
    path, pid = fields[0], int(fields[1])
    relpath = f"{folder}/{path}"
    item = replace(item, key=f"{MSMT_SOURCE}/{relpath}", relpath=relpath)
    try:
        check_text(path, "the image path")
        if pid > MAX_ID:
            raise ValueError(f"malformed line: person id {pid} is larger than the schema stores ({MAX_ID})")
        camera = msmt17_camera(path.rsplit("/", 1)[-1])
        item = replace(item, size=entry_image_size(src, relpath, allow_outside))
    except ValueError as e:
        return replace(item, error=f"{e} ({where})")
    return replace(item, identity=pid, camera=camera,
                   extra=(("folder", folder), ("list", list_name), ("line", line_no)))


def scan_msmt17(src: str | os.PathLike, on_bad: str = "error",
                allow_outside: bool = False) -> tuple[ScanResult, EntrySource]:
    """Read MSMT17's four list files under ``src`` and check their images (see the module docstring)."""
    check_on_bad(on_bad)
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: not a directory; pass the MSMT17_V1 (or MSMT17_V2) folder holding "
                                f"{', '.join(MSMT_LISTS)}, train/ and test/")
    missing = [name for name in MSMT_LISTS if not (src / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{src}: no {', '.join(missing)} here; an MSMT17 root holds {', '.join(MSMT_LISTS)} "
                                f"next to train/ and test/ (as in MSMT17_V1.tar.gz); pass that folder")
    train, test = _msmt_folders(src)
    items = []
    for list_name, (_, part) in MSMT_LISTS.items():
        folder = train if part == "train" else test
        # surrogateescape: a non-UTF-8 path becomes a bad entry (check_text) instead of failing the whole read
        lines = (src / list_name).read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        for line_no, line in enumerate(lines, 1):
            if line.strip():  # a blank line (e.g. a trailing one) is not an entry
                items.append(_msmt_item(len(items), src, list_name, line_no, line, folder, allow_outside))
    result = resolve_bad_entries(mark_duplicates(items, MSMT_SOURCE), on_bad, str(src))
    result.files = {"images": str(src), **{name: str(src / name) for name in MSMT_LISTS}}
    return result, EntrySource(root=str(src.resolve()), source=MSMT_SOURCE)
