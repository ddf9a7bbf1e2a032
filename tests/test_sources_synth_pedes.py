"""SYNTH-PEDES JSON: import the released layout, export ours to it, and round-trip between the two."""
import hashlib
import io
import json

import pytest
from _fixtures import jpeg_bytes
from PIL import Image

from pipelines.cli import main
from synth_pedes import SLOTS, make_record, open_dataset, write_dataset
from synth_pedes.sources.synth_pedes_json import parse_attributes


def _entry(pid, part, k, attrs="man,black hair,black shirt,pink shorts,black shoes,unknown", n_caps=2):
    return {"id": pid, "file_path": f"Part{part}/{pid}/{k}.jpg", "attributes": [attrs],
            "captions": [f"Caption {c} of person {pid} image {k}." for c in range(n_caps)],
            "prompt_caption": [f"A person {pid} wearing a black shirt (image {k})."]}


RELEASE = [_entry(7, 1, 0), _entry(7, 1, 1, n_caps=1), _entry(9, 1, 0, "woman,long hair,white dress,unknown,"
                                                                         "red shoes,handbag"),
           _entry(40000, 2, 0), _entry(40000, 2, 1)]


def _write_release(root, entries, name="synthpedes-dataset.json", skip=()):
    for i, e in enumerate(entries):
        if isinstance(e, dict) and isinstance(e.get("file_path"), str) and e["file_path"] not in skip:
            (root / e["file_path"]).parent.mkdir(parents=True, exist_ok=True)
            (root / e["file_path"]).write_bytes(jpeg_bytes(100 + i))
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(json.dumps(entries))
    return root


def test_import_release_fills_slots_and_caption_kinds(tmp_path, capsys):
    src = _write_release(tmp_path / "SYNTH-PEDES", RELEASE, name="synthpedes_dataset.json")  # README spelling
    out = tmp_path / "synth"
    assert main(["import", "synth-pedes-json", str(src), "--out", str(out), "--workers", "0"]) == 0
    assert "captions     14" in capsys.readouterr().out  # 9 generated + 5 prompt
    ds = open_dataset(out)
    rows = list(ds.iter_records())
    assert ds.manifest.kind == "captions" and ds.manifest.producer["stage"] == "import-synth-pedes-json"
    assert [r["key"] for r in rows] == [f"synth-pedes/{e['file_path']}" for e in RELEASE]
    assert [r["identity"] for r in rows] == [7, 7, 9, 40000, 40000] and {r["split"] for r in rows} == {"train"}
    assert rows[0]["attributes"] == dict(zip(SLOTS, ["man", "black hair", "black shirt", "pink shorts",
                                                     "black shoes", "unknown"]))
    assert rows[2]["attributes"]["lower"] == "unknown" and rows[2]["attributes"]["belongings"] == "handbag"
    assert [(c["style"], c["kind"]) for c in rows[0]["captions"]] == [
        ("spac-0", "generated"), ("spac-1", "generated"), ("prompt", "prompt")]
    assert [c["text"] for c in rows[0]["captions"]] == RELEASE[0]["captions"] + RELEASE[0]["prompt_caption"]
    assert [(c["style"], c["kind"]) for c in rows[1]["captions"]] == [("spac-0", "generated"), ("prompt", "prompt")]
    assert json.loads(rows[3]["extra"]) == {"index": 3, "id": 40000, "file_path": "Part2/40000/0.jpg"}
    assert rows[3]["image"]["bytes"] == (src / "Part2/40000/0.jpg").read_bytes()


def test_parse_attributes():
    assert parse_attributes(["a,b,c,d,e,f"]) == ("a", "b", "c", "d", "e", "f")
    assert parse_attributes("a, b ,c,,e,f") == ("a", "b", "c", "unknown", "e", "f")
    for bad in (["a,b,c"], ["a,b,c,d,e,f,g"], [], ["a,b,c,d,e,f", "x"], None, 7):
        with pytest.raises(ValueError, match="malformed entry"):
            parse_attributes(bad)


def _bad_release(root):
    entries = [dict(e) for e in RELEASE]
    entries[2] = dict(entries[2], attributes=["woman,long hair,white dress"])  # 3 parts, not 6
    return _write_release(root, entries, skip={RELEASE[4]["file_path"]})  # entry 4: missing image


@pytest.mark.parametrize("mode", ["error", "warn", "skip"])
def test_on_bad_files_modes(tmp_path, capsys, mode):
    src = _bad_release(tmp_path / "SYNTH-PEDES")
    out = tmp_path / "synth"
    code = main(["import", "synth-pedes-json", str(src), "--out", str(out), "--workers", "0",
                 "--on-bad-files", mode])
    captured = capsys.readouterr()
    if mode == "error":
        assert code == 2 and not out.exists()
        assert "entry 2 (Part1/9/0.jpg): malformed entry: attributes 'woman,long hair,white dress' has 3" \
               in captured.err
        assert "entry 4 (Part2/40000/1.jpg): missing image" in captured.err and "--on-bad-files warn" in captured.err
        return
    assert code == 0
    ds = open_dataset(out)
    rows = {r["key"]: r for r in ds.iter_records()}
    counts = ds.manifest.producer["counts"]
    assert counts["bad"] == 2 and counts["bad_reasons"] == {"malformed entry": 1, "missing image": 1}
    if mode == "warn":
        assert len(rows) == 5 and ds.manifest.status_counts == {"error": 2, "ok": 3}
        assert "has 3 comma-separated parts" in rows["synth-pedes/Part1/9/0.jpg"]["error"]
        assert rows["synth-pedes/Part2/40000/1.jpg"]["error"].startswith("missing image")
        assert (counts["kept_as_error"], counts["skipped"]) == (2, 0)
        assert "kept as error rows: 2" in captured.out
    else:
        assert len(rows) == 3 and ds.manifest.status_counts == {"ok": 3}
        assert (counts["kept_as_error"], counts["skipped"]) == (0, 2) and "skipped: 2" in captured.out


def test_missing_annotation_file_is_named(tmp_path, capsys):
    (tmp_path / "SYNTH-PEDES" / "Part1").mkdir(parents=True)
    assert main(["import", "synth-pedes-json", str(tmp_path / "SYNTH-PEDES"), "--out", str(tmp_path / "o")]) == 2
    assert "no synthpedes-dataset.json or synthpedes_dataset.json here" in capsys.readouterr().err


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _by_image(rows):
    return {r["image_sha256"]: r for r in rows}


def test_export_then_import_round_trips(tmp_path, capsys):
    src = _write_release(tmp_path / "SYNTH-PEDES", RELEASE)
    first = tmp_path / "first"
    assert main(["import", "synth-pedes-json", str(src), "--out", str(first), "--workers", "0"]) == 0
    exported = tmp_path / "exported"
    assert main(["export", "synth-pedes-json", str(first), "--out", str(exported), "--ids-per-part", "2"]) == 0
    printed = capsys.readouterr().out
    assert "images written    5" in printed and str(exported / "synthpedes-dataset.json") in printed
    doc = json.loads((exported / "synthpedes-dataset.json").read_text())
    assert [set(e) for e in doc] == [{"id", "file_path", "attributes", "captions", "prompt_caption"}] * 5
    assert [e["file_path"] for e in doc] == ["Part1/7/0.jpg", "Part1/7/1.jpg", "Part1/9/0.jpg",
                                             "Part2/40000/0.jpg", "Part2/40000/1.jpg"]
    assert doc[0]["attributes"] == RELEASE[0]["attributes"] and doc[0]["captions"] == RELEASE[0]["captions"]
    assert doc[2]["prompt_caption"] == RELEASE[2]["prompt_caption"]
    assert json.loads((exported / "plip-export.json").read_text())["dataset_id"] == open_dataset(first).id
    second = tmp_path / "second"
    assert main(["import", "synth-pedes-json", str(exported), "--out", str(second), "--workers", "0"]) == 0
    a, b = _by_image(open_dataset(first).iter_records()), _by_image(open_dataset(second).iter_records())
    assert a.keys() == b.keys() and len(a) == 5  # the same image bytes
    for sha, row in a.items():
        for col in ("identity", "attributes", "captions", "split", "status"):
            assert b[sha][col] == row[col], col


def _record(i, identity, *, status="ok", png=False, attributes=True, human=False):
    data = jpeg_bytes(500 + i)
    if png:
        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).save(buf, "PNG")
        data = buf.getvalue()
    caps = [{"text": f"second {i}", "style": "spac-10", "kind": "generated"},
            {"text": f"first {i}", "style": "spac-2", "kind": "generated"},
            {"text": f"prompt {i}", "style": "prompt", "kind": "prompt"}]
    if human:
        caps.append({"text": f"human {i}", "style": "cuhk-pedes", "kind": "human"})
    attrs = {s: f"{s} value" for s in SLOTS} if attributes else None
    if attributes and i == 1:
        attrs["belongings"] = "bag, umbrella"
    if status != "ok":
        return make_record(f"t/{i:03d}.jpg", identity=identity, status=status, error="synthetic", captions=caps)
    return make_record(f"t/{i:03d}.jpg", identity=identity, image_bytes=data, width=32, height=64,
                       attributes=attrs, captions=caps)


def test_export_handles_unknown_identities_statuses_and_formats(tmp_path, capsys):
    records = [_record(0, 5), _record(1, -1, human=True), _record(2, 3, png=True), _record(3, 5, attributes=False),
               _record(4, -1), _record(5, 3, status="error"), _record(6, 8, status="filtered")]
    src = tmp_path / "captions"
    write_dataset(records, src, name="handmade", kind="captions", shard_rows=3)
    out = tmp_path / "exported"
    assert main(["export", "synth-pedes-json", str(src), "--out", str(out), "--ids-per-part", "2"]) == 0
    printed = capsys.readouterr().out
    assert "left out          2 (status error=1, status filtered=1)" in printed
    assert "2 rows given their own identity (from 6)" in printed and "human=1" in printed
    doc = json.loads((out / "synthpedes-dataset.json").read_text())
    # identities 3, 5 (real) then pseudo 6, 7 (the -1 rows, in row order); 2 per Part
    assert [(e["id"], e["file_path"]) for e in doc] == [
        (5, "Part1/5/0.jpg"), (6, "Part2/6/0.jpg"), (3, "Part1/3/0.jpg"), (5, "Part1/5/1.jpg"), (7, "Part2/7/0.jpg")]
    assert doc[0]["captions"] == ["first 0", "second 0"] and doc[0]["prompt_caption"] == ["prompt 0"]  # style order
    assert doc[1]["attributes"] == ["person value,head value,upper value,lower value,shoes value,bag umbrella"]
    assert doc[3]["attributes"] == ["unknown,unknown,unknown,unknown,unknown,unknown"]
    assert (out / "Part1/5/0.jpg").read_bytes() == records[0]["image"]["bytes"]  # JPEG copied unchanged
    png_out = (out / "Part1/3/0.jpg").read_bytes()
    assert png_out[:3] == b"\xff\xd8\xff" and Image.open(io.BytesIO(png_out)).size == (32, 64)  # re-encoded
    info = json.loads((out / "plip-export.json").read_text())
    assert info["left_out_by_status"] == {"error": 1, "filtered": 1} and info["reencoded"] == 1
    assert info["pseudo_identities"] == 2 and info["attributes_rewritten"] == 1 and info["attributes_missing"] == 1
    assert not (out / ".plip-export-incomplete").exists()
    # a finished export is not overwritten; --unknown-identities skip leaves the -1 rows out
    assert main(["export", "synth-pedes-json", str(src), "--out", str(out)]) == 2
    assert "already holds a finished SYNTH-PEDES export" in capsys.readouterr().err
    skip = tmp_path / "skip"
    assert main(["export", "synth-pedes-json", str(src), "--out", str(skip), "--unknown-identities", "skip"]) == 0
    assert len(json.loads((skip / "synthpedes-dataset.json").read_text())) == 3
    assert "left out          4" in capsys.readouterr().out


def test_interrupted_export_is_redone_and_foreign_folders_refused(tmp_path, capsys):
    src = tmp_path / "captions"
    write_dataset([_record(0, 1), _record(1, 2)], src, name="handmade", kind="captions", shard_rows=4)
    out = tmp_path / "exported"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["export", "synth-pedes-json", str(src), "--out", str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err and (out / "mine.txt").exists()
    again = tmp_path / "again"
    (again / "Part1" / "1").mkdir(parents=True)
    (again / "Part1" / "1" / "9.jpg").write_bytes(b"stale")  # left by a killed export of the same dataset
    (again / ".plip-export-incomplete").write_text(open_dataset(src).id + "\n")
    assert main(["export", "synth-pedes-json", str(src), "--out", str(again)]) == 0
    assert sorted(p.relative_to(again).as_posix() for p in again.rglob("*.jpg")) == ["Part1/1/0.jpg", "Part1/2/0.jpg"]


@pytest.mark.parametrize("cmd", [["export"], ["export", "synth-pedes-json"]])
def test_export_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0 and "usage: plip export" in capsys.readouterr().out


def test_unstorable_values_bad_ids_and_blank_captions_are_checked_per_field(tmp_path, capsys):
    entries = [dict(e) for e in RELEASE]
    entries[0]["prompt_caption"] = ["A person 7 \ud800."]
    entries[1]["attributes"] = ["man,black \udfff hair,black shirt,pink shorts,black shoes,unknown"]
    entries[2]["id"] = 2**63  # one past the schema's int64
    entries[3]["id"] = -1  # reserved for "no identity"
    entries[4]["captions"] = [" ", "Caption 0 of person 40000 image 1.", ""]
    entries[4]["prompt_caption"] = [""]
    src = _write_release(tmp_path / "SYNTH-PEDES", entries)
    out = tmp_path / "synth"
    assert main(["import", "synth-pedes-json", str(src), "--out", str(out), "--workers", "0",
                 "--on-bad-files", "warn"]) == 0
    assert "captions     11 (blank, dropped: 3)" in capsys.readouterr().out  # error rows keep their good captions
    ds = open_dataset(out)
    rows = sorted(ds.iter_records(), key=lambda r: r["status"] == "ok")  # error rows in entry order, then the ok one
    assert [r["status"] for r in rows] == ["error"] * 4 + ["ok"]
    assert "malformed entry: 'prompt_caption'[0] is not valid text" in rows[0]["error"]
    assert "malformed entry: 'attributes' is not valid text" in rows[1]["error"] and rows[1]["attributes"] is None
    assert rows[2]["error"].startswith(f"malformed entry: 'id' is {2**63}, not an integer from 0 to {2**63 - 1}")
    assert rows[3]["error"].startswith("malformed entry: 'id' is -1, not an integer from 0 ")
    assert [(c["text"], c["kind"]) for c in rows[4]["captions"]] == [("Caption 0 of person 40000 image 1.",
                                                                      "generated")]
    assert ds.manifest.producer["counts"]["blank_captions"] == 3


@pytest.mark.parametrize("captions, problem", [([], "is empty"), (["", "\t"], "holds only blank text"),
                                               (None, "is missing")])
def test_an_entry_without_a_caption_is_malformed(tmp_path, capsys, captions, problem):
    entries = [dict(e) for e in RELEASE]
    if captions is None:
        del entries[1]["captions"]
    else:
        entries[1]["captions"] = captions
    src = _write_release(tmp_path / "SYNTH-PEDES", entries)
    assert main(["import", "synth-pedes-json", str(src), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert f"1 bad entry of 5: entry 1 (Part1/7/1.jpg): malformed entry: 'captions' {problem}" \
           in capsys.readouterr().err


def test_a_symlink_out_of_src_is_a_bad_entry_never_read(tmp_path, capsys):
    src = _write_release(tmp_path / "SYNTH-PEDES", RELEASE)
    (src / RELEASE[1]["file_path"]).unlink()
    (src / RELEASE[1]["file_path"]).symlink_to("/etc/passwd")
    assert main(["import", "synth-pedes-json", str(src), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert ("entry 1 (Part1/7/1.jpg): resolves outside the source root via a symlink: 'Part1/7/1.jpg' leads to "
            "'/etc/passwd'; pass --allow-outside-root to import it") in capsys.readouterr().err
    assert main(["import", "synth-pedes-json", str(src), "--out", str(tmp_path / "o"), "--workers", "0",
                 "--on-bad-files", "skip"]) == 0
    assert len(open_dataset(tmp_path / "o")) == 4
