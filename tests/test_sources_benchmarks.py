"""CUHK-PEDES / ICFG-PEDES / RSTPReid importers, through ``plip import`` on hand-made official layouts."""
import json

import pytest
from _fixtures import jpeg_bytes

from pipelines.cli import main
from synth_pedes import open_dataset
from synth_pedes.sources.benchmarks import BadEntriesError, scan_benchmark


def _write_benchmark(root, json_name, entries, path_field="file_path", skip_images=()):
    """An official layout: ``root/json_name`` + ``root/imgs/<path>`` for every entry (but ``skip_images``)."""
    for i, entry in enumerate(entries):
        rel = entry.get(path_field) if isinstance(entry, dict) else None
        if isinstance(rel, str) and rel not in skip_images:
            (root / "imgs" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "imgs" / rel).write_bytes(jpeg_bytes(i))
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    (root / json_name).write_text(json.dumps(entries, indent=4))
    return root


CUHK = [  # reid_raw.json: 1-based ids, train/val/test, processed_tokens as in the release
    {"split": "train", "captions": ["A woman in a red coat.", "She wears a red coat and jeans."],
     "file_path": "CUHK01/0363004.png", "processed_tokens": [["a", "woman"], ["she"]], "id": 1},
    {"split": "train", "captions": ["The woman carries a bag."], "file_path": "CUHK01/0363002.png",
     "processed_tokens": [["the"]], "id": 1},
    {"split": "val", "captions": ["A man in black.", "Black shirt, grey shorts."], "file_path": "cam_a/001_45.bmp",
     "processed_tokens": [["a"], ["black"]], "id": 2},
    {"split": "test", "captions": ["A child with a kite."], "file_path": "test_query/p3_s1.jpg",
     "processed_tokens": [["a"]], "id": 13003},
]


def _rows(out):
    ds = open_dataset(out)  # verifies manifest, schema, row counts and every checksum
    return ds, list(ds.iter_records())


def _in_entry_order(rows, entries):
    """Rows in the order of the entries they came from (keys are the source and the entry's file_path): a dataset
    keeps each split's usable and rejected rows in files of their own, so it is not read in input order."""
    position = {e["file_path"]: i for i, e in reversed(list(enumerate(entries))) if isinstance(e, dict)}
    return sorted(rows, key=lambda r: position[r["key"].split("/", 1)[1]])


def test_cuhk_pedes_keeps_one_based_ids_splits_and_captions(tmp_path, capsys):
    src = _write_benchmark(tmp_path / "CUHK-PEDES", "reid_raw.json", CUHK)
    out = tmp_path / "cuhk"
    assert main(["import", "cuhk-pedes", str(src), "--out", str(out), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    for text in ("rows", "splits", "identities", "captions", "status", "bad entries", str(out)):
        assert text in printed
    ds, rows = _rows(out)
    assert ds.manifest.kind == "benchmark" and ds.manifest.name == "cuhk-pedes"
    assert [r["key"] for r in rows] == [f"cuhk-pedes/{e['file_path']}" for e in CUHK]  # JSON order
    assert [r["identity"] for r in rows] == [1, 1, 2, 13003]  # the dataset's own 1-based ids
    assert [r["split"] for r in rows] == ["train", "train", "val", "test"]
    assert ds.manifest.splits == {"test": 1, "train": 2, "val": 1} and ds.manifest.status_counts == {"ok": 4}
    first = rows[0]
    assert first["captions"] == [{"text": t, "style": "cuhk-pedes", "kind": "human", "spans": []}
                                 for t in CUHK[0]["captions"]]
    assert first["image"]["bytes"] == (src / "imgs" / CUHK[0]["file_path"]).read_bytes()
    assert first["image"]["path"] == CUHK[0]["file_path"] and (first["width"], first["height"]) == (32, 64)
    assert json.loads(first["extra"]) == {"index": 0, "file_path": "CUHK01/0363004.png", "id": 1, "split": "train"}
    assert first["attributes"] is None and first["source"] == "cuhk-pedes"
    producer = ds.manifest.producer
    assert producer["stage"] == "import-cuhk-pedes" and producer["config"]["on_bad_files"] == "error"
    assert producer["config"]["annotations"].endswith("reid_raw.json")
    assert producer["counts"] == {"entries": 4, "bad": 0, "kept_as_error": 0, "skipped": 0, "bad_reasons": {},
                                  "blank_captions": 0}


def test_icfg_pedes_keeps_zero_based_ids(tmp_path):
    entries = [{"split": "train", "captions": ["A man with a backpack."], "id": 0, "processed_tokens": [],
                "file_path": "train/0000/0000_000_01_0303morning_0015_0.jpg"},
               {"split": "train", "captions": ["Same man, side view."], "id": 0, "processed_tokens": [],
                "file_path": "train/0000/0000_001_01_0303morning_0016_0.jpg"},
               {"split": "test", "captions": ["A woman in white."], "id": 3102, "processed_tokens": [],
                "file_path": "test/3102/3102_000_05_0303noon_0100_0.jpg"}]
    src = _write_benchmark(tmp_path / "ICFG-PEDES", "ICFG_PEDES.json", entries)
    assert main(["import", "icfg-pedes", str(src), "--out", str(tmp_path / "icfg"), "--workers", "0",
                 "--shard-rows", "2"]) == 0
    ds, rows = _rows(tmp_path / "icfg")
    assert len(ds.manifest.shards) == 2 and [r["identity"] for r in rows] == [0, 0, 3102]
    assert [r["split"] for r in rows] == ["train", "train", "test"]
    assert {c["style"] for r in rows for c in r["captions"]} == {"icfg-pedes"}


def test_rstpreid_reads_img_path_on_the_default_cluster(tmp_path, capsys):
    entries = [{"id": 0, "img_path": "0000_c14_0031.jpg", "captions": ["A man in a blue jacket.", "Blue jacket."],
                "split": "train"},
               {"id": 1, "img_path": "0001_c7_0002.jpg", "captions": ["A woman.", "Long hair."], "split": "val"},
               {"id": 4100, "img_path": "4100_c3_0011.jpg", "captions": ["A boy.", "Red cap."], "split": "test"}]
    src = _write_benchmark(tmp_path / "RSTPReid", "data_captions.json", entries, path_field="img_path")
    out = tmp_path / "rstp"
    assert main(["-v", "import", "rstpreid", str(src), "--out", str(out), "--shard-rows", "1"]) == 0
    assert "started a Dask LocalCluster" in capsys.readouterr().err  # the default cluster (a worker per core)
    ds, rows = _rows(out)
    assert [r["key"] for r in rows] == [f"rstpreid/{e['img_path']}" for e in entries]
    assert [r["identity"] for r in rows] == [0, 1, 4100] and [r["split"] for r in rows] == ["train", "val", "test"]
    assert json.loads(rows[0]["extra"]) == {"index": 0, "img_path": "0000_c14_0031.jpg", "id": 0, "split": "train"}
    assert sum(len(r["captions"]) for r in rows) == 6 and ds.manifest.status_counts == {"ok": 3}


def test_caption_all_without_split_needs_a_split_file(tmp_path, capsys):
    entries = [{k: v for k, v in e.items() if k != "split"} for e in CUHK]
    src = _write_benchmark(tmp_path / "CUHK-PEDES", "caption_all.json", entries)
    out = tmp_path / "cuhk"
    assert main(["import", "cuhk-pedes", str(src), "--out", str(out), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "caption_all.json" in err and "no entry has a 'split'" in err and "--split-file" in err
    assert not out.exists()
    split_file = tmp_path / "splits.json"
    split_file.write_text(json.dumps({"train": [e["file_path"] for e in CUHK[:2]], "val": [CUHK[2]["file_path"]],
                                      "test": [CUHK[3]["file_path"]]}))
    assert main(["import", "cuhk-pedes", str(src), "--out", str(out), "--workers", "0",
                 "--split-file", str(split_file)]) == 0
    ds, rows = _rows(out)
    assert [r["split"] for r in rows] == ["train", "train", "val", "test"]
    assert "split" not in json.loads(rows[0]["extra"])  # the original entry had none
    assert ds.manifest.producer["config"]["split_file"] == str(split_file.resolve())


def _with_bad_entries(root):
    """CUHK layout whose entry 1 names a missing image and entry 3 is malformed (id is a string)."""
    entries = [dict(e) for e in CUHK]
    entries[3]["id"] = "13003"
    return _write_benchmark(root, "reid_raw.json", entries, skip_images={CUHK[1]["file_path"]})


def test_bad_entries_error_mode_names_the_entry_and_writes_nothing(tmp_path, capsys):
    src = _with_bad_entries(tmp_path / "CUHK-PEDES")
    out = tmp_path / "cuhk"
    assert main(["import", "cuhk-pedes", str(src), "--out", str(out), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "2 bad entries of 4" in err and "entry 1 (CUHK01/0363002.png): missing image" in err
    assert "entry 3 (test_query/p3_s1.jpg): malformed entry: 'id'" in err
    assert "--on-bad-files warn" in err and "skip" in err and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(BadEntriesError, match="entry 1"):
        scan_benchmark(src, "cuhk-pedes")


def test_bad_entries_warn_keeps_error_rows(tmp_path, capsys):
    src = _with_bad_entries(tmp_path / "CUHK-PEDES")
    out = tmp_path / "cuhk"
    assert main(["import", "cuhk-pedes", str(src), "--out", str(out), "--workers", "0", "--on-bad-files", "warn"]) == 0
    captured = capsys.readouterr()
    assert "WARNING" in captured.err and "2 bad entries kept as status=error rows" in captured.err  # logged
    assert "bad entries  2 (kept as error rows: 2, skipped: 0" in captured.out
    ds, rows = _rows(out)
    rows = _in_entry_order(rows, json.loads((src / "reid_raw.json").read_text()))
    assert len(rows) == 4 and ds.manifest.status_counts == {"error": 2, "ok": 2}
    missing, malformed = rows[1], rows[3]
    assert missing["status"] == "error" and missing["error"].startswith("missing image: ")
    assert missing["identity"] == 1 and missing["captions"][0]["text"] == CUHK[1]["captions"][0]
    assert malformed["status"] == "error" and "'id' is '13003'" in malformed["error"]
    assert malformed["identity"] == -1 and malformed["image"] is None
    counts = ds.manifest.producer["counts"]
    assert (counts["bad"], counts["kept_as_error"], counts["skipped"]) == (2, 2, 0)
    assert counts["bad_reasons"] == {"malformed entry": 1, "missing image": 1}


def test_bad_entries_skip_drops_and_counts(tmp_path, capsys):
    src = _with_bad_entries(tmp_path / "CUHK-PEDES")
    out = tmp_path / "cuhk"
    assert main(["import", "cuhk-pedes", str(src), "--out", str(out), "--workers", "0", "--on-bad-files", "skip"]) == 0
    assert "bad entries  2 (kept as error rows: 0, skipped: 2" in capsys.readouterr().out
    ds, rows = _rows(out)
    assert [r["identity"] for r in rows] == [1, 2] and ds.manifest.status_counts == {"ok": 2}
    assert ds.manifest.producer["counts"]["skipped"] == 2 and ds.manifest.producer["config"]["on_bad_files"] == "skip"


def test_corrupt_images_are_always_error_rows_and_odd_entries_are_bad(tmp_path):
    entries = [dict(e) for e in CUHK] + [
        {"split": "train", "captions": ["dup"], "file_path": CUHK[0]["file_path"], "id": 1},  # duplicate path
        {"split": "train", "captions": ["escape"], "file_path": "../outside.jpg", "id": 5},  # leaves imgs/
        ["not", "an", "object"],
        {"split": "holdout", "captions": ["x"], "file_path": "CUHK01/x.png", "id": 6},  # unknown split
    ]
    src = _write_benchmark(tmp_path / "CUHK-PEDES", "reid_raw.json", entries)
    (src / "imgs" / CUHK[2]["file_path"]).write_bytes(b"not a jpeg at all")
    result, _ = scan_benchmark(src, "cuhk-pedes", on_bad="warn")
    errors = {i.index: i.error for i in result.items if i.error}
    assert set(errors) == {4, 5, 6, 7} and result.counts["bad"] == 4
    assert errors[4].startswith("duplicate image path: entry 0") and "relative path inside" in errors[5]
    assert "a list, not an object" in errors[6] and "split 'holdout'" in errors[7]
    assert len({i.key for i in result.items}) == len(result.items)  # keys stay unique
    out = tmp_path / "cuhk"
    assert main(["import", "cuhk-pedes", str(src), "--out", str(out), "--workers", "0", "--on-bad-files", "skip"]) == 0
    rows = _in_entry_order(_rows(out)[1], entries)
    assert len(rows) == 4 and rows[2]["status"] == "error" and rows[2]["error"].startswith("not an image")
    assert rows[2]["image_sha256"] is not None  # the bytes were read, then rejected


def test_missing_source_or_annotations_name_the_expected_files(tmp_path, capsys):
    assert main(["import", "cuhk-pedes", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "nope: not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["import", "cuhk-pedes", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no reid_raw.json or caption_all.json here" in capsys.readouterr().err
    assert main(["import", "rstpreid", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no data_captions.json here" in capsys.readouterr().err
    (tmp_path / "noimgs").mkdir()
    (tmp_path / "noimgs" / "ICFG_PEDES.json").write_text("[]")
    assert main(["import", "icfg-pedes", str(tmp_path / "noimgs"), "--out", str(tmp_path / "o")]) == 2
    assert "imgs: not a directory" in capsys.readouterr().err
    (tmp_path / "noimgs" / "imgs").mkdir()
    (tmp_path / "noimgs" / "ICFG_PEDES.json").write_text('{"not": "a list"')
    assert main(["import", "icfg-pedes", str(tmp_path / "noimgs"), "--out", str(tmp_path / "o")]) == 2
    assert "ICFG_PEDES.json: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["cuhk-pedes", "icfg-pedes", "rstpreid", "synth-pedes-json", "market1501"])
def test_import_kinds_have_help(kind, capsys):
    with pytest.raises(SystemExit) as e:
        main(["import", kind, "--help"])
    assert e.value.code == 0 and "--on-bad-files" in capsys.readouterr().out


def _entries_with(*changes):
    """CUHK entries (a copy) with ``(index, field, value)`` changes."""
    entries = [dict(e) for e in CUHK]
    for index, name, value in changes:
        entries[index][name] = value
    return entries


UNSTORABLE = [(0, "captions", ["A woman in a red coat.", "lone \ud800 surrogate"]), (1, "id", 2**70),
              (2, "file_path", "cam_a/\udcff.bmp"), (3, "split", "te\ud800st")]


@pytest.mark.parametrize("mode", ["error", "warn", "skip"])
def test_values_the_writer_cannot_store_are_malformed_entries(tmp_path, capsys, mode):
    src = _write_benchmark(tmp_path / "CUHK-PEDES", "reid_raw.json", _entries_with(*UNSTORABLE),
                           skip_images={"cam_a/\udcff.bmp"})
    out = tmp_path / "cuhk"
    code = main(["import", "cuhk-pedes", str(src), "--out", str(out), "--workers", "0", "--on-bad-files", mode])
    err = capsys.readouterr().err
    if mode == "error":
        assert code == 2 and not out.exists() and "4 bad entries of 4" in err and "Traceback" not in err
        assert "entry 0 (CUHK01/0363004.png): malformed entry: 'captions'[1] is not valid text" in err
        assert "entry 1 (CUHK01/0363002.png): malformed entry: 'id' is 1180591620717411303424, not an integer " \
               "from 1 to 9223372036854775807" in err
        assert "entry 2 (no image path): malformed entry: 'file_path' is not valid text" in err
        assert "entry 3 (test_query/p3_s1.jpg): malformed entry: 'split' is not valid text" in err
        return
    assert code == 0
    ds, rows = _rows(out)  # the writer stored every row it was given
    if mode == "skip":
        assert rows == [] and ds.manifest.producer["counts"]["skipped"] == 4
        return
    assert [r["status"] for r in rows] == ["error"] * 4
    assert [r["key"] for r in rows] == ["cuhk-pedes/CUHK01/0363004.png", "cuhk-pedes/CUHK01/0363002.png",
                                        "cuhk-pedes/#entry-2", "cuhk-pedes/test_query/p3_s1.jpg"]
    assert "'captions'[1]" in rows[0]["error"] and rows[0]["captions"] == []  # only storable values are kept
    assert rows[1]["identity"] == -1 and json.loads(rows[1]["extra"])["id"] == 2**70  # the original, as JSON
    assert json.loads(rows[2]["extra"])["file_path"] == "cam_a/\udcff.bmp" and rows[3]["split"] == "unknown"


def test_blank_captions_are_dropped_and_counted_and_none_left_is_malformed(tmp_path, capsys):
    entries = _entries_with((0, "captions", ["", "A woman in a red coat.", " \t\n"]), (1, "captions", ["", "  "]),
                            (2, "captions", []))
    entries.append({k: v for k, v in CUHK[3].items() if k != "captions"} | {"file_path": "test_query/p4.jpg"})
    src = _write_benchmark(tmp_path / "CUHK-PEDES", "reid_raw.json", entries)
    out = tmp_path / "cuhk"
    assert main(["import", "cuhk-pedes", str(src), "--out", str(out), "--workers", "0", "--on-bad-files", "warn"]) == 0
    assert "captions     2 (blank, dropped: 4)" in capsys.readouterr().out
    ds, rows = _rows(out)
    rows = _in_entry_order(rows, entries)
    assert [c["text"] for c in rows[0]["captions"]] == ["A woman in a red coat."] and rows[0]["status"] == "ok"
    assert [r["status"] for r in rows] == ["ok", "error", "error", "ok", "error"]
    assert rows[1]["error"] == ("malformed entry: 'captions' holds only blank text; give the image at least one "
                                "description, or leave the entry out")
    assert rows[2]["error"].startswith("malformed entry: 'captions' is empty;")  # [] as bad as ["", "  "] ...
    assert rows[4]["error"].startswith("malformed entry: 'captions' is missing,")  # ... and as no 'captions'
    assert ds.manifest.producer["counts"]["blank_captions"] == 4


@pytest.mark.parametrize("kind, json_name, first", [("cuhk-pedes", "reid_raw.json", 1),
                                                    ("icfg-pedes", "ICFG_PEDES.json", 0)])
def test_ids_below_the_dataset_base_are_malformed(tmp_path, kind, json_name, first):
    entries = _entries_with((0, "id", first), (1, "id", first - 1), (2, "id", -1), (3, "id", -5))
    src = _write_benchmark(tmp_path / kind, json_name, entries)
    result, _ = scan_benchmark(src, kind, on_bad="warn")
    assert [i.identity for i in result.items] == [first, -1, -1, -1]
    for item in result.items[1:]:
        assert item.error.startswith(f"malformed entry: 'id' is {entries[item.index]['id']}, not an integer from "
                                     f"{first} to ")
        assert f"ids are {first}-based; -1 is reserved for no identity" in item.error


def test_symlinks_out_of_imgs_are_refused_unread_unless_allowed(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "p3_s1.jpg").write_bytes(jpeg_bytes(7))
    entries = CUHK + [dict(CUHK[0], file_path="CUHK01/inside.png")]
    src = _write_benchmark(tmp_path / "CUHK-PEDES", "reid_raw.json", entries, skip_images={"CUHK01/inside.png"})
    (src / "imgs" / CUHK[3]["file_path"]).unlink()
    (src / "imgs" / CUHK[3]["file_path"]).symlink_to(outside / "p3_s1.jpg")  # a file link out of imgs/
    (src / "imgs" / "cam_a").rename(outside / "cam_a")
    (src / "imgs" / "cam_a").symlink_to(outside / "cam_a")  # a folder link out of imgs/
    (src / "imgs" / "CUHK01" / "inside.png").symlink_to(src / "imgs" / CUHK[0]["file_path"])  # stays inside: fine
    out = tmp_path / "cuhk"
    assert main(["import", "cuhk-pedes", str(src), "--out", str(out), "--workers", "0", "--on-bad-files", "warn"]) == 0
    ds, rows = _rows(out)
    rows = _in_entry_order(rows, entries)
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "error", "ok"]
    targets = {2: outside / "cam_a/001_45.bmp", 3: outside / "p3_s1.jpg"}
    for i, target in targets.items():
        assert rows[i]["error"] == (f"resolves outside the source root via a symlink: {entries[i]['file_path']!r} "
                                    f"leads to {str(target)!r}; pass --allow-outside-root to import it")
        assert rows[i]["image_sha256"] is None  # the target was never read
    assert ds.manifest.producer["counts"]["bad_reasons"] == {"resolves outside the source root via a symlink": 2}
    allowed = tmp_path / "allowed"
    assert main(["import", "cuhk-pedes", str(src), "--out", str(allowed), "--workers", "0",
                 "--allow-outside-root"]) == 0
    ds, rows = _rows(allowed)
    rows = _in_entry_order(rows, entries)
    assert ds.manifest.status_counts == {"ok": 5} and ds.manifest.producer["config"]["allow_outside_root"] is True
    assert rows[3]["image"]["bytes"] == jpeg_bytes(7)
