"""Write records as deterministic, resumable Parquet shards (docs/formats.md#dataset-directory).

Layout of a dataset directory::

    manifest.json                              written last: its presence means the dataset is finished
    data/train-00000-of-00003.parquet ...      usable rows (status ok) of shard 0 of 3 whose split is train
    rejected/train-00000-of-00003.parquet ...  the other rows of that shard and split (error, filtered)
    _stats/plan.json                           the shard plan's fingerprint (written first)
    _stats/part-00000.json                     shard 0's stats, listing its files: rows, bytes, sha256, counts
    _stats/lock                                held (flock) by the process writing: a second writer is refused

A shard (one planned unit of work) writes one file per (split, usable or not) group among its rows, so that
``datasets.load_dataset(DIR)`` (the ``data/{split}-NNNNN-of-MMMMM`` pattern it knows), ``pandas.read_parquet``
and ``pyarrow.dataset`` on ``DIR/data`` give the usable rows, per split, with no arguments; rejected rows stay
in ``rejected/`` for provenance. Groups absent from a shard have no file.

Each shard's files are written to temporary (hidden) names next to their final ones, hashed, and renamed into
place; its stats file is written (atomically) after the renames and is the completion marker. A re-run with the
same plan skips shards whose marker and file agree and redoes the rest, so a write killed at any
moment (kill -9 included) finishes with exactly the rows of an uninterrupted run. No key is written twice.
Shards run as Dask tasks on whatever cluster the caller's ``client`` points at, or in-process without one.

A sequence of work items becomes records through a *transform* of one of three declared kinds
(:class:`PerItemTransform`, :class:`BatchedTransform`, :class:`ExpandingTransform`; a plain function is
a per-item transform without declaring anything; see synth_pedes.transforms). Its :meth:`fingerprint` is part of
the shard plan's.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import socket
import stat
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from plip_runtime.version import package_version

from .errors import (DatasetExistsError, DuplicateKeyError, OutputDirectoryError, ShardWriteError, SynthPedesError,
                     WriteInProgressError)
from .futures import NoWorkersError, as_finished
from .transforms import Transform, apply_transform, transform_fingerprint, transform_kind
from .keys import describe_repeats, repeated_keys
from .manifest import MANIFEST_NAME, Manifest, ShardInfo, read_manifest
from .schema import RECORD_SCHEMA, SPLITS, upgrade_table

_log = logging.getLogger(__name__)
STATS_DIR = "_stats"
PLAN_NAME = "plan.json"
LOCK_NAME = "lock"  # in STATS_DIR: held (flock) by the process writing the directory, which it names
ROW_GROUP_ROWS = 256  # rows per Parquet row group: the unit the readers split across workers
ROW_GROUP_BYTES = 64 << 20  # ...or fewer rows when their image bytes pass this, to bound memory
MAX_ERRORS_KEPT = 20  # error examples kept per shard (all are counted)
MAX_FAILURES_LISTED = 5  # failed shards named in a ShardWriteError (all are counted)
# Exceptions a shard's own code or data raise: the same input fails the same way on every attempt. Anything else
# (OSError, MemoryError, a lost worker, a type not known here) may pass on a re-run.
_RECURRING = (ValueError, TypeError, LookupError, AttributeError, AssertionError, ArithmeticError, NotImplementedError,
              SynthPedesError)
_TRANSIENT = (OSError, MemoryError)
_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH  # finished datasets are immutable
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
_NO_DICTIONARY = {"image.bytes", "key", "image_sha256", "image.path", "extra"}  # unique per row


USABLE_DIR, REJECTED_DIR = "data", "rejected"  # status ok rows / the rest (docs/formats.md#dataset-directory)
_SPLIT_NAME = re.compile(r"^\w+$")  # a split names files and Hugging Face splits (which must match \w+(\.\w+)*)


def shard_file(split: str, usable: bool, index: int, num_shards: int) -> str:
    """The path, relative to the dataset directory, of shard ``index``'s file for one split and group: the
    Hugging Face name ``{split}-NNNNN-of-MMMMM`` that ``datasets.load_dataset(DIR)`` maps to split ``split``."""
    return f"{USABLE_DIR if usable else REJECTED_DIR}/{split}-{index:05d}-of-{num_shards:05d}.parquet"


def marker_name(index: int) -> str:
    return f"part-{index:05d}.json"  # in STATS_DIR: shard index's completion marker


@dataclass
class ShardStats:
    """What one finished shard holds; serialised as its completion marker."""
    index: int
    rows: int  # all of the shard's rows, every status
    bytes: int  # of all its files
    files: list = field(default_factory=list)  # one ShardInfo dict per file: path, rows, bytes, sha256, split, usable
    status_counts: dict = field(default_factory=dict)
    splits: dict = field(default_factory=dict)
    error_counts: dict = field(default_factory=dict)  # error reason (before ':') -> rows
    errors: list = field(default_factory=list)  # up to MAX_ERRORS_KEPT [key, error] examples
    seconds: float = 0.0
    skipped: bool = False  # True when a re-run found it already finished

    def to_infos(self) -> list[ShardInfo]:
        return [ShardInfo(**f) for f in self.files]


def plan_shards(items: Sequence, *, shard_rows: int | None = None, shard_bytes: int | None = None,
                size_of: Callable[[Any], int] | None = None,
                rows_of: Callable[[Any], int] | None = None) -> list[list]:
    """Split ``items`` in order into shards of at most ``shard_rows`` rows and/or ``shard_bytes``
    (summing ``size_of(item)``). An item is one row unless ``rows_of(item)`` says otherwise (items of
    an expanding transform). A single item larger than a limit gets a shard of its own.
    Deterministic: the same items give the same plan."""
    if shard_rows is None and shard_bytes is None:
        raise ValueError("plan_shards needs shard_rows or shard_bytes")
    if (shard_rows is not None and shard_rows < 1) or (shard_bytes is not None and shard_bytes < 1):
        raise ValueError(f"shard sizes must be positive, got shard_rows={shard_rows}, shard_bytes={shard_bytes}")
    if shard_bytes is not None and size_of is None:
        raise ValueError("shard_bytes needs size_of(item) to estimate each row's size")
    shards, current, current_bytes, current_rows = [], [], 0, 0
    for item in items:
        size = size_of(item) if shard_bytes is not None else 0
        rows = rows_of(item) if rows_of is not None else 1
        full_rows = shard_rows is not None and current and current_rows + rows > shard_rows
        full_bytes = shard_bytes is not None and current and current_bytes + size > shard_bytes
        if full_rows or full_bytes:
            shards.append(current)
            current, current_bytes, current_rows = [], 0, 0
        current.append(item)
        current_bytes += size
        current_rows += rows
    if current:
        shards.append(current)
    return shards


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _row_size(record: dict) -> int:
    image = record.get("image") or {}
    return len(image.get("bytes") or b"") + 512  # the rest of a row is small text


Group = tuple[str, bool]  # (split, usable): the rows of one shard file


def _group_sort_key(group: Group) -> tuple:
    split, usable = group
    return (not usable, SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


def _grouped_tables(records: Iterable, where: str) -> Iterator[tuple[Group, pa.Table]]:
    """Records (dicts or Arrow tables) as row-group-sized tables of one group each, their keys checked new in
    input order. Memory: one row group per group (a shard has a handful), and the buffered image bytes are
    flushed together when they reach ROW_GROUP_BYTES."""
    buffers: dict[Group, list] = {}
    buffered_bytes, row, row_of_key = 0, 0, {}
    for rec in records:
        if isinstance(rec, (pa.Table, pa.RecordBatch)):
            table = pa.Table.from_batches([rec]) if isinstance(rec, pa.RecordBatch) else rec
            table = upgrade_table(table, where)
            _check_new_keys(table.column("key").to_pylist(), row_of_key, row, where)
            row += table.num_rows
            yield from _split_table(table, where)
            continue
        if not isinstance(rec, dict):
            raise TypeError(f"{where}: a record must be a dict (see synth_pedes.make_record), got {type(rec).__name__}")
        _check_new_keys([rec.get("key")], row_of_key, row, where)
        row += 1
        group = (_checked_split(rec.get("split"), rec.get("key"), where), rec.get("status") == "ok")
        buffers.setdefault(group, []).append(rec)
        buffered_bytes += _row_size(rec)
        if buffered_bytes >= ROW_GROUP_BYTES:
            yield from ((g, pa.Table.from_pylist(b, schema=RECORD_SCHEMA)) for g, b in buffers.items())
            buffers, buffered_bytes = {}, 0
        elif len(buffers[group]) >= ROW_GROUP_ROWS:
            full = buffers.pop(group)
            buffered_bytes -= sum(map(_row_size, full))
            yield group, pa.Table.from_pylist(full, schema=RECORD_SCHEMA)
    yield from ((g, pa.Table.from_pylist(b, schema=RECORD_SCHEMA)) for g, b in buffers.items())


def _split_table(table: pa.Table, where: str) -> Iterator[tuple[Group, pa.Table]]:
    usable = pc.fill_null(pc.equal(table.column("status"), "ok"), False)
    for split in pc.unique(table.column("split")).to_pylist():
        in_split = pc.fill_null(pc.equal(table.column("split"), _checked_split(split, None, where)), False)
        for ok in (True, False):
            part = table.filter(pc.and_(in_split, usable if ok else pc.invert(usable)))
            if part.num_rows:
                yield (split, ok), part


def _checked_split(split: Any, key: Any, where: str) -> str:
    if isinstance(split, str) and _SPLIT_NAME.match(split):
        return split
    row = "" if key is None else f"record {key!r}: "
    raise ValueError(f"{where}: {row}split {split!r} cannot name a shard file: a split is a non-empty name of "
                     f"letters, digits and '_' (usually one of {', '.join(SPLITS)}; docs/formats.md#dataset-directory)")


def _parquet_writer(path: Path) -> pq.ParquetWriter:
    # JPEG/PNG bytes do not compress and dictionary-encoding unique values wastes time: both off there.
    dict_cols = [c for c in _leaf_columns(RECORD_SCHEMA) if c not in _NO_DICTIONARY]
    compression = {c: ("none" if c == "image.bytes" else "snappy") for c in _leaf_columns(RECORD_SCHEMA)}
    return pq.ParquetWriter(path, RECORD_SCHEMA, compression=compression, use_dictionary=dict_cols,
                            write_statistics=["identity", "split", "status", "source"])


def _leaf_columns(schema: pa.Schema) -> list[str]:
    out = []

    def walk(prefix: str, dtype: pa.DataType) -> None:
        if pa.types.is_struct(dtype):
            for i in range(dtype.num_fields):
                walk(f"{prefix}.{dtype.field(i).name}", dtype.field(i).type)
        elif pa.types.is_list(dtype):
            walk(f"{prefix}.list.element", dtype.value_type)
        else:
            out.append(prefix)

    for f in schema:
        walk(f.name, f.type)
    return out


def _count_into(counter: collections.Counter, column: pa.ChunkedArray) -> None:
    for entry in pc.value_counts(column).to_pylist():
        counter[entry["values"]] += entry["counts"]


@dataclass
class _ShardFile:
    """One group's file of a shard being written: a hidden temporary name until every file of the shard is done."""
    info: ShardInfo  # path, split, usable; rows, bytes and sha256 are filled in by finish()
    tmp: Path
    writer: pq.ParquetWriter

    @classmethod
    def open(cls, directory: Path, path: str, split: str, usable: bool) -> "_ShardFile":
        final = directory / path
        final.parent.mkdir(exist_ok=True)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        return cls(ShardInfo(path=path, rows=0, bytes=0, sha256="", split=split, usable=usable), tmp,
                   _parquet_writer(tmp))

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.info = dataclasses.replace(self.info, rows=self.info.rows + table.num_rows)

    def finish(self) -> ShardInfo:
        self.writer.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        self.info = dataclasses.replace(self.info, bytes=self.tmp.stat().st_size, sha256=file_sha256(self.tmp))
        return self.info

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def write_shard(records: Iterable, directory: str | os.PathLike, index: int, num_shards: int) -> ShardStats:
    """Write shard ``index`` of ``num_shards`` atomically, one file per (split, usable) group of its rows, and record
    its stats marker. ``records`` may be a lazy iterator: memory stays bounded by a row group per group."""
    t0 = time.perf_counter()
    directory, where = Path(directory), f"shard {index} of {directory}"
    status, splits, reasons = collections.Counter(), collections.Counter(), collections.Counter()
    errors, rows, files = [], 0, {}
    try:
        for group, table in _grouped_tables(records, where):
            if group not in files:
                files[group] = _ShardFile.open(directory, shard_file(*group, index, num_shards), *group)
            files[group].write(table)
            rows += table.num_rows
            _count_into(status, table.column("status"))
            _count_into(splits, table.column("split"))
            bad = table.filter(pc.not_equal(table.column("status"), "ok"))
            for key, st, err in zip(*(bad.column(c).to_pylist() for c in ("key", "status", "error"))):
                reasons[(err or st).split(":")[0]] += 1
                if len(errors) < MAX_ERRORS_KEPT:
                    errors.append([key, err])
        infos = [files[g].finish() for g in sorted(files, key=_group_sort_key)]
        for f in files.values():  # all hashed: only now do they take their final names
            os.replace(f.tmp, directory / f.info.path)
    except BaseException:
        for f in files.values():
            f.discard()
        raise
    _remove_other_files(directory, index, {i.path for i in infos})
    stats = ShardStats(index=index, rows=rows, bytes=sum(i.bytes for i in infos), files=[i.body() for i in infos],
                       status_counts=dict(status), splits=dict(splits), error_counts=dict(reasons), errors=errors,
                       seconds=round(time.perf_counter() - t0, 4))
    _atomic_write_text(directory / STATS_DIR / marker_name(index), json.dumps(dataclasses.asdict(stats), indent=1))
    return stats


def _shard_files_on_disk(directory: Path, index: int | str = "*") -> list[Path]:
    """The files of shard ``index`` (every shard's by default) that are in the directory, listed or not."""
    pattern = f"*-{index:05d}-of-*.parquet" if isinstance(index, int) else "*-of-*.parquet"
    return [p for d in (USABLE_DIR, REJECTED_DIR) for p in sorted((directory / d).glob(pattern))]


def _remove_other_files(directory: Path, index: int, written: set[str]) -> None:
    """Remove shard ``index``'s files that this attempt did not write (a killed attempt's, whose transform gave
    rows of another group): unlisted files under data/ would still be read by every loader of the directory."""
    for path in _shard_files_on_disk(directory, index):
        if path.relative_to(directory).as_posix() not in written:
            path.unlink(missing_ok=True)


def _check_new_keys(keys: list[str], row_of_key: dict[str, int], first_row: int, where: str) -> None:
    """Refuse a key the shard already holds, before its rows are written (_finish checks across shards)."""
    for row, key in enumerate(keys, first_row):
        earlier = row_of_key.setdefault(key, row)
        if earlier != row:
            raise DuplicateKeyError(f"{where}: key {key!r} is repeated (rows {earlier} and {row} of the shard); every "
                                    "key must be unique (docs/formats.md#columns): the input lists an item twice, "
                                    "or the transform gives two items one key")


def _write_items_shard(items: list, transform: Transform | None, directory: str, index: int,
                       num_shards: int) -> ShardStats:
    return write_shard(apply_transform(transform, items), directory, index, num_shards)


def _write_partition_shard(partition: Any, directory: str, index: int, num_shards: int) -> ShardStats:
    if hasattr(partition, "to_dict") and hasattr(partition, "columns"):  # a pandas partition
        if len(partition) and isinstance(partition["image"].iloc[0], str):
            raise TypeError("the DataFrame's nested columns arrived as strings: dask converted them. Build it "
                            "under dask.config.set({'dataframe.convert-string': False}), or pass a dask Bag.")
        partition = [pa.Table.from_pandas(partition, schema=RECORD_SCHEMA, preserve_index=False)]
    return write_shard(partition, directory, index, num_shards)


def _finished_stats(directory: Path, index: int) -> ShardStats | None:
    """The stats of a shard that a previous run finished, or None if it must be (re)done: a shard is kept only
    when its marker and every file it lists agree on size, row count and sha256 (a byte flipped since would
    otherwise pass into the manifest). Logs why a shard that looked finished is redone."""
    marker = directory / STATS_DIR / marker_name(index)
    if not marker.is_file():
        return None  # not finished (files renamed but not yet marked are redone, never trusted)
    try:
        stats = ShardStats(**json.loads(marker.read_text()))
        problem = next(filter(None, (_file_problem(directory, ShardInfo(**f)) for f in stats.files)), None)
        if problem is None:
            stats.skipped = True
            return stats
    except (OSError, ValueError, TypeError, pa.ArrowException) as e:
        problem = f"its marker or a file it lists is unreadable ({type(e).__name__}: {e})"
    _log.warning("%s: redoing shard %d: %s", directory, index, problem)
    return None


def _file_problem(directory: Path, info: ShardInfo) -> str | None:
    path = directory / info.path
    if not path.is_file():
        return f"{info.path} is missing"
    if path.stat().st_size != info.bytes or pq.ParquetFile(path).metadata.num_rows != info.rows:
        return f"the size or row count of {info.path} does not match its completion marker"
    if file_sha256(path) != info.sha256:
        return f"the sha256 of {info.path} does not match its completion marker (the file changed after it was written)"
    return None


def _plan(source: Any, transform: Transform | None, shard_rows: int | None, shard_bytes: int | None,
          size_of: Callable | None, rows_of: Callable | None, directory: str) -> tuple[int, str, Callable[[int], Any]]:
    import dask

    if hasattr(source, "to_delayed"):  # a dask Bag or DataFrame: one shard per partition
        if transform is not None:
            raise ValueError("a dask Bag or DataFrame is written as it is: map the transform over it first (e.g. "
                             "bag.map(transform)), or pass a list of work items with the transform")
        if hasattr(source, "repartition") and hasattr(source, "columns") and shard_bytes is not None:
            source = source.repartition(partition_size=shard_bytes)  # a DataFrame: dask sizes partitions
        elif shard_rows is not None or shard_bytes is not None:
            raise ValueError("a dask Bag's partitions are its shards: size them when building it, e.g. "
                             "db.from_sequence(records, partition_size=1000), or pass a list of items with "
                             "shard_rows/shard_bytes instead")
        parts = source.to_delayed()
        if hasattr(parts, "flatten"):
            parts = list(parts.flatten())
        from dask.base import tokenize

        fingerprint = f"dask:{tokenize(source)}:{len(parts)}"
        return len(parts), fingerprint, lambda i: dask.delayed(_write_partition_shard, pure=False)(
            parts[i], directory, i, len(parts))
    transform_kind(transform)  # a transform that declares a wrong kind fails here, before any shard runs
    items = list(source)
    if shard_rows is None and shard_bytes is None:
        raise ValueError("writing a sequence needs shard_rows or shard_bytes")
    shards = plan_shards(items, shard_rows=shard_rows, shard_bytes=shard_bytes, size_of=size_of, rows_of=rows_of)
    h = hashlib.sha256()
    for shard in shards:
        h.update(repr(shard).encode())
        h.update(b"\x00")
    fingerprint = f"items:{len(items)}:{len(shards)}:{transform_fingerprint(transform)}:{h.hexdigest()}"
    return len(shards), fingerprint, lambda i: dask.delayed(_write_items_shard, pure=False)(
        shards[i], transform, directory, i, len(shards))


def write_dataset(source: Any, directory: str | os.PathLike, *, name: str, kind: str,
                  transform: Transform | None = None, shard_rows: int | None = None,
                  shard_bytes: int | None = None, size_of: Callable | None = None,
                  rows_of: Callable | None = None, version: str = "1.0.0", parents: Sequence[str] = (), producer: dict | None = None,
                  description: str = "", client: Any = None, retries: int = 2,
                  on_progress: Callable[[ShardStats, int, int], None] | None = None,
                  attribute_names: Sequence[str] = ()) -> Manifest:
    """Write ``source`` as a finished dataset in ``directory`` and return its manifest.

    ``source`` is a sequence of records, or of work items that ``transform`` turns into records inside
    the shard task (so workers do the work and memory stays per row group): one record per item, per
    batch of items or many per item, as the transform declares (:class:`PerItemTransform`,
    :class:`BatchedTransform`, :class:`ExpandingTransform`; a plain function is per-item), planned into
    shards by ``shard_rows`` and/or ``shard_bytes``; or a dask Bag/DataFrame of records,
    one shard per partition. With a dask.distributed ``client`` shards run on its cluster, each retried
    up to ``retries`` times; without one they run in this process. Re-running the same call after a
    crash resumes; a directory holding something else is refused. ``attribute_names`` name the positions of the
    rows' ``attribute_labels`` (attribute-recognition datasets), recorded in the manifest.
    """
    directory = Path(directory)
    n, fingerprint, make_task = _plan(source, transform, shard_rows, shard_bytes, size_of, rows_of, str(directory))
    producer = dict(producer or {})
    producer.setdefault("package_version", package_version())
    plan_doc = {"fingerprint": fingerprint, "num_shards": n, "name": name, "kind": kind, "version": version,
                "parents": list(parents), "producer": producer,
                **({"attribute_names": list(attribute_names)} if attribute_names else {})}
    finished = _existing_write(directory, plan_doc)
    if finished is not None and not _unsealed(directory, finished):
        _log.info("%s: already finished (%s); nothing to do", directory, finished.id)
        return finished  # nothing to write, so no lock: whoever re-runs it may not own the directory
    with _write_lock(directory):
        finished = _existing_write(directory, plan_doc)  # again: another writer may have finished meanwhile
        if finished is None:
            finished = _write_shards(directory, n, make_task, client, retries, on_progress, plan_doc, description)
        else:
            with _writing(directory, "sealing the finished dataset"):
                sealed = _seal(directory, finished)
            if sealed:  # else another writer sealed it meanwhile
                _log.info("%s: a run finished this dataset but was stopped before sealing it; done now (%s)",
                          directory, ", ".join(sealed))
    return finished


def _write_shards(directory: Path, n: int, make_task: Callable[[int], Any], client: Any, retries: int,
                  on_progress: Callable | None, plan_doc: dict, description: str) -> Manifest:
    """Write the shards a previous run did not finish, then the manifest."""
    with _writing(directory, "starting the write"):
        if not (directory / STATS_DIR / PLAN_NAME).is_file():
            _atomic_write_text(directory / STATS_DIR / PLAN_NAME, json.dumps(plan_doc, indent=1, sort_keys=True))
        for leftover in _leftovers(directory):  # left by a killed run: never part of the dataset
            leftover.unlink(missing_ok=True)
        for old in directory.glob("part-*.parquet"):  # this unfinished write's shards as plip wrote them before
            old.unlink()  # the data/ layout: their markers do not list files, so those shards are redone
    done = {i: s for i in range(n) if (s := _finished_stats(directory, i)) is not None}
    for k, stats in enumerate(done.values(), 1):
        if on_progress:
            on_progress(stats, k, n)
    if done:
        _log.info("%s: resuming, %d of %d shards already finished", directory, len(done), n)
    todo = [i for i in range(n) if i not in done]
    failures = _run_tasks([make_task(i) for i in todo], todo, client, retries, done, n, on_progress)
    if failures:
        raise ShardWriteError(_failure_message(directory, failures, n, retries))
    with _writing(directory, "writing the manifest"):
        manifest = _finish(directory, [done[i] for i in range(n)], plan_doc, description)
        _seal(directory, manifest)
    return manifest


def _failure_message(directory: Path, failures: dict[int, str], n: int, retries: int) -> str:
    """Which shards failed and why, and whether a re-run can help: advertising a retry for a failure that will
    recur only sends the user round the loop again."""
    recurring = {i: e for i, e in failures.items() if _recurs(e)}
    transient = {i: e for i, e in failures.items() if i not in recurring}
    advice = []
    if recurring:
        advice.append((recurring, "this is not a transient failure: re-running will fail the same way; fix the input "
                                  "(a changed input is a new plan: write it to a new directory), or report the bug in "
                                  "the transform if the input is right"))
    if transient:
        advice.append((transient, f"re-run the same command to retry {'it' if len(transient) == 1 else 'them'}"))
    text = f"{directory}: {len(failures)} of {n} shards failed after {retries} retries"
    if len(advice) == 1:
        (listed, what), = advice
        return f"{text} ({_listed(listed)}). {what[0].upper()}{what[1:]}. Finished shards are kept."
    return f"{text}. " + " ".join(f"({_listed(listed)}): {what}." for listed, what in advice) + \
        " Finished shards are kept."


def _listed(failures: dict[int, str]) -> str:
    more = len(failures) - MAX_FAILURES_LISTED
    return "; ".join(f"shard {i}: {e}" for i, e in sorted(failures.items())[:MAX_FAILURES_LISTED]) + \
        (f" (and {more} more)" if more > 0 else "")


def _recurs(failure: str) -> bool:
    """Whether a shard's failure, ``"Type: message"`` as _run_tasks reports it, will recur on a re-run: its type
    is one of _RECURRING's (or a subclass, by name) and not one of _TRANSIENT's."""
    name, classes = failure.split(":", 1)[0], list(_RECURRING)
    while classes:
        cls = classes.pop()
        if cls.__name__ == name and not issubclass(cls, _TRANSIENT):
            return True
        classes += cls.__subclasses__()
    return False


def _existing_write(directory: Path, plan_doc: dict) -> Manifest | None:
    """What the output directory holds (read only): the manifest if this exact write finished, None if it is new
    or holds an unfinished write of this plan; DatasetExistsError if it holds anything else."""
    plan_path = directory / STATS_DIR / PLAN_NAME
    if (directory / MANIFEST_NAME).exists():
        manifest = read_manifest(directory)
        if plan_path.is_file() and json.loads(plan_path.read_text()).get("fingerprint") == plan_doc["fingerprint"]:
            return manifest
        raise DatasetExistsError(f"{directory} already holds the finished dataset {manifest.name!r} ({manifest.id}). "
                                 "Finished datasets are immutable: write the new one to a new directory.")
    if plan_path.is_file():
        old = json.loads(plan_path.read_text())
        if old.get("fingerprint") != plan_doc["fingerprint"]:
            raise DatasetExistsError(_another_plan(directory, old, plan_doc))
        return None
    if directory.exists() and any(p.name != STATS_DIR for p in directory.iterdir()):
        raise DatasetExistsError(f"{directory} is not empty and is not a synth-pedes write; choose a new output "
                                 "directory so nothing of yours is overwritten.")
    return None


def _another_plan(directory: Path, old: dict, new: dict) -> str:
    """Why ``directory``'s unfinished write cannot be resumed by this one: each setting of the plan documents
    (the producer's config included) that differs, with both values, and the fix."""
    from plip_runtime.runs import config_diff

    ignored = ("fingerprint", "producer.package_version")  # the version alone never blocks a resume
    new = json.loads(json.dumps(new, default=str))  # as it would be stored: tuples are lists there
    diff = [d for d in config_diff(old, new) if d[0] not in ignored]
    text = f"{directory} holds an unfinished write of a different input or configuration ({old.get('name')!r}, " \
           f"{old.get('num_shards')} shards)"
    if not diff:
        return f"{text}: the same settings, other input items. Re-run the command that started it to finish it, " \
               "or write to a new directory (or delete this one)."

    def value(v: Any) -> str:
        return "not recorded" if v is None else json.dumps(v, default=str)

    diff = [(name.removeprefix("producer."), o, v) for name, o, v in diff]
    differs = "; ".join(f"{n}: {value(o)} in the unfinished write, {value(v)} now" for n, o, v in diff)
    if any(v is None for _, _, v in diff):  # a setting this version does not record: another version started it
        fix = f"It was started by another version ({old.get('producer', {}).get('package_version', '?')}): finish it " \
              "with that version"
    else:
        fix = "Re-run with " + ", ".join(f"{n} {value(o)}" if o is not None else f"no {n}" for n, o, _ in diff) + \
              " to finish it"
    return f"{text}: {differs}. {fix}, or write to a new directory (or delete this one)."


@contextlib.contextmanager
def _write_lock(directory: Path) -> Iterator[None]:
    """Hold ``_stats/lock`` while writing ``directory``: a second writer is refused, naming the first. An flock
    goes with its process, so a killed writer (kill -9 included) never leaves a stale lock behind."""
    with _writing(directory, "starting the write"):
        (directory / STATS_DIR).mkdir(parents=True, exist_ok=True)
        lock = open(directory / STATS_DIR / LOCK_NAME, "a+")
    with lock:  # closing the file releases the lock
        with _writing(directory, "starting the write"):
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                raise WriteInProgressError(_held_by(directory, lock.read())) from None
            lock.truncate(0)
            lock.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(sys.argv),
                                   "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}) + "\n")
            lock.flush()
        yield


@contextlib.contextmanager
def _writing(directory: Path, doing: str) -> Iterator[None]:
    """An OSError of the writer's own files (a full disk, a read-only directory) as a sentence naming the
    directory, the problem and the fix; finished shards stay, so the re-run resumes. Not around the shard tasks:
    their failures are reported by shard (and a lost scheduler's connection error is an OSError too)."""
    try:
        yield
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise OutputDirectoryError(f"{directory}: {e.strerror or e} while {doing}{where}: "
                                   f"{_output_fix(e.errno)}.") from e


def _output_fix(err_no: int | None) -> str:
    if err_no in (errno.ENOSPC, errno.EDQUOT):
        return ("free space on its file system (or choose another output directory) and re-run the same command; "
                "finished shards are kept, so it resumes")
    if err_no in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "choose a writable output directory (--out), or make this one writable and re-run the same command"
    return "fix that and re-run the same command; finished shards are kept, so it resumes"


def _held_by(directory: Path, holder_text: str) -> str:
    try:
        holder = json.loads(holder_text)
    except ValueError:  # the holder took the lock but has not yet said who it is
        holder = {}
    return (f"{directory} is being written by pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since "
            f"{holder.get('since', '?')} (command: {holder.get('command', '?')}): wait for it to finish or stop it "
            "(a stopped write resumes when its command is re-run).")


def _run_tasks(tasks: list, indices: list[int], client: Any, retries: int, done: dict, n: int,
               on_progress: Callable | None) -> dict[int, str]:
    """Run the shard tasks: on ``client``'s cluster, else here; ``{index: error}`` of the shards that failed. On a
    cluster that has had no worker for the Dask config's ``synth-pedes.worker-timeout`` seconds (default 300;
    ``plip --worker-timeout``) it stops with ShardWriteError instead of waiting in silence: finished shards stay."""
    failures: dict[int, str] = {}

    def finished(index: int, stats: ShardStats) -> None:
        done[index] = stats
        if on_progress:
            on_progress(stats, len(done), n)

    if client is not None:
        futures = client.compute(tasks, retries=retries)
        index_of = {f.key: i for f, i in zip(futures, indices)}
        try:
            for future, ok, value in as_finished(client, futures, what="shards"):
                if ok:
                    finished(index_of[future.key], value)
                else:  # one bad shard must not stop the others
                    failures[index_of[future.key]] = f"{type(value).__name__}: {value}"
        except NoWorkersError as e:
            raise ShardWriteError(f"{e}; the shards finished so far are kept, so the re-run writes only the rest") from None
        return failures
    for index, task in zip(indices, tasks):
        for attempt in range(retries + 1):
            try:
                finished(index, task.compute(scheduler="sync"))
                break
            except Exception as e:
                _log.warning("shard %d attempt %d failed: %s", index, attempt + 1, e)
                if attempt == retries:
                    failures[index] = f"{type(e).__name__}: {e}"
    return failures


def _finish(directory: Path, shard_stats: list[ShardStats], plan_doc: dict, description: str) -> Manifest:
    files = tuple(info for s in shard_stats for info in s.to_infos())
    repeats = repeated_keys(directory, [f.path for f in files])  # within a shard, write_shard refused them
    if repeats:
        raise DuplicateKeyError(
            f"{directory}: {describe_repeats(repeats)}; every key must be unique (docs/formats.md#columns). The "
            "input lists an item twice (an input manifest listing a shard twice, a list naming a file twice), or "
            "the transform gives two items one key. The shards are kept but no manifest was written: fix the input "
            f"and write it to a new directory (or delete {directory}).")
    splits, statuses = collections.Counter(), collections.Counter()
    for s in shard_stats:
        splits.update(s.splits)
        statuses.update(s.status_counts)
    if not any(f.usable for f in files):
        files = (*_empty_usable_files(directory, sorted(splits, key=lambda s: _group_sort_key((s, True))) or ["train"],
                                      len(shard_stats)), *files)
    manifest = Manifest(name=plan_doc["name"], kind=plan_doc["kind"], version=plan_doc["version"],
                        shards=files, parents=tuple(plan_doc["parents"]),
                        producer=plan_doc["producer"], splits=dict(sorted(splits.items())),
                        status_counts=dict(sorted(statuses.items())), description=description,
                        attribute_names=tuple(plan_doc.get("attribute_names", ())),
                        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _atomic_write_text(directory / MANIFEST_NAME, manifest.to_json())
    _log.info("%s: finished %s, %d rows (%d usable, status ok) in %d files of %d shards", directory, manifest.id,
              manifest.num_rows, manifest.num_usable_rows, len(files), len(shard_stats))
    return manifest


def _empty_usable_files(directory: Path, splits: list[str], num_shards: int) -> list[ShardInfo]:
    """Empty data/ files, one per split, for a dataset without a usable row: with data/ empty, datasets.load_dataset
    (DIR) would fall back to matching split names anywhere and give the rejected rows as its default view, and
    pandas/pyarrow on DIR/data would fail instead of giving no rows. (Shard 0 wrote no data/ file, so no name is
    taken; rewritten the same on a resume.)"""
    infos = []
    for split in splits:
        file = _ShardFile.open(directory, shard_file(split, True, 0, max(num_shards, 1)), split, True)
        try:  # no row group at all: datasets' Parquet reader fails on an empty one, and skips a file without
            infos.append(file.finish())
            os.replace(file.tmp, directory / file.info.path)
        except BaseException:
            file.discard()
            raise
    return infos


def _leftovers(directory: Path) -> list[Path]:
    """Temporary files of killed writes (shard files, markers, the plan, the manifest): never part of a dataset."""
    return [*(directory / USABLE_DIR).glob(".*.tmp"), *(directory / REJECTED_DIR).glob(".*.tmp"),
            *directory.glob(".part-*.tmp"), *directory.glob(f".{MANIFEST_NAME}.*.tmp"),
            *(directory / STATS_DIR).glob(".*.tmp")]


def _unsealed(directory: Path, manifest: Manifest) -> list[Path]:
    """What keeps a finished dataset from being sealed: writable manifest or shards, leftover temporary files."""
    files = [directory / MANIFEST_NAME, *(directory / s.path for s in manifest.shards)]
    return [p for p in files if p.is_file() and p.stat().st_mode & _WRITE_BITS] + _leftovers(directory)


def _seal(directory: Path, manifest: Manifest) -> list[str]:
    """Make a finished dataset immutable (read-only manifest and shards) and remove the leftovers of killed
    writes, e.g. a worker killed mid-shard after a retry elsewhere finished it; returns what it changed. Also
    completes a finish that a kill interrupted between the manifest's rename and the chmod."""
    changed = []
    for path in _unsealed(directory, manifest):
        if path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
            changed.append(f"removed {path.relative_to(directory)}")
        else:
            os.chmod(path, _READ_ONLY)
            changed.append(f"made {path.name} read-only")
    return changed
