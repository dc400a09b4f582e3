"""Progress of a long phase (video generation, validation, precache, normalisation, evaluation):
counts, rate and ETA, readable both on a terminal and in a log file.

On a terminal it is a tqdm bar. When the stream is not a terminal (a log file, a pipe, CI), a bar's
``\\r`` redraws become thousands of fragments in the file, so instead one whole line is written
every :data:`LINE_INTERVAL_S` seconds or :data:`LINE_PERCENT_STEP` percent, whichever comes first,
plus one at the end:

    [progress] evaluate checkpoint-4 (original+swapped): 120/300 pairs (40%), 35.2 pairs/s, elapsed 0:03, ETA 0:05

ETA = (total - done) / rate with rate = done / elapsed (the mean rate so far).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

LINE_INTERVAL_S = 10.0
"""Seconds between two progress lines when the stream is not a terminal."""
LINE_PERCENT_STEP = 10
"""Percent of the total between two progress lines when the stream is not a terminal."""
LINE_PREFIX = "[progress]"

T = TypeVar("T")


def clock(seconds: float) -> str:
    """``H:MM:SS`` (``M:SS`` under an hour) of a duration."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts ``update(n)`` calls toward ``total``: a tqdm bar on a terminal, whole lines otherwise.

    Args:
        total: the count at completion (None: unknown, no percent or ETA).
        desc: what runs, e.g. ``"evaluate checkpoint-4 (original)"``.
        unit: what is counted (``"pairs"``, ``"videos"``).
        stream: where to write (default ``sys.stderr``, as tqdm).
        interval_s / percent_step: the non-terminal line cadence.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        stream: IO[str] | None = None,
        interval_s: float = LINE_INTERVAL_S,
        percent_step: float = LINE_PERCENT_STEP,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s, self.percent_step = interval_s, percent_step
        self.done = 0
        self.start = time.monotonic()
        self._last_time = self.start
        self._last_percent = 0.0
        self._closed = False
        self._bar = None
        if _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        percent = self._percent()
        due_time = now - self._last_time >= self.interval_s
        due_percent = percent is not None and percent - self._last_percent >= self.percent_step
        if (due_time or due_percent) and self.done != self.total:
            self._write(now)

    def close(self) -> None:
        """The final line (count, rate, elapsed); once."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            return
        self._write(time.monotonic())

    def line(self, now: float) -> str:
        """The progress line at time ``now`` (``time.monotonic``)."""
        elapsed = max(now - self.start, 0.0)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        parts = [f"{LINE_PREFIX} {self.desc}: {count} {self.unit}"]
        percent = self._percent()
        if percent is not None:
            parts[0] += f" ({percent:.0f}%)"
        parts.append(f"{rate:.1f} {self.unit}/s")
        parts.append(f"elapsed {clock(elapsed)}")
        if self.total is not None and self.done < self.total and rate > 0:
            parts.append(f"ETA {clock((self.total - self.done) / rate)}")
        return ", ".join(parts)

    def _percent(self) -> float | None:
        if not self.total:
            return None
        return 100.0 * self.done / self.total

    def _write(self, now: float) -> None:
        self.stream.write(self.line(now) + "\n")
        self.stream.flush()
        self._last_time = now
        self._last_percent = self._percent() or 0.0

    def __enter__(self) -> Progress:  # noqa: PYI034 -- not subclassed
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(
    items: Iterable[T], desc: str, total: int | None = None, unit: str = "it", **kwargs
) -> Iterator[T]:
    """Yield ``items``, counting one per item (``total`` defaults to ``len(items)`` where it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(total, desc, unit, **kwargs) as bar:
        for item in items:
            yield item
            bar.update()


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
