"""One progress reporter for every long command (docs/formats.md#progress): a bar on a terminal; elsewhere (a log
file, a batch job's output) a plain line every ``PLIP_PROGRESS_INTERVAL`` seconds (default 30) with done/total,
the throughput and the ETA, flushed as it is written, and one line at the end."""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, TextIO

INTERVAL_ENV = "PLIP_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0


def progress_interval() -> float:
    """Seconds between progress lines when the output is not a terminal: ``$PLIP_PROGRESS_INTERVAL`` or 30."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{INTERVAL_ENV}={text!r}: not a positive number of seconds; set it to e.g. 60, or unset it "
                         f"for the default ({DEFAULT_INTERVAL:g} s)")
    return value


def format_duration(seconds: float) -> str:
    """``45 s``, ``3 min 12 s``, ``2 h 05 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts ``total`` units (shards, steps) done, and the ``rate_unit`` amounts (rows, images, samples) they
    carry, which the throughput is given in. ``show``: True a bar, False nothing, None (default) a bar when
    ``stream`` is a terminal, else lines. Work found already done (``skip``) counts towards done/total but not
    towards the throughput or the ETA."""

    def __init__(self, desc: str, total: int, *, unit: str, rate_unit: str | None = None, initial: int = 0,
                 show: bool | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, interval: float | None = None):
        self.desc, self.total, self.unit, self.rate_unit = desc, total, unit, rate_unit or f"{unit}s"
        self.done = self.skipped = initial
        self.amount = self.skipped_amount = 0
        self.info: dict[str, str] = {}
        self.stream, self.clock = stream or sys.stderr, clock
        self.t0 = self.last_line = clock()
        self.done_at_last_line = initial
        self.interval = progress_interval() if interval is None else interval
        self.mode = "off" if show is False else "bar" if show or _is_terminal(self.stream) else "lines"
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=self.stream)

    def skip(self, n: int = 1, amount: int = 0) -> None:
        """``n`` units a previous run finished (``amount`` rows in them)."""
        self.done, self.skipped, self.skipped_amount = self.done + n, self.skipped + n, self.skipped_amount + amount
        if self.bar is not None:
            self.bar.update(n)

    def update(self, n: int = 1, amount: int | None = None, **info: object) -> None:
        """``n`` units done now, carrying ``amount`` (default ``n``); ``info``: figures shown beside (a loss)."""
        self.done += n
        self.amount += n if amount is None else amount
        self.info.update({k: str(v) for k, v in info.items()})
        if self.bar is not None:
            self.bar.set_postfix({**self.info, f"{self.rate_unit}/s": f"{self.rate():.1f}"}, refresh=False)
            self.bar.update(n)
        elif self.mode == "lines" and self.clock() - self.last_line >= self.interval:
            self._line(self.status())

    def rate(self) -> float:
        """``rate_unit`` per second since this reporter started (skipped work excluded)."""
        return self.amount / max(self.clock() - self.t0, 1e-9)

    def status(self) -> str:
        """``synth: 3/12 shards (25%), 3072 rows, 85.1 rows/s, elapsed 36 s, ETA 1 min 48 s``."""
        elapsed = self.clock() - self.t0
        parts = [f"{self.desc}: {self.done}/{self.total} {self.unit}s"
                 f"{f' ({100 * self.done / self.total:.0f}%)' if self.total else ''}"]
        if self.rate_unit != f"{self.unit}s":  # shards carrying rows: how many rows so far
            parts.append(f"{self.amount + self.skipped_amount} {self.rate_unit}")
        parts += [f"{k} {v}" for k, v in self.info.items()]
        parts.append(f"{self.rate():.1f} {self.rate_unit}/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        new = self.done - self.skipped
        if 0 < new and self.done < self.total:
            parts.append(f"ETA {format_duration(elapsed / new * (self.total - self.done))}")
        return ", ".join(parts)

    def close(self) -> None:
        """Close the bar, or write the last line (when there was work)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "lines" and self.done > max(self.skipped, self.done_at_last_line):
            self._line(self.status())
        self.mode = "off"

    def _line(self, text: str) -> None:
        self.last_line, self.done_at_last_line = self.clock(), self.done
        print(text, file=self.stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a stream without isatty, or a closed one
        return False
