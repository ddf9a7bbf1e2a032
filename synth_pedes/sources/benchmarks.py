"""Text-based person-retrieval benchmarks (CUHK-PEDES, ICFG-PEDES, RSTPReid) as benchmark datasets.

Each benchmark is distributed as one annotation JSON next to an ``imgs/`` folder
(docs/formats.md#text-based-retrieval-benchmarks):

* CUHK-PEDES: ``reid_raw.json`` (some copies ship ``caption_all.json`` instead, which may lack
  ``split``: pass a split file then), a list of ``{"split", "captions", "file_path", "processed_tokens",
  "id"}``; ids are **1-based** (1..13003); splits train/val/test.
* ICFG-PEDES: ``ICFG_PEDES.json``, the same fields; ids are **0-based**; splits train/test.
* RSTPReid: ``data_captions.json``, a list of ``{"id", "img_path", "captions", "split"}`` (note
  ``img_path``); ids are 0-based; splits train/val/test.

One entry becomes one row, in the JSON's order: key ``<source>/<file_path>``, ``identity`` = the
dataset's **own** id, unchanged (1-based for CUHK-PEDES, 0-based for the others: subtract nothing,
add nothing; identities are compared within one dataset only; a smaller id is malformed), ``split`` as
given, and one caption ``{"text", "style": <source>, "kind": "human", "spans": []}`` per non-blank
description (blank ones are dropped and counted; spans are filled by a later stage). ``extra`` keeps the
original entry: its index in the JSON, ``id``, ``split`` and the image path under the dataset's own
field name (``file_path``, or ``img_path`` for RSTPReid).

Bad entries (a missing image file, a malformed entry: docs/formats.md#malformed-entries, a duplicate image
path) follow ``on_bad``: ``"error"`` raises ``BadEntriesError`` before anything is written, naming the
entry, the file and the fix; ``"warn"`` keeps each as a ``status=error`` row with the reason and logs
a warning with the count; ``"skip"`` leaves them out. Either way they are counted (``ScanResult.counts``)
so nothing is dropped silently. Image files that exist but cannot be decoded are always error rows,
exactly as in ``plip import images``.

The entry machinery here (``EntryItem``, ``EntrySource``, ``resolve_bad_entries``) is shared by the
SYNTH-PEDES JSON, image-ReID (Market-1501, DukeMTMC-reID, MSMT17) and attribute-dataset (``par_datasets``)
importers.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import SynthPedesError
from ..schema import RECORD_SCHEMA, SLOTS, is_blank_text, make_record
from ..transforms import PER_ITEM, class_fingerprint
from .images import MAX_FILE_BYTES, MAX_PIXELS, read_image_file, resolve_inside

_log = logging.getLogger(__name__)

ON_BAD_FILES = ("error", "warn", "skip")
BENCHMARK_SPLITS = ("train", "val", "test")
MAX_LISTED = 5  # bad entries named in an error message (all are counted)
MAX_ID = 2 ** (RECORD_SCHEMA.field("identity").type.bit_width - 1) - 1  # the largest id the schema stores


class BadEntriesError(SynthPedesError, ValueError):
    """The source has bad entries (missing images, malformed JSON entries) and ``on_bad="error"``."""


@dataclass(frozen=True)
class BenchmarkFormat:
    """How one benchmark is laid out on disk."""
    source: str  # name used in keys, the ``source`` column and the caption style
    annotations: tuple[str, ...]  # accepted annotation file names, preferred first
    path_field: str  # the entry field holding the image path relative to images_dir
    images_dir: str = "imgs"
    id_base: int = 0  # the smallest valid id (ids are kept unchanged; smaller ones are malformed entries)


FORMATS = {
    "cuhk-pedes": BenchmarkFormat("cuhk-pedes", ("reid_raw.json", "caption_all.json"), "file_path", id_base=1),
    "icfg-pedes": BenchmarkFormat("icfg-pedes", ("ICFG_PEDES.json",), "file_path"),
    "rstpreid": BenchmarkFormat("rstpreid", ("data_captions.json",), "img_path"),
}


@dataclass(frozen=True)
class EntryItem:
    """One source entry to import: small and picklable (it travels to Dask workers inside the plan).

    ``error`` non-empty marks a bad entry kept as a ``status=error`` row (``on_bad="warn"``).
    """
    index: int  # position in the source (JSON list index, or file ordinal)
    key: str
    relpath: str  # image path relative to the image root ("" when the entry has none)
    size: int  # image file size in bytes (0 when missing): plans shards by bytes
    identity: int = -1
    split: str = "train"
    camera: str = ""
    captions: tuple = ()  # ((text, style, kind), ...)
    attributes: tuple | None = None  # six strings in SLOTS order, or None
    attribute_labels: tuple | None = None  # 0/1 per the dataset's attribute_names (attribute recognition), or None
    extra: tuple = ()  # ((name, value), ...): the original entry, stored as JSON in ``extra``
    error: str = ""


@dataclass(frozen=True)
class EntrySource:
    """The transform: one ``EntryItem`` -> one record, reading and checking its image file (per-item)."""
    transform_kind = PER_ITEM
    root: str  # the folder the items' ``relpath`` is relative to
    source: str
    max_file_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS

    def __call__(self, item: EntryItem) -> dict:
        common = dict(identity=item.identity, source=self.source, split=item.split, camera=item.camera,
                      attributes=None if item.attributes is None else dict(zip(SLOTS, item.attributes)),
                      attribute_labels=item.attribute_labels,
                      captions=[{"text": t, "style": s, "kind": k, "spans": []} for t, s, k in item.captions],
                      extra=dict(item.extra) or None)
        if item.error:
            return make_record(item.key, status="error", error=item.error, **common)
        image = read_image_file(Path(self.root) / item.relpath, self.max_file_bytes, self.max_pixels)
        if image.error:
            return make_record(item.key, status="error", error=image.error, image_sha256=image.sha256, **common)
        return make_record(item.key, image_bytes=image.data, image_path=item.relpath, image_sha256=image.sha256,
                           width=image.width, height=image.height, **common)

    def fingerprint(self) -> str:
        return class_fingerprint(self)  # every field counts


@dataclass
class ScanResult:
    """What a scan found: the items to write (bad ones resolved by the policy) and the counts."""
    items: list[EntryItem]
    counts: dict  # entries, bad, kept_as_error, skipped (+ importer-specific counts)
    bad_reasons: dict = field(default_factory=dict)  # reason (before ':') -> entries
    files: dict = field(default_factory=dict)  # what was read: annotation file, image root
    attribute_names: tuple = ()  # what each position of the items' attribute_labels means (attribute datasets)

    @property
    def identities(self) -> int:
        return len({i.identity for i in self.items})

    @property
    def captions(self) -> int:
        return sum(len(i.captions) for i in self.items)


def check_on_bad(on_bad: str) -> None:
    if on_bad not in ON_BAD_FILES:
        raise ValueError(f"on_bad={on_bad!r} is not one of {ON_BAD_FILES}")


def file_size(path: Path) -> int | None:
    """The size of a regular file, or None when it is missing (or not a file)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def existing_image_size(path: Path) -> int:
    """The size of an entry's image file; ValueError (a bad entry) when it is missing."""
    size = file_size(path)
    if size is None:
        raise ValueError(f"missing image: {path} does not exist")
    return size


def entry_image_size(root: Path, relpath: str, allow_outside: bool) -> int:
    """The size of the image file ``relpath`` names under ``root``; ValueError (a bad entry) when the path
    leaves ``root`` (``..``, absolute, or a symlink leading outside unless ``allow_outside``: ``resolve_inside``)
    or the file is missing. Nothing outside ``root`` is read: only names and the size are looked at."""
    return existing_image_size(resolve_inside(root, relpath, allow_outside))


def resolve_bad_entries(items: list[EntryItem], on_bad: str, where: str) -> ScanResult:
    """Apply the bad-entry policy to scanned items (those with ``error`` set are the bad ones).

    ``where`` names the source in messages (e.g. the annotation file). ``"error"`` raises
    BadEntriesError naming the first bad entries, their files and the fix; ``"warn"`` keeps them
    (they become ``status=error`` rows) and logs a warning; ``"skip"`` drops them. All are counted.
    """
    check_on_bad(on_bad)
    bad = [i for i in items if i.error]
    reasons = collections.Counter(i.error.split(":")[0] for i in bad)
    counts = {"entries": len(items), "bad": len(bad), "kept_as_error": 0, "skipped": 0}
    if bad and on_bad == "error":
        listed = "; ".join(f"entry {i.index} ({i.relpath or 'no image path'}): {i.error}" for i in bad[:MAX_LISTED])
        more = f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
        raise BadEntriesError(
            f"{where}: {len(bad)} bad entr{'y' if len(bad) == 1 else 'ies'} of {len(items)}: {listed}{more}. "
            "Nothing was written. Fix the source, or use --on-bad-files warn to keep each bad entry as a "
            "status=error row, or --on-bad-files skip to leave them out (they are counted either way).")
    if bad:
        counts["kept_as_error" if on_bad == "warn" else "skipped"] = len(bad)
        _log.warning("%s: %d bad entries %s (%s); first: entry %d (%s): %s", where, len(bad),
                     "kept as status=error rows" if on_bad == "warn" else "left out",
                     ", ".join(f"{r}={n}" for r, n in reasons.most_common()), bad[0].index,
                     bad[0].relpath or "no image path",
                     bad[0].error)
    if on_bad == "skip":
        items = [i for i in items if not i.error]
    return ScanResult(items=items, counts=counts, bad_reasons=dict(sorted(reasons.items())))


def mark_duplicates(items: list[EntryItem], source: str) -> list[EntryItem]:
    """Entries naming an image another entry already named are bad (keys must be unique); their keys
    get ``#entry-<index>`` so a kept error row stays unique."""
    first: dict[str, int] = {}
    out = []
    for item in items:
        if item.relpath and item.relpath in first and not item.error:
            item = replace(item, key=f"{source}/{item.relpath}#entry-{item.index}",
                           error=f"duplicate image path: entry {first[item.relpath]} already names {item.relpath}")
        elif item.relpath:
            first.setdefault(item.relpath, item.index)
        out.append(item)
    return out


def load_json_list(path: Path, what: str) -> list:
    """Parse an annotation file that must hold a JSON list; raise ValueError naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); expected the {what} annotation file as distributed "
                         "(a JSON list of entries)") from None
    if not isinstance(doc, list):
        raise ValueError(f"{path}: expected a JSON list of entries ({what}), found a {type(doc).__name__}")
    return doc


def find_annotations(src: Path, names: tuple[str, ...], what: str) -> Path:
    """The first of ``names`` present in ``src``; a clear error naming them all when none is."""
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: not a directory; pass the {what} root folder holding "
                                f"{' or '.join(names)}")
    for name in names:
        if (src / name).is_file():
            return src / name
    raise FileNotFoundError(f"{src}: no {' or '.join(names)} here; pass the {what} root folder (the one that "
                            f"holds the annotation JSON and the images)")


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a directory; expected the {what} here")
    return path


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """A bad value as a message shows it: ``missing`` for None (JSON null or no such field), else its repr
    (which escapes what cannot be printed), cut short."""
    text = "missing" if value is None else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_text(value: Any, name: str) -> str:
    """An entry's text field, checked to be a string the writer can store (UTF-8: JSON can hold a lone
    surrogate such as ``"\\ud800"``, Parquet cannot); ValueError naming ``name`` (the field) otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"malformed entry: {name} is {_shown(value)}, not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"malformed entry: {name} is not valid text ({e.reason}: {value[e.start:e.end]!r} at "
                         f"character {e.start}); fix it in the source (e.g. a JSON \\ud800 escape missing the "
                         "other half of its pair)") from None
    return value


def check_id(value: Any, name: str, first: int) -> int:
    """An entry's identity, checked to be an integer from ``first`` (the dataset's id base) up to what the
    schema stores (-1 is reserved for "no identity", docs/formats.md#the-record); ValueError otherwise."""
    if not is_int(value) or not first <= value <= MAX_ID:
        raise ValueError(f"malformed entry: {name} is {_shown(value)}, not an integer from {first} to {MAX_ID} "
                         f"(this dataset's ids are {first}-based; -1 is reserved for no identity)")
    return value


def check_captions(value: Any, name: str) -> tuple[list[str], int]:
    """An entry's list of captions, checked (``check_text`` each): the non-blank ones, in order, and how
    many were blank (empty or whitespace: dropped, like a missing caption, and counted by the caller)."""
    if not isinstance(value, list):
        raise ValueError(f"malformed entry: {name} is {_shown(value)}, not a list of strings")
    texts = [check_text(c, f"{name}[{k}]") for k, c in enumerate(value)]
    kept = [t for t in texts if not is_blank_text(t)]
    return kept, len(texts) - len(kept)


def check_some_caption(value: Any, name: str) -> None:
    """An entry's captions hold at least one that is not blank: one with none is as malformed as one
    without ``captions`` (an image with no description cannot be trained or queried on)."""
    kept, blank = check_captions(value, name)
    if not kept:
        raise ValueError(f"malformed entry: {name} {'holds only blank text' if blank else 'is empty'}; give the "
                         "image at least one description, or leave the entry out")


def valid_or(default: Any, check, *args) -> Any:
    """``check(*args)``, or ``default`` when it raises ValueError: the best-effort value a bad entry's
    error row keeps (only values the writer can store)."""
    try:
        return check(*args)
    except ValueError:
        return default


def load_split_file(path: Path) -> dict[str, str]:
    """A split assignment for entries without ``split``: ``{file_path: split}``, ``{split: [file_path,
    ...]}`` or a list of entries with ``file_path`` and ``split`` (e.g. an official ``reid_raw.json``)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the split file is not valid JSON ({e})") from None
    mapping: dict[str, str] = {}
    if isinstance(doc, list):
        for i, entry in enumerate(doc):
            if not (isinstance(entry, dict) and isinstance(entry.get("file_path"), str)
                    and isinstance(entry.get("split"), str)):
                raise ValueError(f"{path}: entry {i} has no string 'file_path' and 'split'")
            mapping[entry["file_path"]] = entry["split"]
    elif isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()):
        for split, paths in doc.items():
            for p in paths:
                mapping[str(p)] = split
    elif isinstance(doc, dict) and all(isinstance(v, str) for v in doc.values()):
        mapping = dict(doc)
    else:
        raise ValueError(f"{path}: a split file is {{file_path: split}}, {{split: [file_path, ...]}} or a list of "
                         "entries with 'file_path' and 'split'")
    unknown = sorted({s for s in mapping.values() if s not in BENCHMARK_SPLITS})
    if unknown:
        raise ValueError(f"{path}: unknown split name(s) {unknown}; use {BENCHMARK_SPLITS}")
    return mapping


def _benchmark_item(index: int, entry: Any, fmt: BenchmarkFormat, images: Path, split_of: dict[str, str] | None,
                    allow_outside: bool) -> tuple[EntryItem, int]:
    """One annotation entry as an item, and how many blank captions it had (dropped). A malformed entry or
    a missing image sets ``error``; the item then keeps only the values that passed their checks."""
    raw = entry if isinstance(entry, dict) else {}
    path_name = f"'{fmt.path_field}'"
    relpath = valid_or("", check_text, raw.get(fmt.path_field), path_name)
    key = f"{fmt.source}/{relpath}" if relpath else f"{fmt.source}/#entry-{index}"
    split = valid_or("unknown", check_text, raw.get("split"), "'split'")
    extra = [("index", index), (fmt.path_field, raw.get(fmt.path_field)), ("id", raw.get("id"))]
    if "split" in raw:
        extra.append(("split", raw.get("split")))
    if split_of is not None:
        split = split_of.get(relpath, "unknown")
    captions, blank = valid_or(([], 0), check_captions, raw.get("captions"), "'captions'")
    item = EntryItem(index=index, key=key, relpath=relpath, size=0, split=split,
                     identity=valid_or(-1, check_id, raw.get("id"), "'id'", fmt.id_base),
                     captions=tuple((c, fmt.source, "human") for c in captions), extra=tuple(extra))
    try:
        if not isinstance(entry, dict):
            raise ValueError(f"malformed entry: a {type(entry).__name__}, not an object")
        check_text(entry.get(fmt.path_field), path_name)
        check_id(entry.get("id"), "'id'", fmt.id_base)
        if split_of is not None and relpath not in split_of:
            raise ValueError(f"malformed entry: {relpath} is not in the split file")
        if split_of is None:
            check_text(entry.get("split"), "'split'")
        if split not in BENCHMARK_SPLITS:
            raise ValueError(f"malformed entry: split {split!r} is not one of {BENCHMARK_SPLITS}")
        check_some_caption(entry.get("captions"), "'captions'")
        size = entry_image_size(images, relpath, allow_outside)
    except ValueError as e:
        return replace(item, error=str(e)), blank
    return replace(item, size=size), blank


def scan_benchmark(src: str | os.PathLike, name: str, on_bad: str = "error",
                   split_file: str | os.PathLike | None = None,
                   allow_outside: bool = False) -> tuple[ScanResult, EntrySource]:
    """Read a benchmark's annotation JSON under ``src`` (``name`` in FORMATS) and check every entry.

    An image that resolves outside ``src/imgs/`` (through a symlink) is a bad entry, never read, unless
    ``allow_outside``. Returns the items to write (JSON order) with their counts, and the transform that
    reads their images. Raises FileNotFoundError naming the expected files, ValueError for an unreadable JSON or a
    CUHK-PEDES ``caption_all.json`` without ``split`` and no ``split_file``, and BadEntriesError for bad
    entries when ``on_bad="error"``.
    """
    check_on_bad(on_bad)
    fmt = FORMATS[name]
    src = Path(src)
    annotations = find_annotations(src, fmt.annotations, name)
    images = require_dir(src / fmt.images_dir, f"{name} images ({fmt.images_dir}/ next to {annotations.name})")
    entries = load_json_list(annotations, name)
    split_of = None
    if split_file is not None:
        split_of = load_split_file(Path(split_file))
    else:
        objects = [e for e in entries if isinstance(e, dict)]
        if objects and not any("split" in e for e in objects):  # some entries without: bad entries
            problem = f"{annotations}: no entry has a 'split'"
            if name == "cuhk-pedes":  # the one importer with --split-file
                raise ValueError(f"{problem} (copies named caption_all.json often lack it). Pass --split-file FILE: "
                                 "a JSON {file_path: split}, {split: [file_path, ...]} or the official reid_raw.json.")
            raise ValueError(f"{problem}; use the {name} annotation file as distributed (every entry has its split)")
    scanned = [_benchmark_item(i, e, fmt, images, split_of, allow_outside) for i, e in enumerate(entries)]
    del entries
    result = resolve_bad_entries(mark_duplicates([item for item, _ in scanned], fmt.source), on_bad, str(annotations))
    result.counts["blank_captions"] = sum(blank for _, blank in scanned)
    result.files = {"annotations": str(annotations), "images": str(images),
                    "split_file": None if split_file is None else str(Path(split_file).resolve())}
    return result, EntrySource(root=str(images.resolve()), source=fmt.source)
