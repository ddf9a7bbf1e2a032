"""Waiting on Dask futures without hanging: the one loop every job uses to collect its tasks' results.

A cluster whose workers are all gone (or never came) would otherwise keep a job waiting in silence: it
warns as soon as no worker is connected and gives up with :class:`NoWorkersError` after the Dask config's
``synth-pedes.worker-timeout`` seconds (``plip --worker-timeout``; see pipelines.cluster.dask_client).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator

from .errors import SynthPedesError

_log = logging.getLogger(__name__)
DEFAULT_WORKER_TIMEOUT = 300.0  # seconds without any worker before a job gives up


class NoWorkersError(SynthPedesError):
    """The cluster has had no worker for longer than the worker timeout."""


def worker_timeout() -> float:
    import dask

    return float(dask.config.get("synth-pedes.worker-timeout", default=DEFAULT_WORKER_TIMEOUT))


def as_finished(client: Any, futures: list, what: str = "tasks") -> Iterator[tuple[Any, bool, Any]]:
    """Yield ``(future, ok, value)`` as ``futures`` finish, in any order: ``value`` is the result, or the exception
    when ``ok`` is False (one failed task does not stop the others). Each future is released after its yield.
    Raises :class:`NoWorkersError` (cancelling the rest) once the cluster has had no worker for the worker timeout;
    ``what`` names the tasks in the messages."""
    from distributed import as_completed

    timeout = worker_timeout()
    # with_results: each result is fetched in the background, so this loop never blocks on one that a gone
    # worker held (it would wait for a worker to compute it again)
    pending = as_completed(futures, with_results=True, raise_errors=False)
    next_check, workerless_since = 0.0, None
    while not pending.is_empty():
        batch = pending.next_batch(block=False)
        for future, result in batch:
            ok = future.status == "finished"  # else result is (type, exception, traceback)
            yield future, ok, result if ok else (result[1] if isinstance(result, tuple) else result)
            future.release()
        if batch:
            continue
        now = time.monotonic()
        if now < next_check:
            time.sleep(0.05)  # nothing ready: as_completed itself looks every 0.1 s
            continue
        next_check, address = now + 1, client.scheduler.address  # one scheduler call a second at most
        if client.nthreads():
            workerless_since = None
        elif workerless_since is None:
            workerless_since = now
            _log.warning("no Dask workers are connected to the scheduler %s: %d %s wait for one (up to %g s)",
                         address, pending.count(), what, timeout)
        elif now - workerless_since > timeout:
            client.cancel(futures)
            raise NoWorkersError(f"no Dask workers have been connected to the scheduler {address} for {timeout:g} s "
                                 f"({pending.count()} {what} left): start workers (dask worker {address}), or raise "
                                 "--worker-timeout, and re-run the same command")
