"""plip synth: SPAC over an image dataset as a Dask job (tiny random-init captioner: the mechanics, not quality)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _fixtures import image_dataset_with_a_corrupt_file, kill_9_mid_job, make_writable, write_tiny_captioner
from pipelines.cli import main
from spac.captioner import load_config
from spac.annotator import SynthConfig
from synth_pedes import SLOTS, open_dataset
from synth_pedes.card.faithfulness import captions_faithfulness
from plip_runtime.device import bf16_supported

DASK = str(Path(sys.executable).parent / "dask")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    image_dataset_with_a_corrupt_file(root, identities=12, per_identity=4, seed=3, shard_size=20, broken=5)
    write_tiny_captioner(root / "captioner")
    return root


def _synth(setup, out, *extra):
    return main(["synth", "--data", str(setup / "images"), "--captioner", str(setup / "captioner"), "--out",
                 str(out), "--shard-size", "16", "--batch-size", "8", *extra])


def test_synth_writes_a_caption_dataset_with_lineage_and_spans(setup, tmp_path, capsys):
    assert _synth(setup, tmp_path / "a", "--workers", "0") == 0
    assert "SPAC captions" in capsys.readouterr().out
    images, caps = open_dataset(setup / "images"), open_dataset(tmp_path / "a")
    assert caps.manifest.kind == "captions" and caps.manifest.parents == (images.id,)
    assert caps.manifest.producer["captioner"]["sha256"] and caps.manifest.producer["stage"] == "spac-synth"
    # the default precision "auto" is resolved on this machine and recorded
    assert caps.manifest.producer["config"]["precision"] == "fp32"  # auto on a CPU: fp32 (SynthConfig.resolved)
    rows = list(caps.iter_records())
    assert [r["key"] for r in rows] == [r["key"] for r in images.iter_records()]
    assert caps.manifest.status_counts == {"error": 1, "ok": 47}
    styles = load_config("tiny").styles
    for r in rows:
        if r["status"] != "ok":
            assert r["error"].startswith("corrupt image") and r["captions"] == []
            continue
        kinds = [c["kind"] for c in r["captions"]]
        assert kinds == ["generated"] * len(styles) + ["prompt"]
        assert set(r["attributes"]) == set(SLOTS)
        for c in r["captions"]:
            for s in c["spans"]:
                assert s["slot"] in SLOTS and 0 <= s["start"] < s["end"] <= len(c["text"])
        prompt = r["captions"][-1]
        assert prompt["spans"] or all(v == "unknown" for k, v in r["attributes"].items() if k != "person")
        scores = json.loads(r["extra"])["spac"]["faithfulness"]  # one per caption, against the final attributes
        assert scores == captions_faithfulness(r["captions"], r["attributes"])
        assert scores[-1] in (1.0, None)  # a prompt caption is filled from the attributes it is scored against


def test_an_input_manifest_listing_a_shard_twice_is_refused_before_any_work(setup, tmp_path, capsys):
    """Issue 18: a manifest listing one shard twice (id recomputed) gave a caption dataset with repeated keys."""
    import shutil

    from _fixtures import make_writable
    from synth_pedes.manifest import content_id

    images = tmp_path / "images"
    shutil.copytree(setup / "images", images)
    make_writable(images / "manifest.json")
    doc = json.loads((images / "manifest.json").read_text())
    doc["shards"].append(doc["shards"][0])
    doc["num_rows"] += doc["shards"][0]["rows"]
    doc["num_bytes"] += doc["shards"][0]["bytes"]
    doc["id"] = content_id({k: v for k, v in doc.items() if k not in ("id", "created_at")})
    (images / "manifest.json").write_text(json.dumps(doc))
    assert main(["synth", "--data", str(images), "--captioner", str(setup / "captioner"), "--out",
                 str(tmp_path / "out"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert f"{images}/manifest.json: shard path '{doc['shards'][0]['path']}' is listed 2 times" in err
    assert not (tmp_path / "out").exists()


def test_models_load_once_per_process_across_shards(setup, tmp_path):
    from spac.annotator import MODELS

    MODELS.clear()
    loads = MODELS.loads
    assert _synth(setup, tmp_path / "a", "--workers", "0") == 0
    open_dataset(tmp_path / "a")
    assert len(list((tmp_path / "a" / "_stats").glob("part-*.json"))) > 1 and MODELS.loads == loads + 1  # shards
    MODELS.clear()


def test_model_cache_keeps_only_the_current_configuration():
    import gc
    import weakref

    from spac.annotator import ModelCache

    class Models:  # stands for a loaded (captioner, recognizer)
        def __init__(self, config):
            self.config = config

    cache = ModelCache(load=lambda config: (Models(config), None))
    a, b = SynthConfig(captioner="a"), SynthConfig(captioner="b")
    first = cache.get(a)
    assert cache.get(SynthConfig(captioner="a", seed=5, batch_size=4)) is first  # same models, other job options
    assert cache.loads == 1
    freed = weakref.ref(first[0])
    del first
    assert cache.get(b)[0].config is b and cache.loads == 2
    gc.collect()
    assert freed() is None  # the first configuration's models were let go
    cache.clear()
    assert cache.get(b)[0].config is b and cache.loads == 3


def test_the_annotator_fingerprint_is_the_one_plans_were_written_with():
    """The label is unchanged since it was the repr of spac.synth.SpacAnnotator. The config changed on purpose
    twice: issue 16's union no longer abstains (union_threshold 0.5 -> 0), and its rows carry faithfulness
    scores, so a job planned before is refused on resume instead of mixing the two kinds of rows; issue 19 took
    out what cannot change the rows (batch size, the GPU's index: a resume may use others), so a synth planned
    before issue 19 is refused once, naming batch_size, and must be finished by the version that started it."""
    from spac.annotator import SpacAnnotator

    for execution in ({"threads": 3}, {"batch_size": 8}, {"device": "cuda:1"}):
        config = SynthConfig(**{"captioner": "c", "precision": "fp32", "device": "cuda", **execution})
        assert SpacAnnotator(config).fingerprint() == (
            'spac.synth.SpacAnnotator:SpacAnnotator({"captioner": "c", "decoding": "greedy", '
            '"device": "cuda", "precision": "fp32", "prompt_captions": 1, "recognizers": [], "seed": 0, '
            '"union_threshold": 0.0})')


def _unfinished_copy(done: Path, out: Path) -> Path:
    """``done``'s finished write as if stopped before its last shard: no manifest, the last shard not marked."""
    import shutil

    shutil.copytree(done, out)
    for path in out.rglob("*"):
        make_writable(path)
    (out / "manifest.json").unlink()
    sorted((out / "_stats").glob("part-*.json"))[-1].unlink()
    return out


def test_rows_are_the_same_for_any_batch_size_so_a_resume_may_change_it(setup, tmp_path):
    """Issue 19: a resume with another --batch-size was refused although the rows are identical (48/48)."""
    assert _synth(setup, tmp_path / "b8", "--workers", "0") == 0  # --batch-size 8
    assert _synth(setup, tmp_path / "b32", "--workers", "0", "--batch-size", "32") == 0
    b8, b32 = open_dataset(tmp_path / "b8"), open_dataset(tmp_path / "b32")
    assert b8.to_table().to_pylist() == b32.to_table().to_pylist() and b8.id == b32.id
    resumed = _unfinished_copy(tmp_path / "b8", tmp_path / "resumed")
    assert _synth(setup, resumed, "--workers", "0", "--batch-size", "32") == 0
    assert open_dataset(resumed).id == b8.id


def test_a_resume_with_another_precision_is_refused_naming_the_setting_and_both_values(setup, tmp_path, capsys):
    assert _synth(setup, tmp_path / "done", "--workers", "0", "--precision", "fp32") == 0
    out = _unfinished_copy(tmp_path / "done", tmp_path / "u")
    capsys.readouterr()
    assert _synth(setup, out, "--workers", "0", "--precision", "bf16") == 2
    err = capsys.readouterr().err
    assert 'config.precision: "fp32" in the unfinished write, "bf16" now' in err
    assert 'Re-run with config.precision "fp32" to finish it, or write to a new directory' in err
    assert "batch_size" not in err and "package_version" not in err
    # a write planned before issue 19 (batch_size fingerprinted): finish it with the version that started it
    plan = json.loads((out / "_stats" / "plan.json").read_text())
    plan["fingerprint"], plan["producer"]["config"]["batch_size"] = "planned-before", 8
    (out / "_stats" / "plan.json").write_text(json.dumps(plan))
    assert _synth(setup, out, "--workers", "0", "--precision", "fp32") == 2
    err = capsys.readouterr().err
    assert "config.batch_size: 8 in the unfinished write, not recorded now. It was started by another version" in err


def test_synth_config_precision():
    assert SynthConfig(captioner="c", precision="fp32").resolved().precision == "fp32"
    assert SynthConfig(captioner="c").resolved().precision == "fp32"  # a CPU, native bf16 or not
    # no CUDA here: fp32, the safe choice; a GPU without native bf16: fp16 autocast
    expected = "bf16" if bf16_supported("cuda:0") else "fp16" if torch.cuda.is_available() else "fp32"
    assert SynthConfig(captioner="c", device="cuda:0").resolved().precision == expected
    assert SynthConfig(captioner="c", precision="fp16").resolved().precision == "fp16"
    with pytest.raises(ValueError, match="precision"):
        SynthConfig(captioner="c", precision="fp8")


def test_same_input_and_config_give_the_same_rows_on_a_cluster(setup, tmp_path):
    assert _synth(setup, tmp_path / "a", "--workers", "0") == 0
    assert _synth(setup, tmp_path / "b", "--workers", "2") == 0
    a, b = open_dataset(tmp_path / "a"), open_dataset(tmp_path / "b")
    assert a.id == b.id


def test_kill_9_then_resume_gives_exactly_the_uninterrupted_rows(setup, tmp_path):
    assert _synth(setup, tmp_path / "ref", "--workers", "0") == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pipelines.cli", "synth", "--images", str(setup / "images"), "--captioner",
           str(setup / "captioner"), "--out", str(out), "--shard-size", "16", "--batch-size", "8", "--workers", "0"]
    assert kill_9_mid_job(cmd, out) < 3
    assert _synth(setup, out, "--workers", "0") == 0
    ref, resumed = open_dataset(tmp_path / "ref"), open_dataset(out)
    assert resumed.id == ref.id
    assert resumed.to_table().to_pylist() == ref.to_table().to_pylist()


def test_against_a_separately_started_scheduler_and_workers(setup, tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                               ":0", "--scheduler-file", str(scheduler_file)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        procs.append(subprocess.Popen([DASK, "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "1",
                                       "--nthreads", "1", "--no-dashboard"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        import json

        address = json.loads(scheduler_file.read_text())["address"]
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
        assert _synth(setup, tmp_path / "ext", "--scheduler", address) == 0
        assert _synth(setup, tmp_path / "local", "--workers", "0") == 0
        assert open_dataset(tmp_path / "ext").id == open_dataset(tmp_path / "local").id
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_rerunning_a_finished_job_says_already_complete(setup, tmp_path, capsys):
    """Issue 19: the re-run printed '0.1 s (448 images/s, 0 shards resumed)' as if it had captioned the images."""
    assert _synth(setup, tmp_path / "a", "--workers", "0") == 0
    capsys.readouterr()
    assert _synth(setup, tmp_path / "a", "--workers", "0") == 0
    out = capsys.readouterr().out
    assert out == f"already complete: {tmp_path / 'a'} (id {open_dataset(tmp_path / 'a').id}, 48 rows)\n"
