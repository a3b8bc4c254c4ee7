"""Progress of long work on stderr: a tqdm bar on a terminal, plain periodic lines in a log file.

A SLURM job's stderr is a file: a progress bar's redraws either vanish there (tqdm turns itself off when stderr
is not a terminal) or fill it with carriage returns. :class:`LineProgress` writes one line every ``interval``
seconds and one at the end instead. :func:`progress` picks: ``enabled`` None (the default of every command) gives
the bar on a terminal and the lines elsewhere, True the bar, False nothing. tqdm is imported only for the bar
(egom2p-core does not depend on it; without it the lines are used).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["LOG_INTERVAL", "LineProgress", "format_duration", "progress"]

LOG_INTERVAL = 60.0  # seconds between the lines of a log


def format_duration(seconds: float) -> str:
    """``1:02:03`` for a duration in seconds; ``?`` when unknown."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class LineProgress:
    """Counts work and writes ``desc: 120/400 step (30.0%), loss 1.23, 3.40 step/s, elapsed 0:00:35, ETA 0:01:22``
    every ``interval`` seconds, and once more at the end (the total reached, or closed) when it wrote before: work
    shorter than the interval stays silent."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, interval: float = LOG_INTERVAL, file: TextIO | None = None):
        self.iterable, self.desc, self.unit, self.interval = iterable, desc, unit, interval
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.n, self._initial = total, initial, initial
        self.file = file
        self._postfix: dict[str, Any] = {}
        self._start = self._last = time.monotonic()
        self._printed_at = -1

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        """Numbers shown after the count (``loss=1.23``); kept for the next line."""
        self._postfix = values

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; write a line when the interval has passed or the total is reached."""
        self.n += n
        now = time.monotonic()
        done = self.total is not None and self.n >= self.total
        if now - self._last >= self.interval or (done and self._printed_at >= 0):
            self._write(now)

    def close(self) -> None:
        """Write the last line if a line was written before, unless it was written at this count already."""
        if 0 <= self._printed_at != self.n:
            self._write(time.monotonic())

    def _write(self, now: float) -> None:
        self._last, self._printed_at = now, self.n
        elapsed = now - self._start
        rate = (self.n - self._initial) / max(elapsed, 1e-9)
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.1f}%)" if self.total else ""
        extra = "".join(f", {k} {v}" for k, v in self._postfix.items())
        eta = f", ETA {format_duration((self.total - self.n) / rate if rate > 0 else float('nan'))}" if self.total else ""
        print(f"{self.desc}: {count} {self.unit}{share}{extra}, {rate:.2f} {self.unit}/s, elapsed "
              f"{format_duration(elapsed)}{eta}", file=self.file or sys.stderr, flush=True)


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool | None = None, initial: int = 0, interval: float = LOG_INTERVAL, **bar_options: Any) -> Any:
    """A progress counter over ``iterable`` (or ``total`` units counted with ``update``): a tqdm bar on a terminal
    (or with ``enabled=True``), :class:`LineProgress` when stderr is not a terminal, a disabled bar with
    ``enabled=False``. Both have ``update``, ``set_postfix``, ``close`` and are context managers and iterables."""
    if enabled is None and not sys.stderr.isatty():
        return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, interval=interval)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # not a dependency of egom2p-core: lines instead of the bar
        quiet = enabled is False
        return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                            interval=float("inf") if quiet else interval, file=_Null() if quiet else None)
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=enabled is False,
                file=sys.stderr, **bar_options)


class _Null:
    """A file that drops what is written (a disabled progress without tqdm)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None
