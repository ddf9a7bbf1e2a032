"""Versioned dataset manifests: how stages connect (docs/formats.md#the-manifest).

A dataset is a directory holding ``manifest.json`` and Parquet shards. The manifest's ``id`` is the
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

MANIFEST_FORMAT = "synth-pedes-manifest/1"
MANIFEST_NAME = "manifest.json"
KINDS = ("images", "captions", "benchmark")
_VOLATILE = ("id", "created_at")  # not part of the content hash


@dataclass(frozen=True)
class ShardInfo:
    path: str  # relative to the dataset directory, POSIX separators
    rows: int
    bytes: int
    sha256: str


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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ManifestError(f"manifest kind {self.kind!r} is not one of {KINDS}")
        if not self.name:
            raise ManifestError("a manifest needs a non-empty name")
        for shard in self.shards:
            check_shard_path(shard.path)
        check_shards_listed_once(self.shards)

    @property
    def num_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def num_bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    def body(self) -> dict[str, Any]:
        """The canonical content (what the id hashes), in a stable key order."""
        d = dataclasses.asdict(self)
        d["shards"] = [dataclasses.asdict(s) for s in self.shards]
        d["parents"] = list(self.parents)
        d["num_rows"] = self.num_rows
        d["num_bytes"] = self.num_bytes
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
        if fmt != MANIFEST_FORMAT:
            raise ManifestError(f"{where}: unknown manifest format {fmt!r}; this version of plip reads "
                                f"{MANIFEST_FORMAT!r}. Upgrade plip, or re-create the dataset with this version.")
        try:
            shards = tuple(ShardInfo(**s) for s in doc["shards"])
            fields = {f.name for f in dataclasses.fields(cls)} - {"shards"}
            kwargs = {k: doc[k] for k in fields if k in doc}
            kwargs["parents"] = tuple(kwargs.get("parents", ()))
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
        for key in ("num_rows", "num_bytes"):
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
