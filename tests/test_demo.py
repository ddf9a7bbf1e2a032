import json

from pipelines.cli import main
from synth_pedes import open_dataset


def test_demo_quick_runs_every_stage_and_writes_a_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]][:3] == [
        "unlabeled images (LUPerson stand-in)", "captioned corpus (SPAC training)", "test benchmark (CUHK-PEDES layout)"]
    assert "| stage | rows | seconds | output | note |" in printed
    unlabeled = open_dataset(out / "datasets" / "unlabeled-images")
    assert unlabeled.manifest.status_counts["error"] == 3  # the files broken on purpose are error rows
    assert [s["stage"] for s in summary["stages"]][3:] == [
        "train attribute recognizer", "train SPAC captioner", "calibrate the union (plip spac calibrate)",
        "SPAC synthesis (plip synth)",
        "quality filters (plip filter)", "dataset card (plip card)", "PLIP pre-training (plip train)",
        "zero-shot retrieval vs no pre-training (plip eval)", "validate"]
    assert json.loads((out / "runs" / "union-calibration.json").read_text()).keys() == {"classifier", "captioner"}
    synth = open_dataset(out / "datasets" / "synth-captions")
    assert synth.manifest.parents == (unlabeled.id,) and synth.manifest.num_rows == unlabeled.manifest.num_rows
    filtered = open_dataset(out / "datasets" / "synth-filtered")
    assert filtered.manifest.parents == (synth.id,)
    bench = open_dataset(out / "datasets" / "benchmark-test")
    assert bench.manifest.kind == "benchmark" and set(bench.manifest.splits) == {"train", "val", "test"}
    assert (out / "contact-sheet.png").stat().st_size > 10_000
    filtered_dir = out / "datasets" / "synth-filtered"
    assert (filtered_dir / "README.md").read_text().startswith("---") and (filtered_dir / "report/index.html").exists()
    card = next(s for s in summary["stages"] if s["stage"] == "dataset card (plip card)")
    assert "caption phrases true against the ground truth" in card["note"] and "self-agreement" in card["note"]
    assert json.loads((filtered_dir / "report" / "stats.json").read_text())["ground_truth"]["rows"] > 0
    run = json.loads((out / "runs" / "plip" / "run.json").read_text())
    assert run["finished"] and run["datasets"][0]["id"] == filtered.id
    zero_shot = summary["zero_shot"]
    assert set(zero_shot) == {"baseline", "pretrained"} and "R1" in zero_shot["pretrained"]
    assert "beat the baseline" in summary["stages"][-2]["note"]  # says either way, plainly
    assert main(["demo", "--quick", "--out", str(out)]) == 2  # a finished demo is not overwritten
