"""compare: flags a latency change only beyond the measured spread of both samples; no torch."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from segbench.cli import main
from segbench.compare import compare_latency
from segbench.records import write_record
from segbench.stats import median_ci

ROOT = Path(__file__).resolve().parent.parent


def skewed(n: int, median_s: float, seed: int) -> list[float]:
    """Latency-like samples: a floor plus a right-skewed tail (log-normal), in seconds."""
    rng = random.Random(seed)
    return [median_s * 0.9 + median_s * 0.1 * rng.lognormvariate(0, 0.6) for _ in range(n)]


def test_median_ci_covers_the_median_at_the_stated_rate():
    rng = random.Random(0)
    covered = sum(lo <= 0.0 <= hi for lo, hi, _ in (median_ci([rng.gauss(0, 1) for _ in range(51)]) for _ in range(2000)))
    assert 0.94 <= covered / 2000 <= 0.99  # exact order statistics: coverage >= 95% by construction
    assert median_ci(list(range(1, 201)))[:2] == (86, 115)  # the textbook ranks for n = 200
    assert median_ci([1.0, 2.0, 3.0]) is None  # too few for 95%


def test_identical_distributions_are_never_flagged():
    verdicts = {compare_latency(skewed(200, 0.010, s), skewed(200, 0.010, s + 1000), min_change=0).verdict for s in range(50)}
    assert verdicts == {"within noise"}


def test_a_clear_shift_is_flagged_both_ways():
    a, b = skewed(200, 0.010, 1), skewed(200, 0.0115, 2)
    slower = compare_latency(a, b)
    assert slower.verdict == "slower" and 1.1 < slower.ratio < 1.2
    assert compare_latency(b, a).verdict == "faster"


def test_a_real_but_tiny_shift_stays_under_the_min_change_floor():
    a = [0.010 + 1e-6 * (i % 7) for i in range(200)]
    b = [v * 1.005 for v in a]  # 0.5% slower, far beyond the (tiny) spread
    assert compare_latency(a, b).verdict == "within noise"
    assert compare_latency(a, b, min_change=0).verdict == "slower"


def test_wide_spread_hides_a_shift_that_a_narrow_one_would_show():
    rng = random.Random(3)
    a = [0.010 * rng.uniform(0.5, 1.5) for _ in range(30)]
    b = [v * 1.05 for v in (0.010 * rng.uniform(0.5, 1.5) for _ in range(30))]
    assert compare_latency(a, b).verdict == "within noise"
    assert compare_latency([0.001] * 5, [0.002] * 5).verdict == "too few samples"


def _record(model: str, hardware: str, samples: list[float]) -> dict:
    return {
        "schema_version": 1, "model": model, "status": "ok", "family": "toy", "collection": "Toy",
        "environment": {"hardware": hardware, "device_type": "cuda", "gpu_name": hardware, "cpu": "x", "date": "2026-01-01"},
        "settings": {"input_size": [32, 64], "images": len(samples), "warmup": 1},
        "params": {"inference": 1000, "total": 1200}, "macs": {"fvcore": 10**9, "thop": 10**9},
        "memory": {"measured": True, "peak_allocated_bytes": 2**20, "peak_reserved_bytes": 2**21},
        "latency": {"unit": "s", "samples": samples},
    }  # fmt: skip


@pytest.fixture
def before_after(tmp_path):
    for side, slow in (("before", 1.0), ("after", 1.3)):
        for i, model in enumerate(("m_fast", "m_slow")):
            samples = skewed(50, 0.01, i)
            rec = _record(model, "gpu-x", [s * slow if model == "m_slow" else s for s in samples])
            if side == "after":
                rec["memory"]["peak_allocated_bytes"] = 2**21
            write_record(tmp_path / side / "results" / "gpu-x" / f"{model}.json", rec)
    write_record(tmp_path / "before" / "results" / "gpu-x" / "only_before.json", _record("only_before", "gpu-x", [0.01] * 10))
    return tmp_path / "before", tmp_path / "after"


def test_compare_cli_prints_ratios_and_gates_on_regression(before_after, capsys):
    before, after = before_after
    assert main(["compare", str(before), str(after)]) == 0
    out = capsys.readouterr().out
    line = {name: next(line for line in out.splitlines() if name in line) for name in ("m_fast", "m_slow")}
    assert "within noise" in line["m_fast"] and "1.000" in line["m_fast"]
    assert "slower" in line["m_slow"] and "2.000" in line["m_slow"]  # memory doubled
    assert "only_before" in out
    assert main(["compare", str(before), str(after), "--fail-on-regression"]) == 1
    assert "latency regression in 1 model(s): m_slow" in capsys.readouterr().err
    assert main(["compare", str(after), str(before), "--fail-on-regression"]) == 0  # faster is no regression


def test_compare_pairs_two_gpus_by_model_and_accepts_hardware_dirs(tmp_path, capsys):
    for hw, scale in (("gpu-a", 1.0), ("gpu-b", 0.5)):
        write_record(tmp_path / "results" / hw / "m.json", _record("m", hw, [s * scale for s in skewed(40, 0.01, 0)]))
    assert main(["compare", str(tmp_path / "results" / "gpu-a"), str(tmp_path / "results" / "gpu-b")]) == 0
    out = capsys.readouterr().out
    assert "gpu-a → gpu-b" in out and "0.500" in out and "faster" in out
    assert main(["compare", str(tmp_path / "nowhere"), str(tmp_path)]) == 1
    assert "not a directory of results" in capsys.readouterr().err


def test_compare_does_not_import_torch(before_after):
    before, after = before_after
    code = (f"import sys; from segbench.cli import main; main(['compare', {str(before)!r}, {str(after)!r}]); "
            "assert 'torch' not in sys.modules, 'torch was imported'")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("damage", ["no latency", "no samples", "not json"])
def test_an_incomplete_record_is_skipped_with_a_warning_and_the_rest_compared(before_after, capsys, damage):
    before, after = before_after
    path = after / "results" / "gpu-x" / "m_slow.json"
    record = json.loads(path.read_text())
    if damage == "no latency":
        del record["latency"]
    elif damage == "no samples":
        record["latency"]["samples"] = []
    path.write_text("{" if damage == "not json" else json.dumps(record))
    assert main(["compare", str(before), str(after), "--fail-on-regression"]) == 0
    captured = capsys.readouterr()
    (warning,) = [line for line in captured.err.splitlines() if line.startswith("segbench: warning:")]
    assert str(path) in warning
    assert "m_fast" in captured.out and "within noise" in captured.out
    assert "in one set only (not compared): m_slow, only_before" in captured.out


@pytest.mark.parametrize("setting, a, b", [("input_size", [512, 1024], [128, 256]), ("dtype", "float32", "float16"),
                                           ("compile", False, True), ("evaluation", None, {"split": "val", "ms_flip": True})])  # fmt: skip
def test_records_measured_under_other_settings_get_no_verdict_and_never_gate(tmp_path, capsys, setting, a, b):
    for side, value, scale in (("a", a, 3.31), ("b", b, 1.0)):
        record = _record("m", "gpu-x", [s * scale for s in skewed(50, 0.01, 0)])
        record["settings"][setting] = value
        write_record(tmp_path / side / "results" / "gpu-x" / "m.json", record)
        write_record(tmp_path / side / "results" / "gpu-x" / "same.json", _record("same", "gpu-x", skewed(50, 0.01, 1)))
    assert main(["compare", str(tmp_path / "b"), str(tmp_path / "a"), "--fail-on-regression"]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if "│ m " in line]
    assert f" {setting} " in row.partition("settings differ:")[2] and "slower" not in row and "3.31" not in row
    (row,) = [line for line in out.splitlines() if "│ same " in line]
    assert "within noise" in row
