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


def median_ci(samples: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    The number of samples below the true median is Binomial(n, 1/2), so [x_(k+1), x_(n-k)] covers
    the median with probability 1 - 2·P(B ≤ k); k is the largest trim that keeps this ≥ `confidence`.
    No assumption about the shape of the distribution (latency is skewed and often bimodal). With
    too few samples for that confidence (n < 6 at 95%) the whole range is returned.
    """
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    n = len(ordered)
    alpha, total, tail, trim = 1.0 - confidence, 2**n, 0, 0
    for k in range(n // 2):
        tail += math.comb(n, k)  # tail = 2^n · P(B ≤ k)
        if 2 * tail / total > alpha:
            break
        trim = k
    return ordered[trim], ordered[n - 1 - trim]


def median_ci_exists(n: int, confidence: float = 0.95) -> bool:
    """Whether n samples are enough for an order-statistic median interval at this confidence."""
    return n >= 1 and 2 / 2**n <= 1.0 - confidence
