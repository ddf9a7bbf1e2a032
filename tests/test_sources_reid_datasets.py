"""DukeMTMC-reID and MSMT17 importers (synth_pedes.sources.reid_datasets): splits, identities and cameras from
tiny copies written here, bad entries, and clear errors for a missing folder or list file."""
import json

import pytest
from _fixtures import jpeg_bytes

from synth_pedes import open_dataset, write_dataset
from synth_pedes.sources.benchmarks import BadEntriesError
from synth_pedes.sources.reid_datasets import msmt17_camera, parse_duke_name, scan_dukemtmc_reid, scan_msmt17

DUKE = {
    "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg", "0007_c8_f0000001.jpg"],
    "query": ["0005_c2_f0046985.jpg", "0019_c1_f0057203.jpg"],
    "bounding_box_test": ["0005_c5_f0051781.jpg", "0019_c6_f0010001.jpg", "7140_c7_f0123456.jpg"],
}


def _write_duke(root, extra_files=()):
    for f, (folder, names) in enumerate(DUKE.items()):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            (root / folder / name).write_bytes(jpeg_bytes(10 * f + i))
    for rel in extra_files:
        (root / rel).write_bytes(jpeg_bytes(1))
    (root / "query" / ".DS_Store").write_bytes(b"mac")  # hidden files are ignored and counted
    return root


def test_parse_duke_name():
    assert parse_duke_name("0001_c2_f0046182.jpg") == {"identity": 1, "camera": "c2", "frame": 46182}
    for bad in ("0002_c1s1_000451_03.jpg", "-1_c1_f0000001.jpg", "0001_c9_f0000001.jpg"):
        with pytest.raises(ValueError, match="unexpected file name"):
            parse_duke_name(bad)


def test_duke_splits_identities_cameras(tmp_path):
    scan, source = scan_dukemtmc_reid(_write_duke(tmp_path / "DukeMTMC-reID"))
    items = {i.key: i for i in scan.items}
    assert len(items) == 8 and scan.counts["bad"] == 0 and scan.counts["ignored_files"] == 1
    assert sorted(i.split for i in items.values()) == ["gallery"] * 3 + ["query"] * 2 + ["train"] * 3
    item = items["dukemtmc-reid/bounding_box_train/0001_c5_f0051341.jpg"]
    assert (item.identity, item.camera, item.split) == (1, "c5", "train")
    assert dict(item.extra) == {"folder": "bounding_box_train", "frame": 51341}
    assert items["dukemtmc-reid/bounding_box_test/7140_c7_f0123456.jpg"].identity == 7140
    assert {i.identity for i in items.values() if i.split == "query"} == {5, 19}
    assert source.source == "dukemtmc-reid" and source.root == str((tmp_path / "DukeMTMC-reID").resolve())


def test_duke_writes_a_dataset(tmp_path):
    scan, source = scan_dukemtmc_reid(_write_duke(tmp_path / "duke"))
    out = tmp_path / "out"
    write_dataset(scan.items, out, name="dukemtmc-reid", kind="benchmark", transform=source,
                  shard_rows=100, size_of=lambda it: it.size)
    ds = open_dataset(out)
    rows = {r["key"]: r for r in ds.iter_records()}
    assert ds.manifest.splits == {"gallery": 3, "query": 2, "train": 3} and ds.manifest.status_counts == {"ok": 8}
    row = rows["dukemtmc-reid/query/0019_c1_f0057203.jpg"]
    assert (row["identity"], row["camera"], row["split"]) == (19, "c1", "query")
    assert json.loads(row["extra"]) == {"folder": "query", "frame": 57203}


def test_duke_bad_names_follow_on_bad(tmp_path):
    src = _write_duke(tmp_path / "duke", extra_files=["query/readme.jpg"])
    with pytest.raises(BadEntriesError, match=r"query/readme.jpg\): unexpected file name"):
        scan_dukemtmc_reid(src)
    scan, _ = scan_dukemtmc_reid(src, on_bad="skip")
    assert len(scan.items) == 8 and scan.counts["skipped"] == 1


def test_duke_missing_folder_is_named(tmp_path):
    src = _write_duke(tmp_path / "duke")
    (src / "bounding_box_test").rename(src / "elsewhere")
    with pytest.raises(FileNotFoundError, match=r"no bounding_box_test/ here; a DukeMTMC-reID root holds"):
        scan_dukemtmc_reid(src)
    with pytest.raises(FileNotFoundError, match="not a directory; pass the DukeMTMC-reID root folder"):
        scan_dukemtmc_reid(tmp_path / "nowhere")


# ------------------------------------------------------------------ MSMT17

MSMT = {  # list file -> (image folder, [(relative path, pid)])
    "list_train.txt": ("train", [("0000/0000_000_01_0303morning_0015_0.jpg", 0),
                                 ("0000/0000_001_05_0303afternoon_0100_1.jpg", 0),
                                 ("0001/0001_000_15_0113noon_0420_2.jpg", 1)]),
    "list_val.txt": ("train", [("0001/0001_001_03_0113noon_0500_0.jpg", 1)]),
    "list_query.txt": ("test", [("0000/0000_000_07_0303morning_0900_0.jpg", 0)]),
    "list_gallery.txt": ("test", [("0000/0000_001_11_0303noon_1200_0.jpg", 0),
                                  ("0002/0002_000_02_0113morning_0010_0.jpg", 2)]),
}


def _write_msmt(root, folders=("train", "test")):
    names = dict(zip(("train", "test"), folders))
    for n, (list_name, (part, entries)) in enumerate(MSMT.items()):
        for k, (rel, _) in enumerate(entries):
            path = root / names[part] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg_bytes(10 * n + k))
        (root / list_name).write_text("".join(f"{rel} {pid}\n" for rel, pid in entries))
    return root


def test_msmt17_camera():
    assert msmt17_camera("0000_000_01_0303morning_0015_0.jpg") == "c1"
    assert msmt17_camera("1040_012_15_0113noon_0420_2.jpg") == "c15"
    for bad in ("0000_c1s1_000451_03.jpg", "0000_000_16_0303morning_0015_0.jpg"):
        with pytest.raises(ValueError, match="unexpected file name"):
            msmt17_camera(bad)


@pytest.mark.parametrize("folders", [("train", "test"), ("mask_train_v2", "mask_test_v2")])
def test_msmt17_splits_identities_cameras(tmp_path, folders):
    src = _write_msmt(tmp_path / "MSMT17_V1", folders)
    scan, source = scan_msmt17(src)
    items = {i.key: i for i in scan.items}
    assert len(items) == 7 and scan.counts["bad"] == 0 and source.source == "msmt17"
    assert [i.split for i in scan.items] == ["train"] * 3 + ["val"] + ["query"] + ["gallery"] * 2  # list order
    item = items[f"msmt17/{folders[0]}/0001/0001_000_15_0113noon_0420_2.jpg"]
    assert (item.identity, item.camera, item.relpath) == (1, "c15", f"{folders[0]}/0001/0001_000_15_0113noon_0420_2.jpg")
    assert dict(item.extra) == {"folder": folders[0], "list": "list_train.txt", "line": 3}
    val = items[f"msmt17/{folders[0]}/0001/0001_001_03_0113noon_0500_0.jpg"]
    assert (val.split, val.identity, val.camera) == ("val", 1, "c3")  # val images live under train/
    query = items[f"msmt17/{folders[1]}/0000/0000_000_07_0303morning_0900_0.jpg"]
    assert (query.split, query.identity, query.camera) == ("query", 0, "c7")
    assert {i.identity for i in scan.items if i.split == "gallery"} == {0, 2}


def test_msmt17_writes_a_dataset(tmp_path):
    scan, source = scan_msmt17(_write_msmt(tmp_path / "msmt"))
    out = tmp_path / "out"
    write_dataset(scan.items, out, name="msmt17", kind="benchmark", transform=source, shard_rows=100,
                  size_of=lambda it: it.size)
    ds = open_dataset(out)
    assert ds.manifest.splits == {"train": 3, "val": 1, "query": 1, "gallery": 2}
    assert ds.manifest.status_counts == {"ok": 7}
    row = {r["key"]: r for r in ds.iter_records()}["msmt17/test/0002/0002_000_02_0113morning_0010_0.jpg"]
    assert (row["identity"], row["camera"], row["split"]) == (2, "c2", "gallery")


def test_msmt17_bad_lines_and_missing_images(tmp_path):
    src = _write_msmt(tmp_path / "msmt")
    with (src / "list_query.txt").open("a") as f:
        f.write("0003/0003_000_04_0303morning_0001_0.jpg 3\n")  # no such image
        f.write("just-a-path.jpg\n")  # no pid
        f.write("\n")  # blank: not an entry
    with pytest.raises(BadEntriesError) as e:
        scan_msmt17(src)
    assert "missing image" in str(e.value) and "list_query.txt line 2" in str(e.value)
    assert "malformed line: list_query.txt line 3" in str(e.value)
    scan, _ = scan_msmt17(src, on_bad="warn")
    assert scan.counts["bad"] == 2 and scan.counts["kept_as_error"] == 2 and len(scan.items) == 9
    assert scan.bad_reasons == {"malformed line": 1, "missing image": 1}


def test_msmt17_missing_list_or_folder_is_named(tmp_path):
    src = _write_msmt(tmp_path / "msmt")
    (src / "list_gallery.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"no list_gallery.txt here; an MSMT17 root holds list_train.txt"):
        scan_msmt17(src)
    src = _write_msmt(tmp_path / "msmt2")
    (src / "test").rename(src / "testing")
    with pytest.raises(FileNotFoundError, match=r"no train/ and test/ image folders here.*only train/"):
        scan_msmt17(src)
