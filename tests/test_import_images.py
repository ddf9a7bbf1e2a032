import io
import subprocess
import sys

import pytest
from _fixtures import jpeg_bytes, write_person_folder
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
        "0002/notes.txt": (b"these are not the pixels you are looking for", "not an image"),
        "0002/bomb.png": (bomb.getvalue(), "too many pixels"),
    }
    for rel, (data, _) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {rel: reason for rel, (_, reason) in files.items()}


def test_scan_detects_layouts(tmp_path):
    write_person_folder(tmp_path / "nl", "identity-folders", n_ids=2, per_id=2)
    layout, items = scan_image_folder(tmp_path / "nl")
    assert layout == "identity-folders" and [(i.relpath, i.identity) for i in items] == [
        ("0000/0.jpg", 0), ("0000/1.jpg", 0), ("0001/0.jpg", 1), ("0001/1.jpg", 1)]
    write_person_folder(tmp_path / "flat", "flat", n_ids=2, per_id=1)
    layout, items = scan_image_folder(tmp_path / "flat")
    assert layout == "flat" and {i.identity for i in items} == {-1}
    (tmp_path / "named" / "alice").mkdir(parents=True)
    (tmp_path / "named" / "bob").mkdir()
    (tmp_path / "named" / "alice" / "a.jpg").write_bytes(jpeg_bytes(1))
    (tmp_path / "named" / "bob" / "b.jpg").write_bytes(jpeg_bytes(2))
    (tmp_path / "named" / ".hidden.jpg").write_bytes(jpeg_bytes(3))
    _, items = scan_image_folder(tmp_path / "named")
    assert [(i.relpath, i.identity, i.folder) for i in items] == [("alice/a.jpg", 0, "alice"), ("bob/b.jpg", 1, "bob")]


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
