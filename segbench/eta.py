"""Time left in a sweep: the work still to do at the pace of the models measured so far.

A model's work is its MACs per image as tested where an earlier record of the same spec and
input size has them (from any hardware: MACs do not depend on it), else the pixels it processes
per image (H·W, or the area of every sliding window) times the MACs per pixel of the models
whose MACs are known. A model measured in this sweep brings its own MACs. Skipped models take
no time and failed ones stop early, so neither sets the pace; both leave the work to do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.progress import ProgressColumn
from rich.text import Text

from segbench.inference import slide_windows
from segbench.records import macs_per_image, reusable_complexity


@dataclass(frozen=True)
class Work:
    pixels: int  # processed per image as tested
    macs: int | None = None  # per image as tested, where known


def seconds_left(done: list[tuple[Work, float]], pending: list[Work]) -> float | None:
    """Seconds to measure `pending` at the pace (seconds per MAC, or per pixel) of `done`; None before the first."""
    known = [work for work in [*(w for w, _ in done), *pending] if work.macs]
    per_pixel = sum(w.macs for w in known) / sum(w.pixels for w in known) if known else 1.0

    def units(work: Work) -> float:
        return work.macs if work.macs else work.pixels * per_pixel

    done_units = sum(units(work) for work, _ in done)
    if not done_units:
        return None
    return sum(seconds for _, seconds in done) / done_units * sum(units(work) for work in pending)


def model_work(specs, settings, results_dir: Path) -> dict[str, Work]:
    """Each model's Work at the size it will be tested (the manifest's, or --input-size)."""
    work = {}
    for spec in specs:
        size = tuple(settings.input_size or spec.test.size)
        if spec.test.mode == "slide":
            pixels = sum((y2 - y1) * (x2 - x1) for y1, y2, x1, x2 in slide_windows(size, spec.test.crop, spec.test.stride))
        else:
            pixels = size[0] * size[1]
        earlier = reusable_complexity(results_dir, spec.name, spec.spec_hash(), list(size))  # skips unreadable records
        work[spec.name] = Work(pixels, macs_per_image(earlier) if earlier else None)
    return work


class SweepPace:
    """The sweep's models, done and to do; each finished model moves the estimated finish time."""

    def __init__(self, work: dict[str, Work], clock=time.monotonic) -> None:
        self._pending = dict(work)
        self._done: list[tuple[Work, float]] = []
        self._clock = clock
        self._last = clock()

    def finished(self, outcome) -> float | None:
        """Book one model's outcome; returns the clock time the sweep should end at (None: no estimate yet).

        A model's time is the time since the previous one finished: skipped models take none.
        """
        now = self._clock()
        seconds, self._last = now - self._last, now
        work = self._pending.pop(outcome.spec.name)
        if outcome.status == "ok":
            self._done.append((Work(work.pixels, macs_per_image(outcome.record)), seconds))  # none on torchrun rank > 0
        left = seconds_left(self._done, list(self._pending.values()))
        return None if left is None else now + left


class TimeLeftColumn(ProgressColumn):
    """'~0:12:34 left' on a task that carries a `finish_at` (time.monotonic) field; blank on others."""

    def render(self, task) -> Text:
        finish = task.fields.get("finish_at")
        if finish is None or task.finished:
            return Text("")
        minutes, seconds = divmod(max(0, round(finish - time.monotonic())), 60)
        return Text(f"~{minutes // 60}:{minutes % 60:02d}:{seconds:02d} left", style="progress.remaining")
