"""``plip finetune attributes`` (the Rethinking_of_PAR baseline) end to end on tiny configs: labels in the index and
the batches, the plateau schedule, the 4:3 image size with resized attention-pool positions, selection on val mA,
the one test report, exact resume and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipelines.cli import main as plip
from plip_runtime.runs import RunOptions
from plip_train.finetune.attributes import AttributesTrainer, finetune, make_config
from plip_train.finetune.par import par_metrics
from synth_pedes import open_dataset, write_dataset
from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record
from synth_pedes.procpedes.par_layout import PA100K_ATTRIBUTES, record_pa100k_labels

TINY = ["--batch-size", "16", "--set", "data.num_workers=0", "--set", "train.log_every=1"]


@pytest.fixture(scope="module")
def par(tmp_path_factory):
    """ProcPedes people with their PA-100K labels (and their captions, so plip train can pre-train on it too)."""
    config = ProcPedesConfig(identities=30, images_per_identity=4, seed=2, height=64, width=32)
    records = []
    for item in plan_items(config):
        record = render_record(item, config)
        record["attribute_labels"] = record_pa100k_labels(record)
        records.append(record)
    out = tmp_path_factory.mktemp("attributes") / "par"
    write_dataset(records, out, name="par", kind="benchmark", shard_rows=50, attribute_names=PA100K_ATTRIBUTES)
    return out


@pytest.fixture(scope="module")
def pretrained(par, tmp_path_factory):
    run = tmp_path_factory.mktemp("attributes") / "pretrain"
    assert plip(["train", "--data", str(par), "--out", str(run), "--config", "tiny", "--max-steps", "2"]) == 0
    return run


def _config(*overrides, steps=6, init_run=None):
    items = ["data.batch_size=16", "data.num_workers=0", f"train.max_steps={steps}", "train.log_every=1",
             "par.eval_every=0.4", *overrides]
    return make_config(init_run=init_run, init_config=None if init_run else "tiny", overrides=items)


def test_fine_tune_selects_on_val_ma_and_reports_test_once(par, pretrained, tmp_path, capsys):
    run = tmp_path / "ft"
    assert plip(["finetune", "attributes", "--init", str(pretrained), "--data", str(par), "--out", str(run),
                 "--max-steps", "6", "--set", "par.eval_every=0.4", *TINY]) == 0
    out = capsys.readouterr().out
    assert "validation step" in out and "mA" in out and "Rethinking_of_PAR baseline" in out
    info = json.loads((run / "run.json").read_text())
    cfg = info["config"]
    assert info["kind"] == "plip-attributes" and info["attributes"] == list(PA100K_ATTRIBUTES)
    assert cfg["model"]["image"]["image_size"] == [64, 64] and cfg["init"]["image_size"] == [64, 32]  # 4:3 -> 64x64
    optim = cfg["optim"]
    assert (optim["name"], optim["lr"], optim["weight_decay"], optim["schedule"], optim["patience"],
            optim["max_grad_norm"], cfg["train"]["epochs"]) == ("adam", 1e-4, 5e-4, "plateau", 4, 10.0, 30)
    res = json.loads((run / "results.json").read_text())
    assert res["task"] == "attributes" and res["test"]["split"] == "test"
    metrics = res["test"]["metrics"]
    assert set(metrics) == {"mA", "Acc", "Prec", "Rec", "F1"} and all(0 <= v <= 100 for v in metrics.values())
    per_attribute = res["test"]["per_attribute"]
    assert list(per_attribute) == list(PA100K_ATTRIBUTES)
    assert metrics["mA"] == pytest.approx(np.mean(list(per_attribute.values())), abs=0.01)
    history = res["checkpoint"]["validation"]
    assert len(history) >= 2 and {"mA", "F1", "loss"} <= set(history[0])
    best = max(history, key=lambda e: (e["mA"], e["step"]))
    assert res["checkpoint"]["selected_on"] == "val" and res["checkpoint"]["step"] == best["step"]
    # the report scored the selected checkpoint: recompute its test mA from its weights, independently of the report
    test = _independent_test_metrics(run, best["step"], par)
    assert metrics["mA"] == pytest.approx(100 * test["ma"], abs=0.01)
    assert metrics["F1"] == pytest.approx(100 * test["instance_f1"], abs=0.01)
    capsys.readouterr()
    assert plip(["eval", "--checkpoint", str(run), "--data", str(par)]) == 2  # retrieval cannot score it
    assert f"{run}/results.json" in capsys.readouterr().err


def _independent_test_metrics(run, step, data) -> dict:
    from plip_train.embed import load

    checkpoint = run / f"checkpoints/step-{step:06d}"
    embedder = load(run, checkpoint=checkpoint)
    head = load_file(str(checkpoint / "tasks.safetensors"))
    rows = [r for r in open_dataset(data).iter_records(["image", "attribute_labels", "split"], status="ok")
            if r["split"] == "test"]
    with torch.no_grad():
        x = embedder.preprocess([r["image"]["bytes"] for r in rows])
        features = embedder.model.encode_image(x)
        logits = features @ head["classifier.weight"].T + head["classifier.bias"]
    return par_metrics(logits.numpy(), np.array([r["attribute_labels"] for r in rows]), from_logits=True)


def test_labels_reach_the_batches_and_the_positions_are_resized(par, pretrained, tmp_path):
    trainer = AttributesTrainer(_config(steps=1, init_run=pretrained), par, tmp_path / "one")
    try:
        ds = open_dataset(par)
        want = {r["key"]: r["attribute_labels"] for r in ds.iter_records(["key", "attribute_labels", "split"],
                                                                          status="ok") if r["split"] == "train"}
        assert len(trainer.index) == len(want) and trainer.index.labels.shape == (len(want), 26)
        batch = next(iter(trainer.stream()))[0]
        assert batch["images"].shape[-2:] == (64, 64)
        assert batch["labels"].tolist() == [want[key] for key in batch["keys"]]
        ratio = trainer.tasks.positive_ratio.numpy()
        assert np.allclose(ratio, np.array(list(want.values())).mean(axis=0))
        init = load_file(str(pretrained / "checkpoints/step-000002/model.safetensors"))
        key = "image_tower.trunk.attnpool.positional_embedding"
        own = trainer.model.state_dict()
        assert init[key].shape[0] == 2 * 1 + 1 and own[key].shape[0] == 2 * 2 + 1  # 64x32 -> 64x64: 2x1 -> 2x2
        assert torch.equal(own[key][0], init[key][0])  # the mean token's position is kept
        assert torch.equal(own["image_tower.trunk.conv1.weight"], init["image_tower.trunk.conv1.weight"])
        assert not any(p.requires_grad for p in trainer.model.text_tower.parameters())
    finally:
        trainer.close()


def test_plateau_lowers_the_lr_after_patience_validations_without_progress():
    from plip_train.config import OptimConfig
    from plip_train.optim import build_scheduler, observe_validation_loss

    cfg = OptimConfig.from_dict({"name": "adam", "lr": 1.0, "betas": [0.9, 0.999], "schedule": "plateau",
                                 "patience": 2, "warmup": 0, "milestones": [], "gamma": 0.1})
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([param], lr=1.0)
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch=5)
    drops = [observe_validation_loss(scheduler, loss) for loss in (5.0, 4.0, 4.0, 4.1, 3.99999, 4.2)]
    assert drops == [False, False, False, False, True, False]  # 3 without a 1e-4 relative gain > patience 2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)  # at once, not one step later
    optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1)
    resumed = build_scheduler(cfg, torch.optim.Adam([param], lr=1.0), steps_per_epoch=5)
    resumed.load_state_dict(scheduler.state_dict())  # the plateau's state travels in the checkpoint
    assert resumed.lr_lambdas[0].reductions == 1 and resumed.lr_lambdas[0].best == 4.0
    with pytest.raises(ValueError, match="milestones.*must be empty with schedule 'plateau'"):
        OptimConfig.from_dict({"schedule": "plateau", "milestones": [10]})


def test_resume_reproduces_the_uninterrupted_fine_tune(par, tmp_path):
    cfg = _config(steps=6)
    full, full_doc = finetune(cfg, par, tmp_path / "full")
    first, doc = finetune(cfg, par, tmp_path / "cut", RunOptions(stop_after=3))
    assert doc is None
    rest, cut_doc = finetune(cfg, par, tmp_path / "cut", RunOptions(resume=True))
    assert [t["loss"] for t in first.losses + rest.losses] == [t["loss"] for t in full.losses]
    strip = (lambda history: [{k: v for k, v in e.items() if k != "seconds"} for e in history])
    assert strip(cut_doc["checkpoint"]["validation"]) == strip(full_doc["checkpoint"]["validation"])
    assert cut_doc["test"]["metrics"] == full_doc["test"]["metrics"]


def test_bad_inputs_are_named(par, tmp_path, capsys):
    base = ["finetune", "attributes", "--config", "tiny", "--max-steps", "1", *TINY]
    captions_only = tmp_path / "captions"
    assert plip(["render", "--out", str(captions_only), "--identities", "12", "--images-per-identity", "2",
                 "--height", "64", "--width", "32"]) == 0
    assert plip([*base, "--data", str(captions_only), "--out", str(tmp_path / "a")]) == 2
    assert "has no attribute labels" in capsys.readouterr().err
    assert plip([*base, "--data", str(par), "--out", str(tmp_path / "b"), "--select-on", "test"]) == 2
    assert "--select-on test would choose the checkpoint on the split it reports" in capsys.readouterr().err
    assert plip([*base, "--data", str(par), "--out", str(tmp_path / "c"), "--select-on", "dev"]) == 2
    err = capsys.readouterr().err
    assert "no 'dev' split" in err and "--select-on last" in err
    assert plip([*base, "--data", str(par), "--out", str(tmp_path / "d"), "--select-on", "train"]) == 2
    assert "the split the fine-tune trains on" in capsys.readouterr().err


def test_linear_probe_trains_the_layer_alone(par, tmp_path):
    trainer = AttributesTrainer(_config('par.protocol="linear-probe"', steps=2), par, tmp_path / "probe")
    try:
        tower = {k: v.clone() for k, v in trainer.model.image_tower.state_dict().items()}
        layer = trainer.tasks.classifier.weight.detach().clone()
        trainer.fit()
        assert all(torch.equal(v, trainer.model.image_tower.state_dict()[k]) for k, v in tower.items())  # BN too
        assert not torch.equal(layer, trainer.tasks.classifier.weight.detach())
    finally:
        trainer.close()


def test_two_gloo_ranks_match_one_process_and_share_the_plateau(par, tmp_path):
    """DDP: two ranks of 8 reproduce one process of 16 (the BCE is a batch mean), the main rank validates, and
    the plateau's decision reaches both ranks (else their learning rates, and so their weights, would part)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    # a learning rate so high that the validation loss rises after step 2: with patience 0 the lr drops then, and
    # at every later validation; a rank that missed a drop would train at 10x the other's and part from it
    exact = ["model.image.norm=\"group\"", "par.eval_every=0.2", "optim.patience=0", "optim.lr=1e-2",
             "data.num_workers=0", "train.log_every=1"]
    args = ["finetune", "attributes", "--config", "tiny", "--data", str(par), "--max-steps", "4", "--batch-size",
            "16", *sum((["--set", s] for s in exact), [])]
    assert plip([*args, "--out", str(tmp_path / "single")]) == 0
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
           "-m", "pipelines.cli", *args, "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = [json.loads(x) for x in (tmp_path / "single/metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "ddp/metrics.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):  # (at this lr, the two reduction orders part by ~3e-4 from the second step on)
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-3) and b["lr"] == pytest.approx(a["lr"])
    history_one = json.loads((tmp_path / "single/results.json").read_text())["checkpoint"]["validation"]
    history_two = json.loads((tmp_path / "ddp/results.json").read_text())["checkpoint"]["validation"]
    assert [h["step"] for h in history_two] == [h["step"] for h in history_one]
    assert [e["lr"] for e in one] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-4])  # validations after every step
