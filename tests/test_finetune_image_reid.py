"""``plip finetune image-reid`` (BoT) end to end on tiny configs: the BNNeck model, the centers' own optimizer,
the augmentations, exact resume, the one query-vs-gallery report (with re-ranking), and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipelines.cli import main as plip
from plip_runtime.runs import RunOptions
from plip_train.data import ImageAugment
from plip_train.finetune.image_reid import ImageReidTrainer, finetune, make_config

TINY = ["--batch-size", "16", "--set", "data.num_workers=0", "--set", "train.log_every=1"]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("image-reid")
    assert plip(["render", "--out", str(root / "raw"), "--format", "market1501", "--identities", "30",
                 "--images-per-identity", "6", "--height", "64", "--width", "32", "--seed", "3"]) == 0
    assert plip(["import", "market1501", str(root / "raw"), "--out", str(root / "market"), "--workers", "0"]) == 0
    return root / "market"


def _config(*overrides, steps=4):
    return make_config(init_config="tiny", overrides=["data.batch_size=16", "data.num_workers=0",
                                                      f"train.max_steps={steps}", "train.log_every=1", *overrides])


def test_bot_fine_tune_reports_query_vs_gallery_once(market, tmp_path, capsys):
    run = tmp_path / "bot"
    assert plip(["finetune", "image-reid", "--config", "tiny", "--data", str(market), "--out", str(run),
                 "--max-steps", "4", "--rerank", *TINY]) == 0
    assert "re-ranked" in capsys.readouterr().out
    info = json.loads((run / "run.json").read_text())
    cfg = info["config"]
    assert info["kind"] == "plip-image-reid" and info["classes"] == 24  # Market-style train identities
    assert cfg["model"]["projection"] == "bnneck" and cfg["reid"]["margin"] == 0.3
    assert (cfg["optim"]["name"], cfg["optim"]["lr"], cfg["optim"]["milestones"], cfg["data"]["images_per_identity"]) \
        == ("adam", 3.5e-4, [40, 70], 4)
    res = json.loads((run / "results.json").read_text())
    assert res["task"] == "image-reid" and res["test"]["split"] == "query+gallery"
    assert res["test"]["direction"] == "i2i" and set(res["test"]["metrics_reranked"]) >= {"R1", "mAP"}
    assert res["checkpoint"]["step"] == 4 and res["checkpoint"]["selected_on"] is None
    weights = load_file(str(run / "checkpoints/step-000004/model.safetensors"))
    assert {"image_projection.weight", "image_projection.running_mean"} <= set(weights)
    assert torch.equal(weights["image_projection.bias"], torch.zeros_like(weights["image_projection.bias"]))  # frozen
    heads = load_file(str(run / "checkpoints/step-000004/tasks.safetensors"))
    assert tuple(heads["classifier.weight"].shape) == (24, 32) and tuple(heads["center.centers"].shape) == (24, 32)
    # plip eval loads the fine-tuned model (the post-BNNeck feature) and re-ranks the same way
    out = tmp_path / "eval.json"
    assert plip(["eval", "--checkpoint", str(run), "--data", str(market), "--rerank", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["metrics"]["i2i"]["mAP"] == pytest.approx(res["test"]["metrics"]["mAP"])
    assert doc["metrics_reranked"]["mAP"] == pytest.approx(res["test"]["metrics_reranked"]["mAP"])


def test_the_centers_train_by_their_own_sgd_and_the_text_tower_is_frozen(market, tmp_path):
    trainer = ImageReidTrainer(_config(steps=1), market, tmp_path / "one")
    try:
        main_params = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
        centers = trainer.tasks.center.centers
        assert id(centers) not in main_params and id(trainer.tasks.classifier.weight) in main_params
        assert not any(id(p) in main_params for p in trainer.model.text_tower.parameters())
        assert trainer.center_optimizer.param_groups[0]["lr"] == 0.5
        before = centers.detach().clone()
        text_before = {k: v.clone() for k, v in trainer.model.text_tower.state_dict().items()}
        trainer.fit()
        assert not torch.equal(before, centers.detach())
        assert all(torch.equal(v, trainer.model.text_tower.state_dict()[k]) for k, v in text_before.items())
    finally:
        trainer.close()


def test_resume_reproduces_the_uninterrupted_run(market, tmp_path):
    cfg = _config(steps=4)
    full, _ = finetune(cfg, market, tmp_path / "full")
    first, doc = finetune(cfg, market, tmp_path / "cut", RunOptions(stop_after=2))
    assert doc is None
    rest, _ = finetune(cfg, market, tmp_path / "cut", RunOptions(resume=True))
    assert [t["loss"] for t in first.losses + rest.losses] == [t["loss"] for t in full.losses]
    a = load_file(str(tmp_path / "full/checkpoints/step-000004/tasks.safetensors"))
    b = load_file(str(tmp_path / "cut/checkpoints/step-000004/tasks.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bot_augmentations_are_seeded_and_shaped():
    image = np.random.default_rng(0).normal(size=(3, 64, 32)).astype(np.float32)
    augment = ImageAugment(pad=10, erasing=1.0)
    one = augment(image, np.random.default_rng(5))
    assert one.shape == image.shape and np.array_equal(one, augment(image, np.random.default_rng(5)))
    assert not np.array_equal(one, augment(image, np.random.default_rng(6)))
    erased = np.isclose(one, np.asarray(augment.fill, np.float32)[:, None, None]).all(axis=0)
    assert 0.02 * 64 * 32 * 0.5 <= erased.sum() <= 0.4 * 64 * 32 * 1.2  # one rectangle of 2-40 % of the area
    shifted = ImageAugment(pad=10, erasing=0.0)(image, np.random.default_rng(1))
    zero_rows = (shifted == 0).all(axis=(0, 2)).sum() + (shifted == 0).all(axis=(0, 1)).sum()
    assert shifted.shape == image.shape and zero_rows > 0  # the crop reached into the zero padding


def test_a_text_benchmark_is_refused_with_the_fix(tmp_path, capsys):
    bench = tmp_path / "text"
    assert plip(["render", "--out", str(bench), "--identities", "10", "--images-per-identity", "2", "--height", "64",
                 "--width", "32"]) == 0
    assert plip(["finetune", "image-reid", "--config", "tiny", "--data", str(bench), "--out", str(tmp_path / "r"),
                 *TINY]) == 2
    err = capsys.readouterr().err
    assert "no query and gallery splits" in err and "plip import market1501" in err
