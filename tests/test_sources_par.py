"""PA-100K / PETA / RAPv1 / RAPv2 importers (synth_pedes.sources.par_datasets), through ``plip import`` on small
copies in the layout Rethinking_of_PAR reads: the annotation file written by _par_fixtures, tiny images next to it."""
import io
import json
import re

import numpy as np
import pytest
from _fixtures import jpeg_bytes
from _par_fixtures import pa100k_content, peta_content, rap1_content, rap2_content, save
from PIL import Image

from pipelines.cli import main
from synth_pedes import open_dataset
from synth_pedes.sources.par_annotations import PA100K_GROUP_ORDER
from synth_pedes.sources.par_datasets import PAR_FORMATS

KINDS = ("pa100k", "peta", "rap", "rap2")
EVALUATED = {"pa100k": 26, "peta": 35, "rap": 51, "rap2": 54}  # attributes Rethinking_of_PAR evaluates


def png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _content(kind, seed=7):
    rng = np.random.default_rng(seed)
    return {"pa100k": lambda: pa100k_content(rng), "peta": lambda: peta_content(rng)[0],
            "rap": lambda: rap1_content(rng), "rap2": lambda: rap2_content(rng)[0]}[kind]()


def _partition0(content, kind) -> dict:
    """Partition 0's index vectors in PETA's or RAP's content (a dict savemat writes as a struct)."""
    cells = {"peta": lambda: content["peta"]["partition_attribute"],
             "rap": lambda: content["RAP_annotation"]["partion"],
             "rap2": lambda: content["RAP_annotation"]["partition_attribute"]}[kind]()
    return cells.flat[0]


def _drop_last_test_image(content, kind) -> int:
    """Take the last test image out of partition 0; returns its row (0-based)."""
    part = _partition0(content, kind)
    test = part["test_index"]
    part["test_index"] = test[:-1] if test.shape[1] == 1 else test[:, :-1]
    return int(test.flat[-1]) - 1


def _write(root, kind, content, skip_images=()):
    """``content`` as the dataset's annotation file under ``root`` and an image for each name it lists (but
    ``skip_images``) in the image folder, as Rethinking_of_PAR lays them out."""
    fmt = PAR_FORMATS[kind]
    (root / fmt.annotation).parent.mkdir(parents=True, exist_ok=True)
    save(root / fmt.annotation, content)
    (root / fmt.images_dir).mkdir()
    for i, name in enumerate(fmt.read(root / fmt.annotation).image_names):
        if name not in skip_images:
            (root / fmt.images_dir / name).write_bytes(jpeg_bytes(i) if name.endswith(".jpg") else png_bytes(i))
    return root


def _import(src, out, kind, *more):
    return main(["import", kind, str(src), "--out", str(out), "--workers", "0", *more])


@pytest.mark.parametrize("kind", KINDS)
def test_import_gives_the_readers_names_splits_and_labels(tmp_path, capsys, kind):
    content = _content(kind)
    left_out = None if kind == "pa100k" else _drop_last_test_image(content, kind)  # PA-100K's splits cover all
    src = _write(tmp_path / "src", kind, content)
    fmt = PAR_FORMATS[kind]
    annotations = fmt.read(src / fmt.annotation)
    out = tmp_path / kind
    assert _import(src, out, kind) == 0
    printed = capsys.readouterr().out
    ds = open_dataset(out)
    manifest = ds.manifest
    assert (manifest.kind, manifest.name) == ("benchmark", kind)
    assert list(manifest.attribute_names) == annotations.attribute_names
    assert len(manifest.attribute_names) == EVALUATED[kind]
    # split -> the partition it comes from: RAPv1 has only trainval and test, its trainval is written as train
    parts = {"train": "trainval", "test": "test"} if kind == "rap" else {s: s for s in ("train", "val", "test")}
    assert manifest.splits == {split: len(annotations.partition[part]) for split, part in parts.items()}
    rows = {r["key"]: r for r in ds.iter_records()}
    assert len(rows) == sum(manifest.splits.values()) and manifest.status_counts == {"ok": len(rows)}
    for split, part in parts.items():
        for row in annotations.partition[part]:
            name = annotations.image_names[row]
            record = rows[f"{kind}/{name}"]
            assert (record["split"], record["identity"], record["source"]) == (split, -1, kind)
            assert record["attribute_labels"] == annotations.labels[row].tolist()
            assert json.loads(record["extra"]) == {"index": int(row), "partition": part}
            assert record["image"]["path"] == name
    assert len({tuple(r["attribute_labels"]) for r in rows.values()}) > 1  # rows differ: a mix-up would show
    counts = manifest.producer["counts"]
    assert counts["not_in_partition"] == (0 if left_out is None else 1)
    if left_out is not None:
        assert f"{kind}/{annotations.image_names[left_out]}" not in rows
    assert manifest.producer["config"]["annotations"] == str(src / fmt.annotation)
    assert re.search(rf"attributes\s+{EVALUATED[kind]} \(", printed)
    assert re.search(rf"not in partition 0\s+{counts['not_in_partition']} \(left out\)", printed)
    assert "identities          none (-1)" in printed


def test_pa100k_labels_are_the_files_rows_in_group_order(tmp_path):
    """Independent of the reader: the row of 000006.jpg (the second val image) is val_label's second row, its columns
    taken in Rethinking_of_PAR's group order."""
    content = _content("pa100k")
    src = _write(tmp_path / "PA100k", "pa100k", content)
    assert _import(src, tmp_path / "out", "pa100k") == 0
    record = next(r for r in open_dataset(tmp_path / "out").iter_records() if r["key"] == "pa100k/000006.jpg")
    assert record["split"] == "val"
    assert record["attribute_labels"] == content["val_label"][1][PA100K_GROUP_ORDER].tolist()


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_annotation_file_or_image_folder_is_named(tmp_path, capsys, kind):
    fmt = PAR_FORMATS[kind]
    src = _write(tmp_path / "src", kind, _content(kind))
    out = tmp_path / "out"
    (src / fmt.annotation).rename(tmp_path / "elsewhere.mat")
    assert _import(src, out, kind) == 2
    err = capsys.readouterr().err
    assert f"plip import: error: {src / fmt.annotation}: no such file" in err
    assert f"holds {fmt.annotation} and the images in {fmt.images_dir}/" in err and "pass that folder as SRC" in err
    (tmp_path / "elsewhere.mat").rename(src / fmt.annotation)
    (src / fmt.images_dir).rename(tmp_path / "elsewhere")
    assert _import(src, out, kind) == 2
    assert f"plip import: error: {src / fmt.images_dir}: no such folder" in capsys.readouterr().err
    assert _import(tmp_path / "nowhere", out, kind) == 2
    assert f"({tmp_path / 'nowhere'} is not a directory)" in capsys.readouterr().err
    assert not out.exists()


def _remove_a_field(content, kind) -> str:
    """Delete one field the reader needs; returns what its message names."""
    if kind == "pa100k":
        del content["val_label"]
        return "annotation.mat: no field 'val_label'"
    if kind == "peta":
        del content["peta"]["partition_attribute"]
        return "PETA.mat: no field at position 3 of 'peta' (the partitions)"
    if kind == "rap":
        del content["RAP_annotation"]["imagesname"]
        return "RAP_annotation.mat: no field at position 5 of 'RAP_annotation' (the image names)"
    del content["RAP_annotation"]["selected_attribute"]
    return "RAP_annotation.mat: no field 'selected_attribute' in 'RAP_annotation'"


@pytest.mark.parametrize("kind", KINDS)
def test_a_malformed_annotation_file_names_the_file_and_the_field(tmp_path, capsys, kind):
    fmt = PAR_FORMATS[kind]
    src = _write(tmp_path / "src", kind, _content(kind))
    content = _content(kind)
    named = _remove_a_field(content, kind)
    save(src / fmt.annotation, content)
    out = tmp_path / "out"
    assert _import(src, out, kind) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"plip import: error: {named}") and "Traceback" not in err
    assert str(src / fmt.annotation) in err and not out.exists()


@pytest.mark.parametrize("mode", ["error", "warn", "skip"])
def test_a_missing_image_follows_on_bad_files(tmp_path, capsys, mode):
    src = _write(tmp_path / "PA100k", "pa100k", _content("pa100k"), skip_images=("000003.jpg",))
    out = tmp_path / "out"
    code = _import(src, out, "pa100k", "--on-bad-files", mode)
    captured = capsys.readouterr()
    if mode == "error":
        assert code == 2 and not out.exists()
        assert "1 bad entry of 10" in captured.err and "(000003.jpg): missing image" in captured.err
        assert "row 3 of annotation.mat" in captured.err and "--on-bad-files skip" in captured.err
        return
    assert code == 0
    ds = open_dataset(out)
    rows = {r["key"]: r for r in ds.iter_records()}
    counts = ds.manifest.producer["counts"]
    assert counts["bad"] == 1 and counts["bad_reasons"] == {"missing image": 1}
    if mode == "warn":
        row = rows["pa100k/000003.jpg"]
        assert row["status"] == "error" and row["error"].startswith("missing image") and row["split"] == "train"
        assert row["attribute_labels"] is not None and len(row["attribute_labels"]) == 26
        assert ds.manifest.status_counts == {"error": 1, "ok": 9}
    else:
        assert "pa100k/000003.jpg" not in rows and len(rows) == 9
        assert ds.manifest.splits == {"train": 4, "val": 2, "test": 3}
        assert counts["skipped"] == 1


def test_an_image_in_two_splits_is_a_duplicate(tmp_path, capsys):
    content = _content("rap2")
    part = _partition0(content, "rap2")
    twice = int(part["train_index"][0, 0])  # a train image, listed in test too
    part["test_index"] = np.concatenate([part["test_index"], [[twice]]], axis=1)
    src = _write(tmp_path / "RAP2", "rap2", content)
    name = PAR_FORMATS["rap2"].read(src / PAR_FORMATS["rap2"].annotation).image_names[twice - 1]
    out = tmp_path / "out"
    assert _import(src, out, "rap2") == 2
    assert "duplicate image path: entry" in capsys.readouterr().err and not out.exists()
    assert _import(src, out, "rap2", "--on-bad-files", "skip") == 0
    rows = [r for r in open_dataset(out).iter_records() if r["key"] == f"rap2/{name}"]
    assert [r["split"] for r in rows] == ["train"]  # the first listing kept


def test_images_are_looked_up_in_the_image_folder_only(tmp_path, capsys):
    """A symlink in images/ to a file elsewhere in SRC leaves the image folder: refused unless --allow-outside-root,
    the folder its help names."""
    src = _write(tmp_path / "PETA", "peta", _content("peta"))
    (src / "images" / "00002.png").rename(src / "moved.png")
    (src / "images" / "00002.png").symlink_to(src / "moved.png")
    out = tmp_path / "out"
    assert _import(src, out, "peta") == 2
    assert "(00002.png): resolves outside the source root via a symlink" in capsys.readouterr().err
    assert _import(src, out, "peta", "--allow-outside-root") == 0
    assert open_dataset(out).manifest.status_counts == {"ok": 12}


@pytest.mark.parametrize("kind", KINDS)
def test_import_kinds_have_help(kind, capsys):
    with pytest.raises(SystemExit) as e:
        main(["import", kind, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0 and "--on-bad-files" in text
    assert f"outside SRC/{PAR_FORMATS[kind].images_dir}/" in text and PAR_FORMATS[kind].annotation in text
