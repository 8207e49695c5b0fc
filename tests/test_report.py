"""model_zoo.md and plots: deterministic, traceable to records, and free of torch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from segbench.cli import main
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
        assert len(rows) == 2  # the summary and the family table
        stats = latency_summary(record["latency"]["samples"])
        for row in rows:
            assert f"| {stats['median_ms']:.1f}" in row
            assert f"| {record['macs']['fvcore'] / 1e9:.1f} |" in row
            assert f"| {record['params']['inference'] / 1e6:.2f} |" in row


def test_page_states_units_and_shape_convention(measured):
    zoo, out = measured
    page = render_markdown(load_frame(out / "results", zoo))
    for fragment in ("1024×2048 (H×W)", "MACs (G)", "Params (M)", "Latency median (ms)", "Mem (MB)",
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
