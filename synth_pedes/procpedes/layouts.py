"""Write records in the on-disk layouts of the real text-based person retrieval benchmarks.

* ``cuhk-pedes``: ``imgs/`` + ``reid_raw.json``: a list of ``{"split", "captions", "file_path",
  "processed_tokens", "id"}``; ids 1-based; split train/val/test; all captions of an image.
* ``icfg-pedes``: ``imgs/`` + ``ICFG_PEDES.json``: the same fields; ids 0-based; one caption per
  image (its ``icfg-pedes``-style caption if it has one, else its first); split train/test only:
  **val is written as test** (ICFG has no validation split and evaluates on test; folding held-out
  identities into test keeps train free of them).
* ``rstpreid``: ``imgs/`` + ``data_captions.json``: a list of ``{"id", "img_path", "captions",
  "split"}``; ids 0-based; split train/val/test.

* ``market1501``: ``bounding_box_train/`` (train identities), ``query/`` and ``bounding_box_test/``
  (val and test identities: the first image of an identity from each camera is its query for that
  camera, the rest are gallery), file names ``PPPP_cCs1_FFFFFF_01.jpg`` with 1-based dense ids. No
  junk (-1) or distractor (0000) images are written: ProcPedes has no false detections.

* ``pa100k``: the PA-100K pedestrian-attribute layout, ``data/NNNNNN.jpg`` + ``annotation.mat`` with 26 0/1
  labels per image derived from the ground truth (``par_layout``, which documents the mapping).

Ids are dense and assigned in sorted order of the records' identities. Splits ``query``/``gallery``
(image-ReID records) are written as test. Records whose status is not ``ok`` or that have no image
are skipped. The JSON is deterministic (entries sorted by id then path, indent 4).
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path, PurePosixPath

from .par_layout import write_pa100k

logger = logging.getLogger(__name__)

LAYOUT_FORMATS = ("cuhk-pedes", "icfg-pedes", "rstpreid", "market1501", "pa100k")
_JSON_NAME = {"cuhk-pedes": "reid_raw.json", "icfg-pedes": "ICFG_PEDES.json", "rstpreid": "data_captions.json"}
_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens, punctuation dropped (the ``processed_tokens`` of CUHK-PEDES)."""
    return _TOKEN.findall(text.lower())


def _split(split: str, fmt: str) -> str:
    split = split if split in ("train", "val", "test") else "test"
    if fmt == "icfg-pedes" and split == "val":
        return "test"
    return split


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _file_path(rec: dict, fmt: str, split: str) -> str:
    base = _safe(PurePosixPath(rec["key"]).name)
    ident = int(rec["identity"])
    stem = f"{ident:05d}_{base}" if ident >= 0 else base
    if fmt == "cuhk-pedes":
        return f"{_safe(rec.get('source') or 'ProcPedes')}/{stem}"
    if fmt == "icfg-pedes":
        return f"{split}/{ident:05d}/{stem}"
    return stem


def write_layout(records, out_dir, fmt: str) -> dict:
    """Write ``records`` (an iterable of record dicts) into ``out_dir`` in benchmark format ``fmt``.

    Returns a summary: format, json and images paths, counts of images, captions and identities, and
    images per split (market1501 and pa100k: see their writers).
    """
    if fmt not in LAYOUT_FORMATS:
        raise ValueError(f"write_layout: unknown format {fmt!r}; choose one of {', '.join(LAYOUT_FORMATS)}")
    if fmt == "market1501":
        return _write_market(records, Path(out_dir))
    if fmt == "pa100k":
        return write_pa100k(records, out_dir)
    out = Path(out_dir)
    imgs = out / "imgs"
    imgs.mkdir(parents=True, exist_ok=True)
    rows = []
    seen: dict[str, str] = {}
    skipped = 0
    for rec in records:
        if rec.get("status") != "ok" or not rec.get("image") or rec["image"].get("bytes") is None:
            skipped += 1
            continue
        split = _split(rec.get("split") or "train", fmt)
        path = _file_path(rec, fmt, split)
        if path in seen:
            raise ValueError(f"write_layout: records {seen[path]!r} and {rec['key']!r} map to the same file {path!r}")
        seen[path] = rec["key"]
        target = imgs / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(rec["image"]["bytes"])
        caps = [c["text"] for c in rec.get("captions") or []]
        if fmt == "icfg-pedes" and caps:
            styled = [c["text"] for c in rec["captions"] if c.get("style") == "icfg-pedes"]
            caps = [styled[0] if styled else caps[0]]
        rows.append((int(rec["identity"]), path, split, caps))
    base = 1 if fmt == "cuhk-pedes" else 0
    dense = {ident: i + base for i, ident in enumerate(sorted({r[0] for r in rows}))}
    entries = []
    for ident, path, split, caps in sorted(rows, key=lambda r: (dense[r[0]], r[1])):
        if fmt == "rstpreid":
            entries.append({"id": dense[ident], "img_path": path, "captions": caps, "split": split})
        else:
            entries.append({"split": split, "captions": caps, "file_path": path,
                            "processed_tokens": [tokenize(c) for c in caps], "id": dense[ident]})
    json_path = out / _JSON_NAME[fmt]
    json_path.write_text(json.dumps(entries, indent=4) + "\n", encoding="utf-8")
    splits: dict[str, int] = {}
    for e in entries:
        splits[e["split"]] = splits.get(e["split"], 0) + 1
    summary = {"format": fmt, "json": str(json_path), "images_dir": str(imgs), "n_images": len(entries),
               "n_captions": sum(len(e["captions"]) for e in entries), "n_ids": len(dense),
               "id_base": base, "images_per_split": dict(sorted(splits.items())), "skipped_records": skipped,
               "split_map": {"val": "test"} if fmt == "icfg-pedes" else {}}
    logger.info("wrote %s layout: %d images, %d ids -> %s", fmt, len(entries), len(dense), json_path)
    return summary


def _write_market(records, out: Path) -> dict:
    """The Market-1501 image-ReID layout (see the module docstring)."""
    kept = [r for r in records if r.get("status") == "ok" and (r.get("image") or {}).get("bytes") is not None]
    dense = {ident: i + 1 for i, ident in enumerate(sorted({int(r["identity"]) for r in kept}))}
    if len(dense) > 9999:
        raise ValueError(f"write_layout: market1501 names hold 4-digit ids; {len(dense)} identities do not fit")
    folders = {"bounding_box_train": 0, "query": 0, "bounding_box_test": 0}
    for folder in folders:
        (out / folder).mkdir(parents=True, exist_ok=True)
    queried: set[tuple[int, str]] = set()
    for frame, rec in enumerate(sorted(kept, key=lambda r: (int(r["identity"]), r["key"]))):
        ident, camera = int(rec["identity"]), str(rec.get("camera") or "c1")
        if rec.get("split") == "train":
            folder = "bounding_box_train"
        elif (ident, camera) not in queried:
            queried.add((ident, camera))
            folder = "query"
        else:
            folder = "bounding_box_test"
        cam = int(camera.lstrip("c") or 1)
        (out / folder / f"{dense[ident]:04d}_c{cam}s1_{frame:06d}_01.jpg").write_bytes(rec["image"]["bytes"])
        folders[folder] += 1
    logger.info("wrote market1501 layout: %s -> %s", folders, out)
    return {"format": "market1501", "images_dir": str(out), "n_images": sum(folders.values()), "n_ids": len(dense),
            "id_base": 1, "images_per_folder": folders, "skipped_records": 0}
