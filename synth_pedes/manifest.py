"""Versioned dataset manifests: how stages connect (docs/formats.md#the-manifest).

A dataset is a directory holding ``manifest.json`` and Parquet shard files (docs/formats.md#dataset-directory):
format 2 puts the usable rows (status ``ok``) under ``data/`` and the rest under ``rejected/``, one file per
split, shard and group, so standard loaders read ``DIR`` or ``DIR/data`` as they are; format 1 (older
datasets) has ``part-NNNNN.parquet`` files at the top holding rows of every split and status, and is still
read. The manifest's ``id`` is the
sha256 of its canonical body (everything except ``id`` and ``created_at``), so the same content gives
the same id and any edit to the manifest is detectable. Once written, a manifest and its shards are
immutable: a new run writes a new version into a new directory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ManifestError, ShardPathError
from .schema import SCHEMA_FINGERPRINT, SCHEMA_VERSION

MANIFEST_FORMAT = "synth-pedes-manifest/2"  # what is written: data/ and rejected/ files, per split
PARTS_FORMAT = "synth-pedes-manifest/1"  # older datasets: part-NNNNN.parquet at the top, every split and status
READ_FORMATS = (MANIFEST_FORMAT, PARTS_FORMAT)
MANIFEST_NAME = "manifest.json"
KINDS = ("images", "captions", "benchmark")
_VOLATILE = ("id", "created_at")  # not part of the content hash


@dataclass(frozen=True)
class ShardInfo:
    path: str  # relative to the dataset directory, POSIX separators
    rows: int
    bytes: int
    sha256: str
    split: str | None = None  # format 2: the split of every row in the file (format 1 files mix splits)
    usable: bool | None = None  # format 2: True for data/ (status ok), False for rejected/ (format 1: mixed)

    def body(self) -> dict:
        """The file's entry as written: format 1 entries have no split or usable (so their ids stay as written)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k not in ("split", "usable")}


@dataclass(frozen=True)
class Manifest:
    name: str
    kind: str
    shards: tuple[ShardInfo, ...]
    version: str = "1.0.0"
    parents: tuple[str, ...] = ()  # ids of the datasets this one was made from
    producer: dict = field(default_factory=dict)  # stage, package version, resolved config
    splits: dict = field(default_factory=dict)  # split -> rows
    status_counts: dict = field(default_factory=dict)  # ok / error / filtered -> rows
    description: str = ""
    created_at: str = ""
    format: str = MANIFEST_FORMAT
    schema: dict = field(default_factory=lambda: {"version": SCHEMA_VERSION, "fingerprint": SCHEMA_FINGERPRINT})
    # what each position of the rows' attribute_labels means (attribute-recognition datasets); () when they have
    # none, and then left out of the body, so the ids of manifests written before it existed still match
    attribute_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ManifestError(f"manifest kind {self.kind!r} is not one of {KINDS}")
        if not self.name:
            raise ManifestError("a manifest needs a non-empty name")
        for i, shard in enumerate(self.shards):
            check_shard_path(shard.path)
            if self.split_files and not (isinstance(shard.split, str) and isinstance(shard.usable, bool)):
                raise ManifestError(f"shard entry {i} ({shard.path!r}) has no split or usable flag, which a "
                                    f"{self.format} manifest gives every file; the manifest was edited or crafted: "
                                    "restore it or re-create the dataset")
        check_shards_listed_once(self.shards)
        names = self.attribute_names
        if not (isinstance(names, tuple) and all(isinstance(n, str) and n for n in names)
                and len(set(names)) == len(names)):
            raise ManifestError(f"attribute_names must be distinct non-empty strings, got {names!r}")

    @property
    def num_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def num_bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def split_files(self) -> bool:
        """Whether the files are split by split and status (format 2), so loaders can read the usable rows alone."""
        return self.format != PARTS_FORMAT

    @property
    def num_usable_rows(self) -> int:
        """Rows with status ``ok``: what loaders give by default (the rest stays for provenance)."""
        if self.split_files:
            return sum(s.rows for s in self.shards if s.usable)
        return self.status_counts.get("ok", 0)

    def files(self, usable: bool | None = None) -> tuple[ShardInfo, ...]:
        """The shard files of the usable rows (True), the rejected ones (False) or all (None). Format 1 files mix
        statuses, so there every file is returned whatever is asked: the reader must still filter by status."""
        if usable is None or not self.split_files:
            return self.shards
        return tuple(s for s in self.shards if s.usable == usable)

    def body(self) -> dict[str, Any]:
        """The canonical content (what the id hashes), in a stable key order."""
        d = dataclasses.asdict(self)
        d["shards"] = [s.body() for s in self.shards]
        d["parents"] = list(self.parents)
        if self.attribute_names:
            d["attribute_names"] = list(self.attribute_names)
        else:
            del d["attribute_names"]
        d["num_rows"] = self.num_rows  # all rows, every status
        d["num_bytes"] = self.num_bytes
        if self.split_files:  # (format 1 bodies stay as they were written, so their ids still match)
            d["num_usable_rows"] = self.num_usable_rows  # status ok: the rows under data/
        return {k: v for k, v in d.items() if k not in _VOLATILE}

    @property
    def id(self) -> str:
        return content_id(self.body())

    def to_json(self) -> str:
        doc = {"format": self.format, "id": self.id, **self.body(), "created_at": self.created_at}
        return json.dumps(doc, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, doc: dict, where: str = "manifest") -> "Manifest":
        fmt = doc.get("format")
        if fmt not in READ_FORMATS:
            raise ManifestError(f"{where}: unknown manifest format {fmt!r}; this version of plip reads "
                                f"{' and '.join(map(repr, READ_FORMATS))}. Upgrade plip, or re-create the dataset "
                                "with this version.")
        try:
            shards = tuple(ShardInfo(**s) for s in doc["shards"])
            fields = {f.name for f in dataclasses.fields(cls)} - {"shards"}
            kwargs = {k: doc[k] for k in fields if k in doc}
            kwargs["parents"] = tuple(kwargs.get("parents", ()))
            kwargs["attribute_names"] = tuple(kwargs.get("attribute_names", ()))
            manifest = cls(shards=shards, **kwargs)
        except ManifestError as e:  # raised by the checks in __post_init__: say which file
            raise type(e)(f"{where}: {e}") from None
        except (KeyError, TypeError) as e:
            raise ManifestError(f"{where}: malformed manifest ({type(e).__name__}: {e}). "
                                "The file was edited or truncated; re-create the dataset.") from e
        stated = doc.get("id")
        if stated != manifest.id:
            raise ManifestError(f"{where}: manifest id {stated!r} does not match its content ({manifest.id}); "
                                "the manifest was edited after it was written. Restore it or re-create the dataset.")
        for key in ("num_rows", "num_bytes", "num_usable_rows"):
            if key in doc and doc[key] != getattr(manifest, key):
                raise ManifestError(f"{where}: {key}={doc[key]} but its shards add up to {getattr(manifest, key)}")
        return manifest


def content_id(body: dict) -> str:
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canon.encode()).hexdigest()


def check_shard_path(path: str) -> None:
    """Refuse shard paths that could leave the dataset directory."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or "\\" in path or any(part in ("..", "") for part in p.parts) \
            or path.startswith("~"):
        raise ShardPathError(f"shard path {path!r} leaves the dataset directory; shard paths must be relative "
                             "paths inside it (the manifest is corrupt or was crafted).")


def check_shards_listed_once(shards: tuple[ShardInfo, ...]) -> None:
    """Refuse a shard listed twice (``./a`` and ``a`` are one file): readers would see its rows twice."""
    entries: dict[PurePosixPath, list[int]] = {}
    for i, shard in enumerate(shards):
        entries.setdefault(PurePosixPath(shard.path), []).append(i)
    for path, where in entries.items():
        if len(where) > 1:
            raise ManifestError(f"shard path {str(path)!r} is listed {len(where)} times (entries "
                                f"{', '.join(map(str, where[:-1]))} and {where[-1]}); each shard must be listed "
                                "once. The manifest was edited or crafted: restore it or re-create the dataset.")


def read_manifest(directory: str | os.PathLike) -> Manifest:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        hint = (" It looks like an unfinished write: re-run the command that wrote it to resume."
                if (Path(directory) / "_stats").is_dir() else "")  # the writer's plan and shard stats
        raise ManifestError(f"{path}: no manifest; {directory} is not a finished synth-pedes dataset.{hint}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: cannot read the manifest ({e}); restore it or re-create the dataset.") from e
    if not isinstance(doc, dict):
        raise ManifestError(f"{path}: the manifest is not a JSON object")
    return Manifest.from_dict(doc, where=str(path))
