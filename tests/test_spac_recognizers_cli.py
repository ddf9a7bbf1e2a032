"""plip spac train-recognizer / eval-recognizer on a tiny rendered dataset (tiny config), and the bench suite."""
import json

import pytest

from pipelines import cli

TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": [64, 32], "layers": 1, "width": 64, "patch_size": 16},
             "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(autouse=True)
def spac_command(monkeypatch):
    """`plip spac` may not be registered in this checkout's command table yet: register it for the test."""
    if "spac" not in cli.COMMANDS:
        monkeypatch.setitem(cli.COMMANDS, "spac", ("pipelines.commands.spac", "SPAC"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "data"
    assert cli.main(["render", "--out", str(out), "--identities", "10", "--images-per-identity", "3", "--seed", "2",
                     "--height", "128", "--width", "64", "--workers", "0"]) == 0
    return out


def test_train_then_evaluate_a_tiny_classifier(data, tmp_path, capsys):
    from synth_pedes import open_dataset

    ck = tmp_path / "ckpt"
    assert cli.main(["spac", "train-recognizer", "--data", str(data), "--out", str(ck), "--config", "tiny",
                     "--max-steps", "3", "--batch-size", "8", "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "trained attribute classifier" in out and str(ck) in out
    cfg = json.loads((ck / "checkpoints" / "step-000003" / "config.json").read_text())
    ds_id = open_dataset(data).id
    assert cfg["config"]["backbone"] == "tiny" and cfg["data"][0]["id"] == ds_id and cfg["data"][0]["rows"] > 0
    assert cli.main(["spac", "eval-recognizer", "--checkpoint", str(ck), "--data", str(data), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "mA" in out and "vocab coverage" in out
    files = list(ck.glob("eval-test-*.json"))
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    assert doc["dataset"]["id"] == ds_id and doc["checkpoint"]["weights_sha256"].startswith("sha256:")
    assert doc["n"] == 3 and set(doc["metrics"]["slots"]) == {"person", "head", "upper", "lower", "shoes",
                                                              "belongings"}
    # the zero-shot recognizer through the same command, its candidates from the checkpoint's vocabulary
    clip_json = tmp_path / "clip.json"
    assert cli.main(["spac", "eval-recognizer", "--recognizer", "clip", "--checkpoint", str(ck), "--data", str(data),
                     "--recognizer-config", json.dumps({"model": TINY_CLIP}), "--out", str(clip_json)]) == 0
    assert json.loads(clip_json.read_text())["recognizer"]["name"] == "clip"


def test_oracle_evaluation_is_perfect_and_labels_from_attributes_train(data, tmp_path, capsys):
    out = tmp_path / "oracle.json"
    assert cli.main(["spac", "eval-recognizer", "--recognizer", "oracle", "--data", str(data), "--split", "all",
                     "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["n"] == 30 and doc["metrics"]["mean"]["accuracy"] == 100.0 and doc["metrics"]["mean"]["mA"] == 100.0
    ck = tmp_path / "attr"
    assert cli.main(["spac", "train-recognizer", "--data", str(data), "--out", str(ck), "--config", "tiny",
                     "--labels", "attributes", "--max-steps", "2", "--no-progress"]) == 0
    assert json.loads((ck / "run.json").read_text())["config"]["labels"] == "attributes"


def test_bad_input_exits_with_a_message(data, tmp_path, capsys):
    assert cli.main(["spac", "train-recognizer", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
                     "--config", "tiny"]) == 2
    assert "no such dataset directory" in capsys.readouterr().err
    assert cli.main(["spac", "train-recognizer", "--data", str(data), "--out", str(tmp_path / "o"),
                     "--config", "nope"]) == 2
    assert "neither a named config" in capsys.readouterr().err
    assert cli.main(["spac", "eval-recognizer", "--data", str(data)]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
    assert cli.main(["spac", "eval-recognizer", "--data", str(data), "--recognizer", "nope"]) == 2
    assert "unknown recognizer 'nope'" in capsys.readouterr().err
    assert cli.main(["spac", "train-recognizer", "--data", str(data), "--out", str(tmp_path / "o"), "--config", "tiny",
                     "--split", "nosuchsplit"]) == 2
    assert "no rows of split 'nosuchsplit'" in capsys.readouterr().err


def test_bench_suite_reports_fp32_and_bf16_throughput(tmp_path, monkeypatch):
    from pipelines.benchmarks import recognizer

    monkeypatch.setattr(recognizer, "CONFIG_OVERRIDES", {"backbone": "tiny", "pretrained": False, "image_height": 64,
                                                         "image_width": 32})
    res = recognizer.run(quick=True, workdir=tmp_path, images=8, repeats=1)
    metrics = {r["metric"]: r for r in res["rows"]}
    assert len(metrics) >= 2 and all(r["unit"] == "images/s" and r["value"] > 0 for r in res["rows"])
    assert any("bf16" in m for m in metrics) and any("fp32" in m for m in metrics)


def test_calibrate_the_union_then_synthesise_with_it(data, tmp_path, capsys):
    """plip spac calibrate fits the classifier + captioner union on the val split; plip synth --calibration uses
    it and records which member each slot's phrase came from."""
    from synth_pedes import open_dataset

    rec, cap = tmp_path / "rec", tmp_path / "cap"
    assert cli.main(["spac", "train-recognizer", "--data", str(data), "--out", str(rec), "--config", "tiny",
                     "--max-steps", "2", "--batch-size", "8", "--no-progress"]) == 0
    assert cli.main(["spac", "train", "--data", str(data), "--out", str(cap), "--config", "tiny", "--max-steps", "1",
                     "--no-progress"]) == 0
    calibration = tmp_path / "calibration.json"
    assert cli.main(["spac", "calibrate", "--captioner", str(cap), "--recognizers", f"classifier:{rec}", "--data",
                     str(data), "--split", "val", "--out", str(calibration)]) == 0
    out = capsys.readouterr().out
    assert "union" in out and "classifier" in out and "captioner" in out
    fitted = json.loads(calibration.read_text())
    assert set(fitted) == {"classifier", "captioner"} and all(len(ab) == 2 for m in fitted.values() for ab in m.values())

    synth = tmp_path / "synth"
    assert cli.main(["synth", "--images", str(data), "--captioner", str(cap), "--out", str(synth), "--recognizers",
                     f"classifier:{rec}", "--calibration", str(calibration), "--workers", "0", "--batch-size", "8"]) == 0
    rows = list(open_dataset(synth).iter_records(columns=["attributes", "extra", "captions"], status="ok"))
    assert rows
    for row in rows:
        spac = json.loads(row["extra"])["spac"]
        assert set(spac["attribute_sources"].values()) <= {"classifier", "captioner", "threshold"}
        assert len(spac["faithfulness"]) == len(row["captions"])

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"clip": {"upper": [1, 0]}}))
    assert cli.main(["synth", "--images", str(data), "--captioner", str(cap), "--out", str(tmp_path / "s2"),
                     "--recognizers", f"classifier:{rec}", "--calibration", str(bad), "--workers", "0"]) != 0
    assert "clip" in capsys.readouterr().err
