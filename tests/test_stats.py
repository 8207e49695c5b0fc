"""Latency statistics from known samples, against hand computation and numpy."""

import math

import numpy as np
import pytest

from segbench.stats import latency_summary, median_ci, percentile


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


def test_median_ci_by_hand_for_ten_samples():
    # n = 10: P(B <= 1) = 11/1024, doubled 0.0215 <= 0.05; P(B <= 2) = 56/1024, doubled 0.109 > 0.05.
    # So k = 2: [x_(2), x_(9)] with coverage 1 - 22/1024, the textbook interval for n = 10.
    samples = [7.0, 1.0, 9.0, 3.0, 5.0, 10.0, 2.0, 8.0, 4.0, 6.0]
    assert median_ci(samples) == (2.0, 9.0, pytest.approx(1 - 22 / 1024))


def test_median_ci_too_few_samples_and_summary_keys():
    assert median_ci([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # 2 / 32 = 0.0625 > 0.05: no 95% interval
    assert median_ci([float(i) for i in range(6)]) == (0.0, 5.0, pytest.approx(1 - 2 / 64))
    s = latency_summary([0.001 * i for i in range(1, 11)])
    assert (s["median_ci95_low_ms"], s["median_ci95_high_ms"]) == pytest.approx((2.0, 9.0))
    assert latency_summary([0.5])["median_ci95_low_ms"] is None


@pytest.mark.parametrize("n", [20, 200])
def test_median_ci_coverage_matches_the_binomial_and_holds_in_simulation(n):
    # Coverage from the binomial distribution, summed independently with numpy ...
    low, high, coverage = median_ci(list(range(n)))
    k = int(low) + 1
    pmf = [math.comb(n, j) / 2**n for j in range(n + 1)]
    assert coverage == pytest.approx(1 - 2 * sum(pmf[:k])) and coverage >= 0.95
    assert 1 - 2 * sum(pmf[: k + 1]) < 0.95  # k is the largest index that keeps 95%
    assert high == n - k
    # ... and on skewed data the true median (gamma(2, 1): 1.678...) is inside as often as promised.
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(400):
        lo, hi, _ = median_ci(list(rng.gamma(2.0, 1.0, size=n)))
        hits += lo <= 1.678346990 <= hi
    assert hits / 400 >= 0.92


def test_median_ci_ranks_match_exact_integer_binomials_and_scale_to_duration_protocols():
    """The ranks agree with the binomial computed in exact integers where those are cheap, and thousands of samples
    (a 6 s loop on a fast GPU) neither overflow nor take long: there the normal approximation is within a rank."""
    import math
    import random
    import time

    from segbench.stats import _order_statistic_index

    def exact_rank(n: int) -> int:
        total, below, k = 2**n, 0, 0
        for j in range(n // 2):
            below += math.comb(n, j)
            if 40 * below > total:  # 2 * P(B <= j) > 0.05
                break
            k = j + 1
        return k

    assert all(_order_statistic_index(n, 0.95)[0] == exact_rank(n) for n in range(1, 400))
    started = time.perf_counter()
    k, coverage = _order_statistic_index(20000, 0.95)
    assert time.perf_counter() - started < 1.0
    assert abs(k - (20000 / 2 - 1.959964 * math.sqrt(20000) / 2)) <= 1.5 and 0.95 <= coverage < 0.952
    rng = random.Random(0)
    low, high, _ = median_ci([rng.random() for _ in range(5000)])
    assert 0.45 < low < 0.5 < high < 0.55
