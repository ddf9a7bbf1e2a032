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
from .schema import SPLITS, check_schema
from .writer import _shard_files_on_disk, file_sha256

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
    report.problems += _unlisted_file_problems(root, report.manifest)
    if level == "full":
        report.problems += _repeated_key_problems(root, sound)
    return report


def _unlisted_file_problems(root: Path, manifest: Manifest) -> list[str]:
    """Shard files under data/ or rejected/ that the manifest does not list: every loader of the directory (or of
    data/) would read their rows, which no checksum covers."""
    listed = {s.path for s in manifest.shards}
    stray = [p.relative_to(root).as_posix() for p in _shard_files_on_disk(root)]
    return [f"{path}: not listed in the manifest, yet loaders of the directory read it; it was added after the "
            "dataset was written: move it out" for path in stray if path not in listed]


def layout_note(directory: str | os.PathLike, manifest: Manifest) -> str | None:
    """For a dataset in the older layout: what reads it and how to get the current one (docs/formats.md#old-layout)."""
    if manifest.split_files:
        return None
    return (f"{directory} has the older layout (manifest format 1: part-NNNNN.parquet files holding every split and "
            "status). plip and synth_pedes read it as before, but datasets.load_dataset(DIR), pandas.read_parquet and "
            "pyarrow.dataset cannot read it as it is. To get the current layout (the usable rows of each split under "
            f"data/, the rest under rejected/), copy it: plip migrate {directory} --out NEW_DIR "
            "(docs/formats.md#old-layout)")


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
        return (f"Dataset({str(self.directory)!r}, name={m.name!r}, kind={m.kind!r}, rows={m.num_rows} "
                f"({m.num_usable_rows} usable), id={m.id[:19]})")

    def __len__(self) -> int:
        """Every row, every status (``manifest.num_usable_rows``: those with status ok)."""
        return self.manifest.num_rows

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def shard_paths(self) -> list[Path]:
        """Every shard file: the rows of every status (see :meth:`paths_for` for one status's)."""
        return [self.directory / s.path for s in self.manifest.shards]

    def paths_for(self, status: str | None, split: str | None = None) -> list[Path]:
        """The files that can hold rows of ``status`` (None: every file): for ``ok`` only ``data/`` files, for
        another status only ``rejected/`` ones; with ``split``, only that split's files (files of the older layout
        hold every status and split: all of them)."""
        usable = None if status is None else status == "ok"
        return [self.directory / s.path for s in self.manifest.files(usable)
                if split is None or s.split is None or s.split == split]

    def iter_batches(self, columns: Sequence[str] | None = None, batch_size: int = 256,
                     status: str | None = None, split: str | None = None) -> Iterator[pa.RecordBatch]:
        """Stream record batches shard by shard (memory: one batch), optionally only rows of ``status`` and of
        ``split`` (only the files that can hold them are read)."""
        wanted = {"status": status, "split": split}
        wanted = {column: value for column, value in wanted.items() if value is not None}
        for path in self.paths_for(status, split):
            cols = None if columns is None else list(dict.fromkeys([*columns, *wanted]))
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=cols):
                for column, value in wanted.items():
                    batch = batch.filter(pc.equal(batch.column(column), value))
                if columns is not None:
                    extra = [c for c in wanted if c not in columns]
                    batch = batch.drop_columns(extra) if extra else batch
                yield batch

    def iter_records(self, columns: Sequence[str] | None = None, status: str | None = None) -> Iterator[dict]:
        for batch in self.iter_batches(columns, status=status):
            yield from batch.to_pylist()

    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole dataset in memory: for small datasets and tests."""
        return pa.concat_tables(pq.read_table(p, columns=columns) for p in self.shard_paths)

    def to_hf(self, split: str | None = None, rejected: bool = False, streaming: bool = False,
              cache_dir: str | None = None):
        """The usable rows (status ok) as a Hugging Face ``DatasetDict`` with one split per ``split`` value (or the
        ``Dataset`` of one ``split``); ``rejected=True``: the other rows instead. ``image`` decodes to PIL, captions
        stay nested. The same as ``datasets.load_dataset(DIR)`` (and its ``rejected`` config), but on the files
        this manifest lists and that were verified when the dataset was opened."""
        import datasets

        data_files = self.hf_data_files(rejected)
        if not data_files:  # (datasets cannot make a split of no rows)
            raise ValueError(f"{self.directory} has no {'rejected' if rejected else 'usable (status ok)'} rows; "
                             + ("every row is usable" if rejected else "to_hf(rejected=True) gives the rejected ones"))
        hf = datasets.load_dataset("parquet", data_files=data_files, split=split, streaming=streaming,
                                   cache_dir=cache_dir)
        if self.manifest.split_files:
            return hf
        keep = (lambda status: status != "ok") if rejected else (lambda status: status == "ok")
        return hf.filter(keep, input_columns="status")  # older layout: every file holds rows of every status

    def hf_data_files(self, rejected: bool = False) -> dict[str, list[str]]:
        """``{split: [file, ...]}`` of the usable rows (or the rejected ones), in split order; files of the older
        layout mix splits and statuses, so there they all form one ``train`` split."""
        if not self.manifest.split_files:
            return {"train": [str(p) for p in self.shard_paths]}
        out: dict[str, list[str]] = {}
        for shard in sorted(self.manifest.files(not rejected), key=lambda s: _split_order(s.split)):
            if shard.rows:  # the empty data/ files of a dataset without usable rows (see writer._empty_usable_files)
                out.setdefault(shard.split, []).append(str(self.directory / shard.path))
        return out

    def torch(self, **kwargs):
        """A torch IterableDataset over the rows, split across DDP ranks and dataloader workers."""
        from .torch_data import ShardedIterableDataset

        return ShardedIterableDataset(self, **kwargs)


def _split_order(split: str) -> tuple:
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


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
