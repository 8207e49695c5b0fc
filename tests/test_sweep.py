"""A sweep's edges: checks before anything is built, what is reused, what is measured, concurrent sweeps,
Ctrl-C, the page of a selection, and drawing the plots without forking a threaded process."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import segbench.runner
import segbench.timing
from segbench.cli import main

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--device", "cpu", "--images", "2", "--warmup", "1", "--workers", "0"]
ALL_MEASUREMENTS = ["latency", "macs", "memory", "miou", "params", "training"]
SLOW_ZOO = """\
- Name: toy_slow_a
  In Collection: Toy
  Build: {callable: 'sweep_models:slow_segmentor', kwargs: {tag: toy_slow_a, delay: 0.25}}
  Test: {size: [32, 64]}
- Name: toy_slow_b
  In Collection: Toy
  Build: {callable: 'sweep_models:slow_segmentor', kwargs: {tag: toy_slow_b, delay: 0.25}}
  Test: {size: [32, 64]}
"""


def records(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((out / "results").glob("*/*.json"))}


def bench(toy_zoo, out, *extra) -> int:
    return main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST, *extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("segbench: error:") and "\n" not in err and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- checks before anything is built


def test_an_unwritable_output_is_one_line_before_any_model_is_built(toy_zoo, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"  # cannot be created, even by root
    assert bench(toy_zoo, out, "--models", "toy_a") == 1
    assert str(out / "results") in one_line_error(capsys)


@pytest.mark.parametrize("layout", ["missing", "empty"])
def test_a_data_root_without_pairs_is_one_line_before_any_model_is_built(toy_zoo, tmp_path, capsys, layout):
    root = tmp_path / "cityscapes"
    if layout == "empty":
        (root / "leftImg8bit" / "val" / "aachen").mkdir(parents=True)
        (root / "gtFine" / "val" / "aachen").mkdir(parents=True)
    out = tmp_path / "out"
    assert bench(toy_zoo, out, "--data-root", str(root)) == 1
    assert str(root) in one_line_error(capsys)
    assert not list(out.glob("results/*/*.json"))  # no model got as far as a record


# ---------------------------------------------------------------- what a re-run reuses


def test_a_changed_dataset_file_makes_the_record_stale(toy_zoo, synthetic_cityscapes, tmp_path, capsys):
    root = tmp_path / "cityscapes"
    shutil.copytree(synthetic_cityscapes, root)
    out = tmp_path / "out"
    args = ["--models", "toy_a", "--data-root", str(root), "--no-report"]
    assert bench(toy_zoo, out, *args) == 0
    first = records(out)["toy_a.json"]
    assert bench(toy_zoo, out, *args) == 0
    assert "record is current" in capsys.readouterr().err
    (label,) = root.glob("gtFine/val/cologne/*_gtFine_labelIds.png")
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))  # e.g. relabelled in place
    assert bench(toy_zoo, out, *args) == 0
    assert "record is current" not in capsys.readouterr().err
    second = records(out)["toy_a.json"]
    assert second["settings"]["evaluation"]["fingerprint"] != first["settings"]["evaluation"]["fingerprint"]


def test_a_changed_builder_module_makes_the_record_stale(toy_zoo, tmp_path, monkeypatch, capsys):
    modules = tmp_path / "modules"
    modules.mkdir()
    builder = modules / "sweep_user_builder.py"
    builder.write_text("from toy_models import tiny_segmentor as build\n")
    monkeypatch.syspath_prepend(str(modules))
    (toy_zoo / "toy.yaml").write_text(
        (toy_zoo / "toy.yaml").read_text()
        + "- Name: toy_user\n  In Collection: Toy\n  Build: {callable: 'sweep_user_builder:build'}\n  Test: {size: [32, 64]}\n"
    )
    out = tmp_path / "out"
    args = ["--models", "toy_user", "--no-report"]
    assert bench(toy_zoo, out, *args) == 0
    source = records(out)["toy_user.json"]["settings"]["builder"]
    assert source == {"module": "sweep_user_builder", "sha256": hashlib.sha256(builder.read_bytes()).hexdigest()}
    assert bench(toy_zoo, out, *args) == 0
    assert "record is current" in capsys.readouterr().err
    builder.write_text(builder.read_text() + "# the user changed the model\n")
    assert bench(toy_zoo, out, *args) == 0
    assert "record is current" not in capsys.readouterr().err
    assert records(out)["toy_user.json"]["settings"]["builder"]["sha256"] == hashlib.sha256(builder.read_bytes()).hexdigest()


# ---------------------------------------------------------------- --measure


def test_measure_params_and_macs_only_skips_timing_and_the_page_shows_dashes(toy_zoo, tmp_path, monkeypatch):
    def no_timing(*args, **kwargs):
        raise AssertionError("timed although --measure excludes latency")

    monkeypatch.setattr(segbench.timing, "time_predictions", no_timing)
    out = tmp_path / "out"
    assert bench(toy_zoo, out, "--models", "toy_a", "--measure", "params,macs") == 0
    record = records(out)["toy_a.json"]
    assert record["settings"]["measure"] == ["macs", "params"]
    assert record["macs"]["fvcore"] == 16 * 32 * (8 * 3 * 9 + 4 * 8) and record["params"]["inference"] == 8 * 3 * 9 + 8 + 4 * 8 + 4
    assert not {"latency", "memory", "training", "gpu_state", "accuracy"} & set(record)
    page = (out / "model_zoo.md").read_text().splitlines()
    summary_row = next(line for line in page if line.startswith("| toy_a |") and "[json](" in line)
    assert summary_row.split(" | ")[5:8] == ["—", "—", "—"]  # latency, fps, inference memory: not measured, not failed


def test_measure_miou_only_evaluates(toy_zoo, synthetic_cityscapes, tmp_path, monkeypatch):
    monkeypatch.setattr(segbench.runner, "count_macs_as_tested", lambda *a, **k: pytest.fail("MACs counted"))
    out = tmp_path / "out"
    assert bench(toy_zoo, out, "--models", "toy_a", "--measure", "miou", "--data-root", str(synthetic_cityscapes)) == 0
    record = records(out)["toy_a.json"]
    assert record["settings"]["measure"] == ["miou"] and record["accuracy"]["num_images"] == 5
    assert not {"latency", "memory", "training", "params", "macs"} & set(record)


def test_measure_defaults_to_everything_and_rejects_what_it_cannot_do(toy_zoo, tmp_path, capsys):
    out = tmp_path / "out"
    assert bench(toy_zoo, out, "--models", "toy_a", "--no-report") == 0
    assert records(out)["toy_a.json"]["settings"]["measure"] == ALL_MEASUREMENTS
    capsys.readouterr()
    assert bench(toy_zoo, out, "--models", "toy_a", "--measure", "miou") == 1
    assert "--measure miou" in one_line_error(capsys)
    with pytest.raises(SystemExit) as exited:
        bench(toy_zoo, out, "--models", "toy_a", "--measure", "latency,speed")
    assert exited.value.code == 2 and "'speed'" in capsys.readouterr().err


# ---------------------------------------------------------------- allocation failures


def test_a_cpu_allocation_failure_is_recorded_as_out_of_memory(toy_zoo, tmp_path):
    (toy_zoo / "toy.yaml").write_text(
        (toy_zoo / "toy.yaml").read_text()
        + "- Name: toy_alloc\n  In Collection: Toy\n  Build: {callable: 'sweep_models:cpu_alloc_failing_segmentor'}\n"
    )
    out = tmp_path / "out"
    assert bench(toy_zoo, out, "--models", "toy_alloc", "--no-report") == 1
    error = records(out)["toy_alloc.failed.json"]["error"]
    assert error["kind"] == "out_of_memory" and error["message"].startswith("[enforce fail at alloc_cpu.cpp:127]")


# ---------------------------------------------------------------- Ctrl-C and the page of a selection


def test_ctrl_c_renders_the_page_from_the_records_written_so_far(toy_zoo, tmp_path, monkeypatch, capsys):
    measured = []
    real_measure = segbench.runner.measure

    def interrupted_on_the_second_model(spec, *args, **kwargs):
        measured.append(spec.name)
        if len(measured) == 2:
            raise KeyboardInterrupt
        return real_measure(spec, *args, **kwargs)

    monkeypatch.setattr(segbench.runner, "measure", interrupted_on_the_second_model)
    out = tmp_path / "out"
    assert bench(toy_zoo, out) == 130
    assert measured == ["toy_a", "toy_b"] and sorted(records(out)) == ["toy_a.json"]
    page = (out / "model_zoo.md").read_text()
    assert any(line.startswith("| toy_a |") and "(results/" in line for line in page.splitlines())  # measured, linked
    assert "| toy_b |" in page  # selected, not measured: a row of dashes
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [f"miou_vs_{x}.png" for x in ("latency", "macs", "params")]
    assert "interrupted" in capsys.readouterr().err


def test_the_page_of_a_sweep_covers_its_selection_and_render_keeps_every_entry(toy_zoo, tmp_path):
    out = tmp_path / "out"
    assert bench(toy_zoo, out, "--models", "toy_a") == 0
    page = (out / "model_zoo.md").read_text()
    assert "| toy_a |" in page and "toy_b" not in page
    assert main(["render", "--zoo", str(toy_zoo), "--output", str(out)]) == 0
    assert "| toy_b |" in (out / "model_zoo.md").read_text()
    assert main(["render", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a"]) == 0
    assert (out / "model_zoo.md").read_text() == page


# ---------------------------------------------------------------- plots without forking


def test_plots_are_drawn_without_forking_the_sweeps_process(tmp_path, monkeypatch):
    """A fork of a process that runs threads (torch's pool, rich's refresh) can deadlock in the child."""
    from segbench.plots import plot_all
    from segbench.report import load_frame
    from synthetic_results import write_synthetic_results

    zoo, out = write_synthetic_results(tmp_path, models_per_family=1, hardware=("gpu-a",))
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("plot_all forked the calling process"))
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    written = plot_all(load_frame(out / "results", zoo), out / "plots")
    assert sorted(p.name for p in written) == sorted(f"miou_vs_{x}.{e}" for x in ("latency", "macs", "params") for e in ("png", "pdf"))


# ---------------------------------------------------------------- two sweeps on one output


def _sweep_process(zoo: Path, out: Path, ready: Path, go: Path, env: dict) -> subprocess.Popen:
    """A bench process that imports everything, says it is ready, and starts its sweep when `go` appears."""
    code = f"""
import sys, time
from pathlib import Path
import torch
from segbench.cli import main
Path({str(ready)!r}).touch()
while not Path({str(go)!r}).exists():
    time.sleep(0.02)
sys.exit(main(['bench', '--zoo', {str(zoo)!r}, '--output', {str(out)!r}, '--device', 'cpu', '--images', '3',
               '--warmup', '1', '--models', 'toy_slow_a', 'toy_slow_b', '--no-report']))
"""
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=out.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def test_two_sweeps_on_one_output_never_measure_a_model_twice(toy_zoo, tmp_path):
    (toy_zoo / "toy.yaml").write_text((toy_zoo / "toy.yaml").read_text() + SLOW_ZOO)
    out, log, go = tmp_path / "out", tmp_path / "builds.log", tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), SWEEP_BUILD_LOG=str(log), OMP_NUM_THREADS="1")
    ready = [tmp_path / "ready-1", tmp_path / "ready-2"]
    sweeps = [_sweep_process(toy_zoo, out, r, go, env) for r in ready]
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.05)
        go.touch()
        results = [(p.wait(timeout=240), p.stderr.read()) for p in sweeps]
    finally:
        for p in sweeps:
            p.kill()
    assert [code for code, _ in results] == [0, 0], results
    builds = sorted(line.split()[0] for line in log.read_text().splitlines())
    assert builds == ["toy_slow_a", "toy_slow_b"]  # each measured by one sweep only
    assert "another sweep is measuring it" in "".join(err for _, err in results)
    assert sorted(records(out)) == ["toy_slow_a.json", "toy_slow_b.json"]
