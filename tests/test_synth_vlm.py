"""plip synth --captioner vlm:DIR: a vision-language model (tiny, random weights, built offline in the test) through
the same synthesis job as SPAC's captioner: the records, the instructions, the lineage, the card, determinism,
exactly-once after kill -9, and the errors users meet first."""
import importlib.util
import json
import sys

import pytest

from _fixtures import image_dataset_with_a_corrupt_file, kill_9_mid_job
from spac.vlm.random_model import write_random_vlm
from pipelines.cli import main
from spac.annotator import SynthConfig, load_models
from spac.vlm import load_instruction_templates, style_instruction
from synth_pedes import SLOTS, open_dataset, validate_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth-vlm")
    image_dataset_with_a_corrupt_file(root, identities=6, per_identity=3, seed=5, shard_size=8, broken=4)
    write_random_vlm(root / "vlm", "llava")
    return root


def _args(setup, out, *extra, model=None):
    return ["synth", "--data", str(setup / "images"), "--captioner", f"vlm:{model or setup / 'vlm'}", "--out",
            str(out), "--shard-size", "8", "--batch-size", "4", "--max-new-tokens", "12", *extra]


def test_a_vlm_writes_a_caption_dataset_with_its_instructions_and_lineage(setup, tmp_path, capsys):
    out = tmp_path / "a"
    assert main(_args(setup, out, "--workers", "0")) == 0
    assert "VLM captions" in capsys.readouterr().out
    assert validate_dataset(out).ok
    ds = open_dataset(out)
    captioner = ds.manifest.producer["captioner"]
    assert captioner["kind"] == "vlm" and captioner["model_type"] == "llava" and len(captioner["sha256"]) == 64
    assert ds.manifest.producer["config"]["captioner"] == f"vlm:{(setup / 'vlm').resolve()}"
    assert "vision-language model llava" in ds.manifest.description and ds.manifest.name == "folder-vlm"
    rows = list(ds.iter_records())
    assert len(rows) == 18 and sum(r["status"] == "error" for r in rows) == 1  # the corrupt file
    templates = load_instruction_templates()
    for row in (r for r in rows if r["status"] == "ok"):
        generated = [c for c in row["captions"] if c["kind"] == "generated"]
        assert [c["style"] for c in generated] == ["vlm-0", "vlm-1"] and all(isinstance(c["text"], str)
                                                                           for c in generated)
        assert [c["kind"] for c in row["captions"]].count("prompt") == 1
        assert set(row["attributes"]) == set(SLOTS)
        spac = json.loads(row["extra"])["spac"]
        assert spac["instructions"] == {f"vlm-{k}": style_instruction(k, row["key"], 0, templates) for k in range(2)}
        assert len(spac["faithfulness"]) == len(row["captions"])
    card = tmp_path / "card"
    assert main(["card", str(out), "--workers", "0", "--out", str(card)]) == 0
    assert "llava" in (card / "README.md").read_text()  # the lineage names the model that wrote the captions


def test_the_same_rows_after_kill_9_and_resume(setup, tmp_path):
    assert main(_args(setup, tmp_path / "ref", "--workers", "0")) == 0
    out = tmp_path / "killed"
    kill_9_mid_job([sys.executable, "-m", "pipelines.cli", *_args(setup, out, "--workers", "0")], out)
    assert main(_args(setup, out, "--workers", "0")) == 0
    ref, resumed = open_dataset(tmp_path / "ref"), open_dataset(out)
    assert resumed.id == ref.id and resumed.to_table().to_pylist() == ref.to_table().to_pylist()


def test_the_vlm_joins_the_recognizers_union_uncalibrated(setup):
    config = SynthConfig(captioner=f"vlm:{setup / 'vlm'}", recognizers=("oracle",))
    captioner, union = load_models(config)
    assert [m.name for m in union.members] == ["oracle", "captioner"] and union.members[1].captioner is captioner
    assert "vlm_styles" not in SynthConfig(captioner="runs/spac").to_dict()  # SPAC plans keep their fingerprint
    assert config.to_dict()["batch_size"] == 32  # a VLM's rows may depend on it in the last bits: recorded
    assert "batch_size" not in SynthConfig(captioner="runs/spac").to_dict()


def test_bad_vlm_inputs_are_named(setup, tmp_path, capsys):
    assert main(["synth", "--data", str(setup / "images"), "--captioner", f"vlm:{tmp_path}/none", "--out",
                 str(tmp_path / "a")]) == 2
    assert f"{tmp_path}/none" in capsys.readouterr().err
    broken = write_random_vlm(tmp_path / "broken", "llava")
    (broken / "chat_template.jinja").unlink()
    assert main(_args(setup, tmp_path / "t", "--workers", "0", model=broken)) == 2
    assert "no chat template" in capsys.readouterr().err and not (tmp_path / "t").exists()  # before any work
    calibration = tmp_path / "cal.json"
    calibration.write_text("{}")
    assert main(_args(setup, tmp_path / "b", "--workers", "0", "--recognizers", "oracle", "--calibration",
                      str(calibration))) == 2
    assert "uncalibrated" in capsys.readouterr().err
    assert main(_args(setup, tmp_path / "c", "--workers", "0", "--decoding", "beam")) == 2
    assert "greedy or nucleus" in capsys.readouterr().err
    if importlib.util.find_spec("vllm") is None:
        assert main(_args(setup, tmp_path / "d", "--workers", "0", "--engine", "vllm")) == 2
        assert "vLLM is not installed" in capsys.readouterr().err and not (tmp_path / "d").exists()


@pytest.mark.parametrize("family", ["qwen2_vl", "idefics3"])
def test_the_other_model_families_run_the_same_job(setup, tmp_path, family):
    """Qwen2-VL and SmolVLM (Idefics3) directories load through the same auto classes and write the same layout."""
    write_random_vlm(tmp_path / family, family)
    out = tmp_path / "out"
    assert main(_args(setup, out, "--workers", "0", "--vlm-styles", "3", model=tmp_path / family)) == 0
    ds = open_dataset(out)
    assert validate_dataset(out).ok and ds.manifest.producer["captioner"]["model_type"] == family
    ok = [r for r in ds.iter_records() if r["status"] == "ok"]
    assert len(ok) == 17 and all([c["style"] for c in r["captions"] if c["kind"] == "generated"]
                                 == ["vlm-0", "vlm-1", "vlm-2"] for r in ok)
