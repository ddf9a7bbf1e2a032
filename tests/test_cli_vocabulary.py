"""One vocabulary across the CLI: a flag name has one meaning, one set of choices and one default rule in every
command (README "Command-line conventions"). The first test walks the whole parser, so a new command cannot drift."""
import argparse
import collections
import json

import pytest
import torch

from _fixtures import write_person_folder, write_tiny_captioner
from pipelines.cli import build_parser, main
from synth_pedes import open_dataset

# flag -> why its default differs between commands (choices must still agree, see CHOICE_EXCEPTIONS)
DEFAULT_EXCEPTIONS = {
    "--batch-size": "a property of each model and pass (64 recognizer, 32 captioner, 128 PLIP; trainers: the config's)",
    "--config": "each trainer ships its own named configs; eval/embed take a config only instead of --checkpoint",
    "--out": "what a command writes differs (a dataset, a run, a report file)",
    "--split": "the split a command exists for: import labels train, calibrate fits on val, evaluations report test",
    "--limit": "spac calibrate fits on a bounded sample (1000 rows); elsewhere no limit",
    "--seed": "trainers take it from the config (default 0 there too); other commands default to 0",
    "--decoding": "spac caption uses the checkpoint config's decoding; synth records its own (greedy) in the dataset",
    "--precision": "auto where a command makes something, fp32 where it reports a measurement (eval, embed, spac "
                   "caption, whose captions are compared across machines); trainers: the config's (auto)",
}
# (flag, command) -> why this command offers fewer choices
CHOICE_EXCEPTIONS = {
    ("--verify", "plip validate"): "validating is the check itself: full or quick, never none",
}
# a deprecated spelling that still shares its name with a current flag of another meaning (until it is removed)
DEPRECATED_CLASHES = {
    "--workers": "trainers' old name for --loader-workers (DataLoader processes); --workers is Dask workers",
    "--quick": "old --verify quick of validate/card/export; demo and bench --quick is a smaller run",
}


def _actions(parser, prefix="plip"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{prefix} {name}")
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield prefix, action


def _flag_table():
    table = collections.defaultdict(dict)
    for command, action in _actions(build_parser()):
        deprecated = (action.help or "").startswith("deprecated")
        for flag in action.option_strings:
            table[flag][command] = (action, deprecated)
    return table


def test_every_flag_name_has_one_set_of_choices_and_one_default_rule():
    problems = []
    for flag, per_command in sorted(_flag_table().items()):
        current = {c: a for c, (a, deprecated) in per_command.items() if not deprecated}
        if len(current) < len(per_command) and current and flag not in DEPRECATED_CLASHES:
            problems.append(f"{flag}: a deprecated spelling in some commands, a current flag in {sorted(current)}")
        choices = {c: tuple(a.choices or ()) for c, a in current.items() if (flag, c) not in CHOICE_EXCEPTIONS}
        if len(set(choices.values())) > 1:
            problems.append(f"{flag}: choices differ: {choices}")
        defaults = {c: repr(a.default) for c, a in current.items() if not a.required}
        if len(set(defaults.values())) > 1 and flag not in DEFAULT_EXCEPTIONS:
            problems.append(f"{flag}: defaults differ: {defaults}")
    assert not problems, "\n".join(problems)
    table = _flag_table()
    stale = [f for f in DEFAULT_EXCEPTIONS if len({repr(a.default) for a, d in table[f].values() if not d}) < 2]
    assert not stale, f"exceptions that no longer differ (remove them): {stale}"


def test_a_shared_flag_means_the_same_everywhere():
    table = _flag_table()
    for command, (action, deprecated) in table["--workers"].items():
        assert deprecated or "Dask" in action.help, command
    for command, (action, _) in table["--device"].items():
        assert action.default == "auto" and action.help.startswith("auto (a GPU"), command
    for command, (action, _) in table["--precision"].items():
        assert tuple(action.choices) == ("auto", "fp32", "bf16", "fp16"), command
    assert {c for c in table["--loader-workers"]} == {"plip train", "plip spac train", "plip spac train-recognizer",
                                                      "plip finetune text-reid", "plip finetune image-reid",
                                                      "plip finetune attributes"}


def _parse(argv, capsys):
    args = build_parser().parse_args(argv)
    return args, capsys.readouterr().err


def test_old_spellings_still_work_with_a_warning_for_one_release(tmp_path, capsys):
    args, err = _parse(["train", "--data", "d", "--out", "o", "--workers", "3"], capsys)
    assert args.workers == 3 and "--workers is deprecated" in err and "use --loader-workers" in err
    args, err = _parse(["train", "--data", "d", "--out", "o", "--loader-workers", "3"], capsys)
    assert args.workers == 3 and not err
    args, err = _parse(["card", "d", "--no-verify"], capsys)
    assert args.verify == "none" and "use --verify none" in err
    args, err = _parse(["validate", "d", "--quick"], capsys)
    assert args.verify == "quick" and "use --verify quick" in err
    args, err = _parse(["synth", "--images", "d", "--captioner", "c", "--out", "o"], capsys)
    assert str(args.data) == "d" and "use --data" in err
    args, err = _parse(["import", "images", "s", "--out", "o", "--shard-rows", "4"], capsys)
    assert args.shard_rows == 4 and "use --shard-size N" in err
    missing = tmp_path / "missing"  # spac caption --evaluate DATASET: now --evaluate --data DATASET
    assert main(["spac", "caption", "--checkpoint", str(tmp_path), "--evaluate", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "use --evaluate --data DATASET" in err and f"error: --data {missing}: no such dataset directory" in err


def test_precision_and_device_accept_the_same_values_in_every_command(capsys):
    args, _ = _parse(["spac", "caption", "--checkpoint", "c", "--precision", "fp16", "x.jpg"], capsys)
    assert (args.precision, args.device) == ("fp16", "auto")  # were refused, and cpu by default
    args, _ = _parse(["synth", "--data", "d", "--captioner", "c", "--out", "o", "--precision", "fp16"], capsys)
    assert (args.precision, args.device) == ("fp16", "auto")
    args, _ = _parse(["filter", "d", "--out", "o"], capsys)
    assert args.device == "auto"


def test_shard_size_is_rows_as_a_plain_number_and_bytes_with_a_unit(tmp_path):
    write_person_folder(tmp_path / "src", n_ids=3, per_id=2)
    # a plain number used to be bytes in plip import: every image got a shard of its own
    assert main(["import", "images", str(tmp_path / "src"), "--out", str(tmp_path / "rows"), "--shard-size", "4",
                 "--workers", "0"]) == 0
    assert [s.rows for s in open_dataset(tmp_path / "rows").manifest.shards] == [4, 2]
    assert main(["import", "images", str(tmp_path / "src"), "--out", str(tmp_path / "bytes"), "--shard-size", "1MB",
                 "--workers", "0"]) == 0
    assert [s.rows for s in open_dataset(tmp_path / "bytes").manifest.shards] == [6]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["import", "images", "s", "--out", "o", "--shard-size", "1.5"])


def test_render_takes_a_shard_size_in_bytes(tmp_path):
    assert main(["render", "--out", str(tmp_path / "r"), "--identities", "2", "--images-per-identity", "3",
                 "--workers", "0", "--shard-size", "1GB"]) == 0
    assert len(open_dataset(tmp_path / "r").manifest.shards) == 1


@pytest.fixture(scope="module")
def synth_inputs(tmp_path_factory):
    """An image dataset stored as one row group of 6 rows, and a tiny random-init captioner."""
    root = tmp_path_factory.mktemp("vocab-synth")
    write_person_folder(root / "src", n_ids=3, per_id=2)
    assert main(["import", "images", str(root / "src"), "--out", str(root / "images"), "--workers", "0"]) == 0
    write_tiny_captioner(root / "captioner")
    return root


def test_synth_says_when_a_shard_size_cannot_be_honoured(synth_inputs, tmp_path, capsys):
    argv = ["synth", "--data", str(synth_inputs / "images"), "--captioner", str(synth_inputs / "captioner"),
            "--workers", "0", "--batch-size", "8", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--shard-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "--shard-size 2 rows cannot be honoured" in err and "holds 6 rows" in err  # it used to be silent
    assert [s.rows for s in open_dataset(tmp_path / "a").manifest.shards] == [6]
    assert main([*argv, "--out", str(tmp_path / "b"), "--shard-size", "256MB"]) == 0  # a size used to be refused
    assert "cannot be honoured" not in capsys.readouterr().err
    producer = json.loads((tmp_path / "b" / "manifest.json").read_text())["producer"]
    assert producer["stage"] == "spac-synth"


def test_the_dataset_a_command_works_on_is_also_given_as_data(tmp_path, capsys):
    assert main(["render", "--out", str(tmp_path / "ds"), "--identities", "2", "--images-per-identity", "1",
                 "--workers", "0"]) == 0
    capsys.readouterr()
    assert main(["validate", "--data", str(tmp_path / "ds"), "--verify", "quick"]) == 0
    assert capsys.readouterr().out.startswith(f"OK {tmp_path / 'ds'}")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["validate", "a", "--data", "b"])


def test_train_recognizer_max_steps_is_optimizer_steps_across_epochs(tmp_path, capsys):
    """--max-steps N is N optimizer steps in all, past the epoch boundary (24 training rows at batch 8: 3 steps an
    epoch; the issue saw --max-steps 5 stop after 3)."""
    assert main(["render", "--out", str(tmp_path / "ds"), "--identities", "8", "--images-per-identity", "4",
                 "--workers", "0"]) == 0
    assert main(["spac", "train-recognizer", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "run"),
                 "--config", "tiny", "--batch-size", "8", "--max-steps", "5", "--log-every", "1", "--no-progress",
                 "--device", "cpu"]) == 0
    assert "5 of 5 (5 this run)" in capsys.readouterr().out
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["steps_per_epoch"] == 3


def test_device_auto_resolves_to_a_bare_device_type(monkeypatch):
    """auto on a GPU machine is a bare "cuda" (each Dask worker then takes its own GPU), never "cuda:0" for all."""
    from pipelines.commands._common import resolved_device

    assert resolved_device(argparse.Namespace(device="auto")) == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolved_device(argparse.Namespace(device="auto")) == "cuda"
    assert resolved_device(argparse.Namespace(device="cuda:1")) == "cuda:1"
