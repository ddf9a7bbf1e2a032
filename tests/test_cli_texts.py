"""What the command line says: every option explained, ``plip --version``, ``plip env``, the demo's time."""
from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

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
        assert main(["synth", "--data", str(folder), "--captioner", str(tmp_path / "spac"),
                     "--out", str(tmp_path / "synth")]) == 2
        err = capsys.readouterr().err
        assert f"--data {folder}: a folder of image files, not a dataset" in err
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


# ---- every flag a help text or a message names exists on the command that shows it --------------------------
# Help texts are read from the parser. Messages are found statically: the string literals (docstrings aside) of
# the functions a command's entry point can reach, following names through imports (a call on an object reaches
# the methods of that name of every class reached so far). A literal that is one argv token ("--out" in the
# demo's argument lists, "--untracked-files=no" for git) is an argument, not a text.

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
PLIP_COMMAND = re.compile(r"\bplip((?: [a-z][a-z0-9-]*)+)")
CLAUSE_END = re.compile(r"[`;,()\n\"']|(?<=\w)\. ")  # where the scope of a `plip CMD` mention ends
PACKAGES = ("plip_runtime", "synth_pedes", "spac", "plip_train", "pipelines")

# (command, flag, module of the text): why that text may name a flag the command lacks. Reachable is not raised:
# each entry is a text the command never shows.
NOT_THIS_COMMANDS_FLAG = {
    **{(f"import {kind}", "--split-file", module): "said only by plip import cuhk-pedes (the help of ENTRY_IMPORTERS; "
                                                   "scan_benchmark's message for name == 'cuhk-pedes')"
       for kind in ("icfg-pedes", "rstpreid", "synth-pedes-json", "market1501", "dukemtmc-reid", "msmt17",
                    "pa100k", "peta", "rap", "rap2")
       for module in ("pipelines.commands.importing", "synth_pedes.sources.benchmarks")},
    **{("demo", flag, "pipelines.cluster"): "the demo runs every stage on its own cluster, passed to each as "
                                            "--scheduler; a message about it names the stage's flag (demo.log "
                                            "shows the stage's command line)" for flag in ("--scheduler", "--worker-timeout")},
    **{(f"finetune {task}", flag, "plip_train.zeroshot"): "a fine-tune evaluates the splits of a benchmark it "
       "checked has them (the trainers' build_index), in its task's direction: the evaluator's advice on choosing a "
       "split or a direction is for plip eval" for flag in ("--split", "--direction")
       for task in ("text-reid", "image-reid", "attributes")},
    ("finetune image-reid", "--select-on", "pipelines.commands.finetune"): "run_task turns --select-on into a "
    "setting only for a task that selects (select_section given); image ReID has no validation split and never does",
    ("convert official", "--set", "plip_runtime.config"): "convert's own config overrides (from --bert-dir) go "
                                                           "through the --set parser, whose messages name --set",
}
# commands whose messages come from the stages they run, with the stages' flags
NOT_CHECKED = {"bench": "runs the stages with fixed arguments: a stage's message there is a benchmark's bug, not "
                        "something its user fixes with a flag"}


def named_flags(text: str, here: tuple, commands: set) -> list[tuple[tuple, str]]:
    """``(command, flag)`` for each flag ``text`` names: the command is the ``plip CMD [SUB]`` the flag follows in
    the same clause (up to a backquote, bracket, comma, semicolon or sentence end), else ``here``."""
    named = []
    for match in FLAG.finditer(text):
        command = here
        mentions = PLIP_COMMAND.findall(CLAUSE_END.split(text[:match.start()])[-1])
        if mentions:
            words = tuple(mentions[-1].split())
            command = next((words[:n] for n in range(len(words), 0, -1) if words[:n] in commands), here)
        named.append((command, match.group()))
    return named


def option_strings(parser: argparse.ArgumentParser) -> set:
    return {s for action in parser._actions for s in action.option_strings}


def parser_texts(path: tuple, parser: argparse.ArgumentParser) -> list[tuple[tuple, str, str]]:
    """``(command, where, text)`` for the help texts ``plip PATH --help`` shows; a subcommand's one-line help is
    its own text."""
    texts = [(path, "description", parser.description or ""), (path, "epilog", parser.epilog or "")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts += [((*path, choice.dest), "help", choice.help or "") for choice in action._choices_actions]
        else:
            texts.append((path, f"help of {'/'.join(action.option_strings) or action.dest}", action.help or ""))
    return texts


def test_every_flag_a_help_text_names_exists_on_its_command():
    parsers = dict(command_parsers())
    wrong = [f"plip {' '.join(path)} ({where}): {flag} is not an option of plip {' '.join(command)}"
             for path, parser in parsers.items() for path_, where, text in parser_texts(path, parser)
             for command, flag in named_flags(text, path_, set(parsers))
             if flag != "--help" and flag not in option_strings(parsers[command])]
    assert not wrong, "\n".join(wrong)


class CodeIndex:
    """The project's top-level functions, classes (with their methods) and constants, and what their names refer
    to through each module's imports: enough to follow a command's calls to the messages it can print."""

    def __init__(self, root: Path):
        self.defs, self.methods, self.imports, self.skip = {}, {}, {}, set()
        for package in PACKAGES:
            for path in sorted((root / package).rglob("*.py")):
                parts = path.relative_to(root).with_suffix("").parts
                self._read(".".join(parts[:-1] if parts[-1] == "__init__" else parts), path)

    def _read(self, module: str, path: Path) -> None:
        tree = ast.parse(path.read_text())
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        self.imports[module] = imports = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module
                if node.level:  # from .x import f; from .. import y
                    here = package.split(".")
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                imports.update({a.asname or a.name: (base, a.name) for a in node.names})
            elif isinstance(node, ast.Import):
                imports.update({a.asname or a.name.split(".")[0]: (a.name if a.asname else a.name.split(".")[0], None)
                                for a in node.names})
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body \
                    and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
                self.skip.add(id(node.body[0].value))  # a docstring is for readers of the code
            if isinstance(node, ast.JoinedStr):
                self.skip.update(id(value) for value in node.values)  # read as the whole f-string
        for node in tree.body:
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else \
                [t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)]
            for name in names:
                self.defs[module, name] = node
            if isinstance(node, ast.ClassDef):
                self.methods[module, node.name] = [(module, item) for item in node.body
                                                   if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))]

    def resolve(self, module: str, name: str, depth: int = 0) -> list:
        """The definitions ``name`` refers to in ``module``: its own, or an imported one (``from x import f``)."""
        if (module, name) in self.defs:
            return [(module, self.defs[module, name])]
        if (module, "__getattr__") in self.defs:  # a package that imports its names lazily: its submodules' names
            return [(sub, node) for (sub, defined), node in self.defs.items()
                    if defined == name and sub.startswith(module + ".")]
        source, member = self.imports.get(module, {}).get(name, (None, None))
        if member is None or f"{source}.{member}" in self.imports or depth > 8:
            return []
        return self.resolve(source, member, depth + 1)

    def module_named(self, module: str, name: str) -> str | None:
        """The project module ``name`` is in ``module`` (``import synth_pedes.writer as w``), if any."""
        source, member = self.imports.get(module, {}).get(name, (None, None))
        target = source if member is None else f"{source}.{member}"
        return target if target in self.imports else None

    def reach(self, roots: list) -> list[tuple[str, int, str]]:
        """``(module, line, text)`` of every string literal in the code ``roots`` (``(module, node)``) can reach."""
        seen, todo, attributes, classes, texts = set(), list(roots), set(), [], []
        while todo:
            module, node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            body = [node] if not isinstance(node, ast.ClassDef) else \
                [n for n in node.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))] + node.bases
            if isinstance(node, ast.ClassDef):  # naming a class constructs it or calls its protocols
                classes.append((module, node.name))
                todo += [(m, f) for m, f in self.methods[module, node.name] if f.name.startswith("__")]
            for sub in (s for n in body for s in ast.walk(n)):
                if isinstance(sub, ast.Name):
                    todo += self.resolve(module, sub.id)
                elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) \
                        and (target := self.module_named(module, sub.value.id)):
                    todo += self.resolve(target, sub.attr)
                elif isinstance(sub, ast.Attribute):
                    attributes.add(sub.attr)
                elif id(sub) not in self.skip and (text := _literal(sub)) is not None:
                    texts.append((module, sub.lineno, text))
            todo += [(m, f) for cls in classes for m, f in self.methods[cls]
                     if f.name in attributes and id(f) not in seen]
        return texts


def _literal(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def entry_points(path: tuple) -> list[tuple[str, str]]:
    """``(module, function)`` where ``plip PATH`` starts its work (``pipelines.cli.main`` calls ``run``)."""
    from pipelines.benchmarks import SUITES
    from pipelines.cli import COMMANDS
    from pipelines.commands.finetune import SUBCOMMANDS as FINETUNE
    from pipelines.commands.spac import SUBCOMMANDS

    module = {"spac": SUBCOMMANDS, "finetune": FINETUNE}[path[0]][path[1]][0] if path[0] in ("spac", "finetune") \
        else COMMANDS[path[0]][0]
    if path[0] == "import":  # one module, two code paths
        return [(module, "import_images" if path[1] == "images" else "import_entries")]
    if path[0] == "bench":  # the suites are imported by name
        return [(module, "run"), *((suite, "run") for suite in SUITES.values())]
    return [(module, "run")]


def test_every_flag_a_message_names_exists_on_the_commands_that_can_print_it():
    index = CodeIndex(Path(__file__).parents[1])
    parsers = dict(command_parsers())
    leaves = [path for path, parser in parsers.items()
              if path and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)]
    wrong = set()
    for path in (leaf for leaf in leaves if leaf[0] not in NOT_CHECKED):
        roots = [node for module, function in entry_points(path) for node in index.resolve(module, function)]
        for module, line, text in index.reach(roots):
            if FLAG.fullmatch(text.split("=")[0]):
                continue  # one argv token
            for command, flag in named_flags(text, path, set(parsers)):
                if flag not in option_strings(parsers[command]) | {"--help"} \
                        and (" ".join(command), flag, module) not in NOT_THIS_COMMANDS_FLAG:
                    wrong.add(f"{module.replace('.', '/')}.py:{line}: {flag} is not an option of plip "
                              f"{' '.join(command)}")
    assert not wrong, "\n".join(sorted(wrong))


def test_an_icfg_pedes_json_without_splits_is_not_told_to_pass_a_split_file(tmp_path, capsys):
    import json

    from _fixtures import jpeg_bytes

    src = tmp_path / "ICFG-PEDES"
    (src / "imgs" / "test").mkdir(parents=True)
    (src / "imgs" / "test" / "0.jpg").write_bytes(jpeg_bytes(0))
    (src / "ICFG_PEDES.json").write_text(json.dumps([{"id": 0, "file_path": "test/0.jpg", "captions": ["A man."]}]))
    assert main(["import", "icfg-pedes", str(src), "--out", str(tmp_path / "icfg"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "no entry has a 'split'; use the icfg-pedes annotation file as distributed" in err
    assert "--split-file" not in err  # plip import cuhk-pedes has it; icfg-pedes does not


def test_spac_caption_and_import_images_agree_on_what_an_image_file_is(tmp_path):
    from pipelines.commands.spac_caption import _expand
    from synth_pedes.sources.images import scan_image_folder

    for name in ("a.jpg", "b.JFIF", "c.webp", "notes.txt", "Thumbs"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in _expand([tmp_path])] == [i.relpath for i in scan_image_folder(tmp_path).items] == [
        "a.jpg", "b.JFIF", "c.webp"]
