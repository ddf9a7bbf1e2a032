"""plip_runtime: the one device/precision choice, the one config style, and the run machinery every trainer uses
(exercised end to end by the trainers' own tests; here each piece alone, with its error messages)."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from plip_runtime.config import ConfigBase, ConfigError, apply_override
from plip_runtime.device import PRECISIONS, autocast, resolve_device, resolve_precision
from plip_runtime.runs import (Run, RunOptions, TrainArgs, complete_checkpoints, config_diff, read_run_file,
                               resolve_checkpoint, rng_state, set_rng_state, write_checkpoint)
from plip_runtime.version import code_version


@dataclass
class _Section(ConfigBase):
    where = "inner"
    size: int = 3

    def validate(self) -> None:
        self.require_int("size", 1)


@dataclass
class _Config(ConfigBase):
    name: str = "x"
    rate: float | None = 0.5
    inner: _Section = field(default_factory=lambda: _Section(size=4))

    def validate(self) -> None:
        self.require_number("rate", 0.0, 1.0, optional=True)


def test_configs_validate_on_construction_and_replace_is_dataclasses_replace():
    cfg = _Config()
    assert cfg.replace(rate=None).rate is None  # None is a value, not "keep the old one"
    with pytest.raises(ConfigError, match=r"_Config\.rate: must be a number in \[0\.0, 1\.0\] or null, got 2"):
        cfg.replace(rate=2)
    with pytest.raises(ConfigError, match=r"inner\.size: must be an integer >= 1, got 0"):
        _Config.from_dict({"inner": {"size": 0}})
    assert _Config.from_dict({"inner": {}, "_comment": "ignored"}).inner.size == 4  # the section's own default
    with pytest.raises(ConfigError, match=r"cfg\.json: _Config: unknown field\(s\) \['rte'\]; the fields are"):
        _Config.from_dict({"rte": 1}, "cfg.json")
    assert _Config.from_dict(cfg.to_dict()) == cfg
    doc = apply_override(cfg.to_dict(), "inner.size=7")
    assert _Config.from_dict(apply_override(doc, "rate=null")) == _Config(rate=None, inner=_Section(7))
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_override({}, "inner.size")
    with pytest.raises(ConfigError, match="rate is a value, not a section"):
        apply_override({"rate": 1}, "rate.x=1")


def test_one_device_and_precision_choice():
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(None).type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            resolve_device("cuda")
        assert resolve_precision("auto", "cuda") == "fp32"  # a device this machine cannot see: the safe choice
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("tpu:x")
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16")
    assert resolve_precision("auto", "cpu") in ("bf16", "fp32") and resolve_precision("fp16", "cpu") == "fp16"
    with pytest.raises(ValueError, match="precision 'half' is not one of auto, fp32, bf16, fp16"):
        resolve_precision("half", "cpu")
    x = torch.randn(4, 4)
    with autocast("cpu", "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert (x @ x).dtype == torch.float32


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(2), random.random(), np.random.rand())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(again[0], expected[0]) and again[1:] == expected[1:]


def test_checkpoints_are_atomic_kept_and_found(tmp_path):
    run = tmp_path / "run"

    def weights(directory):  # a whole safetensors file: resolve_checkpoint refuses a truncated one
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(1)}, str(directory / "model.safetensors"))

    for step in (1, 2, 3):
        write_checkpoint(run, step, None, weights, {"step": step}, keep=2)
    (run / "checkpoints" / "step-000009").mkdir()  # no state.json: an interrupted write, never "latest"
    assert [p.name for p in complete_checkpoints(run)] == ["step-000002", "step-000003"]
    with pytest.raises(FileNotFoundError, match="no run.json"):
        resolve_checkpoint(run)
    assert resolve_checkpoint(run / "checkpoints" / "step-000003") == (None, run / "checkpoints" / "step-000003")
    (run / "run.json").write_text(json.dumps({"format": "plip-run/1", "dataset": {"id": "sha256:x"}}))
    assert resolve_checkpoint(run) == (run, run / "checkpoints" / "step-000003")
    assert resolve_checkpoint(run, 2)[1].name == "step-000002"
    assert read_run_file(run)["datasets"] == [{"id": "sha256:x"}]  # the first format's one dataset, as a list


def test_config_diff_names_every_field_that_differs():
    assert config_diff({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 5}}) == [("b.c", 2, 5), ("b.d", 3, None)]


def _run(tmp_path, train: TrainArgs, **options) -> Run:
    return Run(tmp_path / "run", kind="test", config={"lr": 1, "train": train.to_dict()}, train=train,
               options=RunOptions(**options), device=torch.device("cpu"))


def test_a_truncated_trainer_state_is_named_on_resume(tmp_path):
    train = TrainArgs(max_steps=2, checkpoint_every=2)
    run = _run(tmp_path, train, progress=False)
    run.plan(10, [{"id": "sha256:d"}])
    run.save(2, lambda d, s: (d / "model.safetensors").write_bytes(b"w"), {"rng": [rng_state()]})
    state = tmp_path / "run" / "checkpoints" / "step-000002" / "trainer.pt"
    state.write_bytes(state.read_bytes()[:100])  # a copy that stopped part-way
    with pytest.raises(ValueError, match=rf"{state}: a truncated or corrupt trainer state \(.*\); delete this "
                                         "checkpoint directory to resume from the one before it"):
        _run(tmp_path, train, resume=True)


def test_a_run_resumes_extends_and_refuses_with_reasons(tmp_path):
    train = TrainArgs(max_steps=4, checkpoint_every=2)
    run = _run(tmp_path, train, progress=False)
    run.plan(10, [{"id": "sha256:d"}])
    assert (run.start_step, run.end_step, run.total_steps) == (0, 4, 4)
    for step in range(4):
        run.log(step, {"loss": float(step)}, 0.1, 8)
        if run.checkpoint_due(step + 1):
            run.save(step + 1, lambda d, s: (d / "model.safetensors").write_bytes(b"w"), {"rng": [rng_state()]})
    run.finish(lambda d, s: (d / "model.safetensors").write_bytes(b"w"), {"rng": [rng_state()]})
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["finished"] and info["step"] == 4 and info["kind"] == "test" and info["datasets"] == [{"id": "sha256:d"}]
    assert info["code"]["package"] == code_version()["package"] and info["precision"] in ("bf16", "fp32")
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 4]  # log_every 10: the first and the last step
    assert lines[1]["loss"] == 2.0  # the mean over the steps since the previous line (1, 2, 3)
    with pytest.raises(ValueError, match="already holds a training run; pass --resume"):
        _run(tmp_path, train)
    longer = Run(tmp_path / "run", kind="test", config={"lr": 1, "train": train.replace(max_steps=6).to_dict()},
                 train=train.replace(max_steps=6), options=RunOptions(resume=True, progress=False),
                 device=torch.device("cpu"))
    assert longer.start_step == 4 and longer.resume_from.name == "step-000004"
    with pytest.raises(ValueError, match=r"other data"):
        longer.plan(10, [{"id": "sha256:other"}])
    with pytest.raises(ValueError, match=r"different budget \(train\.max_steps 4 in the run, 6 now\): the schedule"):
        Run(tmp_path / "run", kind="test", config={"lr": 1, "train": train.replace(max_steps=6).to_dict()},
            train=train.replace(max_steps=6), options=RunOptions(resume=True), device=torch.device("cpu"),
            extendable="the schedule spans the budget")
    with pytest.raises(ValueError, match=r"different configuration \(lr 1 in the run, 2 now\)"):
        Run(tmp_path / "run", kind="test", config={"lr": 2, "train": train.to_dict()}, train=train,
            options=RunOptions(resume=True), device=torch.device("cpu"))
    with pytest.raises(ValueError, match="holds a test run, not a other run"):
        Run(tmp_path / "run", kind="other", config={}, train=train, options=RunOptions(resume=True),
            device=torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"options\.stop_after: must be an integer >= 1"):
        RunOptions(stop_after=0)


def test_a_trainers_summary_says_which_loss_each_figure_is(tmp_path):
    """Issue 19: the summary's 'final loss' (the last step), metrics.jsonl's means and summary.json's first ->
    last were three unlabelled figures."""
    train = TrainArgs(max_steps=6, log_every=3)
    run = _run(tmp_path, train, progress=False)
    run.plan(10, [{"id": "sha256:d"}])
    losses = [{"loss": float(step), "caption_loss": step / 2} for step in range(6)]
    for step, terms in enumerate(losses):
        run.log(step, terms, 0.1, 8)
    checkpoint = run.finish(lambda d, s: (d / "model.safetensors").write_bytes(b"w"), {"rng": [rng_state()]})
    assert run.result(losses, checkpoint).loss_rows() == [("loss at the last step", "5.0000 (caption_loss 2.5)"),
                                                          ("loss, mean of the last 3 steps", "4.0000 (caption_loss 2)")]
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(x["step"], x["mean_of_steps"], x["loss"]) for x in lines] == [(1, 1, 0.0), (3, 2, 1.5), (6, 3, 4.0)]
