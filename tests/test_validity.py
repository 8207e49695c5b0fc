"""The VALID/INVALID verdict of a GPU record from its recorded NVML readings; segbench workers on one GPU."""

import copy
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from segbench.validity import INVALID, MIN_TIMED_SAMPLES, NOT_APPLICABLE, VALID, nvml_evidence, segbench_workers, verdict

ROOT = Path(__file__).resolve().parent.parent


def reading(**overrides):
    """One NVML reading of an H100 running only this process (pid 4242, started by pid 4000), clocks held."""
    base = {"sm_clock_mhz": 1980, "memory_clock_mhz": 2619, "max_sm_clock_mhz": 1980, "temperature_c": 55, "power_w": 300.0,
            "energy_j": 1000.0, "throttle_reasons": 0x0, "processes": [{"pid": 4242, "used_memory_bytes": 2**30}],
            "own_pids": [4000, 4242], "violation_ns": {"power": 5_000_000, "thermal": 0},
            "segbench_workers": {"others": [], "joined": 3}}  # fmt: skip
    return base | overrides


def gpu_record(before=None, after=None, samples=MIN_TIMED_SAMPLES):
    return {
        "status": "ok",
        "settings": {"device_type": "cuda", "images": samples},
        "latency": {"samples": [0.01] * samples},
        "gpu_state": {"measured": True, "before": before or reading(), "after": after or reading(energy_j=1100.0)},
    }


def test_held_clocks_alone_on_the_gpu_is_valid():
    result = verdict(gpu_record(after=reading(throttle_reasons=0x1)))  # "GPU idle" at a reading is harmless
    assert result == {"verdict": VALID, "failures": [], "minimum_samples": MIN_TIMED_SAMPLES}


@pytest.mark.parametrize(
    "after, expected",
    [
        (reading(throttle_reasons=0x4), "clocks throttled at the end of the timed loop (NVML reasons 0x4: software power cap)"),
        (reading(throttle_reasons=0x21), "clocks throttled at the end of the timed loop (NVML reasons 0x21: software thermal slowdown)"),
        # no reason at either end, but the power violation counter grew by 2.5 ms between the readings
        (reading(violation_ns={"power": 7_500_000, "thermal": 0}), "power throttling for 2.5 ms during the timed loop (NVML violation counter)"),
        (reading(sm_clock_mhz=1800), "SM clock fell from 1980 to 1800 MHz during the timed loop"),
        (reading(throttle_reasons=None), "no NVML throttle reasons at the end of the timed loop"),
    ],
)
def test_throttled_is_invalid(after, expected):
    assert verdict(gpu_record(after=after)) == {"verdict": INVALID, "failures": [expected], "minimum_samples": MIN_TIMED_SAMPLES}


def test_a_foreign_process_is_invalid():
    foreign = reading(processes=[{"pid": 4242, "used_memory_bytes": 2**30}, {"pid": 777, "used_memory_bytes": 2**31}])
    assert verdict(gpu_record(before=foreign))["failures"] == ["other process(es) on the GPU at the start of the timed loop: pid 777"]
    # the parent of an isolated child (it waits for the child) is not foreign
    parent = reading(processes=[{"pid": 4242, "used_memory_bytes": 2**30}, {"pid": 4000, "used_memory_bytes": 2**28}])
    assert verdict(gpu_record(before=parent))["verdict"] == VALID
    # pids of another namespace (a container): three processes cannot all be this one and its parent
    hidden = reading(processes=[{"pid": p, "used_memory_bytes": None} for p in (91, 92, 93)])
    assert verdict(gpu_record(after=hidden))["failures"] == [
        "3 processes on the GPU at the end of the timed loop (NVML pids of another namespace; at most 2, this one and its parent, expected)"
    ]
    assert verdict(gpu_record(after=reading(processes=None)))["failures"] == [
        "NVML did not list the GPU's processes at the end of the timed loop"
    ]


def test_another_segbench_worker_and_too_few_samples_are_invalid():
    joined = reading(segbench_workers={"others": [], "joined": 4})  # one joined during the loop
    live = reading(segbench_workers={"others": [5151], "joined": 3})
    assert verdict(gpu_record(after=joined))["failures"] == ["1 segbench worker(s) started on this GPU during the timed loop"]
    assert verdict(gpu_record(before=live))["failures"] == ["shared with other segbench worker(s) on this GPU: pid 5151"]
    few = gpu_record(samples=MIN_TIMED_SAMPLES - 1)
    assert verdict(few)["failures"] == [f"{MIN_TIMED_SAMPLES - 1} timed samples, fewer than {MIN_TIMED_SAMPLES}"]
    short = copy.deepcopy(gpu_record())
    short["settings"]["images"] = MIN_TIMED_SAMPLES + 10  # asked for more than it kept
    assert verdict(short)["failures"] == [f"{MIN_TIMED_SAMPLES} timed samples, fewer than {MIN_TIMED_SAMPLES + 10}"]


def test_cpu_records_say_not_applicable_and_unread_gpus_are_invalid():
    assert verdict({"settings": {"device_type": "cpu"}})["verdict"] == NOT_APPLICABLE
    unread = gpu_record()
    unread["gpu_state"] = {"measured": False, "reason": "no NVML readings"}
    assert verdict(unread)["verdict"] == INVALID


def test_nvml_evidence_through_a_fake_pynvml(tmp_path, monkeypatch):
    import segbench.validity

    monkeypatch.setattr(segbench.validity, "workers_directory", lambda uuid: tmp_path / uuid)
    fake = types.SimpleNamespace(
        NVML_PERF_POLICY_POWER=0, NVML_PERF_POLICY_THERMAL=1,
        nvmlDeviceGetComputeRunningProcesses=lambda h: [types.SimpleNamespace(pid=12, usedGpuMemory=2**20)],
        nvmlDeviceGetViolationStatus=lambda h, policy: types.SimpleNamespace(referenceTime=1, violationTime=[70, 80][policy]),
        nvmlDeviceGetUUID=lambda h: b"GPU-1234",
    )  # fmt: skip
    evidence = nvml_evidence(fake, "handle")
    assert evidence["processes"] == [{"pid": 12, "used_memory_bytes": 2**20}]
    assert evidence["violation_ns"] == {"power": 70, "thermal": 80}
    assert evidence["segbench_workers"] == {"others": [], "joined": 1}
    assert (tmp_path / "GPU-1234").is_dir()


def test_segbench_workers_see_each_other_across_processes(tmp_path):
    """A second process joins while this one holds its claim; once it has exited, its file is stale."""
    directory = tmp_path / "gpu"
    first = segbench_workers("GPU-x", directory)
    assert first == {"others": [], "joined": 1}
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from segbench.validity import segbench_workers; "
         f"print(segbench_workers('GPU-x', __import__('pathlib').Path({str(directory)!r})), flush=True); sys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == f"{{'others': [{__import__('os').getpid()}], 'joined': 2}}"
        assert segbench_workers("GPU-x", directory) == {"others": [child.pid], "joined": 2}
    finally:
        child.communicate("")
    assert segbench_workers("GPU-x", directory) == {"others": [], "joined": 2}
    assert len(list(directory.glob("*.worker"))) == 1  # the dead worker's file is gone


def test_page_plots_and_compare_mark_an_invalid_record(tmp_path, capsys):
    from segbench.cli import main
    from segbench.plots import AXES, _draw, _select_points, plot_figure
    from segbench.report import load_frame, render_markdown
    from synthetic_results import write_synthetic_results

    zoo, out = write_synthetic_results(tmp_path / "a", models_per_family=1, hardware=("nvidia-h100",), samples=MIN_TIMED_SAMPLES)
    paths = sorted((out / "results" / "nvidia-h100").glob("*.json"))

    def on_gpu(path, after):  # a GPU record with NVML readings: compare pairs records of the same settings only
        record = json.loads(path.read_text())
        record["settings"]["device_type"] = "cuda"
        record["gpu_state"] = {"measured": True, "before": reading(), "after": after, "warnings": []}
        record["validity"] = verdict(record)
        path.write_text(json.dumps(record))

    for path in paths[:2]:
        on_gpu(path, reading())
    before = out.parent / "before"
    (before / "results").mkdir(parents=True)
    shutil.copytree(out / "results" / "nvidia-h100", before / "results" / "nvidia-h100")
    on_gpu(paths[0], reading(throttle_reasons=0x40))  # throttled now; the second stays held
    frame = load_frame(out / "results", zoo)
    page = render_markdown(frame)
    invalid_model, valid_model = paths[0].stem, paths[1].stem
    assert f"| {invalid_model} **INVALID** | `nvidia-h100` |" in page
    assert f"| {valid_model} | `nvidia-h100` |" in page
    assert f"- {invalid_model} on `nvidia-h100`: clocks throttled at the end of the timed loop (NVML reasons 0x40: hardware thermal slowdown)" in page
    assert plot_figure(frame, "latency", tmp_path / "plots", formats=("png",))

    fig = _draw(_select_points(frame, AXES["latency"], ["nvidia-h100"]), AXES["latency"], ["nvidia-h100"], (7, 4.4), 9, False, "none", "auto")
    crosses = [c for c in fig.axes[0].collections if len(c.get_offsets()) == 1 and tuple(c.get_edgecolor()[0]) == (1.0, 0.0, 0.0, 1.0)]
    assert len(crosses) == 1 and crosses[0].get_offsets()[0][0] == frame.loc[frame["model"] == invalid_model, "latency_median_ms"].item()
    assert "INVALID record (see the page)" in [t.get_text() for t in fig.legends[0].get_texts()]
    # compare: no verdict on a pair with an invalid side, and no regression gate on it
    from segbench.compare import compare_result_sets

    rows, _ = compare_result_sets(before, out)
    verdicts = {r["model"]: r["latency"].verdict for r in rows}
    assert verdicts[invalid_model] == "invalid record" and verdicts[valid_model] == "within noise"
    assert main(["compare", str(before), str(out), "--fail-on-regression"]) == 0
