"""The CLI end to end on toy models: exit codes, records, skip/force, failures that do not stop a sweep."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segbench import cli
from segbench.cli import main

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--device", "cpu", "--images", "3", "--warmup", "1"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def table_cells(text: str) -> set[str]:
    """Every cell of every line of a rich table as printed, escape codes removed."""
    return {cell.strip() for line in ANSI.sub("", text).splitlines() for cell in line.split("│")}


@pytest.fixture
def narrow_terminal(monkeypatch):
    """A 60-column terminal, as rich sees one (TTY_COMPATIBLE=1 forces terminal mode under capture)."""
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")


def records(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((out / "results").glob("*/*.json"))}


def test_bench_writes_records_page_and_plots(toy_zoo, tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST]) == 0
    found = records(out)
    assert sorted(found) == ["toy_a.json", "toy_b.json"]
    rec = found["toy_a.json"]
    assert rec["status"] == "ok" and rec["settings"]["device_type"] == "cpu"
    assert len(rec["latency"]["samples"]) == 3
    assert rec["memory"] == {"measured": False, "reason": "not measured on cpu: max_memory_allocated is CUDA-only"}
    assert rec["macs"]["fvcore"] == 16 * 32 * (8 * 3 * 9 + 4 * 8)
    assert rec["environment"]["torch"] == torch.__version__
    assert (out / "model_zoo.md").is_file()
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(
        f"miou_vs_{k}.{e}" for k in ("latency", "macs", "params") for e in ("png", "pdf")
    )


def test_default_warmup_is_one_pass_on_the_cpu_and_mmsegmentations_five_on_cuda(toy_zoo, tmp_path, monkeypatch):
    from segbench import runner, timing

    calls = []
    real = timing.time_predictions
    monkeypatch.setattr(timing, "time_predictions", lambda *a, **k: calls.append(k["iterations"]) or real(*a, **k))
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", "--device", "cpu",
                 "--images", "2", "--no-report"]) == 0  # fmt: skip
    assert records(out)["toy_a.json"]["settings"]["warmup"] == 1
    assert calls == [1, 2]  # one warm-up pass, then the two timed images
    assert runner.default_warmup(torch.device("cuda", 0)) == 5 and runner.default_warmup(torch.device("cpu")) == 1


def test_rerun_skips_current_records_and_force_remeasures(toy_zoo, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", *FAST]
    assert main(args) == 0
    first = records(out)["toy_a.json"]
    assert main(args) == 0
    assert records(out)["toy_a.json"] == first  # skipped: same file content
    assert "record is current" in capsys.readouterr().err
    assert main([*args, "--images", "2"]) == 0  # other settings: measured again
    assert len(records(out)["toy_a.json"]["latency"]["samples"]) == 2
    assert main([*args, "--images", "2", "--force"]) == 0
    assert records(out)["toy_a.json"]["environment"]["date"] >= first["environment"]["date"]


def test_a_failing_model_is_recorded_and_the_sweep_goes_on(toy_zoo, tmp_path, capsys):
    text = (toy_zoo / "toy.yaml").read_text()
    text += (
        "- Name: toy_broken\n  In Collection: Toy\n  Build: {callable: 'toy_models:broken_segmentor'}\n"
        "- Name: toy_shape\n  In Collection: Toy\n  Build: {callable: 'toy_models:shape_error_segmentor'}\n"
        "  Test: {size: [32, 64]}\n"
    )
    (toy_zoo / "toy.yaml").write_text(text)
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST]) == 1
    found = records(out)
    assert found["toy_a.json"]["status"] == found["toy_b.json"]["status"] == "ok"
    assert found["toy_broken.failed.json"]["error"]["message"] == "this builder always fails"
    assert found["toy_shape.failed.json"]["status"] == "failed"
    assert "2 of 4 model(s) failed" in capsys.readouterr().err
    page = (out / "model_zoo.md").read_text()
    assert "## Failures" in page and "this builder always fails" in page


def test_a_later_failure_does_not_replace_a_good_record(toy_zoo, tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", *FAST]) == 0
    good = records(out)["toy_a.json"]
    (toy_zoo / "toy.yaml").write_text((toy_zoo / "toy.yaml").read_text().replace("toy_models:tiny_segmentor\n    kwargs: {num_classes: 4}", "toy_models:broken_segmentor", 1))
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", *FAST]) == 1
    found = records(out)
    assert found["toy_a.json"] == good
    assert found["toy_a.failed.json"]["status"] == "failed"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_without_cuda_is_a_clear_error(toy_zoo, tmp_path, capsys):
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(tmp_path), "--gpu", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "CUDA device 0 requested but this machine has no CUDA device; use --device cpu" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--models", "nope"], "no model matches 'nope'"),
        (["bench", "--device", "tpu"], "--device: expected cpu or cuda[:N], got 'tpu'"),
        (["bench", "--preset", "nope"], "no preset 'nope'"),
        (["bench", "--compile", "--warmup", "0"], "--backend compile: needs --warmup 1 or more"),
        (["list", "--models", "nope"], "no model matches 'nope'"),
    ],
)
def test_user_errors_exit_1_with_one_line(toy_zoo, tmp_path, capsys, argv, message):
    output = ["--output", str(tmp_path)] if argv[0] == "bench" else []
    assert main([*argv, "--zoo", str(toy_zoo), *output]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("segbench: error:") and message in err and "\n" not in err


def test_validate(toy_zoo, capsys):
    assert main(["validate", "--zoo", str(toy_zoo)]) == 0
    assert "2 model(s) in 1 manifest(s): OK" in capsys.readouterr().out
    (toy_zoo / "bad.yaml").write_text("Models:\n- Name: x\n  In Collection: X\n  Build: {architecture: nope}\n")
    assert main(["validate", "--zoo", str(toy_zoo)]) == 1
    captured = capsys.readouterr()
    assert "bad.yaml: model 'x': field 'Build.architecture': unknown architecture 'nope'" in captured.err
    assert "1 error(s)" in captured.out


def test_bench_py_entry_point_exit_code(toy_zoo, tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench.py"), "--zoo", str(toy_zoo), "--output", str(tmp_path), "--models", "missing"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().startswith("segbench: error: --models: no model matches 'missing'")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "zoo" / "presets").glob("*.yaml")))
def test_every_shipped_preset_is_valid_and_names_zoo_models(name):
    from segbench.manifest import load_zoo, select_models
    from segbench.presets import load_preset

    preset = load_preset(name)
    assert len(select_models(load_zoo(ROOT / "zoo"), preset["models"])) == len(preset["models"])


def test_shipped_quickstart_preset_runs_on_the_cpu():
    from segbench.presets import load_preset

    preset = load_preset("quickstart")
    assert preset["device"] == "cpu" and preset["input_size"] == (512, 1024)


def test_train_iters_from_a_preset_and_the_flag_winning_over_it(toy_zoo, tmp_path):
    preset = tmp_path / "no-training.yaml"
    preset.write_text("images: 2\nwarmup: 1\ntrain_iters: 0\ndevice: cpu\n")
    common = ["bench", "--zoo", str(toy_zoo), "--models", "toy_a", "--preset", str(preset), "--no-report"]
    assert main([*common, "--output", str(tmp_path / "a")]) == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "a" / "results").glob("*/toy_a.json")]
    assert record["training"]["reason"].endswith("--train-iters 0")
    assert main([*common, "--output", str(tmp_path / "b"), "--train-iters", "3"]) == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "b" / "results").glob("*/toy_a.json")]
    assert record["training"]["reason"].endswith("CUDA only, this run is on cpu")


def test_preset_with_a_negative_warmup_names_file_and_field(toy_zoo, tmp_path, capsys):
    preset = tmp_path / "bad.yaml"
    preset.write_text("images: 3\nwarmup: -1\n")
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(tmp_path), "--preset", str(preset)]) == 1
    assert f"{preset}: field 'warmup': expected an integer of at least 0, got -1" in capsys.readouterr().err


def test_profile_prints_the_three_counts_and_a_breakdown(toy_zoo, capsys, monkeypatch):
    args = ["profile", "toy_a", "--zoo", str(toy_zoo), "--breakdown", "--depth", "1", "--input-size", "64x64"]
    assert main([*args, "--cross-check"]) == 0
    out = capsys.readouterr().out
    stem, classifier = 32 * 32 * 8 * 3 * 9, 32 * 32 * 4 * 8  # 3x3 stride-2 conv, then 1x1 conv, at 32x32
    assert "toy_a at 64×64 (H×W)" in out and "thop/fvcore 1.0000" in out and "fvcore/primary 1.0000" in out
    assert f"MACs per image as tested (whole): 1 × {(stem + classifier) / 1e3:.2f} K" in out
    table = out[out.index("params and MACs per module"):]
    monkeypatch.setattr("segbench.complexity.fvcore_macs", None)  # without --cross-check no real forward pass runs
    assert main(args) == 0
    quick = capsys.readouterr().out
    assert "fvcore" not in quick and quick.endswith(table)
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in out.splitlines() if line.count("│") == 6}
    assert rows["(model)"] == ["TinySegmentor", "260", f"{(stem + classifier) / 1e3:.2f} K", "100.0"]
    assert rows["stem"][2] == f"{stem / 1e3:.2f} K" and rows["classifier"][3] == f"{100 * classifier / (stem + classifier):.1f}"
    assert main(["profile", "toy_*", "--zoo", str(toy_zoo)]) == 1  # two models: name one


@pytest.mark.parametrize(
    "argv, message, command",
    [
        (["bench", "--images", "0"], "argument --images: expected an integer of at least 1, got 0", "segbench bench"),
        (["plot", "--x", "speed"], "argument --x: invalid choice: 'speed'", "segbench plot"),
        (["list", "--bogus"], "unrecognized arguments: --bogus", "segbench list"),
        (["nosuchcommand"], "argument command: invalid choice: 'nosuchcommand'", "segbench"),
    ],
)
def test_usage_errors_are_one_line_with_a_pointer_to_help(capsys, argv, message, command):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("segbench: error: ") and message in err
    assert err.rstrip().endswith(f"(see '{command} --help')")


def test_list_never_breaks_a_name_in_a_narrow_terminal(narrow_terminal, capsys):
    from segbench.manifest import load_zoo

    specs = load_zoo(ROOT / "zoo")
    assert main(["list"]) == 0
    cells = table_cells(capsys.readouterr().out)
    assert max(len(s.name) for s in specs) > 50  # longer than a 60-column table leaves for a column
    assert {s.name for s in specs} <= cells and {s.family for s in specs} <= cells  # both are typed into --models


LONG_NAME = "toy_long_d8-mg124_4xb2-80k_cityscapes-512x1024_long_name"


def test_summary_keeps_names_whole_and_counts_skipped_models_in_one_line(toy_zoo, tmp_path, capsys, narrow_terminal):
    (toy_zoo / "toy.yaml").write_text(
        (toy_zoo / "toy.yaml").read_text()
        + f"- Name: {LONG_NAME}\n  In Collection: Toy\n  Build: {{callable: 'toy_models:tiny_segmentor'}}\n  Test: {{size: [32, 64]}}\n"
        + "- Name: toy_broken\n  In Collection: Toy\n  Build: {callable: 'toy_models:broken_segmentor'}\n"
    )
    out = tmp_path / "out"
    common = ["bench", "--zoo", str(toy_zoo), "--output", str(out), "--no-report", *FAST]
    assert main([*common, "--models", "toy_a", "toy_b"]) == 0
    capsys.readouterr()
    assert main(common) == 1  # toy_a and toy_b skipped, the long one measured, toy_broken failed
    err = ANSI.sub("", capsys.readouterr().err)
    summary = err[err.index("segbench summary"):]
    cells = table_cells(summary)
    assert LONG_NAME in cells and "toy_broken" in cells
    assert "toy_a" not in cells and "toy_b" not in cells  # no row per skipped model
    assert "2 model(s) skipped: their records are current (--force re-measures them)" in summary


def test_brackets_in_error_messages_are_printed_as_text_and_do_not_end_the_sweep(toy_zoo, tmp_path, capsys):
    from toy_models import BRACKETED_MESSAGE

    (toy_zoo / "toy.yaml").write_text(
        (toy_zoo / "toy.yaml").read_text().replace("- Name: toy_a", "- Name: toy_0\n  In Collection: Toy\n"
                                                   "  Build: {callable: 'toy_models:bracketed_error_segmentor'}\n- Name: toy_a", 1)
    )  # fmt: skip
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST]) == 1  # failed first, then the others
    err = capsys.readouterr().err
    assert f"FAIL toy_0: {BRACKETED_MESSAGE}" in err
    assert {name: r["status"] for name, r in records(out).items()} == {"toy_0.failed.json": "failed", "toy_a.json": "ok", "toy_b.json": "ok"}
    assert "1 of 3 model(s) failed" in err


def test_manifest_text_with_brackets_is_listed_as_written(toy_zoo, capsys):
    text = (toy_zoo / "toy.yaml").read_text()
    text = text.replace("Architecture: [Tiny, Toy]", "Architecture: ['[/backbone.layer4]', Toy]")
    text = text.replace("  Results:\n    Dataset: Cityscapes\n    Metrics: {mIoU: 60.0}", "  Results:\n  - Dataset: '[bold]ADE20K'\n    Metrics: {mIoU: 40.0}")
    (toy_zoo / "toy.yaml").write_text(text)
    assert main(["list", "--zoo", str(toy_zoo)]) == 0
    cells = table_cells(capsys.readouterr().out)
    assert "[/backbone.layer4]" in cells and "40.00 ([bold]ADE20K)" in cells


def test_profile_reads_only_the_manifests_that_name_the_model(toy_zoo, capsys):
    (toy_zoo / "broken.yaml").write_text("Models: [\n")  # another family's manifest, unreadable
    assert main(["profile", "toy_a", "--zoo", str(toy_zoo)]) == 0
    assert "toy_a at 32×64 (H×W)" in capsys.readouterr().out
    assert main(["profile", "toy_*", "--zoo", str(toy_zoo)]) == 1  # a glob: every manifest is read
    assert f"{toy_zoo / 'broken.yaml'}: invalid YAML" in capsys.readouterr().err
    (toy_zoo / "broken.yaml").write_text((toy_zoo / "toy.yaml").read_text())  # a name in two manifests is still an error
    assert main(["profile", "toy_a", "--zoo", str(toy_zoo)]) == 1
    assert "duplicate model name" in capsys.readouterr().err


def test_profile_imports_no_table_or_plotting_library(toy_zoo):
    """`segbench profile` starts fast: rich (only for --breakdown), pandas and matplotlib stay unimported."""
    code = f"import sys; from segbench.cli import main; code = main(['profile', 'toy_a', '--zoo', {str(toy_zoo)!r}]); " \
        "print(sorted(m for m in ('rich', 'pandas', 'matplotlib') if m in sys.modules)); sys.exit(code)"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}  # this tree's segbench; toy_models from tests/
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT / "tests", env=environment)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("toy_a at 32×64 (H×W)") and done.stdout.splitlines()[-1] == "[]"


def test_profile_pauses_the_garbage_collector_for_itself_only(toy_zoo, monkeypatch):
    import gc

    seen = []
    monkeypatch.setattr(cli, "_profile", lambda args: seen.append(gc.isenabled()) or 0)
    assert main(["profile", "toy_a", "--zoo", str(toy_zoo)]) == 0 and seen == [False] and gc.isenabled()
    gc.disable()  # a caller that paused it keeps it paused
    try:
        assert main(["profile", "toy_a", "--zoo", str(toy_zoo)]) == 0 and not gc.isenabled()
    finally:
        gc.enable()


def test_profile_of_a_model_that_cannot_run_on_meta_counts_with_fvcore(toy_zoo, capsys):
    manifest = toy_zoo / "toy.yaml"
    manifest.write_text(manifest.read_text().replace("tiny_segmentor\n    kwargs: {num_classes: 4}", "data_dependent_segmentor\n    kwargs: {}"))
    assert main(["profile", "toy_a", "--zoo", str(toy_zoo)]) == 0
    out = capsys.readouterr().out
    hand = 16 * 32 * (8 * 3 * 9 + 4 * 8)  # as TinySegmentor at 32x64
    assert f"{hand / 1e3:.2f} K (fvcore: the model cannot run on the meta device" in out


@pytest.mark.parametrize(
    "content, expect",
    [
        (b"images: 3\ndevice: \xff\n", "not UTF-8 text"),
        (b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
         b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
         b"models: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n", "expands to more than"),
        (b"models: [toy_a, 2024-01-01]\n", "field 'models[1]'"),
        (b"models: [toy_a, 7]\n", "field 'models': expected a list of names"),
        (b"measure: [params, nope]\n", "field 'measure': expected a list of latency, macs, memory, miou, params, training, got 'nope'"),
        (b"measure: []\n", "field 'measure': expected a list of latency, macs, memory, miou, params, training, got nothing"),
    ],
)
def test_a_bad_preset_is_one_line_naming_file_and_field(toy_zoo, tmp_path, capsys, content, expect):
    preset = tmp_path / "bad.yaml"
    preset.write_bytes(content)
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(tmp_path / "out"), "--preset", str(preset)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"segbench: error: {preset}") and expect in err and err.count("\n") == 1, err
    assert not (tmp_path / "out" / "results").exists()  # refused before anything was measured


def test_a_preset_chooses_what_to_measure_and_the_flag_wins(toy_zoo, tmp_path):
    preset = tmp_path / "counts.yaml"
    preset.write_text("measure: [params, macs]\ndevice: cpu\nimages: 2\nwarmup: 1\n")
    common = ["bench", "--zoo", str(toy_zoo), "--models", "toy_a", "--preset", str(preset), "--no-report"]
    assert main([*common, "--output", str(tmp_path / "a")]) == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "a" / "results").glob("*/toy_a.json")]
    assert record["settings"]["measure"] == ["macs", "params"] and "latency" not in record
    assert main([*common, "--output", str(tmp_path / "b"), "--measure", "latency"]) == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "b" / "results").glob("*/toy_a.json")]
    assert record["settings"]["measure"] == ["latency"] and len(record["latency"]["samples"]) == 2


def test_render_on_a_full_disk_is_one_line_naming_the_folder(toy_zoo, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name, fmt in (("model_zoo.md", "md"), ("model_zoo.csv", "csv")):
        (out / name).symlink_to("/dev/full")  # writing to /dev/full fails with ENOSPC, as on a full disk
        assert main(["render", "--zoo", str(toy_zoo), "--output", str(out), "--format", fmt]) == 1
        err = capsys.readouterr().err
        assert err == f"segbench: error: {out}: cannot write {name}: No space left on device\n", err
