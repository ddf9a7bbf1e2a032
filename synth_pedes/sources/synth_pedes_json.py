"""The released SYNTH-PEDES layout (docs/formats.md#synth-pedes-release): import it as a caption dataset, and
export ours to it.

Layout::

    SRC/Part1 .. Part11/<id>/<k>.jpg     images, one folder per identity, k from 0
    SRC/synthpedes-dataset.json          (the README spells it synthpedes_dataset.json: both accepted)

The JSON is one list of ``{"id": int, "file_path": "Part1/7/1.jpg", "attributes": ["man,black hair,black
shirt,pink shorts,black shoes,unknown"], "captions": [str, ...], "prompt_caption": [str, ...]}``.

Import (``scan_synth_pedes_json``): one row per entry in JSON order, key ``synth-pedes/<file_path>``,
``identity`` = ``id``; the one comma-joined attribute string fills the six slots in order (person,
head, upper, lower, shoes, belongings; an empty part reads as ``unknown``); ``captions`` become kind
``generated`` with styles ``spac-0``, ``spac-1``, ... by position; ``prompt_caption`` becomes kind
``prompt``, style ``prompt`` (a missing ``prompt_caption`` reads as none). ``extra`` keeps ``index``, ``id``
and ``file_path``. Bad entries (a missing image, a malformed entry: docs/formats.md#malformed-entries,
with ids 0-based; an attribute string that is not six comma-separated parts, a duplicate ``file_path``)
follow the ``on_bad`` policy of ``benchmarks.resolve_bad_entries``; blank captions are dropped and counted.

Export (``export_synth_pedes_json``): the ``status == "ok"`` rows of a dataset, in the dataset's order,
written as that layout: images to ``Part<k>/<id>/<n>.jpg`` with ``n`` counting from 0 within an identity
and identities assigned to Parts in ascending order, ``ids_per_part`` per Part (30,000 by default:
about the release's 312k identities in 11 Parts). JPEG bytes are copied unchanged; other formats are
re-encoded as JPEG (quality 95) and counted. Rows of unknown identity (``identity < 0``) cannot share a
folder (every image in an identity folder is taken to be the same person): with
``unknown_identities="own"`` (default) each becomes its own pseudo-identity numbered after the largest
real identity, in row order; with ``"skip"`` they are left out. Either way they are counted. The JSON
holds exactly the five released fields: ``attributes`` is one comma-joined string in slot order
(``unknown`` for rows without attributes; commas inside a value become spaces, counted), ``captions``
the ``generated`` captions sorted by style (natural order: spac-2 before spac-10), ``prompt_caption``
the ``prompt`` captions; other caption kinds (``human``) have no place in the format and are counted as
left out. ``plip-export.json`` next to it records the source dataset id and all counts. The export is
finished when ``synthpedes-dataset.json`` exists (written last, atomically); an interrupted export is
redone by re-running the same command.
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..errors import DatasetExistsError
from ..schema import SLOTS, UNKNOWN
from .benchmarks import (EntryItem, EntrySource, ScanResult, check_captions, check_id, check_on_bad,
                         check_some_caption, check_text, entry_image_size, find_annotations, load_json_list,
                         mark_duplicates, resolve_bad_entries, valid_or)

_log = logging.getLogger(__name__)

SOURCE = "synth-pedes"
ANNOTATION_NAMES = ("synthpedes-dataset.json", "synthpedes_dataset.json")  # released name first, README's second
EXPORT_INFO = "plip-export.json"
INCOMPLETE_MARKER = ".plip-export-incomplete"
IDS_PER_PART = 30_000
UNKNOWN_IDENTITY_MODES = ("own", "skip")


def caption_style(position: int) -> str:
    return f"spac-{position}"


def parse_attributes(value: Any) -> tuple[str, ...]:
    """``["man,black hair,...,unknown"]`` (or the bare string) -> the six slot values in SLOTS order."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise ValueError(f"malformed entry: 'attributes' is {value!r}, not a list holding one comma-joined string")
    check_text(value, "'attributes'")
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != len(SLOTS):
        raise ValueError(f"malformed entry: attributes {value!r} has {len(parts)} comma-separated parts, not "
                         f"{len(SLOTS)} ({', '.join(SLOTS)})")
    return tuple(p or UNKNOWN for p in parts)


def format_attributes(attributes: dict | None) -> tuple[str, bool]:
    """The released attribute string for a record's attributes, and whether a value had to be rewritten."""
    if attributes is None:
        return ",".join([UNKNOWN] * len(SLOTS)), False
    values, rewritten = [], False
    for slot in SLOTS:
        raw = attributes.get(slot) or UNKNOWN
        clean = " ".join(raw.replace(",", " ").split()) or UNKNOWN
        rewritten |= clean != raw
        values.append(clean)
    return ",".join(values), rewritten


ID_BASE = 0  # the release's ids start at 0 (and an export numbers identities from 0)


def _entry_item(index: int, entry: Any, root: Path, split: str, allow_outside: bool) -> tuple[EntryItem, int]:
    """One entry as an item, and how many blank captions it had (dropped). A malformed entry or a missing
    image sets ``error``; the item then keeps only the values that passed their checks."""
    raw = entry if isinstance(entry, dict) else {}
    relpath = valid_or("", check_text, raw.get("file_path"), "'file_path'")
    caps, blank = valid_or(([], 0), check_captions, raw.get("captions"), "'captions'")
    prompts, blank_prompts = valid_or(([], 0), check_captions, raw.get("prompt_caption", []), "'prompt_caption'")
    item = EntryItem(
        index=index, key=f"{SOURCE}/{relpath}" if relpath else f"{SOURCE}/#entry-{index}", relpath=relpath, size=0,
        identity=valid_or(-1, check_id, raw.get("id"), "'id'", ID_BASE), split=split,
        captions=tuple((t, caption_style(k), "generated") for k, t in enumerate(caps))
        + tuple((t, "prompt", "prompt") for t in prompts),
        extra=(("index", index), ("id", raw.get("id")), ("file_path", raw.get("file_path"))))
    try:
        if not isinstance(entry, dict):
            raise ValueError(f"malformed entry: a {type(entry).__name__}, not an object")
        check_text(entry.get("file_path"), "'file_path'")
        check_id(entry.get("id"), "'id'", ID_BASE)
        check_some_caption(entry.get("captions"), "'captions'")
        check_captions(entry.get("prompt_caption", []), "'prompt_caption'")
        item = replace(item, attributes=parse_attributes(entry.get("attributes")))
        size = entry_image_size(root, relpath, allow_outside)
    except ValueError as e:
        return replace(item, error=str(e)), blank + blank_prompts
    return replace(item, size=size), blank + blank_prompts


def find_synth_pedes_json(src: Path) -> Path:
    return find_annotations(src, ANNOTATION_NAMES, "SYNTH-PEDES (Part1..Part11/ + annotation JSON)")


def scan_synth_pedes_json(src: str | os.PathLike, on_bad: str = "error", split: str = "train",
                          allow_outside: bool = False) -> tuple[ScanResult, EntrySource]:
    """Read ``synthpedes-dataset.json`` under ``src`` and check every entry (see the module docstring). An
    image that resolves outside ``src`` (through a symlink) is a bad entry, never read, unless ``allow_outside``.

    Returns the items (JSON order) with their counts and the transform that reads their images.
    """
    check_on_bad(on_bad)
    src = Path(src)
    annotations = find_synth_pedes_json(src)
    entries = load_json_list(annotations, "SYNTH-PEDES")
    scanned = [_entry_item(i, e, src, split, allow_outside) for i, e in enumerate(entries)]
    del entries
    result = resolve_bad_entries(mark_duplicates([item for item, _ in scanned], SOURCE), on_bad, str(annotations))
    result.counts["blank_captions"] = sum(blank for _, blank in scanned)
    result.files = {"annotations": str(annotations), "images": str(src)}
    return result, EntrySource(root=str(src.resolve()), source=SOURCE)


# ---------------------------------------------------------------------------------------------- export

@dataclass
class ExportReport:
    out_dir: str
    dataset_id: str
    dataset_name: str
    exported: int = 0  # images written (= JSON entries)
    left_out_by_status: dict = field(default_factory=dict)  # status != ok -> rows
    identities: int = 0  # folders written (real + pseudo)
    parts: int = 0
    ids_per_part: int = IDS_PER_PART
    unknown_identities: str = "own"
    pseudo_identities: int = 0  # rows of unknown identity given their own identity
    first_pseudo_identity: int | None = None
    unknown_skipped: int = 0  # rows of unknown identity left out (unknown_identities="skip")
    reencoded: int = 0  # non-JPEG images re-encoded as JPEG
    captions: int = 0  # generated captions written
    prompt_captions: int = 0
    captions_left_out: dict = field(default_factory=dict)  # caption kind with no place in the format -> count
    attributes_missing: int = 0  # rows without attributes, written as all-unknown
    attributes_rewritten: int = 0  # rows with a comma inside an attribute value

    @property
    def left_out(self) -> int:
        return sum(self.left_out_by_status.values()) + self.unknown_skipped


def _natural(style: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", style)]


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def _to_jpeg(data: bytes) -> bytes:
    from ..imaging import open_rgb

    buf = io.BytesIO()
    open_rgb(data).save(buf, "JPEG", quality=95)  # upright, high bit depths scaled (docs/formats.md#image-decoding)
    return buf.getvalue()


def _prepare_out(out_dir: Path, dataset_id: str) -> None:
    """Refuse to overwrite anything but an unfinished export of the same dataset."""
    marker = out_dir / INCOMPLETE_MARKER
    if (out_dir / ANNOTATION_NAMES[0]).exists():
        raise DatasetExistsError(f"{out_dir} already holds a finished SYNTH-PEDES export; export to a new directory")
    if marker.is_file():
        previous = marker.read_text().strip()
        if previous != dataset_id:
            raise DatasetExistsError(f"{out_dir} holds an unfinished export of another dataset ({previous}); "
                                     "export to a new directory, or delete this one")
        _log.info("%s: redoing an unfinished export of %s", out_dir, dataset_id)
        for part in out_dir.glob("Part*"):  # start clean: the same input rewrites the same files
            shutil.rmtree(part)
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise DatasetExistsError(f"{out_dir} is not empty; export to a new directory so nothing of yours is "
                                 "overwritten")
    out_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(dataset_id + "\n")


def export_synth_pedes_json(dataset: Any, out_dir: str | os.PathLike, *, ids_per_part: int = IDS_PER_PART,
                            unknown_identities: str = "own",
                            on_progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Write the ``status == "ok"`` rows of ``dataset`` (a ``synth_pedes.Dataset``) in the released
    SYNTH-PEDES layout under ``out_dir`` (see the module docstring); returns what was written and left out.

    ``on_progress(rows_done, rows_total)`` is called after each exported row.
    """
    if ids_per_part < 1:
        raise ValueError(f"ids_per_part must be positive, got {ids_per_part}")
    if unknown_identities not in UNKNOWN_IDENTITY_MODES:
        raise ValueError(f"unknown_identities={unknown_identities!r} is not one of {UNKNOWN_IDENTITY_MODES}")
    out_dir = Path(out_dir)
    manifest = dataset.manifest
    report = ExportReport(out_dir=str(out_dir), dataset_id=manifest.id, dataset_name=manifest.name,
                          ids_per_part=ids_per_part, unknown_identities=unknown_identities,
                          left_out_by_status={k: v for k, v in sorted(manifest.status_counts.items()) if k != "ok"})
    # Pass 1 (identities only): which identities there are, so Parts follow ascending identity.
    known, unknown_rows = set(), 0
    for batch in dataset.iter_batches(columns=["identity"], status="ok"):
        for ident in batch.column("identity").to_pylist():
            if ident < 0:
                unknown_rows += 1
            else:
                known.add(ident)
    order = sorted(known)
    first_pseudo = (order[-1] + 1) if order else 0
    n_pseudo = unknown_rows if unknown_identities == "own" else 0
    rank = {ident: r for r, ident in enumerate(order)}
    total = len(order) + n_pseudo
    report.parts = (total + ids_per_part - 1) // ids_per_part
    rows_total = manifest.status_counts.get("ok", 0) - (unknown_rows if unknown_identities == "skip" else 0)

    _prepare_out(out_dir, manifest.id)
    json_tmp = out_dir / f".{ANNOTATION_NAMES[0]}.tmp"
    counts: dict[int, int] = {}
    next_pseudo = first_pseudo
    with open(json_tmp, "w", encoding="utf-8") as js:
        js.write("[")
        for record in dataset.iter_records(columns=["identity", "image", "attributes", "captions"],
                                           status="ok"):
            ident = record["identity"]
            if ident < 0:
                if unknown_identities == "skip":
                    report.unknown_skipped += 1
                    continue
                ident, next_pseudo = next_pseudo, next_pseudo + 1
                report.pseudo_identities += 1
                r = len(order) + (ident - first_pseudo)
            else:
                r = rank[ident]
            n = counts.get(ident, 0)
            counts[ident] = n + 1
            rel = f"Part{r // ids_per_part + 1}/{ident}/{n}.jpg"
            data = record["image"]["bytes"]
            if not _is_jpeg(data):
                data = _to_jpeg(data)
                report.reencoded += 1
            path = out_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            attrs, rewritten = format_attributes(record["attributes"])
            report.attributes_missing += record["attributes"] is None
            report.attributes_rewritten += rewritten
            generated, prompts = [], []
            for cap in record["captions"] or []:
                if cap["kind"] == "generated":
                    generated.append(cap)
                elif cap["kind"] == "prompt":
                    prompts.append(cap["text"])
                else:
                    report.captions_left_out[cap["kind"]] = report.captions_left_out.get(cap["kind"], 0) + 1
            generated.sort(key=lambda c: _natural(c["style"] or ""))  # stable: same style keeps row order
            entry = {"id": ident, "file_path": rel, "attributes": [attrs],
                     "captions": [c["text"] for c in generated], "prompt_caption": prompts}
            js.write(("\n" if report.exported == 0 else ",\n") + json.dumps(entry, ensure_ascii=False))
            report.exported += 1
            report.captions += len(generated)
            report.prompt_captions += len(prompts)
            if on_progress:
                on_progress(report.exported, rows_total)
        js.write("\n]\n")
        js.flush()
        os.fsync(js.fileno())
    report.identities = len(counts)
    report.first_pseudo_identity = first_pseudo if report.pseudo_identities else None
    (out_dir / EXPORT_INFO).write_text(json.dumps({"format": "plip-synth-pedes-export/1", **asdict(report),
                                                   "left_out": report.left_out}, indent=1) + "\n")
    os.replace(json_tmp, out_dir / ANNOTATION_NAMES[0])  # the export is finished when this exists
    (out_dir / INCOMPLETE_MARKER).unlink()
    if report.left_out:
        _log.warning("%s: left out %d rows (%s)", out_dir, report.left_out,
                     ", ".join([f"status {k}={v}" for k, v in report.left_out_by_status.items()]
                               + ([f"unknown identity={report.unknown_skipped}"] if report.unknown_skipped else [])))
    return report
