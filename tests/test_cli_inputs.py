"""The command line's own input checks: one message shape for a dataset argument that is not a dataset, and
integer flags that feed no config refused by argparse, before any work. (Values that go into a config are the
config's to check: see the config tests.)"""
import pytest

from pipelines.cli import main

# every command that reads a dataset, with the dataset argument given as "{}" and the flag that names it
DATASET_COMMANDS = [
    (["card", "{}"], "DATASET"),
    (["validate", "{}"], "DATASET"),
    (["filter", "{}", "--out", "{out}"], "DATASET"),
    (["export", "synth-pedes-json", "{}", "--out", "{out}"], "DATASET"),
    (["eval", "--config", "tiny", "--data", "{}", "--out", "{out}"], "--data"),
    (["embed", "--config", "tiny", "--data", "{}", "--out", "{out}"], "--data"),
    (["synth", "--images", "{}", "--captioner", "{out}", "--out", "{out}"], "--images"),
    (["spac", "eval-recognizer", "--recognizer", "oracle", "--data", "{}"], "--data"),
    (["spac", "caption", "--checkpoint", "{out}", "--evaluate", "{}"], "--evaluate"),
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
        ["synth", "--images", "in", "--captioner", "../runs/cap", "--out", "out", "--scheduler", "tcp://h:8786"]))
    assert (args.images, args.captioner, args.out) == (tmp_path / "in", tmp_path / ".." / "runs" / "cap",
                                                       tmp_path / "out")
    assert args.calibration is None and args.scheduler == "tcp://h:8786"  # no path given, no path made
    args = absolute_paths(build_parser().parse_args(["spac", "train", "--data", "a", str(tmp_path / "b"), "--out",
                                                     "r"]))
    assert args.data == [tmp_path / "a", tmp_path / "b"] and args.out == tmp_path / "r"
