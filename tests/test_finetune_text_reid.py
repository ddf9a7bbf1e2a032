"""``plip finetune text-reid`` end to end on tiny configs: validation selection, the one test report, exact resume
(also after kill -9), few-shot subsets, the linear probe, domain generalisation via plip eval, and bad inputs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipelines.cli import main as plip
from plip_runtime.runs import RunOptions
from plip_train.finetune.text_reid import finetune, make_config

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--batch-size", "8", "--set", "data.num_workers=0", "--set", "train.log_every=1"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A ProcPedes benchmark with train / val / test identities and two caption styles per image."""
    out = tmp_path_factory.mktemp("finetune") / "bench"
    assert plip(["render", "--out", str(out), "--identities", "24", "--images-per-identity", "3", "--height", "64",
                 "--width", "32", "--seed", "0"]) == 0
    return out


@pytest.fixture(scope="module")
def pretrained(bench, tmp_path_factory):
    run = tmp_path_factory.mktemp("finetune") / "pretrain"
    assert plip(["train", "--data", str(bench), "--out", str(run), "--config", "tiny", "--max-steps", "2"]) == 0
    return run


def _config(*overrides, steps=6, init_run=None):
    items = ["data.batch_size=8", "data.num_workers=0", f"train.max_steps={steps}", "train.log_every=1",
             "finetune.eval_every=0.13", *overrides]
    return make_config(init_run=init_run, init_config=None if init_run else "tiny", overrides=items)


def test_finetune_selects_on_val_and_reports_test_once(bench, pretrained, tmp_path, capsys):
    run = tmp_path / "ft"
    assert plip(["finetune", "text-reid", "--init", str(pretrained), "--data", str(bench), "--out", str(run),
                 "--max-steps", "6", "--set", "finetune.eval_every=0.13", "--set", "train.keep_checkpoints=1",
                 "--eval-data", str(bench), *TINY]) == 0
    out = capsys.readouterr().out
    assert out.count("validation step") == 3 and "test procpedes" in out
    info = json.loads((run / "run.json").read_text())
    cfg = info["config"]
    assert info["kind"] == "plip-text-reid" and info["classes"] == 20  # the train split's identities
    assert cfg["init"]["kind"] == "run" and cfg["init"]["source"] == str(pretrained)
    assert (cfg["optim"]["lr"], cfg["optim"]["weight_decay"], cfg["optim"]["head_lr_scale"],
            cfg["optim"]["warmup"], cfg["optim"]["milestones"], cfg["model"]["text"]["trainable_layers"]) == \
        (1e-4, 0.02, 10.0, 5, [20], "all")
    res = json.loads((run / "results.json").read_text())
    history = res["checkpoint"]["validation"]
    assert [h["step"] for h in history] == [2, 4, 6] and all(h["split"] == "val" for h in history)
    best = max(history, key=lambda h: (h["R1"], h["step"]))
    assert res["checkpoint"]["step"] == best["step"] == info["selected"]["step"]
    assert res["checkpoint"]["selected_on"] == "val"
    # the test split, reported for the selected checkpoint only, on the training benchmark and each --eval-data
    assert res["test"]["split"] == "test" and res["test"]["dataset"]["name"] == "procpedes-s0"
    assert len(res["eval_data"]) == 1 and res["eval_data"][0]["metrics"] == res["test"]["metrics"]
    assert res["train_data"]["id"] == info["datasets"][0]["id"] and res["init"]["source"] == str(pretrained)
    # the selected checkpoint outlives keep_checkpoints=1; plip eval loads it by default (domain generalisation)
    assert (run / info["selected"]["checkpoint"] / "model.safetensors").is_file()
    ev = tmp_path / "eval.json"
    assert plip(["eval", "--checkpoint", str(run), "--data", str(bench), "--split", "test", "--out", str(ev)]) == 0
    doc = json.loads(ev.read_text())
    assert doc["checkpoint"]["step"] == best["step"]
    assert doc["metrics"]["t2i"]["R1"] == pytest.approx(res["test"]["metrics"]["R1"])


def test_resume_reproduces_the_uninterrupted_fine_tune(bench, tmp_path):
    cfg = _config()
    full, full_doc = finetune(cfg, bench, tmp_path / "full")
    first, doc = finetune(cfg, bench, tmp_path / "cut", RunOptions(stop_after=3))
    assert doc is None and not first.finished and not (tmp_path / "cut/results.json").exists()
    rest, rest_doc = finetune(cfg, bench, tmp_path / "cut", RunOptions(resume=True))
    assert [t["loss"] for t in first.losses + rest.losses] == [t["loss"] for t in full.losses]
    assert rest_doc["checkpoint"]["validation"] == [
        {**h, "seconds": pytest.approx(h["seconds"], abs=1e9)} for h in full_doc["checkpoint"]["validation"]]
    assert rest_doc["test"]["metrics"] == full_doc["test"]["metrics"]
    a = load_file(str(tmp_path / "full/checkpoints/step-000006/model.safetensors"))
    b = load_file(str(tmp_path / "cut/checkpoints/step-000006/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_kill_9(bench, tmp_path):
    args = ["finetune", "text-reid", "--config", "tiny", "--data", str(bench), "--max-steps", "40",
            "--set", "finetune.eval_every=100", "--set", "train.checkpoint_every=2", *TINY]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "pipelines.cli", *args, "--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "killed/checkpoints/step-000004/state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "the fine-tune ended before its second checkpoint"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert plip([*args, "--out", str(tmp_path / "killed"), "--resume"]) == 0
    assert plip([*args, "--out", str(tmp_path / "whole")]) == 0
    killed = [json.loads(x) for x in (tmp_path / "killed/metrics.jsonl").read_text().splitlines()]
    whole = [json.loads(x) for x in (tmp_path / "whole/metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in killed] == list(range(1, 41))
    assert [x["loss"] for x in killed] == [x["loss"] for x in whole]


def test_few_shot_subsets_are_reproducible(bench, tmp_path):
    from synth_pedes import open_dataset

    def subset(name, *items):
        finetune(_config(*items, steps=1), bench, tmp_path / name)
        return (tmp_path / name / "subset.json").read_bytes()

    a = subset("a", "finetune.train_fraction=0.5", "finetune.fraction_seed=3")
    assert subset("b", "finetune.train_fraction=0.5", "finetune.fraction_seed=3") == a
    assert subset("c", "finetune.train_fraction=0.5", "finetune.fraction_seed=4") != a
    doc = json.loads(a)
    assert doc["dataset"]["id"] == open_dataset(bench).id and doc["split"] == "train"
    assert doc["counts"]["identities"] == 10 and doc["counts"]["of_identities"] == 20
    assert doc["counts"]["images"] == 30 and len(doc["images"]) == 30 and doc["of"] == "identities"
    info = json.loads((tmp_path / "a/run.json").read_text())
    assert info["classes"] == 10 and info["subset"]["images_sha256"] == doc["images_sha256"]
    per_image = json.loads(subset("d", "finetune.train_fraction=0.34", "finetune.fraction_of=\"images\""))
    assert per_image["counts"]["identities"] == 20 and per_image["counts"]["images"] == 20  # 1 of 3 per person


def test_linear_probe_trains_only_the_projections(bench, tmp_path):
    from plip_train.embed import from_config

    run = tmp_path / "probe"
    finetune(_config("finetune.protocol=\"linear-probe\"", "optim.lr=0.01", steps=4), bench, run)
    info = json.loads((run / "run.json").read_text())
    assert info["config"]["model"]["projection"] == "linear" and info["protocol"] == "linear-probe"
    after = load_file(str(run / "checkpoints/step-000004/model.safetensors"))
    before = from_config("tiny").model.state_dict()
    towers = [k for k in after if k.startswith(("image_tower.", "text_tower."))]
    assert towers and all(torch.equal(after[k], before[k].cpu()) for k in towers)  # frozen, BN statistics too
    eye = torch.eye(after["image_projection.weight"].shape[0])
    assert not torch.equal(after["image_projection.weight"], eye)
    assert not torch.equal(after["text_projection.weight"], eye)


def test_cross_style_training_reads_one_style(bench, tmp_path):
    finetune(_config("finetune.caption_styles=[\"cuhk-pedes\"]", steps=1), bench, tmp_path / "style")
    info = json.loads((tmp_path / "style/run.json").read_text())
    assert info["training_pairs"] == 60  # one caption of this style per training image (two captions in all)


def test_bad_inputs_are_named(bench, pretrained, tmp_path, capsys):
    # a benchmark without a validation split (ICFG-PEDES has train and test only)
    from synth_pedes import write_dataset
    from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record

    proc = ProcPedesConfig(identities=24, images_per_identity=3, height=64, width=32, seed=0)
    rows = [r for r in (render_record(it, proc) for it in plan_items(proc)) if r["split"] != "val"]
    icfg = tmp_path / "icfg"
    write_dataset(rows, icfg, name="no-val", kind="benchmark", shard_rows=32)
    base = ["finetune", "text-reid", "--config", "tiny", "--max-steps", "1", *TINY]
    assert plip([*base, "--data", str(icfg), "--out", str(tmp_path / "a")]) == 2
    assert "no 'val' split" in capsys.readouterr().err
    assert plip([*base, "--data", str(icfg), "--out", str(tmp_path / "b"), "--select-on", "last"]) == 0
    res = json.loads((tmp_path / "b/results.json").read_text())
    assert res["checkpoint"]["selected_on"] is None and res["checkpoint"]["step"] == 1
    # selecting on test is refused; two initialisations, or none
    assert plip([*base, "--data", str(bench), "--out", str(tmp_path / "c"), "--select-on", "test"]) == 2
    assert "--select-on test would choose the checkpoint on the split it reports" in capsys.readouterr().err
    assert plip([*base, "--init", str(pretrained), "--data", str(bench), "--out", str(tmp_path / "d")]) == 2
    assert "one initialisation" in capsys.readouterr().err
    # a run of another trainer as --init
    spac_like = tmp_path / "spac"
    spac_like.mkdir()
    (spac_like / "run.json").write_text(json.dumps({"format": "plip-run/2", "kind": "spac-captioner",
                                                    "config": {}, "datasets": []}))
    assert plip(["finetune", "text-reid", "--init", str(spac_like), "--data", str(bench),
                 "--out", str(tmp_path / "e")]) == 2
    assert "is a SPAC captioner run, not a PLIP run: pass a PLIP run (plip train, plip convert official or plip " \
           "finetune) to --init" in capsys.readouterr().err


def test_two_gloo_ranks_match_one_process_with_validation(bench, tmp_path):
    """DDP: the embeddings are gathered, so two ranks of 4 reproduce one process of 8; the main rank validates while
    the other waits, and both finish with the same selected checkpoint and one results.json."""
    exact = ["model.image.norm=\"group\"", "model.text.bert.hidden_dropout_prob=0.0",
             "model.text.bert.attention_probs_dropout_prob=0.0", "finetune.eval_every=0.13", "data.num_workers=0", "train.log_every=1"]
    sets = sum((["--set", s] for s in exact), [])
    # 3 steps, as the pre-training test: further on, Adan's lr-sized moves of parameters with no true gradient (the
    # attention pool's key bias) differ between the two reduction orders and reach the loss
    args = ["finetune", "text-reid", "--config", "tiny", "--data", str(bench), "--max-steps", "3", "--batch-size", "8",
            *sets]
    assert plip([*args, "--out", str(tmp_path / "single")]) == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "pipelines.cli", *args, "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = [json.loads(x) for x in (tmp_path / "single/metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "ddp/metrics.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        for k in ("loss", "cmpm_loss", "cmpc_loss"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (a["step"], k)
    res_one = json.loads((tmp_path / "single/results.json").read_text())
    res_two = json.loads((tmp_path / "ddp/results.json").read_text())
    assert [h["step"] for h in res_two["checkpoint"]["validation"]] == [2, 3]
    assert res_two["checkpoint"]["step"] == res_one["checkpoint"]["step"]
