"""Dask cluster set-up for the jobs: a LocalCluster by default, or an existing scheduler."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

_log = logging.getLogger(__name__)

# Dask's defaults suit an interactive cluster with a dashboard. Our LocalCluster has no dashboard,
# and on a small machine its background work is paid for by the models: idle, each worker spent
# 3.5% of a core and the scheduler process 5% (measured on 2 cores), mostly the statistical
# profiler sampling every stack each 10 ms and the 20 ms event-loop tick. These settings bring that
# to 0.3% and 1%. Memory limits still act within half a second.
QUIET_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,  # feeds the dashboard's profile page only
    "distributed.admin.tick.interval": "1s",  # event-loop health check (warnings only)
    "distributed.admin.system-monitor.interval": "2s",  # host metrics for the dashboard
    "distributed.worker.memory.monitor-interval": "500ms",  # pause/spill/terminate checks
}


def cluster_config() -> dict:
    """``QUIET_CLUSTER_CONFIG`` plus ``synth_pedes.malloc.MALLOC_ENV`` for the worker processes (replacing
    the nanny's MALLOC_TRIM_THRESHOLD_=65536, which made decoding page-fault all its memory each batch)."""
    import dask
    import distributed  # noqa: F401  (loads its config defaults, which this extends)

    from synth_pedes.malloc import MALLOC_ENV

    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", default={}), **MALLOC_ENV}
    return {**QUIET_CLUSTER_CONFIG, "distributed.nanny.pre-spawn-environ": environ}


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


# A worker's CPU side (decode, phrase spans, prompt captions, records, Parquet) costs ~3 ms per image on one
# thread (measured on cpu-small here), which would cap one worker near 300 images/s; a GPU captions faster
# than that at paper size, so several workers share each GPU and their CPU work overlaps its kernels.
DEFAULT_WORKERS_PER_GPU = 4


def default_job_workers(device: str, workers_per_gpu: int = DEFAULT_WORKERS_PER_GPU) -> int:
    """One worker per core on the CPU; ``workers_per_gpu`` per GPU with ``--device cuda`` (at most one per
    core, at least one per GPU). Worker i uses GPU i % GPUs (``spac.annotator.worker_index``)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        return max(gpus, min(default_workers(), gpus * workers_per_gpu))
    return default_workers()


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[object | None]:
    """Yield a ``distributed.Client``: attached to ``scheduler`` when given, else a LocalCluster of
    ``workers`` single-threaded processes (one per core by default) set up by ``cluster_config()``.
    ``workers=0`` yields None: the job runs in this process (useful for debugging)."""
    if scheduler is None and workers == 0:
        yield None
        return
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            _log.info("attached to Dask scheduler %s", scheduler)
            yield client
        return
    n = workers or default_workers()
    config = cluster_config()
    # The nanny sets the workers' variables (OMP_NUM_THREADS=1, PYTHONHASHSEED, ...) in *this* process's
    # environment before it spawns them, and never puts them back: torch here would then start single-threaded
    # if its thread pool was not made yet (the demo's in-process training ran on 1 of 2 cores that way).
    saved = dict(os.environ)
    try:
        with dask.config.set(config), \
                LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                             silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            _restore_environ(saved)
            _log.info("started a Dask LocalCluster with %d workers", n)
            yield client
    finally:
        _restore_environ(saved)


def _restore_environ(saved: dict[str, str]) -> None:
    """Make ``os.environ`` what it was: drop the keys added since, reset the ones changed."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
