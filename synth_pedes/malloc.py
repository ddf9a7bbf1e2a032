"""glibc malloc settings for processes that run models: keep freed memory in the heap.

Decoding allocates and frees tensors of every size at every step (the key/value cache grows, finished
rows are dropped). With glibc's defaults, and worse with the ``MALLOC_TRIM_THRESHOLD_=65536`` that
Dask's nanny gives its workers, large blocks are fresh mmaps and the heap is trimmed after each batch,
so every batch page-faults its memory in again. Measured on cpu-small (fp32, with the vocabulary
shortlist of a trained model), one thread, 128 images: 1.3 M minor faults and 2.4 s of kernel time
(11.7 images/s); with the thresholds below, 40 faults and none (17.5 images/s), and two workers stop
slowing each other down zeroing pages. (A 2-thread process with glibc's own adaptive thresholds, as
``plip bench caption`` runs, showed no difference: it is the Dask worker's settings that hurt.)

Dask runs tasks in a worker thread, and a thread's malloc arena is a chain of 64 MiB heaps that glibc
unmaps whenever one empties, whatever the thresholds: ``MALLOC_ARENA_MAX=1`` keeps every thread on the
main heap (our workers run one task thread, so there is no lock contention to speak of). In a Dask
worker that took the job's faults from 190 k to 51 k per 512 images.

Memory stays bounded: the heap holds at most one batch's peak.
"""
from __future__ import annotations

import ctypes
import ctypes.util

ONE_GIB = 1 << 30
# for a process not yet started (Dask's nanny: distributed.nanny.pre-spawn-environ)
MALLOC_ENV = {"MALLOC_ARENA_MAX": 1, "MALLOC_TRIM_THRESHOLD_": ONE_GIB, "MALLOC_MMAP_THRESHOLD_": ONE_GIB}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def keep_heap() -> bool:
    """The same thresholds for this running process (threads that already have an arena keep it).
    False where this is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_TRIM_THRESHOLD, ONE_GIB) and libc.mallopt(_M_MMAP_THRESHOLD, ONE_GIB))
    except (OSError, AttributeError):
        return False
