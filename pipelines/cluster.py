"""Dask cluster set-up for the jobs: a LocalCluster by default, or an existing scheduler whose workers must see the
job's paths (docs/architecture.md#running-on-a-dask-cluster)."""
from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path
from typing import Iterator, Sequence

from synth_pedes.futures import DEFAULT_WORKER_TIMEOUT

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


# How long a job waits for its first worker on an external scheduler, and how long a running job waits when every
# worker has gone, before it stops with a message (``--worker-timeout``); the job reads it from the Dask config
# key ``synth-pedes.worker-timeout`` (synth_pedes.futures.as_finished), which ``dask_client`` sets.
WORKER_TIMEOUT_KEY = "synth-pedes.worker-timeout"  # read by synth_pedes.futures.worker_timeout
CONNECT_TIMEOUT = 10  # seconds to reach --scheduler (Dask's own default is 30 s, silent meanwhile)


class ClusterError(Exception):
    """The Dask cluster cannot run the job: an unreachable scheduler, no workers, or workers that do not see the
    job's directories. The message names the address or directory and the fix; ``plip`` prints it without a
    traceback. (Not a SynthPedesError: importing synth_pedes here would slow every ``plip --help``.)"""


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None,
                worker_timeout: float = DEFAULT_WORKER_TIMEOUT, shared: Sequence[Path] = ()) -> Iterator[object | None]:
    """Yield a ``distributed.Client``: attached to ``scheduler`` when given, else a LocalCluster of
    ``workers`` single-threaded processes (one per core by default) set up by ``cluster_config()``.
    ``workers=0`` yields None: the job runs in this process (useful for debugging).

    On a scheduler, the job waits up to ``worker_timeout`` seconds for a worker, and every worker must see each
    directory in ``shared`` at the same path (``check_workers_see``): the output it writes and the datasets it
    reads. Errors are :class:`ClusterError` sentences."""
    if scheduler is None and workers == 0:
        yield None
        return
    import dask

    with dask.config.set({WORKER_TIMEOUT_KEY: worker_timeout}):
        if scheduler is not None:
            with _attach(scheduler, worker_timeout) as client:
                for directory in shared:
                    check_workers_see(client, Path(directory))
                yield client
        else:
            with _local_cluster(workers or default_workers()) as client:
                yield client


@contextlib.contextmanager
def _attach(scheduler: str, worker_timeout: float) -> Iterator[object]:
    """A client of the scheduler at ``scheduler`` with at least one worker connected."""
    from distributed import Client

    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT:g} s: check the "
                           f"address (and that the scheduler runs), or run without --scheduler ({e})") from None
    with client:
        if not client.nthreads():
            _log.warning("waiting for workers on %s (none connected); giving up after %g s (--worker-timeout)",
                         scheduler, worker_timeout)
            try:
                client.wait_for_workers(1, timeout=worker_timeout)
            except TimeoutError:
                raise ClusterError(f"no Dask workers connected to the scheduler {scheduler} within {worker_timeout:g} "
                                   f"s: start workers (dask worker {scheduler}), raise --worker-timeout, or run "
                                   "without --scheduler") from None
        _log.info("attached to Dask scheduler %s (%d workers)", scheduler, len(client.nthreads()))
        yield client


@contextlib.contextmanager
def _local_cluster(n: int) -> Iterator[object]:
    import dask
    from distributed import Client, LocalCluster

    config = cluster_config()
    # The nanny sets the workers' variables (OMP_NUM_THREADS=1, PYTHONHASHSEED, ...) in *this* process's
    # environment before it spawns them, and never puts them back: torch here would then start single-threaded
    # if its thread pool was not made yet (the demo's in-process training ran on 1 of 2 cores that way).
    saved = dict(os.environ)
    try:
        with dask.config.set(config):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
            client = Client(cluster)
            client.register_plugin(IgnoreInterrupts(), name="plip-ignore-interrupts")
            _restore_environ(saved)
            _log.info("started a Dask LocalCluster with %d workers", n)
            try:
                yield client
            except KeyboardInterrupt:  # the client's futures still waiting would each log a traceback
                _close(client, cluster, quiet=("distributed", "tornado"))
                raise
            except BaseException:
                _close(client, cluster)
                raise
            try:
                _close(client, cluster)
            except KeyboardInterrupt:  # the job is done: its output is complete, nothing to resume
                _log.warning("interrupted while stopping the Dask workers after the job finished: its output is "
                             "complete")
    finally:
        _restore_environ(saved)


try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # no Dask here: the jobs run in-process (workers=0)
    WorkerPlugin = object


class IgnoreInterrupts(WorkerPlugin):
    """A LocalCluster's workers ignore SIGINT: a Ctrl-C reaches the whole process group, and this process stops
    them (or the job) itself; in a worker it only printed a KeyboardInterrupt traceback and made its nanny log
    the worker's death."""

    def setup(self, worker) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # where signal handlers are set
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _close(client, cluster, quiet: Sequence[str] = ()) -> None:
    """Stop the client, then the workers. A worker that does not stop in time is killed, as it should be (a task
    still running, or a model still unloading): the nanny's "Worker process still alive after 4.0 seconds,
    killing" is not shown, being no problem of the job's; nor is anything the ``quiet`` loggers say meanwhile."""
    levels = {name: logging.getLogger(name).level for name in ("distributed.nanny", *quiet)}
    for name in levels:
        logging.getLogger(name).setLevel(logging.ERROR if name == "distributed.nanny" else logging.CRITICAL)
    try:
        try:
            client.close()
        finally:
            cluster.close()
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


PROBE_PREFIX = ".plip-probe-"  # hidden, and removed before the job writes: never part of a dataset


def check_workers_see(client, directory: Path) -> None:
    """Raise :class:`ClusterError` unless every worker of ``client`` sees ``directory`` as this process does: a
    dataset (it holds ``manifest.json``) by reading that manifest, any other directory (an output, created if new)
    through a probe file with a random token written here and read there, then removed. A worker that sees
    neither runs on a machine without this filesystem, where it would write its shards beside itself."""
    from synth_pedes.manifest import MANIFEST_NAME

    directory = Path(directory)
    created = not directory.exists()
    if (directory / MANIFEST_NAME).is_file():
        probe, token = directory / MANIFEST_NAME, (directory / MANIFEST_NAME).read_bytes()
    else:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(f"{PROBE_PREFIX}*"):  # left by a check killed before its clean-up
            stale.unlink()
        probe, token = directory / f"{PROBE_PREFIX}{uuid.uuid4().hex}", uuid.uuid4().hex.encode()
        probe.write_bytes(token)
    try:
        seen = client.run(_read_bytes, str(probe))
    finally:
        if probe.name.startswith(PROBE_PREFIX):
            probe.unlink()
    blind = sorted(worker for worker, data in seen.items() if data != token)
    if blind:
        if created:
            directory.rmdir()
        raise ClusterError(f"{directory}: {len(blind)} of {len(seen)} Dask workers cannot see this directory "
                           f"({', '.join(blind)}): the workers need a shared filesystem at the same path; or run "
                           "without --scheduler")


def _read_bytes(path: str) -> bytes | None:
    """On a worker: the file's bytes, or None when it cannot read it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _restore_environ(saved: dict[str, str]) -> None:
    """Make ``os.environ`` what it was: drop the keys added since, reset the ones changed."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
