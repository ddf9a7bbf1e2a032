"""``plip synth``'s job: SPAC over an image dataset on Dask, written as a caption dataset.

The plan is every row group of the input (in order), packed into output shards of ``shard_rows``
rows: the same input and configuration give the same plan and the same rows. Each shard is one
Dask task running ``spac.annotator.SpacAnnotator``; the writer gives atomic shards, resume after a
crash (kill -9 included), bounded retries and per-shard stats.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq

from spac.annotator import RowGroupUnit, SpacAnnotator, SynthConfig


def plan_units(dataset) -> list[RowGroupUnit]:
    units = []
    for i, path in enumerate(dataset.shard_paths):
        meta = pq.ParquetFile(path).metadata
        units += [RowGroupUnit(str(Path(path).resolve()), i, g, meta.row_group(g).num_rows)
                  for g in range(meta.num_row_groups)]
    return units


def run_synth(images: Path, out: Path, config: SynthConfig, *, shard_rows: int = 1024, client: Any = None,
              retries: int = 2, name: str | None = None, on_progress: Callable | None = None):
    from spac.captioner import find_checkpoint
    from synth_pedes import file_sha256, open_dataset, write_dataset

    dataset = open_dataset(images)
    checkpoint = find_checkpoint(config.captioner)
    config = dataclasses.replace(config, captioner=str(checkpoint.resolve())).resolved()
    units = plan_units(dataset)
    producer = {"stage": "spac-synth", "config": config.to_dict(),
                "captioner": {"path": str(checkpoint), "sha256": file_sha256(checkpoint / "model.safetensors")},
                "input": {"id": dataset.id, "name": dataset.manifest.name}}
    return write_dataset(units, out, name=name or f"{dataset.manifest.name}-spac", kind="captions",
                         transform=SpacAnnotator(config), shard_rows=shard_rows, rows_of=lambda u: u.rows,
                         parents=[dataset.id], producer=producer, client=client, retries=retries,
                         on_progress=on_progress,
                         description=f"SPAC captions for {dataset.manifest.name}: six attributes, one generated "
                                     f"caption per style and {config.prompt_captions} prompt caption(s) per image.")


def threads_per_worker(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))
