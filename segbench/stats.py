"""Latency statistics derived from raw per-image samples (seconds). Pure Python: no torch, no numpy."""

from __future__ import annotations

import functools
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


def median_ci(samples: list[float], confidence: float = 0.95) -> tuple[float, float, float] | None:
    """(low, high, coverage): a distribution-free confidence interval of the median from order statistics.

    The interval [x_(k), x_(n+1-k)] misses the true median only if k or more samples fall on one
    side of it, which happens with probability 2·P(Binomial(n, 1/2) < k); k is the largest index
    that keeps this at or below 1 - confidence, and the exact coverage is returned with the
    interval. Latency distributions are skewed and multimodal, so no normal approximation.
    None when n is too small for any interval to reach the confidence (n < 6 at 95%).
    """
    k, coverage = _order_statistic_index(len(samples), confidence)
    if k == 0:
        return None
    ordered = sorted(samples)
    return ordered[k - 1], ordered[len(samples) - k], coverage


@functools.lru_cache(maxsize=256)
def _order_statistic_index(n: int, confidence: float) -> tuple[int, float]:
    """(k, coverage) of median_ci for n samples; depends on n only, so a page of records computes it once."""
    # P(B = j) in log space: exact integers (2^n, C(n, j)) grow too large for a float, and too slow, past ~1000 samples,
    # which a duration protocol on a fast GPU times; a float's 1e-15 is far below any confidence that matters here.
    log_total = n * math.log(2)
    k, outside, below = 0, 0.0, 0.0  # below: P(B <= j); outside: the same at j = k - 1
    for j in range(n // 2):
        below += math.exp(math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) - log_total)
        if 2 * below > 1 - confidence:
            break
        k, outside = j + 1, below
    return k, 1 - 2 * outside


def latency_summary(samples: list[float]) -> dict[str, float]:
    """mean, median with its 95% confidence interval, p90, std (sample, n-1), min, max in
    milliseconds, and fps = n / sum of samples."""
    if not samples:
        raise ValueError("no latency samples")
    ms = [s * 1000.0 for s in samples]
    ci = median_ci(ms)
    return {
        "n": len(ms),
        "mean_ms": statistics.fmean(ms),
        "median_ms": statistics.median(ms),
        "median_ci95_low_ms": ci[0] if ci else None,
        "median_ci95_high_ms": ci[1] if ci else None,
        "p90_ms": percentile(ms, 90),
        "std_ms": statistics.stdev(ms) if len(ms) > 1 else 0.0,
        "min_ms": min(ms),
        "max_ms": max(ms),
        "fps": len(samples) / math.fsum(samples),
    }
