import io
import json
import os
import subprocess
import sys

import pytest
from _fixtures import jpeg_bytes, write_person_folder
import numpy as np
from PIL import Image

from pipelines.cli import main
from synth_pedes import open_dataset
from synth_pedes.sources.images import resolve_inside, scan_image_folder


def _bad_files(root):
    """One file of every kind of bad input; returns {relative path: expected error prefix}."""
    good = jpeg_bytes(7)
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, "PNG")  # 81 Mpx in a few KB
    files = {
        "0001/empty.jpg": (b"", "empty file"),
        "0001/truncated.jpg": (good[: len(good) // 2], "corrupt image"),
        "0002/garbage.jpg": (good[:200] + bytes(range(256)) * 8, "corrupt image"),  # valid header, bad data
        "0002/magic-only.jpg": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "not an image"),
        "0002/page.jpg": (b"<html>404 not found</html>", "not an image"),  # a .txt is skipped, not a row
        "0002/bomb.png": (bomb.getvalue(), "too many pixels"),
    }
    for rel, (data, _) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {rel: reason for rel, (_, reason) in files.items()}


def test_scan_detects_layouts(tmp_path):
    write_person_folder(tmp_path / "nl", "identity-folders", n_ids=2, per_id=2)
    scan = scan_image_folder(tmp_path / "nl")
    assert scan.layout == "identity-folders" and [(i.relpath, i.identity) for i in scan.items] == [
        ("0000/0.jpg", 0), ("0000/1.jpg", 0), ("0001/0.jpg", 1), ("0001/1.jpg", 1)]
    write_person_folder(tmp_path / "flat", "flat", n_ids=2, per_id=1)
    scan = scan_image_folder(tmp_path / "flat")
    assert scan.layout == "flat" and {i.identity for i in scan.items} == {-1}
    (tmp_path / "named" / "alice").mkdir(parents=True)
    (tmp_path / "named" / "bob").mkdir()
    (tmp_path / "named" / "alice" / "a.jpg").write_bytes(jpeg_bytes(1))
    (tmp_path / "named" / "bob" / "b.jpg").write_bytes(jpeg_bytes(2))
    (tmp_path / "named" / ".hidden.jpg").write_bytes(jpeg_bytes(3))
    scan = scan_image_folder(tmp_path / "named")
    assert [(i.relpath, i.identity, i.folder) for i in scan.items] == [
        ("alice/a.jpg", 0, "alice"), ("bob/b.jpg", 1, "bob")]
    assert scan.identity_map == {"alice": 0, "bob": 1} and scan.skipped == {"hidden": 1}


def test_import_turns_every_bad_file_into_an_error_row_on_a_dask_cluster(tmp_path, capsys):
    src = tmp_path / "luperson-nl"
    good = write_person_folder(src, "identity-folders", n_ids=3, per_id=3)
    bad = _bad_files(src)
    out = tmp_path / "images"
    assert main(["import", "images", str(src), "--out", str(out), "--shard-rows", "4", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "rows" in printed and "error=6" in printed and str(out) in printed
    ds = open_dataset(out)
    rows = {r["key"]: r for r in ds.iter_records()}
    assert len(rows) == len(good) + len(bad)  # nothing lost
    for rel in good:
        row = rows[f"luperson-nl/{rel}"]
        assert row["status"] == "ok" and row["image"]["bytes"] == (src / rel).read_bytes()
        assert (row["width"], row["height"]) == (32, 64) and row["identity"] == int(rel[:4])
    for rel, reason in bad.items():
        row = rows[f"luperson-nl/{rel}"]
        assert row["status"] == "error" and row["error"].startswith(reason), (rel, row["error"])
        assert row["image"] is None and row["identity"] == int(rel[:4])
    assert ds.manifest.status_counts == {"error": 6, "ok": 9}
    assert ds.manifest.producer["stage"] == "import-images"
    assert ds.manifest.producer["config"]["layout"] == "identity-folders"


def test_import_by_bytes_is_deterministic_and_resumable(tmp_path, capsys):
    src = tmp_path / "flat"
    write_person_folder(src, "flat", n_ids=4, per_id=3)
    args = ["import", "images", str(src), "--shard-size", "4KB", "--workers", "0"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = open_dataset(tmp_path / "a"), open_dataset(tmp_path / "b")
    assert a.id == b.id and len(a.manifest.shards) > 1
    assert main([*args, "--out", str(tmp_path / "a")]) == 0  # finished: a no-op, not an error
    src_changed = tmp_path / "flat" / "extra.jpg"
    src_changed.write_bytes(jpeg_bytes(99))
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "immutable" in capsys.readouterr().err


def test_cli_errors_are_one_paragraph_and_nonzero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "import", "images", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "nope: not a directory" in proc.stderr


@pytest.mark.parametrize("cmd", [[], ["import"], ["import", "images"], ["validate"], ["bench"], ["env"]])
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage: plip" in capsys.readouterr().out


def test_resolve_inside_refuses_paths_that_leave_the_root_unless_allowed(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "secret.jpg"
    (root / "sub").mkdir(parents=True)
    outside.write_bytes(b"secret")
    (root / "sub" / "in.jpg").write_bytes(b"x")
    (root / "out.jpg").symlink_to(outside)
    (root / "in-link.jpg").symlink_to(root / "sub" / "in.jpg")
    (root / "linked-dir").symlink_to(root / "sub", target_is_directory=True)
    assert resolve_inside(root, "in-link.jpg") == (root / "sub" / "in.jpg").resolve()
    assert resolve_inside(root, "linked-dir/in.jpg") == (root / "sub" / "in.jpg").resolve()
    with pytest.raises(ValueError, match="resolves outside the source root via a symlink: 'out.jpg' leads to .*"
                                         "secret.jpg.*pass --allow-outside-root"):
        resolve_inside(root, "out.jpg")
    assert resolve_inside(root, "out.jpg", allow_outside=True) == outside.resolve()
    for bad in ("../secret.jpg", "/etc/passwd", "sub//in.jpg", ""):
        with pytest.raises(ValueError, match="not a relative path inside the source root"):
            resolve_inside(root, bad, allow_outside=True)


def _import(src, out, *flags):
    assert main(["import", "images", str(src), "--out", str(out), "--workers", "0", *flags]) == 0
    ds = open_dataset(out)
    return ds, {r["key"]: r for r in ds.iter_records()}


def test_a_file_name_that_is_not_utf8_is_one_row_with_its_name_escaped(tmp_path):
    src = tmp_path / "flat"
    write_person_folder(src, "flat", n_ids=3, per_id=1)
    bad_name = os.fsencode(src) + b"/bad\xffutf8.jpg"
    with open(bad_name, "wb") as f:
        f.write(jpeg_bytes(5))
    ds, rows = _import(src, tmp_path / "out")
    assert len(rows) == 4 and ds.manifest.status_counts == {"ok": 4}
    row = rows["flat/bad%FFutf8.jpg"]
    assert row["image"] == {"bytes": jpeg_bytes(5), "path": "bad%FFutf8.jpg"}
    assert bytes.fromhex(json.loads(row["extra"])["path_bytes"]) == b"bad\xffutf8.jpg"  # the name, losslessly
    (src / "bad%FFutf8.jpg").write_bytes(jpeg_bytes(6))  # stored under the same name: refused, not merged
    with pytest.raises(ValueError, match="are both stored as 'bad%FFutf8.jpg'.*rename one of them"):
        scan_image_folder(src)


def test_symlinks_out_of_the_folder_are_refused_unless_allowed(tmp_path):
    src, secret = tmp_path / "src", tmp_path / "secret"
    write_person_folder(src, "identity-folders", n_ids=1, per_id=1)
    (secret / "0003").mkdir(parents=True)
    (secret / "0003" / "0.jpg").write_bytes(jpeg_bytes(3))
    (secret / "passwd.jpg").write_bytes(jpeg_bytes(4))
    (src / "0000" / "out.jpg").symlink_to(secret / "passwd.jpg")
    (src / "0003").symlink_to(secret / "0003", target_is_directory=True)
    (src / "0004").symlink_to(src / "0000", target_is_directory=True)  # a linked folder inside: followed
    ds, rows = _import(src, tmp_path / "refused")
    for key in ("src/0000/out.jpg", "src/0003"):
        assert rows[key]["status"] == "error" and rows[key]["image_sha256"] is None  # never read
        assert rows[key]["error"].startswith("resolves outside the source root via a symlink: ")
        assert "--allow-outside-root" in rows[key]["error"]
    assert rows["src/0004/0.jpg"]["status"] == "ok" and rows["src/0004/0.jpg"]["identity"] == 4
    _, rows = _import(src, tmp_path / "allowed", "--allow-outside-root")
    assert rows["src/0000/out.jpg"]["image"]["bytes"] == jpeg_bytes(4)
    assert rows["src/0003/0.jpg"]["status"] == "ok" and rows["src/0003/0.jpg"]["identity"] == 3


def test_every_path_that_is_not_a_row_is_counted_by_reason(tmp_path, capsys):
    src = tmp_path / "flat"
    write_person_folder(src, "flat", n_ids=2, per_id=1)
    (src / ".hidden.jpg").write_bytes(jpeg_bytes(1))
    (src / ".cache").mkdir()
    (src / ".cache" / "x.jpg").write_bytes(jpeg_bytes(2))
    (src / "ground-truth.jsonl").write_text("{}\n")
    (src / "loop").mkdir()
    (src / "loop" / "again").symlink_to(src / "loop", target_is_directory=True)
    os.mkfifo(src / "pipe.jpg")  # reading it would block the import
    (src / "dangling.jpg").symlink_to(src / "gone.jpg")  # meant to be there: an error row
    ds, rows = _import(src, tmp_path / "out")
    assert ds.manifest.producer["counts"]["skipped"] == {
        "ground-truth table": 1, "hidden": 2, "not a regular file": 1, "symlink loop": 1}
    assert "skipped  ground-truth table=1, hidden=2, not a regular file=1, symlink loop=1" in capsys.readouterr().out
    assert rows["flat/dangling.jpg"]["status"] == "error"
    assert rows["flat/dangling.jpg"]["error"].startswith("dangling symlink: 'dangling.jpg' leads to ")
    assert ds.manifest.status_counts == {"error": 1, "ok": 2}


def test_exif_orientation_is_recorded_and_sizes_are_as_shown(tmp_path):
    src = tmp_path / "flat"
    src.mkdir()
    stored = Image.fromarray(np.zeros((32, 64, 3), np.uint8))  # 64 wide, 32 high as stored
    exif = stored.getexif()
    exif[0x0112] = 6  # shown turned a quarter: 32 wide, 64 high
    stored.save(src / "portrait.jpg", exif=exif)
    _, rows = _import(src, tmp_path / "out")
    row = rows["flat/portrait.jpg"]
    assert (row["width"], row["height"]) == (32, 64) and json.loads(row["extra"]) == {"exif_orientation": 6}


def test_identity_folders_keep_their_numbers_and_map_the_rest(tmp_path, capsys):
    src = tmp_path / "nl"
    for i, folder in enumerate(["0005", "0009", "alice", "007", "7"]):
        (src / folder).mkdir(parents=True)
        (src / folder / "a.jpg").write_bytes(jpeg_bytes(i))
    ds, rows = _import(src, tmp_path / "out")
    ids = {key.split("/")[1]: (row["identity"], json.loads(row["extra"] or "{}").get("folder"))
           for key, row in rows.items()}
    assert ids == {"0005": (5, None), "0009": (9, None), "007": (7, None), "7": (10, "7"), "alice": (11, "alice")}
    assert ds.manifest.producer["config"]["identity_map"] == {"7": 10, "alice": 11}
    warned = capsys.readouterr().err
    assert "1 of 5 identity folders are not numbers (e.g. 'alice')" in warned
    assert "1 identity folders spell a number another folder already has (e.g. '7')" in warned
