"""model_zoo.md and plots: deterministic, traceable to records, and free of torch."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from segbench.cli import main
from segbench.export import latex_escape, to_json, to_latex
from segbench.report import load_frame, render_markdown
from segbench.stats import latency_summary

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def measured(toy_zoo, tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--device", "cpu", "--images", "4",
                 "--warmup", "1", "--no-report"]) == 0  # fmt: skip
    return toy_zoo, out


def test_render_is_byte_identical_for_unchanged_inputs(measured):
    zoo, out = measured
    assert main(["render", "--zoo", str(zoo), "--output", str(out)]) == 0
    first = (out / "model_zoo.md").read_bytes()
    assert main(["render", "--zoo", str(zoo), "--output", str(out)]) == 0
    assert (out / "model_zoo.md").read_bytes() == first
    assert render_markdown(load_frame(out / "results", zoo)).encode() == first


def test_every_measured_number_traces_to_its_record(measured):
    zoo, out = measured
    page = render_markdown(load_frame(out / "results", zoo))
    for path in sorted((out / "results").glob("*/*.json")):
        record = json.loads(path.read_text())
        link = path.relative_to(out).as_posix()
        rows = [line for line in page.splitlines() if f"]({link})" in line and line.startswith(f"| {record['model']} ")]
        assert len(rows) == 3  # the summary, the detail and the family table
        stats = latency_summary(record["latency"]["samples"])
        for row in rows:
            assert f"| {stats['median_ms']:.1f}" in row
        for row in (rows[0], rows[2]):
            assert f"| {record['macs']['fvcore'] / 1e9:.1f} |" in row
            assert f"| {record['params']['inference'] / 1e6:.2f} |" in row
        stages = [1000 * statistics.median(record["latency"]["stages"][s]) for s in ("preprocess", "forward", "postprocess")]
        assert f"| {stages[0]:.1f} / {stages[1]:.1f} / {stages[2]:.1f} |" in rows[1]


def test_page_states_units_and_shape_convention(measured):
    zoo, out = measured
    page = render_markdown(load_frame(out / "results", zoo))
    for fragment in ("1024×2048 (H×W)", "MACs/image (G)", "Params (M)", "Latency median (ms)", "Inference mem (MB)", "Training mem (GB)",
                     "one fused\n  multiply-add counts once", "`cudnn.benchmark=False`", "50.50 (reported)"):  # fmt: skip
        assert fragment in page
    assert "2048x1024" not in page


def test_models_without_records_still_listed_with_reported_numbers(toy_zoo, tmp_path):
    page = render_markdown(load_frame(tmp_path / "no-results", toy_zoo))
    assert "| toy_b | " in page and "| 60.00 |" in page
    assert "No measurements yet" in page


def test_render_and_plot_do_not_import_torch(measured):
    zoo, out = measured
    code = (
        "import sys; from segbench.cli import main; "
        f"assert main(['render', '--zoo', {str(zoo)!r}, '--output', {str(out)!r}]) == 0; "
        f"assert main(['plot', '--zoo', {str(zoo)!r}, '--output', {str(out)!r}]) == 0; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == ["miou_vs_latency.png", "miou_vs_macs.png", "miou_vs_params.png"]


def test_plot_with_no_records_says_so(toy_zoo, tmp_path, capsys):
    assert main(["plot", "--zoo", str(toy_zoo), "--output", str(tmp_path)]) == 1
    assert "nothing to plot" in capsys.readouterr().err


def test_render_check_passes_when_current_and_fails_with_a_diff_when_stale(measured, capsys):
    zoo, out = measured
    args = ["render", "--zoo", str(zoo), "--output", str(out)]
    assert main([*args, "--check"]) == 1  # missing
    assert "(missing)" in capsys.readouterr().out
    assert main(args) == 0
    assert main([*args, "--check"]) == 0
    page = out / "model_zoo.md"
    page.write_text(page.read_text().replace("| toy_a |", "| toy_a_edited |", 1))
    capsys.readouterr()
    assert main([*args, "--check"]) == 1
    captured = capsys.readouterr()
    assert "-| toy_a_edited |" in captured.out and "+| toy_a |" in captured.out
    assert "out of date" in captured.err and "`segbench render --output" in captured.err
    assert "toy_a_edited" in page.read_text()  # --check writes nothing


def test_exports_are_deterministic_and_agree_with_the_page(measured):
    zoo, out = measured
    args = ["render", "--zoo", str(zoo), "--output", str(out), "--format", "md", "csv", "json", "latex"]
    assert main(args) == 0
    first = {p.name: p.read_bytes() for p in out.glob("model_zoo.*")}
    assert sorted(first) == ["model_zoo.csv", "model_zoo.json", "model_zoo.md", "model_zoo.tex"]
    assert main(args) == 0 and main([*args, "--check"]) == 0
    assert {p.name: p.read_bytes() for p in out.glob("model_zoo.*")} == first
    rows = {r["model"]: r for r in json.loads(first["model_zoo.json"])}
    record = json.loads(next((out / "results").glob("*/toy_a.json")).read_text())
    assert rows["toy_a"]["latency_median_ms"] == round(latency_summary(record["latency"]["samples"])["median_ms"], 4)
    assert rows["toy_a"]["train_batch_size"] == 2 and rows["toy_a"]["miou_reported"] == 50.5
    assert first["model_zoo.csv"].decode().splitlines()[0].startswith("model,family,backbone,crop_size_hxw,schedule,")


def test_latex_table_uses_booktabs_and_escapes(measured):
    zoo, out = measured
    tex = to_latex(load_frame(out / "results", zoo))
    assert [line for line in tex.splitlines() if line in (r"\toprule", r"\midrule", r"\bottomrule")] == [
        r"\toprule", r"\midrule", r"\bottomrule"]  # fmt: skip
    assert r"toy\_a & Tiny & 50.50$^\dagger$" in tex and r"mIoU (\%)" in tex and "Latency (ms)" in tex
    assert latex_escape("a_b & 50% #1 {x}") == r"a\_b \& 50\% \#1 \{x\}"


def test_gpu_record_details_reach_the_page_and_the_exports(toy_zoo, tmp_path):
    """A record shaped as a CUDA run writes it (made-up numbers; the arithmetic is checked by hand)."""
    from segbench.records import write_record

    samples = [0.010, 0.012, 0.011, 0.013, 0.009, 0.014, 0.010]  # median 11 ms; 95% CI = [x(1), x(7)] = [9, 14] ms
    record = {
        "schema_version": 1, "status": "ok", "model": "toy_a", "family": "toy", "collection": "Toy",
        "environment": {"hardware": "nvidia-h100", "device_type": "cuda", "gpu_name": "NVIDIA H100", "cpu": "Xeon",
                        "torch": "2.13.0", "cuda": "12.8", "cudnn": 91000, "driver": "580.1", "torch_threads": 8,
                        "segbench": "0.1.0", "git_commit": "0" * 40, "date": "2026-11-22T00:00:00+00:00"},
        "settings": {"input_size": [64, 64], "images": 7, "warmup": 2, "batch_size": 1, "dtype": "float16",
                     "cudnn_benchmark": False, "cudnn_deterministic": True, "input": "synthetic", "weights": "random-init"},
        "params": {"inference": 1_000_000, "total": 1_200_000}, "macs": {"fvcore": 2e9, "thop": 2e9},
        "latency": {"unit": "s", "samples": samples, "cuda_event_samples": [s - 0.0005 for s in samples],
                    "stages": {"clock": "cuda_event", "preprocess": [0.001] * 7, "forward": [0.008] * 7, "postprocess": [0.003] * 7}},
        "memory": {"measured": True, "static_bytes": 2**20, "peak_allocated_bytes": 300 * 2**20, "peak_reserved_bytes": 512 * 2**20},
        "training": {"measured": True, "step": {"unit": "s", "samples": [0.25, 0.20, 0.30]},
                     "memory": {"peak_allocated_bytes": 3 * 2**30, "peak_reserved_bytes": 4 * 2**30}},
        "gpu_state": {"measured": True, "energy_per_image_j": 1.25, "warnings": ["SM clock dropped from 1980 to 1500 MHz during timing"],
                      "before": {"sm_clock_mhz": 1980}, "after": {"sm_clock_mhz": 1500}},
    }  # fmt: skip
    write_record(tmp_path / "results" / "nvidia-h100" / "toy_a.json", record)
    frame = load_frame(tmp_path / "results", toy_zoo)
    page = render_markdown(frame)
    (row,) = [line for line in page.splitlines() if line.startswith("| toy_a | `nvidia-h100` |")]
    assert "| float16 | 11.0 [9.0, 14.0] | " in row and "| 10.5 |" in row  # events: 11 - 0.5 ms
    assert "| 1.0 / 8.0 / 3.0 | 300 / 512 | 3.00 / 4.00 | 0.250 | 1.25 | 1980 → 1500 |" in row
    assert "- toy_a on `nvidia-h100`: SM clock dropped from 1980 to 1500 MHz during timing" in page
    (exported,) = [r for r in json.loads(to_json(frame)) if r["hardware"] == "nvidia-h100"]
    assert exported["latency_median_ci95_low_ms"] == 9.0 and exported["latency_median_ci95_high_ms"] == 14.0
    assert exported["inference_mem_reserved_mb"] == 512 and exported["train_step_s"] == 0.25 and exported["energy_j_per_image"] == 1.25
