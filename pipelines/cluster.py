"""Dask cluster set-up for the jobs: a LocalCluster by default, or an existing scheduler."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

_log = logging.getLogger(__name__)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[object | None]:
    """Yield a ``distributed.Client``: attached to ``scheduler`` when given, else a LocalCluster of
    ``workers`` single-threaded processes (one per core by default). ``workers=0`` yields None: the
    job runs in this process (useful for debugging)."""
    if scheduler is None and workers == 0:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            _log.info("attached to Dask scheduler %s", scheduler)
            yield client
        return
    n = workers or default_workers()
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        _log.info("started a Dask LocalCluster with %d workers", n)
        yield client
