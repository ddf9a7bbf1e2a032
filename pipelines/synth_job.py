"""``plip synth``'s job: SPAC over an image dataset on Dask, written as a caption dataset.

The plan is every row group of the input (in order), packed into output shards of ``shard_rows``
rows or ``shard_bytes`` bytes (``--shard-size``): the same input and configuration give the same plan and the
same rows. Each shard is one Dask task running ``spac.annotator.SpacAnnotator``; the writer gives atomic shards,
resume after a crash (kill -9 included), bounded retries and per-shard stats.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq

from spac.annotator import RowGroupUnit, SpacAnnotator, SynthConfig

_log = logging.getLogger(__name__)


def plan_units(dataset) -> tuple[list[RowGroupUnit], dict[RowGroupUnit, int]]:
    """Every input row group in order, and its size in bytes (Parquet's uncompressed size: mostly the image bytes,
    which the output carries on): the sizes a ``--shard-size 256MB`` plan packs by."""
    units, sizes = [], {}
    for i, path in enumerate(dataset.shard_paths):
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            unit = RowGroupUnit(str(Path(path).resolve()), i, g, meta.row_group(g).num_rows)
            units.append(unit)
            sizes[unit] = meta.row_group(g).total_byte_size
    return units, sizes


def warn_unsplittable(units: list[RowGroupUnit], sizes: dict, shard_rows: int | None, shard_bytes: int | None) -> None:
    """An input row group is one task's work and lands whole in one output shard: say so when the asked shard size
    is smaller than the largest row group (the shards come out larger than asked), rather than ignore it."""
    if not units:
        return
    biggest = max(units, key=lambda u: (u.rows, sizes[u]))
    if shard_rows is not None and biggest.rows > shard_rows:
        asked, have = f"{shard_rows} rows", f"{biggest.rows} rows"
    elif shard_bytes is not None and max(sizes.values()) > shard_bytes:
        biggest = max(units, key=lambda u: sizes[u])
        asked, have = f"{shard_bytes / 2**20:.3g} MiB", f"{sizes[biggest] / 2**20:.3g} MiB"
    else:
        return
    _log.warning("--shard-size %s cannot be honoured: an output shard holds whole input row groups, and %s row "
                 "group %d holds %s; shards will be up to that size. For smaller shards, re-import the input with a "
                 "smaller --shard-size (its row groups follow its shards)", asked, biggest.path, biggest.group, have)


def run_synth(images: Path, out: Path, config: SynthConfig, *, shard_rows: int | None = 1024,
              shard_bytes: int | None = None, client: Any = None, retries: int = 2, name: str | None = None, on_progress: Callable | None = None):
    from spac.captioner import find_checkpoint
    from synth_pedes import file_sha256, open_dataset, write_dataset

    dataset = open_dataset(images)
    if config.vlm:  # a local vision-language model: its directory, hashed (config and weights) for the lineage
        from spac.vlm import VLM_PREFIX, directory_record, vlm_directory

        directory = vlm_directory(config.captioner)
        config = dataclasses.replace(config, captioner=VLM_PREFIX + str(directory)).resolved()
        captioner = directory_record(directory)
    else:
        checkpoint = find_checkpoint(config.captioner)
        config = dataclasses.replace(config, captioner=str(checkpoint.resolve())).resolved()
        captioner = {"path": str(checkpoint), "sha256": file_sha256(checkpoint / "model.safetensors")}
    units, sizes = plan_units(dataset)
    warn_unsplittable(units, sizes, shard_rows, shard_bytes)
    producer = {"stage": "spac-synth", "config": config.to_dict(), "captioner": captioner,
                "input": {"id": dataset.id, "name": dataset.manifest.name}}
    default_name = f"{dataset.manifest.name}-{'vlm' if config.vlm else 'spac'}"
    return write_dataset(units, out, name=name or default_name, kind="captions",
                         transform=SpacAnnotator(config), shard_rows=shard_rows, rows_of=lambda u: u.rows,
                         shard_bytes=shard_bytes, size_of=sizes.__getitem__,
                         parents=[dataset.id], producer=producer, client=client, retries=retries,
                         on_progress=on_progress, attribute_names=dataset.manifest.attribute_names,
                         description=f"SPAC captions for {dataset.manifest.name}: six attributes, one generated "
                                     f"caption per style{written_by(captioner)} and {config.prompt_captions} prompt "
                                     "caption(s) per image.")


def written_by(record: dict) -> str:
    """Who wrote the generated captions, for the manifest's description (and so the card): said for a
    vision-language model; a SPAC captioner's description stays as it always was (a resumed job's plan holds it)."""
    if record.get("kind") != "vlm":
        return ""
    return f" (written by the vision-language model {record.get('model_type', '?')} at {record['path']})"


def threads_per_worker(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))
