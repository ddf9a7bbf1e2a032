"""The supported Python: one minimum in pyproject.toml, the Makefile's install check and the README, and every
pinned requirement installs on it; ``make install`` on an older interpreter stops at once, saying so."""
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]


def _make(*args):
    """make in the checkout, without the variables of a make this test may run under (make test)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    return subprocess.run(["make", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60, env=env)


def _minimum() -> str:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert re.fullmatch(r">=3\.\d+", spec), spec
    return spec[2:]


def test_one_minimum_python_everywhere():
    minimum = _minimum()
    assert re.search(rf"^MIN_PYTHON := {re.escape(minimum)}$", (ROOT / "Makefile").read_text(), re.M)
    assert f"tested on Python {minimum} (CI)" in (ROOT / "README.md").read_text()


def test_every_pin_installs_on_the_minimum_python():
    """A pin that needs a newer Python than requires-python says (numpy 2.4 needs 3.11) breaks the install."""
    minimum, too_new = _minimum(), []
    for name in ("requirements.txt", "requirements-nodeps.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line:
                continue
            req = Requirement(line)
            needs = importlib.metadata.metadata(req.name).get("Requires-Python")  # the installed pin's own metadata
            if needs and minimum + ".0" not in SpecifierSet(needs):
                too_new.append(f"{req.name} (Python {needs})")
    assert not too_new, f"requires-python >={minimum} but these pins need more: {too_new}"
    assert f"{sys.version_info[0]}.{sys.version_info[1]}.0" in SpecifierSet(f">={minimum}")  # this run is supported


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_install_refuses_an_old_python_before_doing_anything(tmp_path):
    fake = tmp_path / "python3.10"
    fake.write_text("#!/bin/sh\necho 3.10\n")  # what `python -c 'print(version)'` prints on 3.10
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    proc = _make("install", f"PYTHON={fake}", f"VENV={venv}")
    assert proc.returncode != 0
    assert f"'{fake}' is Python 3.10; PLIP needs Python {_minimum()} or newer" in proc.stderr
    assert f"make install PYTHON=python{_minimum()}" in proc.stderr
    assert not venv.exists()  # stopped before creating the environment


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_install_check_accepts_this_python():
    proc = _make("-s", "check-python", f"PYTHON={sys.executable}")
    assert proc.returncode == 0, proc.stderr
