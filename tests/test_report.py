"""model_zoo.md and plots: deterministic, traceable to records, and free of torch."""

import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from segbench.cli import main
from segbench.export import latex_escape, to_csv, to_json, to_latex
from segbench.records import write_record
from segbench.report import load_frame, render_markdown
from segbench.stats import latency_summary

ROOT = Path(__file__).resolve().parent.parent

# Counted by hand from tests/toy_models.py: conv 3->8 3x3 (8*27 + 8) + conv 8->classes 1x1 (8*classes + classes);
# MACs at 32x64: the stride-2 stem gives 16x32 positions, each 8*27 + classes*8 multiply-adds.
TOY_PARAMS_M = {"toy_a": "0.000260", "toy_b": "0.000278"}  # 260 and 278 params, three significant digits
TOY_MACS_G = {"toy_a": "0.000127", "toy_b": "0.000135"}  # 126976 and 135168 MACs


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
            assert f"| {TOY_MACS_G[record['model']]} |" in row
            assert f"| {TOY_PARAMS_M[record['model']]} |" in row
        split = record["latency"]["stages"]
        post = [resize + argmax for resize, argmax in zip(split["resize"], split["argmax"])]  # mmseg's protocol: resize, argmax
        stages = [1000 * statistics.median(samples) for samples in (split["preprocess"], split["forward"], post)]
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


def test_gpu_readings_nvml_could_not_take_render_as_blanks(toy_zoo, tmp_path):
    """A record may lack the SM clock readings (a GPU whose NVML refuses them; the schema allows it)."""
    samples = [0.01] * 3
    record = {
        "schema_version": 1, "status": "ok", "model": "toy_a", "family": "toy", "collection": "Toy",
        "environment": {"hardware": "nvidia-h100", "device_type": "cuda", "gpu_name": "NVIDIA H100", "cpu": "Xeon",
                        "torch": "2.13.0", "date": "2026-11-22T00:00:00+00:00"},
        "settings": {"input_size": [64, 64], "images": 3, "warmup": 2, "batch_size": 1, "dtype": "float32",
                     "input": "synthetic", "weights": "random-init"},
        "params": {"inference": 1_000_000, "total": 1_200_000}, "macs": {"fvcore": 2e9, "thop": 2e9},
        "latency": {"unit": "s", "samples": samples}, "memory": {"measured": False},
        "gpu_state": {"measured": True, "energy_per_image_j": None, "warnings": [], "before": {}, "after": {"sm_clock_mhz": None}},
    }  # fmt: skip
    write_record(tmp_path / "results" / "nvidia-h100" / "toy_a.json", record)
    frame = load_frame(tmp_path / "results", toy_zoo)
    (row,) = [line for line in render_markdown(frame).splitlines() if line.startswith("| toy_a | `nvidia-h100` |")]
    assert "| — → — |" in row


def test_load_is_read_before_each_models_timed_loop_and_shown_per_record(toy_zoo, tmp_path, monkeypatch):
    """Each getloadavg call returns a new value; the record must hold the one read just before its timed loop."""
    import os

    import segbench.timing as timing

    readings, at_timed_start = iter(float(n) for n in range(1, 1000)), {}
    last = [None]

    def getloadavg():
        last[0] = next(readings)
        return (last[0], 0.0, 0.0)

    real = timing.time_predictions

    def time_predictions(stages, images, device, *, iterations, **options):
        if iterations == 4:  # the timed loop, not the warm-up
            at_timed_start[len(at_timed_start)] = last[0]
        return real(stages, images, device, iterations=iterations, **options)

    monkeypatch.setattr(os, "getloadavg", getloadavg)
    monkeypatch.setattr(timing, "time_predictions", time_predictions)
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--device", "cpu", "--images", "4", "--warmup", "1",
                 "--no-report"]) == 0  # fmt: skip
    loads = [json.loads(p.read_text())["latency"]["load_average_1min"] for p in sorted((out / "results").glob("*/*.json"))]
    assert loads == [at_timed_start[0], at_timed_start[1]] and loads[0] != loads[1]
    page = render_markdown(load_frame(out / "results", toy_zoo))
    for model, load in zip(("toy_a", "toy_b"), loads):
        (row,) = [line for line in page.splitlines() if line.startswith(f"| {model} | `") and "Preprocess" not in line and "/ " in line]
        assert f"| {load:.2f} |" in row
    (hardware_row,) = [line for line in page.splitlines() if line.startswith("| `cpu-")][:1]
    assert f"| {min(loads):.2f}–{max(loads):.2f} |" in hardware_row
    assert [r["load_average_1min"] for r in json.loads(to_json(load_frame(out / "results", toy_zoo)))] == loads


def test_small_counts_keep_three_significant_digits_everywhere(toy_zoo, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--device", "cpu", "--images", "3", "--warmup", "1",
                 "--no-report"]) == 0  # fmt: skip
    summary = capsys.readouterr().err
    frame = load_frame(out / "results", toy_zoo)
    page, tex, exported = render_markdown(frame), to_latex(frame), {r["model"]: r for r in json.loads(to_json(frame))}
    csv_rows = {line.split(",")[0]: line for line in to_csv(frame).splitlines()}
    for model, params in TOY_PARAMS_M.items():
        (summary_row,) = [line for line in summary.splitlines() if f" {model} " in line]
        assert f" {params} " in summary_row and f" {TOY_MACS_G[model]} " in summary_row
        summary_row, family_row = [line for line in page.splitlines() if line.startswith(f"| {model} | ") and "| `" not in line[:30]]
        assert f"| {TOY_MACS_G[model]} | {params} |" in summary_row and f"| {params} | {TOY_MACS_G[model]} |" in family_row
        assert f"& {params} & {TOY_MACS_G[model]} &" in tex
        count = {"toy_a": 260, "toy_b": 278}[model]
        assert exported[model]["params_m"] * 1e6 == pytest.approx(count, rel=1e-12)  # full precision, not 0.0003
        assert f",{count / 1e6!r}," in csv_rows[model]


def test_fixed_keeps_decimals_and_three_significant_digits():
    from segbench.formatting import fixed

    assert [fixed(v, 2) for v in (48.983123, 0.00026, 0.0123, 1.5, 0.0, 123456.0)] == [
        "48.98", "0.000260", "0.0123", "1.50", "0.00", "123456.00"]  # fmt: skip
    assert [fixed(v, 1) for v in (0.04, 7.25, 72.54, 725.4)] == ["0.0400", "7.25", "72.5", "725.4"]
    assert fixed(-0.00123, 2) == "-0.00123"


NASTY = "a|b \\| c `code` <b>x</b> [link](javascript:x) &amp;\n# heading\r\n- item\\"
NASTY_ZOO = f"""\
Collections:
- Name: {json.dumps("Coll|" + NASTY)}
- Name: Plain
Models:
- Name: nasty_model
  In Collection: {json.dumps("Coll|" + NASTY)}
  Metadata:
    Architecture: [{json.dumps("R-50|" + NASTY)}, "x"]
    Schedule: {json.dumps("- 80k|" + NASTY)}
    Training Resources: {json.dumps(NASTY)}
  Config: {json.dumps("# configs/a b|(c)`.py")}
  Weights: {json.dumps("https://example.com/w (1)|x`<y>.pth")}
  Results:
    Dataset: Cityscapes
    Metrics: {{mIoU: 70.0}}
    Source: {json.dumps(NASTY)}
  Build:
    callable: toy_models:tiny_segmentor
  Test:
    size: [32, 64]
- Name: failing_model
  In Collection: Plain
  Build:
    callable: toy_models:tiny_segmentor
  Test:
    size: [32, 64]
"""


def gfm_cells(line: str) -> int:
    """Cells of a GFM table row that starts and ends with '|', split as cmark-gfm does: on every '|'
    not backslash-escaped (a backslash escapes the character after it)."""
    pipes, i = 0, 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        pipes += line[i] == "|"
        i += 1
    return pipes - 1


def test_text_from_manifests_and_records_cannot_break_the_tables(tmp_path):
    """Every row of every table has the header's column count; no raw HTML, heading or list comes from data; links are encoded."""
    import csv
    import io
    from urllib.parse import quote

    from segbench.records import write_record

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "nasty.yaml").write_text(NASTY_ZOO)
    hardware = "gpu|`x`<y> (z)"
    env = {"hardware": hardware, "device_type": "cuda", "gpu_name": "GPU|" + NASTY, "cpu": NASTY, "torch": NASTY, "cuda": NASTY,
           "driver": NASTY, "git_commit": NASTY, "date": "2026-01-01" + NASTY}  # fmt: skip
    settings = {"input_size": [32, 64], "images": 7, "warmup": 1, "batch_size": 1, "dtype": NASTY, "input": NASTY, "weights": NASTY}
    ok = {"schema_version": 1, "status": "ok", "model": "nasty_model", "environment": env, "settings": settings,
          "params": {"inference": 260, "total": 260}, "macs": {"fvcore": 10**9, "thop": 10**9},
          "latency": {"unit": "s", "samples": [0.01] * 7}, "memory": {"measured": False},
          "gpu_state": {"measured": True, "warnings": [NASTY], "before": {"sm_clock_mhz": 1}, "after": {"sm_clock_mhz": 1}},
          "accuracy": {"miou": 50.0, "iou": [40.0, 60.0], "classes": ["road|" + NASTY, "<b>"], "num_images": 3, "split": NASTY,
                       "is_synthetic": False}}  # fmt: skip
    failed = {"schema_version": 1, "status": "failed", "model": "failing_model", "environment": env, "settings": settings,
              "error": {"kind": "Runtime|Error", "message": "[/backbone.layer4] " + NASTY, "traceback": ""}}  # fmt: skip
    write_record(tmp_path / "results" / hardware / "nasty_model.json", ok)
    write_record(tmp_path / "results" / hardware / "failing_model.failed.json", failed)
    frame = load_frame(tmp_path / "results", zoo)
    page = render_markdown(frame)

    lines, tables = page.splitlines(), 0
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            tables += 1
            header = gfm_cells(lines[i - 1])
            assert gfm_cells(line) == header
            for row in lines[i + 1 :]:
                if not row.strip():
                    break
                assert row.startswith("| ") and gfm_cells(row) == header, row
    assert tables == 7  # hardware, settings, summary, detail, one family (the other has a failure only), per-class, failures
    assert page.count("<") == 1  # the template's own comment: no HTML from data
    headings = [line for line in lines if line.startswith("#")]
    assert len(headings) == 8 and all(h.startswith(("# segbench", "## ")) for h in headings)
    assert all(line.startswith(("- **", "- nasty_model on ")) for line in lines if line.startswith(("-", "+", ">")))  # the template's own
    record_link = quote(f"results/{hardware}/nasty_model.json")
    assert f"]({record_link})" in page and "%7C%60x%60%3Cy%3E%20%28z%29" in record_link
    assert "](https://example.com/w%20%281%29%7Cx%60%3Cy%3E.pth)" in page

    tex = to_latex(frame)
    body = tex[tex.index(r"\toprule") : tex.index(r"\bottomrule")].splitlines()[1:]
    separators = [len(re.findall(r"(?<!\\)&", row)) for row in body if row != r"\midrule"]
    assert len(separators) == 2 and len(set(separators)) == 1  # the header and the one measured row
    assert "<" not in tex and ">" not in tex.replace("$^\\dagger$", "")
    assert all(line.count("{") >= line.count("}") - line.count(r"\}") for line in tex.splitlines())
    rows = list(csv.reader(io.StringIO(to_csv(frame))))
    assert {len(r) for r in rows} == {len(rows[0])} and rows[1][2] == "R-50|" + NASTY  # CSV keeps the raw text, quoted
    assert json.loads(to_json(frame))[0]["backbone"] == "R-50|" + NASTY


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.system('touch MARK') }}",
        "{{ lipsum.__globals__['os'].system('touch MARK') }}",
    ],
)
def test_a_template_cannot_run_python(toy_zoo, tmp_path, capsys, monkeypatch, body):
    monkeypatch.chdir(tmp_path)
    template = tmp_path / "evil.md.j2"
    template.write_text(f"# page\n{body}\n")
    assert main(["render", "--zoo", str(toy_zoo), "--output", str(tmp_path / "out"), "--template", str(template)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"segbench: error: {template}: ") and "unsafe" in err and err.count("\n") == 1, err
    assert not (tmp_path / "MARK").exists() and not (tmp_path / "out" / "model_zoo.md").exists()


def test_a_user_template_has_the_shipped_filters(measured, tmp_path):
    zoo, out = measured
    template = tmp_path / "mine.md.j2"
    template.write_text("{% for r in summary %}{{ r.model }} {{ r.params_m|fixed(3) }} {{ r.latency_median_ms|fmt }} "
                        "{{ r.config|link('cfg') }} {{ r.model|code }} {{ 'a b'|url }}\n{% endfor %}")  # fmt: skip
    assert main(["render", "--zoo", str(zoo), "--output", str(out), "--template", str(template)]) == 0
    lines = (out / "model_zoo.md").read_text().splitlines()
    assert sorted(line.split()[:2] for line in lines) == [["toy_a", TOY_PARAMS_M["toy_a"]], ["toy_b", TOY_PARAMS_M["toy_b"]]]
    assert all(line.endswith("a%20b") for line in lines)


def test_plot_on_a_full_disk_is_one_line_naming_the_folder(measured, capsys):
    zoo, out = measured
    (out / "plots").mkdir()
    (out / "plots" / "miou_vs_latency.png").symlink_to("/dev/full")  # writing to /dev/full fails with ENOSPC
    assert main(["plot", "--zoo", str(zoo), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"segbench: error: {out / 'plots'}: cannot write the plots: No space left on device\n", err


def test_a_reported_miou_is_shown_with_its_dataset_and_never_ranked_or_diffed_across_datasets(tmp_path):
    """ADE20K entries beside Cityscapes ones: the page names ADE20K beside each ADE20K number, the
    summary ranks each dataset apart (Cityscapes first), and no Δ compares numbers of two datasets."""
    from synthetic_results import ADE20K_REPORTED, add_ade20k_entries, write_synthetic_results

    zoo, out = write_synthetic_results(tmp_path, models_per_family=1, hardware=("gpu-a",))
    add_ade20k_entries(zoo, out, "gpu-a")
    frame = load_frame(out / "results", zoo)
    ade = frame[frame["model"].isin(list(ADE20K_REPORTED))]
    assert ade["miou_reported"].tolist() == list(ADE20K_REPORTED.values())
    assert set(ade["miou_dataset"]) == {"ADE20K"} and set(frame["miou_dataset"]) == {"ADE20K", "Cityscapes"}
    page = render_markdown(frame)
    summary = page.split("## Summary")[1].split("## Latency")[0]
    rows = [line for line in summary.splitlines() if line.startswith("| ") and ("_4xb2-" in line or "_8xb2-" in line)]
    datasets = ["ADE20K" if "ade20k" in row else "Cityscapes" for row in rows]
    assert datasets == sorted(datasets, key=lambda d: d != "Cityscapes") and len(rows) == 8
    for name, miou in ADE20K_REPORTED.items():
        assert f"| {name} | Swin-T | {miou:.2f} (reported, ADE20K) |" in summary
        family_row = next(line for line in page.split("## Ade")[1].splitlines() if line.startswith(f"| {name} |"))
        assert f"| {miou:.2f} (ADE20K) |" in family_row
    # a record that evaluated an ADE20K entry on Cityscapes: its mIoU is Cityscapes', and no Δ against ADE20K's
    path = next((out / "results" / "gpu-a").glob("ade_small*.json"))
    record = json.loads(path.read_text())
    record["accuracy"] = json.loads(next((out / "results" / "gpu-a").glob("fcn_*.json")).read_text())["accuracy"]
    write_record(path, record)
    row = load_frame(out / "results", zoo).set_index("model").loc["ade_small_8xb2-160k_ade20k-512x512"]
    assert row["miou_dataset"] == "Cityscapes" and row["miou_measured"] == record["accuracy"]["miou"]
    assert row["miou_reported"] == 44.0 and math.isnan(row["miou_diff"])


def test_the_page_lists_and_explains_where_the_mac_counters_disagree(toy_zoo, tmp_path):
    """Records whose fvcore or thop count is more than 1% from the primary get a row with both ratios and the
    operator groups fvcore counts differently; records whose counters agree within 1% get none."""
    base = {
        "schema_version": 1, "status": "ok", "family": "toy", "collection": "Toy",
        "environment": {"hardware": "cpu-x", "device_type": "cpu", "cpu": "x", "torch": "2.13.0", "date": "2026-11-30"},
        "settings": {"input_size": [64, 64], "images": 3, "warmup": 1, "batch_size": 1, "dtype": "float32",
                     "input": "synthetic", "weights": "random-init"},
        "params": {"inference": 10, "total": 10}, "latency": {"unit": "s", "samples": [0.01] * 3},
        "memory": {"measured": False},
    }  # fmt: skip
    attention = {"operators": "matrix products and attention", "flop_counter_macs": 2 * 10**8, "fvcore": 0,
                 "flop_counter_by_operator": {"aten.bmm": 2 * 10**8}, "fvcore_by_operator": {}}  # fmt: skip
    macs = {
        "toy_a": {"per_forward": 10**9, "per_image": 10**9, "flop_counter_macs": 10**9, "fvcore": 8 * 10**8,
                  "thop": 9 * 10**8, "operators_differing": [attention]},
        "toy_b": {"per_forward": 10**9, "per_image": 10**9, "flop_counter_macs": 10**9, "fvcore": 1_005_000_000,
                  "thop": 995_000_000},
    }  # fmt: skip
    for model, counts in macs.items():
        write_record(tmp_path / "results" / "cpu-x" / f"{model}.json", base | {"model": model, "macs": counts})
    page = render_markdown(load_frame(tmp_path / "results", toy_zoo))
    section = page.split("## Where the MAC counters disagree")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| toy_")]
    assert rows == ["| toy_a | `cpu-x` | 1.000 | 0.800 | 0.900 | matrix products and attention: fvcore 0.000 G, primary 0.200 G |"]
    assert "thop counts per module" in section  # the explanation is on the page


def test_two_protocols_of_one_model_on_one_hardware_are_told_apart_on_the_page(tmp_path):
    from segbench.records import record_path, results_folder, write_record
    from synthetic_results import write_synthetic_results

    zoo, out = write_synthetic_results(tmp_path, models_per_family=1, hardware=("gpu-a",))
    path = sorted((out / "results" / "gpu-a").glob("*.json"))[0]
    record = json.loads(path.read_text())
    record["settings"]["protocol"] = {"name": "ddrnet"}
    write_record(record_path(out / "results", results_folder("gpu-a", record["settings"]), record["model"]), record)
    rows = [line for line in render_markdown(load_frame(out / "results", zoo)).splitlines() if line.startswith(f"| {record['model']} |")]
    marked = [line for line in rows if "`gpu-a` (ddrnet protocol)" in line]
    assert marked and len(marked) == len(rows) / 2  # in every table that shows the model's hardware, one row of each
