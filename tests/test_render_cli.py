"""plip render in every format, and each official layout imported back by its importer (round trip)."""
import json

import pytest

from pipelines.cli import main
from synth_pedes import open_dataset
from synth_pedes.procpedes import ProcPedesConfig, iter_records

N_IDS, PER_ID = 10, 3


def _render(tmp_path, fmt, *extra):
    out = tmp_path / fmt
    assert main(["render", "--out", str(out), "--format", fmt, "--identities", str(N_IDS), "--images-per-identity",
                 str(PER_ID), "--seed", "5", "--workers", "0", *extra]) == 0
    return out


def test_render_dataset_with_contact_sheet(tmp_path, capsys):
    out = _render(tmp_path, "dataset", "--contact-sheet", str(tmp_path / "sheet.png"))
    ds = open_dataset(out)
    assert ds.manifest.num_rows == N_IDS * PER_ID and ds.manifest.kind == "benchmark"
    assert ds.manifest.producer["config"]["seed"] == 5
    row = next(ds.iter_records())
    assert row["attributes"]["upper"] != "" and row["captions"][0]["kind"] == "human"
    assert all(row["captions"][0]["text"][s["start"]:s["end"]] for s in row["captions"][0]["spans"])
    assert (tmp_path / "sheet.png").stat().st_size > 10_000
    assert "contact sheet" in capsys.readouterr().out


@pytest.mark.parametrize("fmt,json_name", [("cuhk-pedes", "reid_raw.json"), ("icfg-pedes", "ICFG_PEDES.json"),
                                           ("rstpreid", "data_captions.json")])
def test_official_layouts_round_trip_through_their_importers(tmp_path, fmt, json_name):
    raw = _render(tmp_path, fmt)
    entries = json.loads((raw / json_name).read_text())
    assert len(entries) == N_IDS * PER_ID
    out = tmp_path / f"{fmt}-imported"
    assert main(["import", fmt, str(raw), "--out", str(out), "--workers", "0", "--shard-rows", "8"]) == 0
    rows = list(open_dataset(out).iter_records())
    assert len(rows) == len(entries) and all(r["status"] == "ok" for r in rows)
    # each entry's captions with its identity (a dataset keeps each split in files of its own: not in entry order)
    assert sorted(([c["text"] for c in r["captions"]], r["identity"]) for r in rows) == \
        sorted((e["captions"], e["id"]) for e in entries)
    # the images are the rendered ones, byte for byte (the layout orders entries its own way)
    rendered = list(iter_records(ProcPedesConfig(identities=N_IDS, images_per_identity=PER_ID, seed=5)))
    assert sorted(r["image_sha256"] for r in rows) == sorted(r["image_sha256"] for r in rendered)
    base = {"cuhk-pedes": 1, "icfg-pedes": 0, "rstpreid": 0}[fmt]
    assert min(e["id"] for e in entries) == base


def test_image_folder_formats_import_as_images_with_the_truth_beside_them(tmp_path):
    from synth_pedes.card.truth import read_truth_table

    nl = _render(tmp_path, "image-folder", "--captions-per-image", "0")
    assert main(["import", "images", str(nl), "--out", str(tmp_path / "nl-ds"), "--workers", "0"]) == 0
    ds = open_dataset(tmp_path / "nl-ds")
    assert ds.manifest.num_rows == N_IDS * PER_ID and ds.manifest.producer["config"]["layout"] == "identity-folders"
    assert ds.manifest.status_counts == {"ok": N_IDS * PER_ID}  # the truth table is not imported as a broken file
    rows = list(ds.iter_records())
    assert sorted({r["identity"] for r in rows}) == list(range(N_IDS))
    truth = read_truth_table(nl / "ground-truth.jsonl")  # the ground truth the folder drops, keyed by sha256
    assert set(truth) == {r["image_sha256"] for r in rows} and all(r["extra"] is None for r in rows)
    rendered = {r["image_sha256"]: json.loads(r["extra"])
                for r in iter_records(ProcPedesConfig(identities=N_IDS, images_per_identity=PER_ID, seed=5,
                                                      captions_per_image=0))}
    assert all(truth[sha]["appearance"] == rendered[sha]["appearance"] for sha in truth)
    flat = _render(tmp_path, "flat-folder", "--captions-per-image", "0")
    assert len(list(flat.glob("*.jpg"))) == len(read_truth_table(flat / "ground-truth.jsonl")) == N_IDS * PER_ID
    assert main(["import", "images", str(flat), "--out", str(tmp_path / "flat-ds"), "--workers", "0"]) == 0
    assert open_dataset(tmp_path / "flat-ds").manifest.status_counts == {"ok": N_IDS * PER_ID}


def test_render_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["render", "--out", str(tmp_path / "x"), "--identities", "0"]) == 2
    assert "identities" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    assert main(["render", "--out", str(tmp_path / "busy"), "--format", "cuhk-pedes", "--identities", "2"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_market1501_layout_round_trips_through_its_importer(tmp_path):
    raw = _render(tmp_path, "market1501", "--captions-per-image", "0")
    assert main(["import", "market1501", str(raw), "--out", str(tmp_path / "m"), "--workers", "0"]) == 0
    rows = list(open_dataset(tmp_path / "m").iter_records())
    assert len(rows) == N_IDS * PER_ID and {r["split"] for r in rows} == {"train", "query", "gallery"}
    query = {(r["identity"], r["camera"]) for r in rows if r["split"] == "query"}
    assert len(query) == sum(1 for r in rows if r["split"] == "query")  # one query per identity and camera
    train_ids = {r["identity"] for r in rows if r["split"] == "train"}
    assert train_ids.isdisjoint({r["identity"] for r in rows if r["split"] != "train"})


def test_rerunning_a_finished_render_or_import_says_already_complete(tmp_path, capsys):
    """Issue 19: a re-run of a finished job printed a time and throughput for work it never did."""
    render = ["render", "--out", str(tmp_path / "pp"), "--identities", "3", "--images-per-identity", "2",
              "--workers", "0"]
    folder = ["render", "--out", str(tmp_path / "folder"), "--identities", "3", "--images-per-identity", "2",
              "--format", "image-folder", "--workers", "0"]
    imported = ["import", "images", str(tmp_path / "folder"), "--out", str(tmp_path / "imported"), "--workers", "0"]
    for argv in (render, folder, imported):
        assert main(argv) == 0
    capsys.readouterr()
    for argv, out in ((render, tmp_path / "pp"), (imported, tmp_path / "imported")):
        assert main(argv) == 0
        assert capsys.readouterr().out == f"already complete: {out} (id {open_dataset(out).id}, 6 rows)\n"
