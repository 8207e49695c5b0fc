"""What a sweep will do, in which order, within a time budget. Pure: records come in as data and
the clock is passed in, so tests drive it with a fake clock. No torch here.

Order (`--order`):
- `manifest`: the zoo's order.
- `breadth`: the field before its depth, so a short GPU window still yields a row per family.
  1. One entry of every family (family = manifest file): its *canonical* entry, the one that
     matches most of mmsegmentation's reference setting (`CANONICAL`: a plain ResNet-50
     backbone, a 512×1024 crop, an 80k schedule); ties go to the entry with the fewest test
     pixels (the smallest), then to manifest order.
  2. Every distinct model, one per family in turn (a model is distinct when no entry ordered
     before it has the same `Build` and `Test`: the same network measured the same way).
  3. The rest: entries that repeat a measurement already ordered, in manifest order.

Time budget (`--time-budget`): a model starts only when its estimated cost fits in what is left.
An estimate is `rate × work × factor`:
- work = MACs per image × (timed + warm-up images); MACs from any record of the model at the
  same input size, else its test pixels × the median MACs per pixel of the records known;
- rate = seconds per unit of work: this sweep's so far, else this hardware's records';
- factor = how much slower per unit of work the model was than its hardware's rate, from a
  record of the same model (this hardware's first, else any), else 1.
Before anything on this hardware has been timed there is no rate: the model starts (the sweep
must measure one to learn its rate). A model is never stopped once started: an estimate that
proves wrong costs overtime, and the report says by how much each estimate missed.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from segbench.manifest import ModelSpec
from segbench.records import macs_per_image

ORDERS = ("breadth", "manifest")

CANONICAL = {
    "backbone": re.compile(r"R-50(-|$)"),  # ResNet-50 with the deep stem (not R-50b), any dilation
    "crop_size": (512, 1024),
    "schedule": "80k iters",
}


def parse_duration(text: str) -> float:
    """'90', '90s', '6m', '1.5h' -> seconds (argparse type of --time-budget)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", text)
    if not match or float(match[1]) <= 0:
        raise ValueError(f"expected a positive duration such as 90s, 6m or 1.5h, got {text!r}")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def format_duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if abs(seconds) < 120 else f"{seconds / 60:.1f} min"


# --------------------------------------------------------------------------- order


def measurement_key(spec: ModelSpec) -> str:
    """Entries with the same key measure the same network the same way (weights aside)."""
    return json.dumps({"build": spec.build.as_dict(), "test": spec.test.as_dict()}, sort_keys=True)


def pixels_of(spec: ModelSpec, input_size: tuple[int, int] | None = None) -> int:
    height, width = input_size or spec.test.size
    return height * width


def canonical_score(spec: ModelSpec) -> int:
    """How many of CANONICAL's conventions an entry follows."""
    return (
        bool(CANONICAL["backbone"].match(spec.backbone))
        + (spec.crop_size == CANONICAL["crop_size"])
        + (spec.schedule == CANONICAL["schedule"])
    )


def canonical_entry(entries: list[ModelSpec]) -> ModelSpec:
    """The family's reference entry: most conventions followed, then fewest test pixels, then manifest order."""
    return min(enumerate(entries), key=lambda ie: (-canonical_score(ie[1]), pixels_of(ie[1]), ie[0]))[1]


def breadth_order(specs: list[ModelSpec]) -> list[ModelSpec]:
    """Canonical entry of every family, then every distinct model (families in turn), then the rest."""
    families: dict[str, list[ModelSpec]] = {}
    for spec in specs:
        families.setdefault(spec.family, []).append(spec)
    first = [canonical_entry(entries) for entries in families.values()]
    seen = {measurement_key(s) for s in first}
    queues = [[s for s in entries if s not in first] for entries in families.values()]
    distinct, repeats = [], []
    for depth in range(max(map(len, queues), default=0)):
        for queue in queues:
            if depth < len(queue):
                spec = queue[depth]
                key = measurement_key(spec)
                (repeats if key in seen else distinct).append(spec)
                seen.add(key)
    position = {s.name: i for i, s in enumerate(specs)}
    return first + distinct + sorted(repeats, key=lambda s: position[s.name])


def sweep_order(specs: list[ModelSpec], order: str) -> list[ModelSpec]:
    return breadth_order(specs) if order == "breadth" else list(specs)


# --------------------------------------------------------------------------- cost


def _iterations(record: dict[str, Any]) -> int:
    """The passes a record's model ran: as timed and warmed up where the record says, else as its settings planned."""
    settings, latency = record.get("settings") or {}, record.get("latency") or {}
    timed = len(latency["samples"]) if isinstance(latency.get("samples"), list) else settings.get("images")
    warmup = latency["warmup"].get("iterations") if isinstance(latency.get("warmup"), dict) else settings.get("warmup")
    return sum(n for n in (timed, warmup) if isinstance(n, int) and not isinstance(n, bool))


@dataclass(frozen=True)
class PastRun:
    """What one record says about the cost of measuring its model."""

    model: str
    hardware: str
    seconds: float
    work: float  # MACs per image × (timed + warm-up images)


def past_runs(records: Iterable[dict[str, Any]]) -> list[PastRun]:
    """Cost evidence of successful records that kept their duration and MACs; a record that copied another's
    measurement (`shared_from`) says nothing about the cost of measuring."""
    runs = []
    for r in records:
        macs, seconds = macs_per_image(r), r.get("duration_s")
        if r.get("status") == "ok" and macs and seconds and _iterations(r) and "shared_from" not in r:
            runs.append(PastRun(r["model"], r["environment"]["hardware"], float(seconds), float(macs) * _iterations(r)))
    return runs


def known_macs(records: Iterable[dict[str, Any]]) -> dict[tuple[str, tuple[int, int]], int]:
    """(model, input size) -> MACs per image as tested, from records of any hardware (MACs do not depend on it)."""
    found = {}
    for r in records:
        macs, size = macs_per_image(r), (r.get("macs") or {}).get("input_size")
        if r.get("status") == "ok" and macs and size:
            found[(r["model"], tuple(size))] = int(macs)
    return found


@dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None: nothing timed on this hardware yet
    how: str


@dataclass
class CostModel:
    """Estimates of a model's measuring time on `hardware` from past records and this sweep's own."""

    hardware: str
    history: list[PastRun]
    macs: dict[tuple[str, tuple[int, int]], int]
    observed: list[PastRun] = field(default_factory=list)

    @classmethod
    def from_records(cls, hardware: str, records: list[dict[str, Any]]) -> CostModel:
        return cls(hardware, past_runs(records), known_macs(records))

    def _rate(self, runs: list[PastRun]) -> float | None:
        work = sum(r.work for r in runs)
        return sum(r.seconds for r in runs) / work if work else None

    def rate(self) -> float | None:
        """Seconds per unit of work: this sweep's so far, else this hardware's records'."""
        return self._rate(self.observed) or self._rate([r for r in self.history if r.hardware == self.hardware])

    def work(self, model: str, size: tuple[int, int], iterations: int) -> float:
        macs = self.macs.get((model, tuple(size)))
        if macs is None:
            per_pixel = [m / (s[0] * s[1]) for (_, s), m in self.macs.items()]
            macs = size[0] * size[1] * (statistics.median(per_pixel) if per_pixel else 1.0)
        return macs * iterations

    def factor(self, model: str) -> tuple[float, str]:
        """The model's own slowness per unit of work relative to its hardware's rate, from its past record."""
        runs = sorted((r for r in self.history if r.model == model), key=lambda r: (r.hardware != self.hardware, r.hardware))
        for run in runs:
            rate = self._rate([r for r in self.history if r.hardware == run.hardware])
            if rate:
                return run.seconds / run.work / rate, f"its record on {run.hardware}"
        return 1.0, "its MACs"

    def estimate(self, model: str, size: tuple[int, int], iterations: int) -> Estimate:
        rate = self.rate()
        if rate is None:
            return Estimate(None, f"no estimate: nothing timed on {self.hardware} yet")
        factor, source = self.factor(model)
        return Estimate(factor * rate * self.work(model, size, iterations), f"from {source}")

    def observe(self, model: str, size: tuple[int, int], iterations: int, seconds: float, macs: int | None) -> None:
        """A model this sweep measured: its MACs become known and its time joins the rate."""
        if macs:
            self.macs[(model, tuple(size))] = int(macs)
        self.observed.append(PastRun(model, self.hardware, seconds, self.work(model, size, iterations)))


# --------------------------------------------------------------------------- budget


def now() -> float:
    return time.monotonic()


@dataclass
class Attempt:
    model: str
    estimate: Estimate
    started: float
    actual: float | None = None


class TimeBudget:
    """Decides which models start within `seconds` of wall time, and keeps estimate against actual."""

    def __init__(self, seconds: float, records: list[dict[str, Any]], clock: Callable[[], float] | None = None) -> None:
        self.seconds = seconds
        self.records = records
        self.clock = clock or now
        self.deadline = self.clock() + seconds
        self.cost: CostModel | None = None
        self.attempts: list[Attempt] = []
        self.left_undone: list[str] = []

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def admit(self, model: str, hardware: str, size: tuple[int, int], iterations: int) -> bool:
        """True when the model may start now; False (and the model left undone) when its estimate does not fit."""
        if self.cost is None:
            self.cost = CostModel.from_records(hardware, self.records)
        estimate = self.cost.estimate(model, tuple(size), iterations)
        left = self.remaining()
        if left <= 0 or (estimate.seconds is not None and estimate.seconds > left):
            self.left_undone.append(model)
            return False
        self.attempts.append(Attempt(model, estimate, self.clock()))
        return True

    def finished(self, record: dict[str, Any], size: tuple[int, int], iterations: int) -> None:
        """The admitted model's measurement is over (success or failure): its actual time, and the rate."""
        attempt = self.attempts[-1]
        attempt.actual = self.clock() - attempt.started
        if record.get("status") == "ok":
            self.cost.observe(attempt.model, tuple(size), iterations, attempt.actual, macs_per_image(record))

    def report(self) -> list[str]:
        """Per model estimated vs actual, the total miss, and what is left undone (one line)."""
        lines = []
        for a in self.attempts:
            if a.actual is None:
                continue
            if a.estimate.seconds is None:
                lines.append(f"{a.model}: took {a.actual:.1f} s ({a.estimate.how})")
            else:
                miss = a.actual - a.estimate.seconds
                lines.append(f"{a.model}: estimated {a.estimate.seconds:.1f} s {a.estimate.how}, took {a.actual:.1f} s ({miss:+.1f} s)")
        timed = [a for a in self.attempts if a.actual is not None and a.estimate.seconds is not None]
        if timed:
            estimated, actual = sum(a.estimate.seconds for a in timed), sum(a.actual for a in timed)
            lines.append(f"estimates of {len(timed)} model(s): {format_duration(estimated)} estimated, {format_duration(actual)} "
                         f"taken ({actual - estimated:+.1f} s, {100 * (actual - estimated) / estimated:+.0f}%)")  # fmt: skip
        spent = self.seconds - self.remaining()
        lines.append(f"time budget {format_duration(self.seconds)}: {format_duration(spent)} used")
        if self.left_undone:
            lines.append(f"left undone ({len(self.left_undone)} model(s), did not fit in the time budget; the same command "
                         f"again goes on): {', '.join(self.left_undone)}")  # fmt: skip
        return lines
