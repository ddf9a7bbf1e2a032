"""Progress of shard jobs (synth, import, render, filter, card): shards done and the rows in them, rows/s, ETA and
errors so far, through the one reporter every long command uses (``plip_runtime.progress``: a bar on a terminal,
a line every ``PLIP_PROGRESS_INTERVAL`` seconds in a log; docs/formats.md#progress)."""
from __future__ import annotations

import sys
import time

from plip_runtime.progress import Progress, progress_interval


class ShardProgress:
    """An ``on_progress(stats, done, total)`` callback for ``synth_pedes.write_dataset``. ``disable``: True shows
    nothing, False a bar, None (default) a bar on a terminal and lines otherwise."""

    def __init__(self, desc: str, disable: bool | None = None, stream=None, clock=time.monotonic,
                 interval: float | None = None):
        self.desc, self.rows, self.errors, self.skipped = desc, 0, 0, 0
        self.show = None if disable is None else not disable
        # read now: a bad PLIP_PROGRESS_INTERVAL is refused before the job, not at its first shard
        self.interval = progress_interval() if interval is None else interval
        self.stream, self.clock = stream or sys.stderr, clock
        self.progress: Progress | None = None
        self.t0 = time.perf_counter()

    def __call__(self, stats, done: int, total: int) -> None:
        if self.progress is None:
            self.progress = Progress(self.desc, total, unit="shard", rate_unit="rows", show=self.show,
                                     stream=self.stream, clock=self.clock, interval=self.interval)
        self.rows += stats.rows
        self.errors += stats.status_counts.get("error", 0)
        if stats.skipped:
            self.skipped += 1
            self.progress.skip(1, stats.rows)
        else:
            self.progress.update(1, stats.rows, errors=self.errors)

    @property
    def already_complete(self) -> bool:
        """True when the job wrote nothing and resumed nothing: its output was a finished dataset already."""
        return self.progress is None

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0
