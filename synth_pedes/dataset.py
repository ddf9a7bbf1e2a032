"""Open and verify finished datasets; read them as Arrow batches or through Hugging Face ``datasets``."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import IntegrityError, ManifestError, SchemaMismatchError
from .keys import describe_repeats, repeated_keys
from .manifest import Manifest, ShardInfo, read_manifest
from .schema import check_schema
from .writer import file_sha256

_log = logging.getLogger(__name__)
VERIFY_LEVELS = ("full", "quick", "none")


@dataclass
class ValidationReport:
    directory: str
    manifest: Manifest | None = None
    problems: list[str] = field(default_factory=list)
    checked_checksums: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_dataset(directory: str | os.PathLike, level: str = "full") -> ValidationReport:
    """Check the manifest (format, id), then every shard: inside the directory, present, size, schema,
    row count and (``level="full"``) sha256, then (``"full"``) that no key is repeated. Collects every
    problem instead of stopping at the first."""
    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify level {level!r} is not one of {VERIFY_LEVELS}")
    report = ValidationReport(directory=str(directory), checked_checksums=level == "full")
    try:
        report.manifest = read_manifest(directory)
    except ManifestError as e:
        report.problems.append(str(e))
        return report
    if level == "none":
        return report
    root = Path(directory).resolve()
    sound = []  # shards without a problem, whose keys are then checked
    for shard in report.manifest.shards:
        problems = _shard_problems(root, shard, level)
        report.problems += problems
        if not problems:
            sound.append(shard.path)
    if level == "full":
        report.problems += _repeated_key_problems(root, sound)
    return report


def _shard_problems(root: Path, shard: ShardInfo, level: str) -> list[str]:
    path = (root / shard.path).resolve()
    where = f"shard {shard.path}"
    if root not in path.parents:  # e.g. through a symlink: read_manifest already refused '..'
        return [f"{where}: resolves to {path}, outside the dataset directory"]
    if not path.is_file():
        return [f"{where}: missing (listed in the manifest with {shard.rows} rows); restore the file or re-create "
                "the dataset"]
    size = path.stat().st_size
    if size != shard.bytes:
        return [f"{where}: {size} bytes but the manifest says {shard.bytes}; the file was altered or truncated"]
    problems = []
    try:
        meta = pq.ParquetFile(path).metadata
        check_schema(meta.schema.to_arrow_schema(), where)
        if meta.num_rows != shard.rows:
            problems.append(f"{where}: {meta.num_rows} rows but the manifest says {shard.rows}")
    except SchemaMismatchError as e:
        problems.append(str(e))
    except (OSError, pa.ArrowException) as e:
        return [f"{where}: not a readable Parquet file ({e})"]
    if level == "full":
        digest = file_sha256(path)
        if digest != shard.sha256:
            problems.append(f"{where}: sha256 {digest[:16]}... does not match the manifest's {shard.sha256[:16]}...; "
                            "the file was altered after it was written")
    return problems


def _repeated_key_problems(root: Path, shards: list[str]) -> list[str]:
    try:
        repeats = repeated_keys(root, shards)
    except (OSError, pa.ArrowException) as e:
        return [f"cannot read the key column of the shards ({e})"]
    if not repeats:
        return []
    return [f"{describe_repeats(repeats)}; every key must be unique (docs/formats.md#columns). Rows were written "
            "twice (e.g. from an input that listed them twice): re-create the dataset from a fixed input."]


class Dataset:
    """A finished dataset directory: its manifest plus readers over its shards."""

    def __init__(self, directory: str | os.PathLike, manifest: Manifest):
        self.directory = Path(directory)
        self.manifest = manifest

    def __repr__(self) -> str:
        m = self.manifest
        return f"Dataset({str(self.directory)!r}, name={m.name!r}, kind={m.kind!r}, rows={m.num_rows}, id={m.id[:19]})"

    def __len__(self) -> int:
        return self.manifest.num_rows

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def shard_paths(self) -> list[Path]:
        return [self.directory / s.path for s in self.manifest.shards]

    def iter_batches(self, columns: Sequence[str] | None = None, batch_size: int = 256,
                     status: str | None = None) -> Iterator[pa.RecordBatch]:
        """Stream record batches shard by shard (memory: one batch), optionally only rows of ``status``."""
        for path in self.shard_paths:
            cols = None if columns is None else list(dict.fromkeys([*columns, *(["status"] if status else [])]))
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=cols):
                if status is not None:
                    batch = batch.filter(pc.equal(batch.column("status"), status))
                    if columns is not None and "status" not in columns:
                        batch = batch.drop_columns(["status"])
                yield batch

    def iter_records(self, columns: Sequence[str] | None = None, status: str | None = None) -> Iterator[dict]:
        for batch in self.iter_batches(columns, status=status):
            yield from batch.to_pylist()

    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole dataset in memory: for small datasets and tests."""
        return pa.concat_tables(pq.read_table(p, columns=columns) for p in self.shard_paths)

    def to_hf(self, streaming: bool = False, cache_dir: str | None = None):
        """The dataset as a Hugging Face ``datasets`` object: ``image`` decodes to PIL, captions stay nested."""
        import datasets

        files = [str(p) for p in self.shard_paths]
        return datasets.load_dataset("parquet", data_files=files, split="train", streaming=streaming,
                                     cache_dir=cache_dir)

    def torch(self, **kwargs):
        """A torch IterableDataset over the rows, split across DDP ranks and dataloader workers."""
        from .torch_data import ShardedIterableDataset

        return ShardedIterableDataset(self, **kwargs)


def open_dataset(path: str | os.PathLike, verify: bool | str = True) -> Dataset:
    """Open a finished dataset, verifying it first.

    ``verify=True`` (``"full"``) checks the manifest and every shard's size, schema, row count and
    sha256; ``"quick"`` skips the checksums (logged); ``False`` (``"none"``) only reads the manifest.
    Raises ManifestError, SchemaMismatchError or IntegrityError naming the shard and the problem.
    """
    level = {True: "full", False: "none"}.get(verify, verify)
    report = validate_dataset(path, level)
    if report.manifest is None:
        raise ManifestError(report.problems[0])
    if report.problems:
        kind = SchemaMismatchError if all("schema" in p for p in report.problems) else IntegrityError
        raise kind(f"{path}: dataset failed verification: " + " | ".join(report.problems))
    if level != "full":
        _log.info("%s: opened without checking shard checksums (verify=%r)", path, verify)
    return Dataset(path, report.manifest)
