"""The command line's own input checks: one message shape for a dataset argument that is not a dataset, and
integer flags that feed no config refused by argparse, before any work. (Values that go into a config are the
config's to check: see the config tests.)"""
import pytest

from pipelines.cli import main

# every command that reads a dataset, with the dataset argument given as "{}" and the flag that names it
DATASET_COMMANDS = [
    (["card", "{}"], "DATASET"),
    (["validate", "{}"], "DATASET"),
    (["validate", "--data", "{}"], "--data"),
    (["card", "--data", "{}"], "--data"),
    (["filter", "{}", "--out", "{out}"], "DATASET"),
    (["export", "synth-pedes-json", "{}", "--out", "{out}"], "DATASET"),
    (["eval", "--config", "tiny", "--data", "{}", "--out", "{out}"], "--data"),
    (["embed", "--config", "tiny", "--data", "{}", "--out", "{out}"], "--data"),
    (["synth", "--data", "{}", "--captioner", "{out}", "--out", "{out}"], "--data"),
    (["spac", "eval-recognizer", "--recognizer", "oracle", "--data", "{}"], "--data"),
    (["spac", "caption", "--checkpoint", "{out}", "--evaluate", "--data", "{}"], "--data"),
]
FIX = "give a synth-pedes dataset directory (one holding manifest.json"


def _run(argv, path, tmp_path):
    return main([a.format(path, out=tmp_path / "out") for a in argv])


@pytest.mark.parametrize("argv, flag", DATASET_COMMANDS, ids=[" ".join(a[:2]) for a, _ in DATASET_COMMANDS])
def test_a_dataset_argument_that_is_no_dataset_is_named_with_the_fix(argv, flag, tmp_path, capsys):
    missing = tmp_path / "missing"
    assert _run(argv, missing, tmp_path) == 2
    err = capsys.readouterr().err
    assert f"error: {flag} {missing}: no such dataset directory; {FIX}" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(argv, empty, tmp_path) == 2
    assert f"error: {flag} {empty}: not a dataset directory (no manifest.json); {FIX}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unfinished_dataset_a_file_and_a_missing_corpus(tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    (unfinished / "_stats").mkdir(parents=True)
    assert main(["card", str(unfinished)]) == 2
    assert (f"DATASET {unfinished}: an unfinished dataset (no manifest.json yet); re-run the command that was "
            "writing it to finish it") in capsys.readouterr().err
    assert main(["spac", "mine-templates", str(unfinished / "no.txt"), "--out", str(tmp_path / "t.json")]) == 2
    assert (f"CORPUS {unfinished / 'no.txt'}: no such dataset directory or caption file; give a dataset directory or "
            "a caption file") in capsys.readouterr().err
    assert main(["spac", "mine-templates", str(unfinished), "--out", str(tmp_path / "t.json")]) == 2
    assert f"CORPUS {unfinished}: an unfinished dataset (no manifest.json yet)" in capsys.readouterr().err
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    assert main(["validate", str(afile)]) == 2
    assert f"DATASET {afile}: not a dataset directory but a file; {FIX}" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["card", "{}", "--samples", "-1"], "argument --samples: must be an integer >= 0, got -1"),
    (["embed", "--config", "tiny", "--data", "{}", "--out", "x.parquet", "--rows-per-group", "0"],
     "argument --rows-per-group: must be an integer >= 1, got 0"),
    (["eval", "--config", "tiny", "--data", "{}", "--batch-size", "many"],
     "argument --batch-size: must be an integer >= 1, got 'many'"),
    (["spac", "eval-recognizer", "--data", "{}", "--limit", "0"], "argument --limit: must be an integer >= 1, got 0"),
])
def test_integer_flags_without_a_config_are_refused_by_the_parser(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([a.format(tmp_path) for a in argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_every_path_argument_is_made_absolute_before_any_work(tmp_path, monkeypatch):
    """Workers on another machine (--scheduler) would read a relative path against their own directory; the
    command line makes every path absolute here, once, so the transforms built from them name the same files."""
    from pipelines.cli import absolute_paths, build_parser

    monkeypatch.chdir(tmp_path)
    args = absolute_paths(build_parser().parse_args(
        ["synth", "--data", "in", "--captioner", "../runs/cap", "--out", "out", "--scheduler", "tcp://h:8786"]))
    assert (args.data, args.captioner, args.out) == (tmp_path / "in", tmp_path / ".." / "runs" / "cap",
                                                       tmp_path / "out")
    vlm = absolute_paths(build_parser().parse_args(["synth", "--data", "in", "--captioner", "vlm:models/smol",
                                                    "--out", "out"]))
    assert vlm.captioner == f"vlm:{tmp_path / 'models' / 'smol'}"  # a VLM directory too
    assert args.calibration is None and args.scheduler == "tcp://h:8786"  # no path given, no path made
    args = absolute_paths(build_parser().parse_args(["spac", "train", "--data", "a", str(tmp_path / "b"), "--out",
                                                     "r"]))
    assert args.data == [tmp_path / "a", tmp_path / "b"] and args.out == tmp_path / "r"


def test_paths_inside_string_arguments_are_made_absolute_too(tmp_path, monkeypatch):
    """Recognizer specs (NAME:PATH) and the filter's encoder weights reach the workers as well."""
    from pipelines.cli import absolute_paths, build_parser
    from pipelines.commands._common import recognizer_specs

    monkeypatch.chdir(tmp_path)
    assert recognizer_specs("classifier:runs/rec, oracle,,clip:/abs/c") == (
        f"classifier:{tmp_path / 'runs' / 'rec'}", "oracle", "clip:/abs/c")
    args = absolute_paths(build_parser().parse_args(["filter", "d", "--out", "o", "--encoder", "timm:resnet18",
                                                     "--encoder-weights", "w.safetensors"]))
    assert args.encoder_weights == tmp_path / "w.safetensors"


# ---- model checkpoints: the wrong trainer's run, a truncated weights file, a run.json that is no run -------------
@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "pp"
    assert main(["render", "--out", str(out), "--identities", "10", "--images-per-identity", "1", "--workers", "0"]) == 0
    return out


def _run_dir(root, kind="plip-pretrain", config=None):
    """A run directory as a trainer leaves it, without the training: run.json and one checkpoint (step 1)."""
    import torch
    from safetensors.torch import save_file

    from plip_runtime.runs import RUN_FORMAT, write_checkpoint, write_run_file
    from plip_train.config import load_config

    run = root / kind
    run.mkdir()
    write_run_file(run, {"format": RUN_FORMAT, "kind": kind, "datasets": [],
                         "config": load_config("tiny").to_dict() if config is None else config})
    write_checkpoint(run, 1, 1.0, lambda d: save_file({"w": torch.zeros(4096)}, str(d / "model.safetensors")))
    return run


@pytest.mark.parametrize("command", ["eval", "embed"])
def test_a_spac_run_given_to_a_plip_command_is_refused_as_what_it_is(command, benchmark, tmp_path, capsys):
    run = _run_dir(tmp_path, kind="spac-captioner", config={"name": "tiny", "backbone": "tiny"})
    fix = "not a PLIP run: pass a PLIP run (plip train, plip convert official or plip finetune) to --checkpoint"
    argv = [command, "--data", str(benchmark), "--out", str(tmp_path / "out.json")]
    assert main([*argv, "--checkpoint", str(run)]) == 2
    assert f"error: {run} is a SPAC captioner run, {fix}" in capsys.readouterr().err
    checkpoint = run / "checkpoints" / "step-000001"
    assert main([*argv, "--checkpoint", str(checkpoint)]) == 2
    assert f"error: {checkpoint} is a checkpoint of a SPAC captioner run ({run}), {fix}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["synth", "calibrate", "caption"])
def test_a_plip_run_given_as_the_captioner_is_refused_before_any_work(command, benchmark, tmp_path, capsys):
    """The other way round: a PLIP run where a SPAC captioner belongs (synth used to start its job first)."""
    run = _run_dir(tmp_path)
    out = tmp_path / "out"
    argv = {"synth": ["synth", "--data", str(benchmark), "--captioner", str(run), "--out", str(out)],
            "calibrate": ["spac", "calibrate", "--data", str(benchmark), "--captioner", str(run), "--recognizers", "captioner", "--out",
                          str(out / "c.json")],
            "caption": ["spac", "caption", "--checkpoint", str(run), "--evaluate", "--data", str(benchmark)]}[command]
    assert main(argv) == 2
    flag = "--checkpoint" if command == "caption" else "--captioner"
    assert (f"error: {run} is a PLIP run, not a SPAC captioner run: pass a SPAC captioner run (plip spac train) to "
            f"{flag}") in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("command", ["eval", "embed"])
def test_a_truncated_checkpoint_is_named_with_the_fix(command, benchmark, tmp_path, capsys):
    run = _run_dir(tmp_path)
    weights = run / "checkpoints" / "step-000001" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a copy that stopped part-way
    assert main([command, "--checkpoint", str(run), "--data", str(benchmark), "--out", str(tmp_path / "o")]) == 2
    assert (f"error: {weights}: a truncated or corrupt safetensors file (") in (err := capsys.readouterr().err)
    assert "copy it again from where it came from, or use another checkpoint" in err


def test_a_run_whose_config_is_no_config_document_is_said_so(benchmark, tmp_path, capsys):
    run = _run_dir(tmp_path, config="tiny")  # a name where the whole config belongs
    assert main(["eval", "--checkpoint", str(run), "--data", str(benchmark), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert (f"error: {run / 'run.json'}: 'config' is 'tiny', not a config document (a JSON object); the run "
            "directory is damaged") in err
    assert "['i', 'n', 't', 'y']" not in err  # the letters of the name, read as section names


def test_a_truncated_weights_file_is_named_wherever_weights_are_read(tmp_path):
    import torch
    from safetensors.torch import save_file

    from plip_runtime.weights import read_state_dict

    path = tmp_path / "backbone.safetensors"
    save_file({"w": torch.zeros(4096)}, str(path))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"{path}: a truncated or corrupt safetensors file"):
        read_state_dict(path)
