"""A torch IterableDataset over a dataset's shards, split across DDP ranks and dataloader workers.

The unit of work is one Parquet row group (``ROW_GROUP_ROWS`` rows). Units are dealt round-robin to
the ``world_size * num_workers`` consumers, so every row is read exactly once per epoch. With
``shuffle=True`` the unit order (and the rows inside a unit) is permuted by ``seed + epoch``, the
same on every rank, so the split stays disjoint. Consumers may get one unit more than others; a
training loop that needs equal step counts on every rank should cap its steps per epoch.

With ``batch_size`` the dataset yields batches instead of rows: each DataLoader worker reads, filters,
transforms (decodes, augments) and collates its own rows, and whole batches cross the worker pipe (one
pickled row at a time made 2 workers slower than none). Use it with ``DataLoader(ds, batch_size=None,
num_workers=N)``. A batch holds rows of one consumer's units in order; the last batch of a consumer may be
short.
"""
from __future__ import annotations

import os
import random
from typing import Any, Callable, Sequence

import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardedIterableDataset(IterableDataset):
    def __init__(self, dataset: Any, columns: Sequence[str] | None = None,
                 transform: Callable[[dict], Any] | None = None, status: str | None = "ok",
                 shuffle: bool = False, seed: int = 0, rank: int | None = None, world_size: int | None = None,
                 batch_size: int | None = None, collate: Callable[[list], Any] | None = None):
        """``dataset``: a :class:`synth_pedes.Dataset` or a path to one (opened with full verification).
        ``status``: only yield rows with this status (``None``: all rows). ``transform``: applied per row, in the
        worker. ``batch_size``: yield lists of that many transformed rows, or ``collate(list)`` of them (e.g.
        ``torch.utils.data.default_collate``), built in the worker."""
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        if collate is not None and batch_size is None:
            raise ValueError("collate needs a batch_size: it turns each batch of rows into one value")
        if not hasattr(dataset, "shard_paths"):
            from .dataset import open_dataset

            dataset = open_dataset(dataset)
        # only the files that can hold rows of ``status`` (data/ for ok); rows are still filtered, for older layouts
        self.paths = [str(p) for p in (dataset.paths_for(status) if hasattr(dataset, "paths_for")
                                       else dataset.shard_paths)]
        self.columns = None if columns is None else list(columns)
        self.transform, self.status = transform, status
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.rank, self.world_size = rank, world_size
        self.batch_size, self.collate = batch_size, collate
        self._units: list[tuple[int, int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def units(self) -> list[tuple[int, int]]:
        """All (shard index, row group) pairs, in dataset order."""
        if self._units is None:
            self._units = [(i, g) for i, p in enumerate(self.paths) for g in range(pq.ParquetFile(p).num_row_groups)]
        return self._units

    def my_units(self, worker_id: int = 0, num_workers: int = 1) -> list[tuple[int, int]]:
        rank, world = _rank_and_world(self.rank, self.world_size)
        units = list(self.units())
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(units)
        consumer, consumers = rank * num_workers + worker_id, world * num_workers
        return units[consumer::consumers]

    def __iter__(self):
        rows = self._rows()
        if self.batch_size is None:
            yield from rows
            return
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == self.batch_size:
                yield self.collate(batch) if self.collate else batch
                batch = []
        if batch:
            yield self.collate(batch) if self.collate else batch

    def _rows(self):
        """This consumer's rows (filtered and transformed), in unit order."""
        info = get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = random.Random(f"{self.seed}:{self.epoch}:{worker_id}")
        columns = self.columns
        if columns is not None and self.status is not None and "status" not in columns:
            columns = [*columns, "status"]
        files: dict[int, pq.ParquetFile] = {}
        for shard, group in self.my_units(worker_id, num_workers):
            if shard not in files:
                files = {shard: pq.ParquetFile(self.paths[shard])}  # keep one file open at a time
            rows = files[shard].read_row_group(group, columns=columns).to_pylist()
            if self.shuffle:
                rng.shuffle(rows)
            for row in rows:
                if self.status is not None and row["status"] != self.status:
                    continue
                yield self.transform(row) if self.transform else row
