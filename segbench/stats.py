"""Latency statistics derived from raw per-image samples (seconds). Pure Python: no torch, no numpy."""

from __future__ import annotations

import math
import statistics


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(samples: list[float]) -> dict[str, float]:
    """mean, median, p90, std (sample, n-1), min, max in milliseconds, and fps = n / sum of samples."""
    if not samples:
        raise ValueError("no latency samples")
    ms = [s * 1000.0 for s in samples]
    return {
        "n": len(ms),
        "mean_ms": statistics.fmean(ms),
        "median_ms": statistics.median(ms),
        "p90_ms": percentile(ms, 90),
        "std_ms": statistics.stdev(ms) if len(ms) > 1 else 0.0,
        "min_ms": min(ms),
        "max_ms": max(ms),
        "fps": len(samples) / math.fsum(samples),
    }
