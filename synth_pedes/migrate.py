"""Copy a dataset of the older layout into the current one (docs/formats.md#old-layout).

``plip migrate OLD_DIR --out NEW_DIR`` reads every row of ``OLD_DIR`` (verified first) and writes them,
unchanged, to ``NEW_DIR`` with the current writer: usable rows per split under ``data/``, the rest under
``rejected/``. The new manifest keeps the name, kind, version, parents and description, and its producer names the
old manifest's id (``migrated_from``). Resumable like every write: re-run the same command after a crash.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar, Iterator

import pyarrow.parquet as pq

from .dataset import open_dataset
from .manifest import Manifest
from .transforms import EXPANDING, class_fingerprint
from .writer import write_dataset


@dataclass
class FileRows:
    """An expanding transform: a Parquet file's path -> its rows, one row group in memory at a time."""
    transform_kind: ClassVar[str] = EXPANDING

    def __call__(self, path: str) -> Iterator[dict]:
        file = pq.ParquetFile(path)
        for group in range(file.num_row_groups):
            yield from file.read_row_group(group).to_pylist()

    def fingerprint(self) -> str:
        return class_fingerprint(self)


def migrate_dataset(old: str | os.PathLike, new: str | os.PathLike, client=None, on_progress=None) -> Manifest:
    """Write ``old``'s rows to ``new`` in the current layout, one shard per old shard file; returns the new manifest."""
    dataset = open_dataset(old)
    m = dataset.manifest
    return write_dataset([str(p) for p in dataset.shard_paths], new, name=m.name, kind=m.kind, transform=FileRows(),
                         shard_rows=1, rows_of=lambda path: 1, version=m.version, parents=m.parents,
                         producer={**m.producer, "migrated_from": m.id}, description=m.description, client=client,
                         on_progress=on_progress, attribute_names=m.attribute_names)
