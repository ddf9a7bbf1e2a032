"""The one version stamp: what code produced a dataset, a run or a result."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

UNKNOWN_VERSION = "0+unknown"  # PEP 440: a source tree that was never installed


def package_version() -> str:
    """The installed version of this project (``plip``), or ``0+unknown`` for a bare source tree."""
    try:
        return metadata.version("plip")
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


def git_commit() -> str | None:
    """The commit of the source checkout this code runs from (``-dirty`` when tracked files changed), or None."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        if not commit:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def code_version() -> dict:
    """``{"package", "git" (when a checkout), "python", "torch" (when importable)}``: what runs, results and
    checkpoints record about the code that made them."""
    info = {"package": package_version()}
    commit = git_commit()
    if commit:
        info["git"] = commit
    info["python"] = platform.python_version()
    try:
        info["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pass
    return info
