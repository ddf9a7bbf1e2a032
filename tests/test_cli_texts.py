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


def test_a_dataset_flag_given_a_folder_of_images_says_to_import_it_first(tmp_path, capsys):
    from _fixtures import write_person_folder

    for layout in ("flat", "identity-folders"):
        folder = tmp_path / layout
        write_person_folder(folder, layout, n_ids=2, per_id=1)
        assert main(["synth", "--images", str(folder), "--captioner", str(tmp_path / "spac"),
                     "--out", str(tmp_path / "synth")]) == 2
        err = capsys.readouterr().err
        assert f"--images {folder}: a folder of image files, not a dataset" in err
        assert f"run `plip import images {folder} --out DATASET` first" in err


def test_import_images_skips_other_files_by_extension_and_names_the_error_files(tmp_path, capsys):
    from _fixtures import jpeg_bytes, write_person_folder

    from synth_pedes import open_dataset

    src = tmp_path / "crawl"
    write_person_folder(src, "identity-folders", n_ids=2, per_id=2)
    (src / "README.txt").write_text("downloaded 2024-01-01")
    (src / "0000" / "labels.csv").write_text("a,b\n")
    (src / "0000" / "Thumbs").write_bytes(b"\0")  # no extension
    (src / "0001" / "empty.JPG").write_bytes(b"")  # an image's extension in capitals: a row, an error
    for i in range(6):
        (src / "0001" / f"broken-{i}.png").write_bytes(jpeg_bytes(i)[:100])
    out = tmp_path / "out"
    assert main(["import", "images", str(src), "--out", str(out), "--workers", "0"]) == 0
    summary = capsys.readouterr().out
    manifest = open_dataset(out).manifest
    assert manifest.producer["counts"]["skipped"] == {"not an image file (extension)": 3}
    assert manifest.status_counts == {"error": 7, "ok": 4}
    assert "skipped  not an image file (extension)=3" in summary
    assert ("errors   0001/broken-0.png (corrupt image), 0001/broken-1.png (corrupt image), 0001/broken-2.png "
            "(corrupt image), 0001/broken-3.png (corrupt image), 0001/broken-4.png (corrupt image) and 2 more") in summary
    assert f"all 7: the status=error rows of {out} (file in 'key', reason in 'error')" in summary
