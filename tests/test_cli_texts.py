"""What the command line says: every option explained, ``plip --version``, ``plip env``, the demo's time."""
from __future__ import annotations

import argparse
import re

import pytest

from pipelines.cli import build_parser, main


def command_parsers(parser: argparse.ArgumentParser | None = None, path: tuple = ()):
    """``(("spac", "train"), parser)`` for ``plip`` itself and every (sub)command, depth first."""
    parser = parser or build_parser()
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_parsers(sub, (*path, name))


def test_every_option_of_every_command_has_help():
    missing = [f"plip {' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
               for path, parser in command_parsers() for action in parser._actions
               if not isinstance(action, argparse._SubParsersAction) and not (action.help or "").strip()]
    assert missing == [], "options without help= (say what it does and its default): " + ", ".join(missing)


def test_version_prints_the_package_version(capsys):
    from plip_runtime.version import package_version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"plip {package_version()}"


def test_env_lists_the_local_weights_it_finds(capsys):
    from pathlib import Path

    assert main(["env"]) == 0
    rows = dict(line.strip().split("  ", 1) for line in capsys.readouterr().out.splitlines()[1:])
    rows = {key.strip(): value.strip() for key, value in rows.items()}
    for name in ("EfficientNet-Lite0 ImageNet weights", "all-MiniLM-L6-v2 weights", "bert-base-uncased vocabulary"):
        assert Path(rows[name]).exists(), (name, rows.get(name))


def test_demo_help_and_readme_give_the_same_times():
    from pathlib import Path

    parser = dict(command_parsers())[("demo",)]
    quick_help = next(a.help for a in parser._actions if "--quick" in a.option_strings)
    help_times = re.search(r"about (\d+) minutes? on 2 CPU cores \(the full demo: about (\d+)\)", quick_help)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    readme_times = re.search(r"plip demo --out demo-out .*\(~(\d+) min on 2 cores; --quick: ~(\d+) min\)", readme)
    assert help_times and readme_times, (quick_help, "README.md: the `plip demo` line of the command-line tour")
    assert help_times.groups() == readme_times.groups()[::-1]
