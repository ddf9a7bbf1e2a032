import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask.bag as db
import pyarrow.parquet as pq
import pytest
from _fixtures import Records, make_writable

from synth_pedes import open_dataset, plan_shards, validate_dataset, write_dataset
from synth_pedes.errors import (DatasetExistsError, DuplicateKeyError, OutputDirectoryError, ShardWriteError,
                               WriteInProgressError)
from synth_pedes.transforms import BATCHED, EXPANDING, PER_ITEM, transform_fingerprint, transform_kind

TESTS = Path(__file__).parent


def _rows(path):
    """Every row, by key: a shard's rows are in its files of one split and status each (input order within a file)."""
    return sorted(open_dataset(path).to_table().to_pylist(), key=lambda r: r["key"])


def _shard_rows(path):
    """Rows per planned shard, from the completion markers (a shard's rows span its files)."""
    return [json.loads(p.read_text())["rows"] for p in sorted((Path(path) / "_stats").glob("part-*.json"))]


def test_plan_shards_by_rows_and_bytes():
    assert plan_shards(range(7), shard_rows=3) == [[0, 1, 2], [3, 4, 5], [6]]
    sizes = [5, 5, 5, 20, 1]
    assert plan_shards(range(5), shard_bytes=10, size_of=lambda i: sizes[i]) == [[0, 1], [2], [3], [4]]
    assert plan_shards(range(5), shard_rows=2, shard_bytes=10, size_of=lambda i: 1) == [[0, 1], [2, 3], [4]]
    rows = [3, 3, 5, 1]
    assert plan_shards(range(4), shard_rows=6, rows_of=lambda i: rows[i]) == [[0, 1], [2, 3]]
    assert plan_shards(range(4), shard_rows=2, rows_of=lambda i: rows[i]) == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match="size_of"):
        plan_shards(range(3), shard_bytes=10)


def test_write_is_deterministic_and_counts_stats(tmp_path):
    a = write_dataset(range(30), tmp_path / "a", name="t", kind="images", transform=Records(), shard_rows=8)
    b = write_dataset(range(30), tmp_path / "b", name="t", kind="images", transform=Records(), shard_rows=8)
    assert a.id == b.id and [s.sha256 for s in a.shards] == [s.sha256 for s in b.shards]
    assert [s.path for s in a.shards[:4]] == ["data/train-00000-of-00004.parquet", "data/val-00000-of-00004.parquet",
                                              "rejected/train-00000-of-00004.parquet",
                                              "rejected/val-00000-of-00004.parquet"]
    assert [(s.split, s.usable, s.rows) for s in a.shards[:4]] == [("train", True, 3), ("val", True, 3),
                                                                   ("train", False, 1), ("val", False, 1)]
    assert _shard_rows(tmp_path / "a") == [8, 8, 8, 6]
    assert a.status_counts == {"error": 5, "ok": 25} and a.splits == {"train": 15, "val": 15}
    stats = json.loads((tmp_path / "a" / "_stats" / "part-00000.json").read_text())
    assert stats["error_counts"] == {"synthetic": 2} and stats["errors"][0] == ["test/00000.jpg", "synthetic: test error"]
    assert [r["key"] for r in _rows(tmp_path / "a")] == [f"test/{i:05d}.jpg" for i in range(30)]
    # row groups bound the readers' unit of work
    assert pq.ParquetFile(tmp_path / "a" / "data/train-00000-of-00004.parquet").num_row_groups == 1


def test_rows_of_interleaved_groups_still_fill_whole_row_groups(tmp_path):
    """Splits and statuses alternate row by row; each group's file still gets row groups of ROW_GROUP_ROWS (the
    readers' unit of work), not fragments of every input batch."""
    m = write_dataset(range(600), tmp_path / "a", name="t", kind="images", transform=Records(), shard_rows=600)
    for shard in m.shards:
        meta = pq.ParquetFile(tmp_path / "a" / shard.path).metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        assert all(n == 256 for n in sizes[:-1]) and sum(sizes) == shard.rows, (shard.path, sizes)
    assert [s.rows for s in m.shards] == [257, 257, 43, 43]


def test_finished_datasets_are_immutable(tmp_path):
    out = tmp_path / "d"
    m = write_dataset(range(5), out, name="t", kind="images", transform=Records(), shard_rows=2)
    assert write_dataset(range(5), out, name="t", kind="images", transform=Records(), shard_rows=2).id == m.id
    with pytest.raises(DatasetExistsError, match="immutable"):
        write_dataset(range(6), out, name="t", kind="images", transform=Records(), shard_rows=2)
    assert not os.access(out / "data/train-00000-of-00003.parquet", os.W_OK) or os.geteuid() == 0
    assert oct(os.stat(out / "manifest.json").st_mode & 0o777) == "0o444"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetExistsError, match="not empty"):
        write_dataset(range(5), tmp_path / "other", name="t", kind="images", transform=Records(), shard_rows=2)


def test_a_different_unfinished_write_is_refused(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "_stats").mkdir()
    (out / "_stats" / "plan.json").write_text(json.dumps({"fingerprint": "other", "name": "x", "num_shards": 3}))
    with pytest.raises(DatasetExistsError, match="unfinished write of a different input"):
        write_dataset(range(5), out, name="t", kind="images", transform=Records(), shard_rows=2)


class _FailOnce:
    """Fails the first time it sees item 3 in this process, then works."""
    transform_kind = PER_ITEM
    seen = set()

    def fingerprint(self):
        return "_FailOnce"

    def __call__(self, i):
        if i == 3 and i not in self.seen:
            self.seen.add(i)
            raise RuntimeError("transient failure")
        return Records()(i)


class _AlwaysFail:
    transform_kind = PER_ITEM

    def fingerprint(self):
        return "_AlwaysFail"

    def __call__(self, i):
        if i == 3:
            raise RuntimeError("permanent failure")
        return Records()(i)


def test_failed_shards_are_retried_then_reported_and_resumable(tmp_path):
    m = write_dataset(range(6), tmp_path / "a", name="t", kind="images", transform=_FailOnce(), shard_rows=2)
    assert m.num_rows == 6
    with pytest.raises(ShardWriteError, match="1 of 3 shards failed after 1 retries.*shard 1: RuntimeError"):
        write_dataset(range(6), tmp_path / "b", name="t", kind="images", transform=_AlwaysFail(), shard_rows=2,
                      retries=1)
    assert sorted(p.name for p in (tmp_path / "b" / "_stats").glob("part-*")) == ["part-00000.json", "part-00002.json"]
    assert not any("-00001-of-" in p.name for p in (tmp_path / "b").rglob("*"))  # no half-written shard left behind


def test_a_repeated_key_is_never_written(tmp_path):
    """Issue 18: an input naming an item twice gave a dataset with a repeated key, which validated."""
    with pytest.raises(DuplicateKeyError, match=r"2 keys appear more than once, e.g. 'test/00001.jpg' in "
                                                r"data/val-00000-of-00002.parquet row 0 and "
                                                r"data/val-00001-of-00002.parquet row 1; 'test/00000.jpg' in "
                                                r"rejected/train-00000-of-00002.parquet row 0 and "
                                                r"rejected/train-00001-of-00002.parquet row 0.*no manifest was "
                                                r"written"):
        write_dataset([0, 1, 2, 0, 3, 1], tmp_path / "a", name="t", kind="images", transform=Records(), shard_rows=3)
    assert not (tmp_path / "a" / "manifest.json").exists()
    assert len(list((tmp_path / "a" / "_stats").glob("part-*.json"))) == 2  # found at the finish: shards kept
    with pytest.raises(ShardWriteError, match=r"shard 0: DuplicateKeyError: shard 0 of .*: key 'test/00001.jpg' is "
                                              r"repeated \(rows 1 and 2 of the shard\)"):
        write_dataset([0, 1, 1], tmp_path / "b", name="t", kind="images", transform=Records(), shard_rows=3,
                      retries=0)  # found as the rows are written


class _BadItem(_AlwaysFail):
    """Fails on item 3 because of the item itself: every attempt fails the same way."""

    def __call__(self, i):
        if i == 3:
            raise ValueError("item 3 has no image")
        return Records()(i)


def test_a_failure_that_will_recur_is_not_advertised_as_retryable(tmp_path):
    with pytest.raises(ShardWriteError) as failed:
        write_dataset(range(6), tmp_path / "a", name="t", kind="images", transform=_BadItem(), shard_rows=2,
                      retries=1)
    message = str(failed.value).lower()
    assert "shard 1: valueerror: item 3 has no image" in message
    assert "this is not a transient failure: re-running will fail the same way" in message
    assert "fix the input" in message and "re-run the same command" not in message
    with pytest.raises(ShardWriteError, match="(?i)shard 1: RuntimeError.*re-run the same command to retry") as failed:
        write_dataset(range(6), tmp_path / "b", name="t", kind="images", transform=_AlwaysFail(), shard_rows=2,
                      retries=0)  # a type that may be transient keeps the advice to re-run
    assert "not a transient failure" not in str(failed.value)


def test_bag_and_dataframe_sources_one_shard_per_partition(tmp_path):
    records = [Records()(i) for i in range(10)]
    bag = db.from_sequence(records, npartitions=3)
    m = write_dataset(bag, tmp_path / "bag", name="t", kind="images")
    assert len(_shard_rows(tmp_path / "bag")) == 3 and m.num_rows == 10
    assert [r["key"] for r in _rows(tmp_path / "bag")] == [r["key"] for r in records]
    with pytest.raises(ValueError, match="partitions are its shards"):
        write_dataset(bag, tmp_path / "bag2", name="t", kind="images", shard_rows=4)
    with pytest.raises(ValueError, match=r"written as it is: map the transform over it first"):
        write_dataset(db.from_sequence(range(4)), tmp_path / "bag3", name="t", kind="images", transform=Records())
    assert not (tmp_path / "bag3").exists()  # refused before anything is written
    import dask.dataframe as dd
    import pandas as pd

    import dask

    with dask.config.set({"dataframe.convert-string": False}):  # else dask casts the nested columns to str
        frame = dd.from_pandas(pd.DataFrame(records), npartitions=2)
    m2 = write_dataset(frame, tmp_path / "df", name="t", kind="images")
    assert m2.num_rows == 10 and len(_shard_rows(tmp_path / "df")) == 2
    assert _rows(tmp_path / "df") == _rows(tmp_path / "bag")


def test_on_a_dask_cluster(tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        seen = []
        m = write_dataset(range(20), tmp_path / "d", name="t", kind="images", transform=Records(), shard_rows=5,
                          client=client, on_progress=lambda s, done, total: seen.append((done, total)))
    assert sorted(seen) == [(i, 4) for i in range(1, 5)]
    assert m.id == write_dataset(range(20), tmp_path / "e", name="t", kind="images", transform=Records(),
                                 shard_rows=5).id


_WRITER = """
import sys
from _fixtures import Records, make_writable
from synth_pedes import write_dataset
write_dataset(range(40), sys.argv[1], name="t", kind="images", transform=Records(delay=float(sys.argv[2])),
              shard_rows=4)
"""


def test_kill_9_mid_write_then_resume_gives_exactly_the_uninterrupted_rows(tmp_path):
    reference = write_dataset(range(40), tmp_path / "ref", name="t", kind="images", transform=Records(delay=0.02),
                              shard_rows=4)
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(out), "0.02"], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "_stats").glob("part-*.json"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / "_stats").glob("part-*.json")))
    assert 3 <= done_before < 10, "the kill should land mid-write"
    assert not (out / "manifest.json").exists()
    resumed = []
    m = write_dataset(range(40), out, name="t", kind="images", transform=Records(delay=0.02), shard_rows=4,
                      on_progress=lambda s, d, t: resumed.append(s.skipped))
    assert sum(resumed) >= done_before - 1  # a shard renamed but not yet marked is redone, never trusted
    assert m.id == reference.id
    with pytest.raises(DatasetExistsError):  # the transform's configuration is part of the plan
        write_dataset(range(40), tmp_path / "ref", name="t", kind="images", transform=Records(delay=0.0),
                      shard_rows=4)
    assert _rows(out) == _rows(tmp_path / "ref")
    assert not list(out.glob(".*.tmp"))


def _as_killed_before_the_finish(out):
    """Turn a finished dataset back into a write killed just before its manifest: shards writable, no manifest."""
    for path in out.rglob("*"):
        make_writable(path)
    (out / "manifest.json").unlink()


def test_a_resume_redoes_a_kept_shard_whose_checksum_no_longer_matches(tmp_path, caplog):
    """Issue 18: a byte flipped in a shard finished before the crash passed the resume (size and row count still
    agree), and only the next validate failed."""
    out = tmp_path / "d"
    reference = write_dataset(range(12), out, name="t", kind="images", transform=Records(), shard_rows=4)
    _as_killed_before_the_finish(out)
    data = bytearray((out / "data/train-00001-of-00003.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "data/train-00001-of-00003.parquet").write_bytes(bytes(data))
    skipped = {}
    with caplog.at_level("WARNING", logger="synth_pedes.writer"):
        m = write_dataset(range(12), out, name="t", kind="images", transform=Records(), shard_rows=4,
                          on_progress=lambda s, done, total: skipped.__setitem__(s.index, s.skipped))
    assert skipped == {0: True, 1: False, 2: True}
    assert (f"{out}: redoing shard 1: the sha256 of data/train-00001-of-00003.parquet does not match its completion "
            "marker") in caplog.text
    assert m.id == reference.id and open_dataset(out).id == reference.id  # verified: every checksum agrees


def test_a_resume_redoes_a_shard_missing_one_of_its_files_and_removes_files_it_no_longer_writes(tmp_path, caplog):
    """A shard writes one file per split and status group; its marker lists them all. A listed file gone makes the
    shard redone; a file of the shard's that the redo does not write (a killed attempt's) would be read by every
    loader of data/, so it goes."""
    out = tmp_path / "d"
    reference = write_dataset(range(12), out, name="t", kind="images", transform=Records(), shard_rows=4)
    _as_killed_before_the_finish(out)
    (out / "data/val-00001-of-00003.parquet").unlink()
    stray = out / "data/test-00002-of-00003.parquet"
    stray.write_bytes((out / "data/train-00002-of-00003.parquet").read_bytes())
    (out / "_stats/part-00002.json").unlink()  # shard 2 was killed after its renames, before its marker
    with caplog.at_level("WARNING", logger="synth_pedes.writer"):
        m = write_dataset(range(12), out, name="t", kind="images", transform=Records(), shard_rows=4)
    assert f"{out}: redoing shard 1: data/val-00001-of-00003.parquet is missing" in caplog.text
    assert not stray.exists() and m.id == reference.id and validate_dataset(out).ok


def test_an_unfinished_write_of_the_old_layout_is_finished_in_the_new_one(tmp_path):
    """A write stopped before plip wrote data/ files: its markers name one top-level part file each. Resumed, its
    shards are redone in the new layout and the old files go (no loader or manifest would account for them)."""
    out = tmp_path / "d"
    reference = write_dataset(range(8), out, name="t", kind="images", transform=Records(), shard_rows=4)
    _as_killed_before_the_finish(out)
    for index in (0, 1):
        marker = out / "_stats" / f"part-{index:05d}.json"
        stats = json.loads(marker.read_text())
        (out / f"part-{index:05d}.parquet").write_bytes(b"PAR1 as the old writer left it")
        marker.write_text(json.dumps({**{k: v for k, v in stats.items() if k != "files"},
                                      "path": f"part-{index:05d}.parquet", "sha256": "ab" * 32}))
    assert write_dataset(range(8), out, name="t", kind="images", transform=Records(), shard_rows=4).id == reference.id
    assert not list(out.glob("part-*")) and validate_dataset(out).ok


def _temporary_files(out):
    return sorted(p.name for p in out.rglob(".*.tmp"))


def _record_leaving_a_stray_shard(directory, i):
    """As if a worker killed mid-shard had left its temporary file after a retry elsewhere finished the shard."""
    if i == 5:
        (Path(directory) / "data" / ".train-00000-of-00002.parquet.0123abcd.tmp").write_bytes(b"PAR1 half a shard")
    return Records()(i)


def test_temporary_files_of_killed_workers_are_removed_at_the_finish(tmp_path):
    import functools

    out = tmp_path / "d"
    write_dataset(range(8), out, name="t", kind="images", transform=functools.partial(_record_leaving_a_stray_shard,
                                                                                        str(out)), shard_rows=4)
    assert _temporary_files(out) == []


def test_the_next_run_finishes_an_interrupted_finish(tmp_path):
    """Issue 18: a kill between the manifest's rename and the chmod left a writable finished dataset that the next
    run called finished; a kill while writing the manifest left its temporary file inside it."""
    out = tmp_path / "d"
    reference = write_dataset(range(8), out, name="t", kind="images", transform=Records(), shard_rows=4)
    for path in out.rglob("*"):
        make_writable(path)
    (out / ".manifest.json.0123abcd.tmp").write_text("{")
    (out / "_stats" / ".part-00000.json.0123abcd.tmp").write_text("{")
    assert write_dataset(range(8), out, name="t", kind="images", transform=Records(), shard_rows=4).id == reference.id
    assert _temporary_files(out) == []
    assert {oct(p.stat().st_mode & 0o777) for p in [out / "manifest.json", *out.rglob("*.parquet")]} == {"0o444"}
    _as_killed_before_the_finish(out)
    (out / ".manifest.json.4567cdef.tmp").write_text("{")
    assert write_dataset(range(8), out, name="t", kind="images", transform=Records(), shard_rows=4).id == reference.id
    assert _temporary_files(out) == []


def test_a_second_writer_is_refused_naming_the_first_and_a_killed_one_never_blocks(tmp_path):
    """Issue 18: two writers of one directory with one configuration both did all the work."""
    import socket

    out = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(out), "0.05"], env=dict(os.environ, PYTHONPATH=str(TESTS)))
    lock, deadline = out / "_stats" / "lock", time.time() + 60
    while time.time() < deadline and f'"pid": {proc.pid},' not in (lock.read_text() if lock.exists() else ""):
        time.sleep(0.02)
    try:
        with pytest.raises(WriteInProgressError, match=rf"{out} is being written by pid {proc.pid} on host "
                                                       rf"{socket.gethostname()} since .* \(command: .*\): wait for "
                                                       "it to finish or stop it"):
            write_dataset(range(40), out, name="t", kind="images", transform=Records(delay=0.05), shard_rows=4)
        assert proc.poll() is None, "the first writer should still be at work"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "manifest.json").exists()
    m = write_dataset(range(40), out, name="t", kind="images", transform=Records(delay=0.05), shard_rows=4)
    assert m.num_rows == 40  # the killed writer's lock went with it


@pytest.mark.parametrize("error", [errno.EROFS, errno.EACCES])
def test_an_output_directory_that_cannot_be_written_is_named_with_the_fix(tmp_path, monkeypatch, error):
    """Issue 18: a read-only output directory gave a raw traceback. (Faked at mkdir: root may write anywhere.)"""
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.is_relative_to(tmp_path / "read-only"):
            raise OSError(error, os.strerror(error), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    out = tmp_path / "read-only" / "d"
    with pytest.raises(OutputDirectoryError, match=rf"{out}: {os.strerror(error)} while starting the write \({out}/_stats\): "
                                                   r"choose a writable output directory \(--out\)"):
        write_dataset(range(4), out, name="t", kind="images", transform=Records(), shard_rows=2)


def test_a_full_disk_while_writing_the_manifest_is_a_sentence_and_the_re_run_resumes(tmp_path, monkeypatch):
    """Issue 18: ENOSPC while writing the manifest gave a raw traceback (and left its temporary file)."""
    real_fsync = os.fsync

    def fsync(fd):
        if ".manifest.json." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "d"
    with pytest.raises(OutputDirectoryError, match=rf"{out}: No space left on device while writing the manifest: free "
                                                   r"space on its file system .* re-run the same command; finished "
                                                   "shards are kept, so it resumes"):
        write_dataset(range(8), out, name="t", kind="images", transform=Records(), shard_rows=4)
    monkeypatch.undo()
    assert _temporary_files(out) == [] and not (out / "manifest.json").exists()
    skipped = []
    m = write_dataset(range(8), out, name="t", kind="images", transform=Records(), shard_rows=4,
                      on_progress=lambda s, done, total: skipped.append(s.skipped))
    assert skipped == [True, True] and m.num_rows == 8


class _BatchedRecords:
    """A batched transform, as model inference is: lists of items in, one record per item out."""
    transform_kind = BATCHED
    batch_size = 3

    def __init__(self):
        self.calls = []

    def fingerprint(self):
        return f"{type(self).__name__}(batch_size={self.batch_size})"

    def __call__(self, items):
        self.calls.append(len(items))
        return [Records()(i) for i in items]


class _BadBatch(_BatchedRecords):
    def __call__(self, items):
        return [Records()(i) for i in items[:-1]]


def test_batched_transforms_get_lists_and_must_return_one_record_per_item(tmp_path):
    batched = _BatchedRecords()
    m = write_dataset(range(10), tmp_path / "a", name="t", kind="images", transform=batched, shard_rows=4)
    assert batched.calls == [3, 1, 3, 1, 2] and m.num_rows == 10
    write_dataset(range(10), tmp_path / "b", name="t", kind="images", transform=Records(), shard_rows=4)
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")  # the same rows as the per-item transform
    with pytest.raises(ShardWriteError, match="returned 2 records for 3 items"):
        write_dataset(range(3), tmp_path / "c", name="t", kind="images", transform=_BadBatch(), shard_rows=4,
                      retries=0)


class _Expanding:
    """One item -> several records (an input row group -> its annotated rows)."""
    transform_kind = EXPANDING

    def fingerprint(self):
        return "_Expanding"

    def __call__(self, item):
        start, n = item
        return (Records()(i) for i in range(start, start + n))


def test_expanding_transforms_flat_map_items(tmp_path):
    units = [(0, 4), (4, 3), (7, 5)]
    m = write_dataset(units, tmp_path / "a", name="t", kind="images", transform=_Expanding(), shard_rows=7,
                      rows_of=lambda u: u[1])
    assert m.num_rows == 12 and _shard_rows(tmp_path / "a") == [7, 5]  # shards hold whole items
    m = write_dataset(units, tmp_path / "b", name="t", kind="images", transform=_Expanding(), shard_rows=100,
                      rows_of=lambda u: u[1])
    assert _shard_rows(tmp_path / "b") == [12]
    assert [r["key"] for r in _rows(tmp_path / "b")] == [f"test/{i:05d}.jpg" for i in range(12)]


def _record_of(i):
    return Records()(i)


def test_a_plain_function_is_a_per_item_transform_without_declaring_anything(tmp_path):
    import functools

    assert transform_kind(_record_of) == PER_ITEM and transform_kind(functools.partial(_record_of)) == PER_ITEM
    assert transform_fingerprint(_record_of) == "test_writer._record_of"
    m = write_dataset(range(10), tmp_path / "f", name="t", kind="images", transform=_record_of, shard_rows=4)
    write_dataset(range(10), tmp_path / "o", name="t", kind="images", transform=Records(), shard_rows=4)
    assert m.num_rows == 10 and _rows(tmp_path / "f") == _rows(tmp_path / "o")
    # the fingerprints of the shipped transforms: unchanged since they were read from repr (resumes still match)
    assert transform_fingerprint(Records(delay=0.5)) == "_fixtures.Records:Records(delay=0.5)"
    assert transform_fingerprint(functools.partial(_record_of, 3)) == "partial(test_writer._record_of, (3,), [])"


class _Undeclared:
    """The old way: an ``expands`` attribute, which the writer no longer sniffs."""
    expands = True

    def __call__(self, item):
        return [Records()(item)]


class _WrongKind(_Expanding):
    transform_kind = "flat-map"


class _NoFingerprint:
    transform_kind = EXPANDING

    def __call__(self, item):
        return [Records()(item)]


class _BatchedWithoutSize(_BatchedRecords):
    batch_size = 0


@pytest.mark.parametrize("transform, error, message", [
    (_Undeclared(), TypeError, "_Undeclared declares no transform_kind: a callable object must say which kind"),
    (_WrongKind(), ValueError, "_WrongKind declares transform_kind='flat-map', which is not one of per-item, "
                               "batched, expanding"),
    (_NoFingerprint(), TypeError, r"_NoFingerprint \(expanding\) has no fingerprint\(\) method"),
    (_BatchedWithoutSize(), ValueError, "_BatchedWithoutSize is batched, so its batch_size must be an integer >= 1"),
])
def test_a_wrongly_declared_transform_fails_before_any_shard_runs(tmp_path, transform, error, message):
    with pytest.raises(error, match=message):
        write_dataset(range(4), tmp_path / "d", name="t", kind="images", transform=transform, shard_rows=2)
    assert not (tmp_path / "d").exists()
