"""Lineage: the chain of datasets and producer stages a dataset was made from.

A manifest names its parents by id only (ids are content hashes, so a name could lie). The card
finds them by reading the manifests next to the dataset (its sibling directories) and under any
extra search roots, walks up to the roots, and reports for each dataset the stage, package version,
configuration and models (anything in the producer that records a ``sha256``) that made it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..errors import SynthPedesError
from ..manifest import MANIFEST_NAME, Manifest, read_manifest

MAX_DEPTH = 12


def index_manifests(roots: Iterable[Path]) -> dict[str, tuple[Path, Manifest]]:
    """id -> (directory, manifest) for every readable dataset directly under the roots (or a root itself)."""
    found: dict[str, tuple[Path, Manifest]] = {}
    for root in roots:
        candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
        for d in candidates:
            if (d / MANIFEST_NAME).is_file():
                try:
                    m = read_manifest(d)
                except SynthPedesError:
                    continue  # an edited manifest cannot vouch for its id
                found.setdefault(m.id, (d, m))
    return found


def models_of(producer: dict) -> list[dict]:
    """Models recorded in a producer: every nested dict holding a ``sha256`` (with its path or name)."""
    out = []

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            if "sha256" in node:
                out.append({"role": where, "path": node.get("path") or node.get("name") or "",
                            "sha256": node["sha256"]})
            for k, v in node.items():
                walk(v, f"{where}.{k}" if where else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(producer, "")
    return out


def describe(directory: Path | None, manifest: Manifest) -> dict:
    p = manifest.producer or {}
    return {"name": manifest.name, "id": manifest.id, "kind": manifest.kind, "version": manifest.version,
            "path": str(directory) if directory else None, "rows": manifest.num_rows,
            "stage": p.get("stage", "?"), "package_version": p.get("package_version", "?"),
            "config": p.get("config", {}), "counts": p.get("counts", {}), "models": models_of(p),
            "parents": list(manifest.parents), "created_at": manifest.created_at}


def lineage(directory: Path, manifest: Manifest, search: Iterable[Path] = ()) -> list[dict]:
    """This dataset then its ancestors, breadth first; unresolved parents appear with ``found: False``."""
    roots = [Path(os.path.abspath(directory)).parent, *map(Path, search)]
    known = index_manifests(roots)
    chain, queue, seen = [dict(describe(directory, manifest), found=True, depth=0)], [(manifest, 1)], {manifest.id}
    while queue:
        current, depth = queue.pop(0)
        for pid in current.parents:
            if pid in seen or depth > MAX_DEPTH:
                continue
            seen.add(pid)
            if pid in known:
                d, m = known[pid]
                chain.append(dict(describe(d, m), found=True, depth=depth))
                queue.append((m, depth + 1))
            else:
                chain.append({"id": pid, "found": False, "depth": depth, "name": None})
    return chain
