"""Latency statistics from known samples, against hand computation and numpy."""

import math

import numpy as np
import pytest

from segbench.stats import latency_summary, percentile


def test_summary_of_known_samples():
    s = latency_summary([0.010, 0.020, 0.030, 0.040])
    assert s["n"] == 4
    assert s["mean_ms"] == pytest.approx(25.0)
    assert s["median_ms"] == pytest.approx(25.0)
    assert s["p90_ms"] == pytest.approx(37.0)  # rank 0.9 * 3 = 2.7 -> 30 + 0.7 * 10
    assert s["std_ms"] == pytest.approx(math.sqrt(((15**2) * 2 + (5**2) * 2) / 3))
    assert s["fps"] == pytest.approx(4 / 0.1)
    assert (s["min_ms"], s["max_ms"]) == pytest.approx((10.0, 40.0))


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_matches_numpy(q):
    rng = np.random.default_rng(0)
    samples = list(rng.gamma(2.0, 3.0, size=37))
    assert percentile(samples, q) == pytest.approx(float(np.percentile(samples, q)))


def test_single_sample_and_empty():
    assert latency_summary([0.5])["std_ms"] == 0.0
    with pytest.raises(ValueError):
        latency_summary([])
