"""benchmarks/latency_fidelity.py runs (a smoke test on a toy; the real comparison is a benchmark, not a test)."""

import importlib.util
from pathlib import Path

import torch

from segbench.inference import InferenceSettings
from toy_models import tiny_segmentor

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "latency_fidelity.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("latency_fidelity", SCRIPT)
    fidelity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fidelity)
    return fidelity


def test_fidelity_benchmark_compares_both_loops():
    fidelity = load_benchmark()
    result = fidelity.compare(tiny_segmentor(4), InferenceSettings(test_size=(32, 64)), torch.device("cpu"), images=3, warmup=1, repeats=2)
    assert len(result["ratios"]) == len(result["segbench_median_s"]) == len(result["hand_median_s"]) == 2
    assert result["ratio"] > 0 and result["segbench_spread"] >= 0


def test_overhead_mode_reports_the_difference_per_image(capsys):
    assert load_benchmark().main(["--overhead", "--device", "cpu", "--images", "5", "--repeats", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("harness overhead on cpu, 5 images × 2 repeats") and "segbench − hand = " in out
