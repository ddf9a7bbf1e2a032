"""Progress in a log (not a terminal): a flushed line every PLIP_PROGRESS_INTERVAL seconds with done/total, rows
or samples per second and the ETA, one at the end; resumed work counts as done but not as throughput."""
import io
import json

import pytest

from pipelines.progress import ShardProgress
from plip_runtime.metrics import MetricLogger
from plip_runtime.progress import INTERVAL_ENV, Progress, progress_interval
from synth_pedes.writer import ShardStats


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _stats(index: int, rows: int, skipped: bool = False) -> ShardStats:
    return ShardStats(index=index, rows=rows, bytes=1, status_counts={"ok": rows}, skipped=skipped)


def test_shard_progress_writes_a_line_per_interval_to_a_log_counting_rows():
    log, clock = io.StringIO(), FakeClock()
    progress = ShardProgress("synth", stream=log, clock=clock, interval=30)
    progress(_stats(0, 100, skipped=True), 1, 6)  # resumed: done, but not throughput
    for i, t in enumerate((10, 20, 40), 1):
        clock.now = 1000 + t
        progress(_stats(i, 100), i + 1, 6)
    lines = log.getvalue().splitlines()
    assert lines == ["synth: 4/6 shards (67%), 400 rows, errors 0, 7.5 rows/s, elapsed 40 s, ETA 27 s"]
    clock.now = 1050
    progress(_stats(4, 100), 5, 6)  # 10 s after the last line: none
    progress(_stats(5, 50), 6, 6)
    progress.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[1] == "synth: 6/6 shards (100%), 550 rows, errors 0, 9.0 rows/s, elapsed 50 s"
    assert not progress.already_complete and progress.skipped == 1 and progress.rows == 550


def test_nothing_is_printed_when_the_job_had_nothing_to_do_or_progress_is_off():
    log = io.StringIO()
    progress = ShardProgress("synth", stream=log, interval=0.001)
    progress.close()
    assert progress.already_complete and log.getvalue() == ""
    quiet = Progress("x", 3, unit="step", show=False, stream=log, interval=0.001)
    quiet.update(3)
    quiet.close()
    assert log.getvalue() == ""


def test_the_interval_comes_from_the_environment_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert progress_interval() == 30
    monkeypatch.setenv(INTERVAL_ENV, "5")
    assert progress_interval() == 5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv(INTERVAL_ENV, bad)
        with pytest.raises(ValueError, match=f"{INTERVAL_ENV}='{bad}'.*e.g. 60"):
            ShardProgress("synth")  # before the job starts


def test_training_logs_progress_lines_with_steps_losses_and_samples_per_second(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(INTERVAL_ENV, "1e-9")  # a line at every step
    logger = MetricLogger(tmp_path, enabled=True, every=2, start=0, end=4, name="plip-pretrain")
    for step in range(4):
        logger.log(step, {"loss": float(4 - step), "tic_loss": 1.0}, lr=0.1, samples=8)
    logger.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and "tic_loss" not in lines[0]  # the total only; the end is not said twice
    assert lines[0].startswith("plip-pretrain: 1/4 steps (25%), 8 samples, loss 4, ") and "samples/s" in lines[0]
    assert "ETA" in lines[0] and lines[-1].startswith("plip-pretrain: 4/4 steps (100%), 32 samples, loss 1.5, ")
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["mean_of_steps"], r["loss"]) for r in records] == [(1, 1, 4.0), (2, 1, 3.0), (4, 2, 1.5)]


def test_the_demo_log_gets_each_commands_output_and_progress_as_it_happens(tmp_path):
    """Issue 19: demo.log stayed empty for 12 minutes while five stages finished (block-buffered, and the
    commands' progress went to the terminal)."""
    from pipelines.demo import DemoContext, cli, open_log

    with open_log(tmp_path / "demo.log") as log:
        ctx = DemoContext(out=tmp_path, quick=True, workers=0, log=log)
        cli(ctx, "render", "--out", tmp_path / "pp", "--identities", "2", "--images-per-identity", "2",
            "--workers", "0")
        text = (tmp_path / "demo.log").read_text()  # before the log is closed
    assert text.startswith("$ plip render --out") and "render: 1/1 shards (100%), 4 rows" in text
    assert "rendered ProcPedes" in text


def test_the_demo_flushes_each_stage_line_as_it_happens(tmp_path, monkeypatch):
    """In a batch job stdout is a file: Python held the demo's stage lines until the end."""
    import sys

    import pipelines.demo as demo

    class Stdout(io.StringIO):
        flushed: list = []

        def flush(self):
            self.flushed.append(self.getvalue())

    monkeypatch.setattr(demo, "STAGES", [("one stage", lambda ctx: {"output": "o", "rows": 0})])
    monkeypatch.setattr(sys, "stdout", Stdout())
    demo.run_demo(tmp_path, workers=0)
    assert any(text.endswith("[1/1] one stage ...\n") for text in sys.stdout.flushed)
