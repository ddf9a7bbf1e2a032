"""Progress display for shard jobs: shards done, rows/s, errors so far."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm


class ShardProgress:
    """An ``on_progress(stats, done, total)`` callback for ``synth_pedes.write_dataset`` that shows a bar."""

    def __init__(self, desc: str, disable: bool | None = None):
        self.desc, self.bar, self.rows, self.errors, self.skipped = desc, None, 0, 0, 0
        self.t0 = time.perf_counter()
        self.disable = (not sys.stderr.isatty()) if disable is None else disable

    def __call__(self, stats, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit="shard", disable=self.disable, file=sys.stderr)
        self.rows += stats.rows
        self.errors += stats.status_counts.get("error", 0)
        self.skipped += int(stats.skipped)
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix(rows=self.rows, rows_per_s=f"{self.rows / elapsed:.0f}", errors=self.errors)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0
