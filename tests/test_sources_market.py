"""Market-1501 importer: splits, identity and camera from file names, junk and distractors, bad names."""
import json
import os

import pytest
from _fixtures import jpeg_bytes

from pipelines.cli import main
from synth_pedes import open_dataset
from synth_pedes.sources.market1501 import parse_name

FILES = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_077419_03.jpg"],
    "query": ["0001_c1s1_001051_00.jpg", "0003_c6s2_098132_00.jpg"],
    "bounding_box_test": ["-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg", "0001_c2s1_000551_01.jpg",
                          "0003_c4s3_012345_02.jpg"],
}


def _write_market(root, extra_files=()):
    for f, (folder, names) in enumerate(FILES.items()):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            (root / folder / name).write_bytes(jpeg_bytes(10 * f + i))
    for rel in extra_files:
        (root / rel).write_bytes(jpeg_bytes(1))
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"windows thumbnail cache")  # in some archives
    (root / "gt_bbox").mkdir()  # not imported
    (root / "gt_bbox" / "0001_c1s1_001051_00.jpg").write_bytes(jpeg_bytes(2))
    return root


def test_parse_name():
    assert parse_name("0002_c1s1_000451_03.jpg") == {"identity": 2, "camera": "c1", "sequence": 1, "frame": 451,
                                                     "bbox": 3, "junk": False, "distractor": False}
    assert parse_name("-1_c6s2_000001_01.jpg")["junk"] and parse_name("0000_c1s1_0_1.JPG")["distractor"]
    with pytest.raises(ValueError, match="unexpected file name"):
        parse_name("0002_c1_000451.jpg")


def test_market1501_splits_cameras_junk_and_distractors(tmp_path, capsys):
    src = _write_market(tmp_path / "Market-1501-v15.09.15")
    out = tmp_path / "market"
    assert main(["import", "market1501", str(src), "--out", str(out), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "junk (-1)           1" in printed and "distractors (0000)  1" in printed
    assert "ignored files       1" in printed
    ds = open_dataset(out)
    rows = {r["key"]: r for r in ds.iter_records()}
    assert len(rows) == 9 and ds.manifest.kind == "benchmark" and ds.manifest.status_counts == {"ok": 9}
    assert ds.manifest.splits == {"gallery": 4, "query": 2, "train": 3}
    for split in ("train", "query", "gallery"):  # path order within a split (each split has files of its own)
        assert [k for k, r in rows.items() if r["split"] == split] == sorted(k for k, r in rows.items()
                                                                          if r["split"] == split)
    row = rows["market1501/bounding_box_train/0002_c2s1_000301_01.jpg"]
    assert (row["identity"], row["camera"], row["split"]) == (2, "c2", "train")
    assert json.loads(row["extra"]) == {"folder": "bounding_box_train", "sequence": 1, "frame": 301, "bbox": 1,
                                        "junk": False, "distractor": False}
    assert rows["market1501/query/0003_c6s2_098132_00.jpg"]["camera"] == "c6"
    junk = rows["market1501/bounding_box_test/-1_c1s1_000401_03.jpg"]
    assert (junk["identity"], junk["split"], json.loads(junk["extra"])["junk"]) == (-1, "gallery", True)
    distractor = rows["market1501/bounding_box_test/0000_c1s1_000151_01.jpg"]
    extra = json.loads(distractor["extra"])
    assert distractor["identity"] == 0 and extra["distractor"] and not extra["junk"]
    assert all(r["captions"] == [] and r["attributes"] is None for r in rows.values())
    counts = ds.manifest.producer["counts"]
    assert ds.manifest.producer["stage"] == "import-market1501"
    assert (counts["entries"], counts["junk"], counts["distractors"], counts["ignored_files"]) == (9, 1, 1, 1)


@pytest.mark.parametrize("mode", ["error", "warn", "skip"])
def test_unexpected_file_names_follow_on_bad_files(tmp_path, capsys, mode):
    src = _write_market(tmp_path / "market-src", extra_files=["query/readme.jpg"])
    out = tmp_path / "market"
    code = main(["import", "market1501", str(src), "--out", str(out), "--workers", "0", "--on-bad-files", mode])
    captured = capsys.readouterr()
    if mode == "error":
        assert code == 2 and not out.exists()
        assert "(query/readme.jpg): unexpected file name" in captured.err and "--on-bad-files" in captured.err
        return
    assert code == 0
    ds = open_dataset(out)
    assert ds.manifest.producer["counts"]["bad"] == 1
    if mode == "warn":
        row = next(r for r in ds.iter_records() if r["key"] == "market1501/query/readme.jpg")
        assert row["status"] == "error" and row["error"].startswith("unexpected file name") and row["split"] == "query"
        assert ds.manifest.status_counts == {"error": 1, "ok": 9}
    else:
        assert len(ds) == 9 and ds.manifest.producer["counts"]["skipped"] == 1


def test_missing_folders_are_named(tmp_path, capsys):
    (tmp_path / "m" / "query").mkdir(parents=True)
    assert main(["import", "market1501", str(tmp_path / "m"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no bounding_box_train/, bounding_box_test/ here" in err and not (tmp_path / "o").exists()


def test_names_no_row_can_hold_are_bad_entries(tmp_path, capsys):
    too_big = f"{2**63}_c1s1_000451_03.jpg"  # a person id past the schema's int64
    src = _write_market(tmp_path / "m", extra_files=[f"query/{too_big}"])
    (src / "query").joinpath(os.fsdecode(b"0001_c1s1_\xff.jpg")).write_bytes(jpeg_bytes(3))  # not UTF-8
    out = tmp_path / "market"
    assert main(["import", "market1501", str(src), "--out", str(out), "--workers", "0", "--on-bad-files", "warn"]) == 0
    assert "bad entries         2 (kept as error rows: 2" in capsys.readouterr().out
    rows = {r["key"]: r for r in open_dataset(out).iter_records()}
    assert rows[f"market1501/query/{too_big}"]["error"] == (
        f"unexpected file name: {too_big!r}: person id {2**63} is larger than the schema stores ({2**63 - 1})")
    bad_utf8 = rows["market1501/query/0001_c1s1_%FF.jpg#entry-8"]  # the name as stored: docs/formats.md#file-names
    assert bad_utf8["error"] == "unexpected file name: '0001_c1s1_%FF.jpg' is not UTF-8 text; rename the file"


def test_symlinks_out_of_src_are_bad_entries_unless_allowed(tmp_path, capsys):
    src = _write_market(tmp_path / "m")
    (tmp_path / "elsewhere.jpg").write_bytes(jpeg_bytes(5))
    (src / "query" / "0009_c1s1_000001_00.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    (src / "query" / "0010_c1s1_000001_00.jpg").symlink_to(tmp_path / "gone.jpg")  # dangling: no crash
    out = tmp_path / "market"
    assert main(["import", "market1501", str(src), "--out", str(out), "--workers", "0", "--on-bad-files", "warn"]) == 0
    rows = {r["key"]: r for r in open_dataset(out).iter_records()}
    linked = rows["market1501/query/0009_c1s1_000001_00.jpg"]
    assert linked["error"].startswith("resolves outside the source root via a symlink: 'query/0009_c1s1_000001_00.jpg'")
    assert "--allow-outside-root" in linked["error"] and linked["image_sha256"] is None  # never read
    assert rows["market1501/query/0010_c1s1_000001_00.jpg"]["status"] == "error"
    allowed = tmp_path / "allowed"
    assert main(["import", "market1501", str(src), "--out", str(allowed), "--workers", "0", "--on-bad-files", "skip",
                 "--allow-outside-root"]) == 0
    row = next(r for r in open_dataset(allowed).iter_records() if r["key"].endswith("0009_c1s1_000001_00.jpg"))
    assert row["status"] == "ok" and row["image"]["bytes"] == jpeg_bytes(5)
