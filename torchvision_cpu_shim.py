"""Make the PyPI torchvision wheel importable next to a CPU build of torch.

Why this exists: PyPI only has CUDA builds of torchvision (``0.28.0+cu130``). Its ``_C.so`` links
``libtorch_cuda.so``, so on CPU torch it cannot load, and ``torchvision/_meta_registrations.py`` then
fails on two unguarded ``register_fake("torchvision::nms"/"qnms")`` calls::

    RuntimeError: operator torchvision::nms does not exist

That breaks ``import torchvision``, ``import open_clip`` and every ``transformers`` model import
(transformers imports torchvision whenever it is installed).

The fix: an import hook that fires once, just before the first ``import torchvision``. If torch is a
CUDA build, or torchvision's own extension loads, it does nothing. Otherwise it declares the two op
schemas (no kernels) so the import succeeds, and logs one warning saying so. Afterwards transforms,
models, open_clip and transformers work; only ``torchvision.ops`` (nms, roi_align, ...) and
``torchvision.io`` decoding raise torchvision's own "Couldn't load custom C++ ops" error. The project
uses PIL for image I/O and never calls ``torchvision.ops``.

How it is applied (see README, "Installing"):

* ``python -m torchvision_cpu_shim status`` says whether this environment needs it;
* ``python -m torchvision_cpu_shim install`` writes ``torchvision_cpu_shim.pth`` into site-packages
  only when needed, so every interpreter of the venv (pytest, Dask workers) gets the hook;
* the project's packages also call :func:`install` on import, so a venv without the ``.pth`` works
  as long as the project is imported before torchvision/transformers/open_clip.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys
import sysconfig

_log = logging.getLogger("torchvision_cpu_shim")
_keep: list = []  # torch.library.Library objects must stay referenced or their definitions vanish
_state = {"applied": False}
PTH_NAME = "torchvision_cpu_shim.pth"


def _torchvision_dir() -> str | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _define_schemas_if_needed() -> None:
    import torch

    tv_dir = _torchvision_dir()
    if tv_dir is None or torch.version.cuda is not None or hasattr(torch.ops.torchvision, "nms"):
        return  # no torchvision, CUDA torch (the real extension loads) or ops already registered
    try:  # a genuine CPU build of torchvision loads its own extension here: nothing else to do
        torch.ops.load_library(os.path.join(tv_dir, "_C.so"))
        return
    except (OSError, ImportError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _keep.append(lib)
    _state["applied"] = True
    _log.info(
        "torchvision's C++ extension does not load with this CPU build of torch (the PyPI wheel is a "
        "CUDA build); declared the nms/qnms schemas so torchvision imports. torchvision.ops and "
        "torchvision.io decoding are unavailable; everything this project uses works."
    )


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" and self in sys.meta_path:
            sys.meta_path.remove(self)  # fire once, just before torchvision's own import runs
            _define_schemas_if_needed()
        return None  # decline: the normal finders perform the import


def install() -> None:
    """Register the hook (idempotent; costs nothing until torchvision is imported)."""
    if "torchvision" in sys.modules or any(isinstance(f, _Hook) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Hook())


def applied() -> bool:
    """True when this process needed, and got, the stub schemas."""
    return _state["applied"]


def needed() -> bool:
    """Whether this environment's torchvision fails to import without the hook (checked in a subprocess)."""
    import subprocess

    # -S: no site processing, so no .pth file (this shim's included) runs; this process's path (site-packages and
    # what other .pth files added, e.g. an image's torch) is given by hand.
    code = f"import sys; sys.path[:] = {sys.path!r}; import torchvision"
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    return proc.returncode != 0 and "torchvision::nms does not exist" in proc.stderr


def _pth_path() -> str:
    return os.path.join(sysconfig.get_paths()["purelib"], PTH_NAME)


def _main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "status"
    pth = _pth_path()
    if cmd == "status":
        print(f"torchvision import needs the CPU shim: {needed()}; .pth installed: {os.path.exists(pth)} ({pth})")
        return 0
    if cmd == "install":
        if os.path.exists(pth):
            print(f"torchvision_cpu_shim: already installed at {pth}")
        elif not needed():
            print("torchvision_cpu_shim: torchvision imports cleanly here (CUDA torch or a CPU torchvision); not installed")
        else:
            with open(pth, "w") as f:
                f.write("import torchvision_cpu_shim\n")
            print(f"torchvision_cpu_shim: torchvision's CUDA-built extension cannot load on this CPU torch; "
                  f"wrote {pth} so every interpreter of this venv can import torchvision (torchvision.ops unavailable)")
        return 0
    if cmd == "uninstall":
        if os.path.exists(pth):
            os.remove(pth)
        print(f"torchvision_cpu_shim: removed {pth}")
        return 0
    print("usage: python -m torchvision_cpu_shim [status|install|uninstall]", file=sys.stderr)
    return 2


install()

if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
