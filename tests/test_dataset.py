import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from _fixtures import Records, jpeg_bytes, make_writable, write_old_layout_dataset

from synth_pedes import make_record, open_dataset, validate_dataset, write_dataset
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
    assert proc.returncode == 0 and "OK" in proc.stdout and "sha256 of every file" in proc.stdout


def test_flipped_byte_is_detected_and_named(dataset_dir):
    shard = dataset_dir / "data/train-00001-of-00004.parquet"
    make_writable(shard)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="data/train-00001-of-00004.parquet: sha256 .* does not match"):
        open_dataset(dataset_dir)
    open_dataset(dataset_dir, verify="quick")  # sizes and footers still agree: only the checksum catches it
    proc = _plip("validate", dataset_dir)
    assert proc.returncode == 1 and "data/train-00001-of-00004.parquet" in proc.stderr and "altered" in proc.stderr


def test_missing_truncated_and_replaced_shards(dataset_dir):
    make_writable(dataset_dir / "data/train-00000-of-00004.parquet")
    os.remove(dataset_dir / "data/train-00000-of-00004.parquet")
    shard = dataset_dir / "data/train-00002-of-00004.parquet"
    make_writable(shard)
    shard.write_bytes(shard.read_bytes()[:-100])
    problems = validate_dataset(dataset_dir).problems
    assert any("data/train-00000-of-00004.parquet: missing" in p for p in problems)
    assert any("data/train-00002-of-00004.parquet" in p and "truncated" in p for p in problems)
    with pytest.raises(IntegrityError):
        open_dataset(dataset_dir, verify="quick")


def _forge_manifest(dataset_dir):
    """Rewrite the manifest to agree with the shards as they now are (sizes, checksums, id), so that only what
    the test changed inside them is wrong."""
    from synth_pedes.manifest import Manifest, ShardInfo
    from synth_pedes.writer import file_sha256

    manifest_path = dataset_dir / "manifest.json"
    doc = json.loads(manifest_path.read_text())
    fields = {k: v for k, v in doc.items() if k not in ("id", "num_rows", "num_bytes", "num_usable_rows", "created_at")}
    fields["shards"] = tuple(ShardInfo(**dict(s, bytes=(dataset_dir / s["path"]).stat().st_size,
                                              sha256=file_sha256(dataset_dir / s["path"]))) for s in doc["shards"])
    fields["parents"] = tuple(fields["parents"])
    make_writable(manifest_path)
    manifest_path.write_text(Manifest(**fields).to_json())


def test_schema_mismatch_is_named(dataset_dir, tmp_path):
    shard = dataset_dir / "data/train-00003-of-00004.parquet"
    table = pq.read_table(shard).drop_columns(["extra"])
    make_writable(shard)
    pq.write_table(table, shard)
    _forge_manifest(dataset_dir)
    with pytest.raises(SchemaMismatchError, match=r"data/train-00003-of-00004.parquet.*missing columns \['extra'\]"):
        open_dataset(dataset_dir)


def test_repeated_keys_are_reported_with_examples_and_a_count(dataset_dir):
    """Issue 18: rows repeated under one key (here shard 0's rows copied over shard 1's) validated."""
    make_writable(dataset_dir / "data/train-00001-of-00004.parquet")
    (dataset_dir / "data/train-00001-of-00004.parquet").write_bytes((dataset_dir / "data/train-00000-of-00004.parquet").read_bytes())
    _forge_manifest(dataset_dir)
    assert validate_dataset(dataset_dir, "quick").ok  # sizes, schema and rows agree: only the keys are wrong
    problems = validate_dataset(dataset_dir).problems
    assert len(problems) == 1 and problems[0].startswith(
        "5 keys appear more than once, e.g. 'test/00002.jpg' in data/train-00000-of-00004.parquet row 0 and "
        "data/train-00001-of-00004.parquet row 0;")
    assert "(and 2 more)" in problems[0] and "re-create the dataset" in problems[0]
    with pytest.raises(IntegrityError, match="5 keys appear more than once"):
        open_dataset(dataset_dir)
    proc = _plip("validate", dataset_dir)
    assert proc.returncode == 1 and "5 keys appear more than once" in proc.stderr


def test_tampered_manifest_and_escaping_paths(dataset_dir):
    path = dataset_dir / "manifest.json"
    make_writable(path)
    doc = json.loads(path.read_text())
    doc["shards"][0]["path"] = "../outside.parquet"
    path.write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="leaves the dataset directory"):
        open_dataset(dataset_dir)
    doc["shards"][0]["path"] = "data/train-00000-of-00004.parquet"
    doc["format"] = "webdataset/2"
    path.write_text(json.dumps(doc))
    proc = _plip("validate", dataset_dir)
    assert proc.returncode == 1 and "unknown manifest format 'webdataset/2'" in proc.stderr


def test_symlinked_shard_outside_is_refused(dataset_dir, tmp_path):
    outside = tmp_path / "outside.parquet"
    shard = dataset_dir / "data/train-00000-of-00004.parquet"
    outside.write_bytes(shard.read_bytes())
    make_writable(shard)
    shard.unlink()
    shard.symlink_to(outside)
    assert any("outside the dataset directory" in p for p in validate_dataset(dataset_dir).problems)


def test_hugging_face_route_yields_pil_images_and_nested_captions(dataset_dir, tmp_path):
    from PIL import Image

    hf = open_dataset(dataset_dir).to_hf(cache_dir=str(tmp_path / "cache"))
    assert {s: len(hf[s]) for s in hf} == {"train": 17, "val": 17}  # status ok rows only: 6 error rows are not
    row = hf["val"][0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (32, 64)
    assert row["captions"][0]["spans"][0] == {"slot": "upper", "start": 0, "end": 7}
    assert row["attributes"]["upper"] == "upper 1"
    rejected = open_dataset(dataset_dir).to_hf(rejected=True, split="train", cache_dir=str(tmp_path / "cache"))
    assert rejected[0]["status"] == "error" and rejected[0]["error"] == "synthetic: test error"


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
    val = [r["key"] for b in ds.iter_batches(columns=["key"], status="ok", split="val") for r in b.to_pylist()]
    assert val == [f"test/{i:05d}.jpg" for i in range(1, 40, 2) if i % 7]  # odd rows are val; every 7th an error
    files = ds.paths_for("ok", "val")
    assert files and all(p.name.startswith("val-") for p in files)  # only val's files are read


# --- the directory layout that standard loaders read as it is (docs/formats.md#dataset-directory) ---------------
def _mixed_records(n: int = 30) -> list[dict]:
    """Rows of three splits, every seventh an error row (as a filter or a failed import leaves them)."""
    return [dict(Records()(i), split=("train", "val", "test")[i % 3]) for i in range(n)]


@pytest.fixture()
def hf_cache(tmp_path, monkeypatch):
    """load_dataset with no arguments caches under HF_DATASETS_CACHE: keep it in the test's directory."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def test_standard_loaders_read_the_usable_rows_of_a_directory_without_a_card(tmp_path, hf_cache):
    import datasets
    import pandas as pd
    import pyarrow.dataset as pads

    records = _mixed_records()
    out = tmp_path / "d"
    m = write_dataset(records, out, name="t", kind="benchmark", shard_rows=8)
    usable = [r for r in records if r["status"] == "ok"]
    hf = datasets.load_dataset(str(out))  # no other argument: manifest.json and _stats/ must not confuse it
    assert {s: hf[s].num_rows for s in hf} == {s: sum(r["split"] == s for r in usable) for s in ("train", "val", "test")}
    assert {st for s in hf for st in hf[s]["status"]} == {"ok"}
    assert hf["train"][0]["image"].size == (32, 64) and hf["val"][0]["captions"][0]["text"].startswith("caption")
    rejected = datasets.load_dataset(str(out), data_dir="rejected")  # the rest stays reachable, by split
    assert sorted(k for s in rejected for k in rejected[s]["key"]) == sorted(r["key"] for r in records
                                                                           if r["status"] != "ok")
    assert sorted(pd.read_parquet(out / "data")["key"]) == sorted(r["key"] for r in usable)
    assert pads.dataset(out / "data").count_rows() == 25
    assert m.num_rows == 30 and m.num_usable_rows == len(usable) == 25  # every count says which rows it counts
    assert sorted(pads.dataset(out / "data").to_table(columns=["key"]).column("key").to_pylist()) == \
        sorted(r["key"] for r in usable)


def test_to_hf_and_torch_give_the_usable_rows_and_the_rejected_on_request(tmp_path):
    out = tmp_path / "d"
    write_dataset(_mixed_records(), out, name="t", kind="benchmark", shard_rows=8)
    ds = open_dataset(out)
    hf = ds.to_hf(cache_dir=str(tmp_path / "cache"))
    assert list(hf) == ["train", "val", "test"] and sum(hf[s].num_rows for s in hf) == 25
    assert hf["test"][0]["image"].size == (32, 64)
    rejected = ds.to_hf(rejected=True, split="train", cache_dir=str(tmp_path / "cache"))
    assert set(rejected["status"]) == {"error"} and rejected.num_rows == 2
    assert all("data/" in p for p in ShardedIterableDataset(ds).paths)  # status ok rows live in data/ alone
    assert len(list(ShardedIterableDataset(ds))) == 25


def test_a_dataset_without_usable_rows_never_gives_its_rejected_rows_by_default(tmp_path, hf_cache):
    """With data/ empty, load_dataset(DIR) fell back to matching split names anywhere: the rejected rows became its
    train and validation splits. Empty data/ files (no row group) keep its default view to data/."""
    import datasets
    import pandas as pd

    out = tmp_path / "d"
    m = write_dataset([dict(Records()(i), status="filtered", error="gate: no") for i in range(6)], out, name="t",
                      kind="images", shard_rows=4)
    assert m.num_usable_rows == 0 and [(s.path, s.rows) for s in m.files(usable=True)] == [
        ("data/train-00000-of-00002.parquet", 0), ("data/val-00000-of-00002.parquet", 0)]
    assert len(pd.read_parquet(out / "data")) == 0 and validate_dataset(out).ok
    with pytest.raises(ValueError, match="corresponds to no data"):
        datasets.load_dataset(str(out))
    assert datasets.load_dataset(str(out), data_dir="rejected")["train"].num_rows == 3
    with pytest.raises(ValueError, match=r"has no usable \(status ok\) rows; to_hf\(rejected=True\) gives"):
        open_dataset(out).to_hf()
    assert list(ShardedIterableDataset(open_dataset(out))) == []


def test_a_file_added_under_data_is_reported(tmp_path):
    out = tmp_path / "d"
    write_dataset(_mixed_records(), out, name="t", kind="benchmark", shard_rows=8)
    (out / "data" / "train-00009-of-00009.parquet").write_bytes((out / "data" / "train-00000-of-00004.parquet")
                                                                 .read_bytes())
    problems = validate_dataset(out, "quick").problems
    assert problems == ["data/train-00009-of-00009.parquet: not listed in the manifest, yet loaders of the "
                        "directory read it; it was added after the dataset was written: move it out"]


def test_a_split_that_cannot_name_a_file_is_refused_naming_the_record(tmp_path):
    from synth_pedes.errors import ShardWriteError

    records = [dict(Records()(1), split="my split")]
    with pytest.raises(ShardWriteError, match=r"record 'test/00001.jpg': split 'my split' cannot name a shard "
                                              r"file: a split is a non-empty name of letters, digits and '_'"):
        write_dataset(records, tmp_path / "d", name="t", kind="images", shard_rows=8, retries=0)


def test_old_layout_keeps_loading_and_validate_says_how_to_migrate(tmp_path):
    records = _mixed_records()
    old = tmp_path / "old"
    write_old_layout_dataset(old, records)
    ds = open_dataset(old)
    assert ds.manifest.num_usable_rows == 25 and len(list(ds.torch())) == 25
    assert sum(len(b) for b in ds.iter_batches(status="ok")) == 25
    hf = ds.to_hf(cache_dir=str(tmp_path / "cache"))
    assert list(hf) == ["train"] and hf["train"].num_rows == 25 and set(hf["train"]["status"]) == {"ok"}
    proc = _plip("validate", old)
    assert proc.returncode == 0 and "25 usable: status ok; 5 rejected" in proc.stdout
    assert "has the older layout" in proc.stdout and f"plip migrate {old} --out NEW_DIR" in proc.stdout
    migrate = _plip("migrate", old, "--out", tmp_path / "new", "--workers", "0")
    assert migrate.returncode == 0, migrate.stderr
    new = open_dataset(tmp_path / "new")
    assert new.manifest.split_files and new.manifest.producer["migrated_from"] == ds.id
    assert sorted(new.to_table().to_pylist(), key=lambda r: r["key"]) == sorted(records, key=lambda r: r["key"])
    assert "older layout" not in _plip("validate", tmp_path / "new").stdout


def test_attribute_labels_and_their_names_round_trip(tmp_path):
    """Attribute-recognition data: 0/1 labels per row, what each position means in the manifest, read back by
    every route (Arrow, Hugging Face as lists of int8), kept by plip migrate."""
    records = [make_record(f"par/{i}.jpg", split="train", image_bytes=jpeg_bytes(i), attribute_labels=[i % 2, 1])
               for i in range(6)]
    ds_dir = tmp_path / "par"
    write_dataset(records, ds_dir, name="par", kind="benchmark", shard_rows=4, attribute_names=("Female", "Hat"))
    ds = open_dataset(ds_dir)
    assert ds.manifest.attribute_names == ("Female", "Hat")
    labels = {r["key"]: r["attribute_labels"] for r in ds.iter_records(columns=["key", "attribute_labels"])}
    assert labels == {f"par/{i}.jpg": [i % 2, 1] for i in range(6)}
    hf = ds.to_hf(split="train", cache_dir=str(tmp_path / "cache"))
    assert sorted(hf["attribute_labels"]) == sorted([[i % 2, 1] for i in range(6)])
    assert str(hf.features["attribute_labels"].feature.dtype) == "int8"
