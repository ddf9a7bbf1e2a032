"""The pre-training loop end to end on a tiny config: CLI, run directory, exact resume, DDP equivalence,
and the bad inputs the trainer must name (no identities, mismatched checkpoint, non-finite loss)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from synth_pedes import open_dataset, write_dataset
from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record
from pipelines.cli import main as plip
from plip_train.config import load_config
from plip_runtime.runs import RunOptions
from plip_train.trainer import train

PROC = ProcPedesConfig(identities=10, images_per_identity=4, height=64, width=32, seed=5)
ROOT = Path(__file__).resolve().parent.parent
# batch-independent normalisation and no dropout: the DDP comparison needs identical math per sample
EXACT = ["model.image.norm=\"group\"", "model.text.bert.hidden_dropout_prob=0.0",
         "model.text.bert.attention_probs_dropout_prob=0.0"]


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    out = tmp_path_factory.mktemp("plip-train") / "captions"
    records = [render_record(it, PROC) for it in plan_items(PROC)]
    write_dataset(records, out, name="plip-train-test", kind="captions", shard_rows=12)
    return out


def _tiny(*overrides, steps=6):
    return load_config("tiny", ["data.split=null", f"train.max_steps={steps}", "train.checkpoint_every=3",
                                *overrides])


def test_every_shipped_training_config_loads_and_round_trips():
    from plip_train.config import PlipConfig, list_configs

    assert {"paper-rn50-bert", "cpu-small", "tiny"} <= set(list_configs())
    for name in list_configs():
        cfg = load_config(name)
        assert PlipConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
        assert cfg.data.batch_size % cfg.data.images_per_identity == 0
    paper = load_config("paper-rn50-bert")
    o = paper.optim
    assert (o.name, o.lr, o.text_lr_scale, o.warmup, o.milestones, paper.train.epochs) == ("adan", 2e-3, 0.1, 10,
                                                                                         [30, 50], 70)
    assert (paper.tasks.tic.weight, paper.tasks.iap.weight, paper.data.batch_size) == (0.02, 0.1, 512)
    with pytest.raises(ValueError, match=r"data: unknown field\(s\) \[.batchsize.\]"):
        load_config("tiny", ["data.batchsize=4"])


def test_cli_trains_and_writes_a_complete_run(captions, tmp_path, capsys):
    run = tmp_path / "run"
    assert plip(["train", "--data", str(captions), "--out", str(run), "--config", "tiny", "--max-steps", "4",
                 "--set", "data.split=null"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["step"] == 4 and info["finished"] and info["datasets"][0]["id"] == open_dataset(captions).id
    assert info["kind"] == "plip-pretrain" and info["format"] == "plip-run/2"
    assert info["config"]["name"] == "tiny" and info["code"]["package"]
    ckpt = run / info["checkpoint"]
    assert (ckpt / "model.safetensors").exists() and (ckpt / "tasks.safetensors").exists()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert {"loss", "ivlc_loss", "tic_loss", "iap_loss", "lr", "samples_per_s"} <= set(lines[0])
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    assert (run / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "checkpoint" in capsys.readouterr().out
    # a second run into the same directory without --resume is refused
    assert plip(["train", "--data", str(captions), "--out", str(run), "--config", "tiny", "--max-steps", "4",
                 "--set", "data.split=null"]) == 2


def test_resume_reproduces_the_uninterrupted_losses(captions, tmp_path):
    cfg = _tiny()
    full = train(cfg, captions, tmp_path / "full")
    first = train(cfg, captions, tmp_path / "cut", RunOptions(stop_after=3))
    assert len(first.losses) == 3 and not first.finished
    rest = train(cfg, captions, tmp_path / "cut", RunOptions(resume=True))
    assert len(rest.losses) == 3 and rest.finished
    got = [t["loss"] for t in first.losses + rest.losses]
    assert got == [t["loss"] for t in full.losses]  # bit for bit on CPU
    a = load_file(str(tmp_path / "full/checkpoints/step-000006/model.safetensors"))
    b = load_file(str(tmp_path / "cut/checkpoints/step-000006/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gradient_accumulation_and_captions_without_spans(captions, tmp_path, caplog):
    """Two micro-batches per step; and a dataset whose captions carry no spans trains IAP on random words,
    saying so once (tasks.iap.on_missing_spans="random-words")."""
    res = train(_tiny("train.grad_accum=2", steps=2), captions, tmp_path / "accum")
    assert res.steps == 2 and all(torch.isfinite(torch.tensor(t["loss"])) for t in res.losses)
    out = tmp_path / "nospans"
    records = [render_record(it, PROC) for it in plan_items(PROC)[:24]]
    for r in records:
        r["captions"] = [dict(c, spans=[]) for c in r["captions"]]
    write_dataset(records, out, name="nospans", kind="captions", shard_rows=12)
    with caplog.at_level("WARNING"):  # the run's tasks own the warning: shown once per run, whatever ran before
        res = train(_tiny(steps=2), out, tmp_path / "nospans-run")
    assert res.losses[0]["iap_fallback_captions"] == 8 and res.losses[0]["iap_masked_tokens"] > 0
    assert caplog.text.count("masking random words") == 1  # 16 captions without spans, one warning


def test_resume_refuses_a_different_config_and_extends_a_larger_budget(captions, tmp_path, capsys):
    train(_tiny(steps=2), captions, tmp_path / "r")
    with pytest.raises(ValueError, match=r"different configuration \(optim\.lr 0\.002 in the run, 0\.01 now\)"):
        train(_tiny("optim.lr=0.01", steps=2), captions, tmp_path / "r", RunOptions(resume=True))
    # plip train --max-steps 4, then --max-steps 8 --resume: trains on from step 4 (the most common way to train
    # longer); the IAP curriculum keeps the span it was planned with and stays at its final ratio
    run = tmp_path / "longer"
    argv = ["train", "--data", str(captions), "--out", str(run), "--config", "tiny", "--set", "data.split=null"]
    assert plip([*argv, "--max-steps", "4"]) == 0
    assert plip([*argv, "--max-steps", "8"]) == 2
    assert "pass --resume to continue it (or to train it longer)" in capsys.readouterr().err
    assert plip([*argv, "--max-steps", "8", "--resume"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["step"] == 8 and info["finished"] and info["config"]["train"]["max_steps"] == 8
    assert info["extensions"] == [{"at_step": 4, "changed": {"train.max_steps": [4, 8]}}]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 9))
    assert [x["iap_mask_ratio"] for x in lines[4:]] == [0.8] * 4  # steps 5-8: past the 4-step curriculum
    assert plip([*argv, "--max-steps", "8", "--resume"]) == 2
    assert "already holds 8 training steps, the whole budget of 8" in capsys.readouterr().err


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_on_the_same_global_batch(captions, tmp_path):
    steps = 3
    sets = sum((["--set", s] for s in [*EXACT, "data.split=null", "train.checkpoint_every=100"]), [])
    single = tmp_path / "single"
    assert plip(["train", "--data", str(captions), "--out", str(single), "--config", "tiny",
                 "--max-steps", str(steps), *sets]) == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29513",
           "-m", "pipelines.cli", "train", "--data", str(captions), "--out", str(tmp_path / "ddp"),
           "--config", "tiny", "--max-steps", str(steps), *sets]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = [json.loads(x) for x in (single / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "ddp/metrics.jsonl").read_text().splitlines()]
    for a, b in zip(one, two):
        for k in ("loss", "ivlc_loss", "tic_loss", "iap_loss"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (a["step"], k)
    # weights: equal up to float reduction order, except that Adan divides by sqrt(second moment), so a
    # parameter whose true gradient is 0 moves by lr-sized noise in both runs: the attention-pool key bias (adding
    # one vector to every key shifts each query's scores by a constant, which softmax ignores) is bounded by the
    # steps' lr, the rest compared closely, with a bound on the outliers instead of one tolerance for all
    wa = load_file(str(single / f"checkpoints/step-{steps:06d}/model.safetensors"))
    wb = load_file(str(tmp_path / f"ddp/checkpoints/step-{steps:06d}/model.safetensors"))
    zero_gradient = [k for k in wa if k.endswith("attnpool.k_proj.bias")]
    lr = json.loads((single / "run.json").read_text())["config"]["optim"]["lr"]
    assert zero_gradient and all((wa[k] - wb[k]).abs().max() < 2 * lr * steps for k in zero_gradient)
    diff = torch.cat([(wa[k] - wb[k]).abs().flatten() for k in wa if k not in zero_gradient])
    assert diff.max() < 1e-3 and (diff > 1e-5).float().mean() < 1e-3, (diff.max(), (diff > 1e-5).sum())


def test_dataset_without_identities_is_named(tmp_path):
    out = tmp_path / "noid"
    records = [dict(render_record(it, PROC), identity=-1) for it in plan_items(PROC)[:16]]
    write_dataset(records, out, name="noid", kind="captions", shard_rows=8)
    with pytest.raises(ValueError, match="IVLC in identity mode needs them.*tasks.ivlc.mode=instance"):
        train(_tiny(steps=1), out, tmp_path / "run")
    res = train(_tiny("tasks.ivlc.mode=\"instance\"", steps=1), out, tmp_path / "run2")
    assert res.steps == 1 and torch.isfinite(torch.tensor(res.losses[0]["loss"]))


def test_checkpoint_of_another_config_is_named(captions, tmp_path):
    from plip_train.checkpoint import load_module
    from plip_train.models import build_model

    train(_tiny(steps=1), captions, tmp_path / "r")
    other = build_model(load_config("tiny", ["model.embed_dim=48", "model.text.bert.hidden_size=48"]).model)
    with pytest.raises(ValueError, match="model.safetensors"):
        load_module(other, tmp_path / "r/checkpoints/step-000001/model.safetensors")


def test_non_finite_loss_stops_with_step_and_keys(captions, tmp_path):
    with pytest.raises(ValueError, match=r"non-finite loss at step 0.*batch keys: \[procpedes"):
        train(_tiny("optim.lr=1e30", "train.precision=\"fp32\"", "tasks.tic.weight=1e38", steps=3), captions,
              tmp_path / "nan")


def test_training_on_blank_captions_warns_naming_a_row(tmp_path, caplog):
    """Captions without text train nothing (IAP masks no token): a dataset of them trains with a warning per
    step that names a row, instead of in silence."""
    records = [render_record(it, PROC) for it in plan_items(PROC)]
    for record in records:
        record["captions"] = [dict(c, text=" " * i) for i, c in enumerate(record["captions"])]
    data = tmp_path / "blank"
    write_dataset(records, data, name="blank-captions", kind="captions", shard_rows=12)
    with caplog.at_level("WARNING", logger="plip_train.trainer"):
        train(_tiny(steps=2), data, tmp_path / "run", RunOptions(device="cpu", workers=0))
    warnings = [r.getMessage() for r in caplog.records if "have no text" in r.getMessage()]
    assert len(warnings) == 2 and "nothing to learn from" in warnings[0]
    assert warnings[0].split("(e.g. ")[1].split(")")[0] in {r["key"] for r in records}
