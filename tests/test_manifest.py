import json

import pytest

from synth_pedes import Manifest, ShardInfo, read_manifest
from synth_pedes.errors import ManifestError, ShardPathError


def _shard(path="data/train-00000-of-00001.parquet"):
    return ShardInfo(path, 3, 100, "ab" * 32, split="train", usable=True)


def _manifest(**kw):
    return Manifest(name="m", kind="images", shards=(_shard(),), **kw)


# as plip wrote it before the data/ layout (format 1): its id must still match, so older datasets keep loading
FORMAT_1 = """{"format": "synth-pedes-manifest/1",
 "id": "sha256:d9c8a2947627081cfff10be4624b72eb233b58185a76b3360a58e4c607849280", "name": "t", "kind": "images",
 "shards": [{"path": "part-00000.parquet", "rows": 3, "bytes": 100,
             "sha256": "abababababababababababababababababababababababababababababababab"}],
 "version": "1.0.0", "parents": [], "producer": {}, "splits": {}, "status_counts": {"ok": 2, "error": 1},
 "description": "", "schema": {"version": 1, "fingerprint": "sha256:0ab5bc54bfeadf4a"}, "num_rows": 3,
 "num_bytes": 100, "created_at": "2026-01-01T00:00:00+00:00"}"""


def test_a_format_1_manifest_still_reads_with_its_id_and_counts_its_usable_rows(tmp_path):
    (tmp_path / "manifest.json").write_text(FORMAT_1)
    m = read_manifest(tmp_path)
    assert not m.split_files and m.num_rows == 3 and m.num_usable_rows == 2
    assert m.files(usable=True) == m.shards  # its files mix statuses: readers filter rows
    assert json.loads(m.to_json())["id"] == json.loads(FORMAT_1)["id"]


def test_format_2_counts_usable_rows_and_needs_every_file_s_split(tmp_path):
    rejected = ShardInfo("rejected/train-00000-of-00001.parquet", 1, 50, "cd" * 32, split="train", usable=False)
    m = Manifest(name="m", kind="images", shards=(_shard(), rejected))
    doc = json.loads(m.to_json())
    assert doc["num_rows"] == 4 and doc["num_usable_rows"] == 3 and m.files(usable=False) == (rejected,)
    with pytest.raises(ManifestError, match=r"shard entry 0 \('data/x.parquet'\) has no split or usable flag"):
        Manifest(name="m", kind="images", shards=(ShardInfo("data/x.parquet", 3, 100, "ab" * 32),))


def test_id_is_a_content_hash_that_ignores_creation_time():
    a, b = _manifest(created_at="2026-01-01"), _manifest(created_at="2026-02-02")
    assert a.id == b.id and a.id.startswith("sha256:")
    assert _manifest(parents=("sha256:x",)).id != a.id
    assert _manifest(producer={"config": {"seed": 1}}).id != _manifest(producer={"config": {"seed": 2}}).id


def test_round_trip_and_edit_detection(tmp_path):
    m = _manifest(producer={"stage": "t"})
    (tmp_path / "manifest.json").write_text(m.to_json())
    assert read_manifest(tmp_path) == m
    doc = json.loads(m.to_json())
    doc["shards"][0]["rows"] = 4
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="does not match its content"):
        read_manifest(tmp_path)


def test_unknown_format_is_named(tmp_path):
    doc = json.loads(_manifest().to_json())
    doc["format"] = "synth-pedes-manifest/9"
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="unknown manifest format 'synth-pedes-manifest/9'"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("bad", ["../x.parquet", "/etc/passwd", "a/../../b.parquet", "", "~/x", "a\\..\\b"])
def test_shard_paths_that_leave_the_directory_are_refused(bad):
    with pytest.raises(ShardPathError, match="leaves the dataset directory"):
        Manifest(name="m", kind="images", shards=(ShardInfo(bad, 1, 1, "0" * 64),))


def test_missing_and_garbled_manifests(tmp_path):
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read the manifest"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("again", ["data/train-00000-of-00001.parquet", "./data/train-00000-of-00001.parquet"])
def test_a_shard_listed_twice_is_refused_naming_the_file(tmp_path, again):
    """A manifest listing one shard twice (id recomputed, so the edit is not caught by the id) would make every
    reader see its rows twice: reading it fails, naming the manifest, the path and the fix."""
    shards = (_shard(), _shard(again))
    with pytest.raises(ManifestError, match="shard path 'data/train-00000-of-00001.parquet' is listed 2 times"):
        Manifest(name="m", kind="images", shards=shards)
    doc = json.loads(_manifest().to_json())
    doc["shards"].append(dict(doc["shards"][0], path=again))
    doc["num_rows"], doc["num_bytes"] = 6, 200
    body = {k: v for k, v in doc.items() if k not in ("id", "created_at")}
    from synth_pedes.manifest import content_id

    doc["id"] = content_id(body)  # recomputed: only the repeat is wrong
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match=rf"{tmp_path}/manifest.json: shard path 'data/train-00000-of-00001.parquet' is listed "
                                            r"2 times \(entries 0 and 1\).*re-create the dataset"):
        read_manifest(tmp_path)


def test_attribute_names_are_recorded_only_when_there_are_some(tmp_path):
    plain = _manifest()
    assert "attribute_names" not in plain.body()  # so manifests written before the field keep their ids
    named = _manifest(attribute_names=("Female", "Hat"))
    assert named.body()["attribute_names"] == ["Female", "Hat"] and named.id != plain.id
    (tmp_path / "manifest.json").write_text(named.to_json())
    assert read_manifest(tmp_path).attribute_names == ("Female", "Hat")
    with pytest.raises(ManifestError, match="attribute_names must be distinct non-empty strings"):
        _manifest(attribute_names=("Hat", "Hat"))
