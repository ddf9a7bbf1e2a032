import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from _fixtures import Records, make_writable

from synth_pedes import open_dataset, validate_dataset, write_dataset
from synth_pedes.errors import IntegrityError, ManifestError, SchemaMismatchError
from synth_pedes.torch_data import ShardedIterableDataset


@pytest.fixture()
def dataset_dir(tmp_path):
    write_dataset(range(40), tmp_path / "d", name="t", kind="images", transform=Records(), shard_rows=12)
    return tmp_path / "d"


def _plip(*args):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, args)], capture_output=True, text=True)


def test_validate_good_dataset(dataset_dir):
    report = validate_dataset(dataset_dir)
    assert report.ok and report.checked_checksums and report.manifest.num_rows == 40
    proc = _plip("validate", dataset_dir)
    assert proc.returncode == 0 and "OK" in proc.stdout and "sha256 of every shard" in proc.stdout


def test_flipped_byte_is_detected_and_named(dataset_dir):
    shard = dataset_dir / "part-00001.parquet"
    make_writable(shard)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="part-00001.parquet: sha256 .* does not match"):
        open_dataset(dataset_dir)
    open_dataset(dataset_dir, verify="quick")  # sizes and footers still agree: only the checksum catches it
    proc = _plip("validate", dataset_dir)
    assert proc.returncode == 1 and "part-00001.parquet" in proc.stderr and "altered" in proc.stderr


def test_missing_truncated_and_replaced_shards(dataset_dir):
    make_writable(dataset_dir / "part-00000.parquet")
    os.remove(dataset_dir / "part-00000.parquet")
    shard = dataset_dir / "part-00002.parquet"
    make_writable(shard)
    shard.write_bytes(shard.read_bytes()[:-100])
    problems = validate_dataset(dataset_dir).problems
    assert any("part-00000.parquet: missing" in p for p in problems)
    assert any("part-00002.parquet" in p and "truncated" in p for p in problems)
    with pytest.raises(IntegrityError):
        open_dataset(dataset_dir, verify="quick")


def _forge_manifest(dataset_dir):
    """Rewrite the manifest to agree with the shards as they now are (sizes, checksums, id), so that only what
    the test changed inside them is wrong."""
    from synth_pedes.manifest import Manifest, ShardInfo
    from synth_pedes.writer import file_sha256

    manifest_path = dataset_dir / "manifest.json"
    doc = json.loads(manifest_path.read_text())
    fields = {k: v for k, v in doc.items() if k not in ("id", "num_rows", "num_bytes", "created_at")}
    fields["shards"] = tuple(ShardInfo(**dict(s, bytes=(dataset_dir / s["path"]).stat().st_size,
                                              sha256=file_sha256(dataset_dir / s["path"]))) for s in doc["shards"])
    fields["parents"] = tuple(fields["parents"])
    make_writable(manifest_path)
    manifest_path.write_text(Manifest(**fields).to_json())


def test_schema_mismatch_is_named(dataset_dir, tmp_path):
    shard = dataset_dir / "part-00003.parquet"
    table = pq.read_table(shard).drop_columns(["extra"])
    make_writable(shard)
    pq.write_table(table, shard)
    _forge_manifest(dataset_dir)
    with pytest.raises(SchemaMismatchError, match=r"part-00003.parquet.*missing columns \['extra'\]"):
        open_dataset(dataset_dir)


def test_repeated_keys_are_reported_with_examples_and_a_count(dataset_dir):
    """Issue 18: rows repeated under one key (here shard 0's rows copied over shard 1's) validated."""
    make_writable(dataset_dir / "part-00001.parquet")
    (dataset_dir / "part-00001.parquet").write_bytes((dataset_dir / "part-00000.parquet").read_bytes())
    _forge_manifest(dataset_dir)
    assert validate_dataset(dataset_dir, "quick").ok  # sizes, schema and rows agree: only the keys are wrong
    problems = validate_dataset(dataset_dir).problems
    assert len(problems) == 1 and problems[0].startswith("12 keys appear more than once, e.g. 'test/00000.jpg' in "
                                                         "part-00000.parquet row 0 and part-00001.parquet row 0;")
    assert "(and 9 more)" in problems[0] and "re-create the dataset" in problems[0]
    with pytest.raises(IntegrityError, match="12 keys appear more than once"):
        open_dataset(dataset_dir)
    proc = _plip("validate", dataset_dir)
    assert proc.returncode == 1 and "12 keys appear more than once" in proc.stderr


def test_tampered_manifest_and_escaping_paths(dataset_dir):
    path = dataset_dir / "manifest.json"
    make_writable(path)
    doc = json.loads(path.read_text())
    doc["shards"][0]["path"] = "../outside.parquet"
    path.write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="leaves the dataset directory"):
        open_dataset(dataset_dir)
    doc["shards"][0]["path"] = "part-00000.parquet"
    doc["format"] = "webdataset/2"
    path.write_text(json.dumps(doc))
    proc = _plip("validate", dataset_dir)
    assert proc.returncode == 1 and "unknown manifest format 'webdataset/2'" in proc.stderr


def test_symlinked_shard_outside_is_refused(dataset_dir, tmp_path):
    outside = tmp_path / "outside.parquet"
    shard = dataset_dir / "part-00000.parquet"
    outside.write_bytes(shard.read_bytes())
    make_writable(shard)
    shard.unlink()
    shard.symlink_to(outside)
    assert any("outside the dataset directory" in p for p in validate_dataset(dataset_dir).problems)


def test_hugging_face_route_yields_pil_images_and_nested_captions(dataset_dir, tmp_path):
    from PIL import Image

    hf = open_dataset(dataset_dir).to_hf(cache_dir=str(tmp_path / "cache"))
    assert len(hf) == 40
    row = hf[1]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (32, 64)
    assert row["captions"][0]["spans"][0] == {"slot": "upper", "start": 0, "end": 7}
    assert row["attributes"]["upper"] == "upper 1"
    assert hf[0]["status"] == "error" and hf[0]["error"] == "synthetic: test error"


@pytest.mark.parametrize("world_size,num_workers", [(1, 0), (1, 2), (2, 1), (3, 2)])
def test_iterable_dataset_yields_each_row_once_per_epoch(dataset_dir, world_size, num_workers):
    keys = []
    for rank in range(world_size):
        ds = ShardedIterableDataset(open_dataset(dataset_dir), columns=["key"], status=None, shuffle=True, seed=3,
                                    rank=rank, world_size=world_size)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=num_workers)
        keys += [row["key"] for row in loader]
    assert sorted(keys) == [f"test/{i:05d}.jpg" for i in range(40)]


def test_iterable_dataset_shuffles_per_epoch_and_filters_status(dataset_dir):
    ds = ShardedIterableDataset(dataset_dir, columns=["key"], shuffle=True, seed=0)
    first = [r["key"] for r in ds]
    ds.set_epoch(1)
    second = [r["key"] for r in ds]
    assert sorted(first) == sorted(second) and first != second
    assert len(first) == 40 - 6  # status="ok" by default: rows 0, 7, 14, ... are errors


@pytest.mark.parametrize("num_workers", [0, 2])
def test_iterable_dataset_batches_in_the_workers(dataset_dir, num_workers):
    """batch_size: each worker transforms and collates its rows; whole batches cross the pipe, every ok row once,
    in the same order as row by row."""
    def rows_of(**kwargs):
        ds = ShardedIterableDataset(dataset_dir, columns=["key", "width"], transform=_key_and_width, **kwargs)
        return list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=num_workers))

    singles = rows_of()
    batches = rows_of(batch_size=4, collate=torch.utils.data.default_collate)
    assert all(isinstance(b["width"], torch.Tensor) and len(b["key"]) <= 4 for b in batches)
    assert sum(len(b["key"]) for b in batches) == len(singles) == 40 - 6
    assert sorted(k for b in batches for k in b["key"]) == sorted(r["key"] for r in singles)
    if num_workers == 0:
        assert [k for b in batches for k in b["key"]] == [r["key"] for r in singles]
    assert [len(b) for b in rows_of(batch_size=16)][:1] == [16]  # no collate: lists of rows
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ShardedIterableDataset(dataset_dir, batch_size=0)
    with pytest.raises(ValueError, match="collate needs a batch_size"):
        ShardedIterableDataset(dataset_dir, collate=torch.utils.data.default_collate)


def _key_and_width(row: dict) -> dict:  # module level: DataLoader workers pickle the dataset
    return {"key": row["key"], "width": row["width"]}


def test_iter_batches_filters_status(dataset_dir):
    ds = open_dataset(dataset_dir)
    rows = [r for b in ds.iter_batches(columns=["key"], status="error") for r in b.to_pylist()]
    assert [r["key"] for r in rows] == [f"test/{i:05d}.jpg" for i in range(0, 40, 7)]
    assert set(rows[0]) == {"key"}
    assert isinstance(ds.to_table(["key"]), pa.Table)
