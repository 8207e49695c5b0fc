"""Where a sweep runs: one worker process per device, and a job array through submitit (its local executor: real
subprocesses, one killed on purpose; its debug executor: in this process)."""

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

import segbench.executors as executors
from segbench.cli import main
from segbench.environment import collect_environment
from segbench.manifest import load_zoo, select_models
from segbench.records import read_record, record_problem
from segbench.protocols import PROTOCOLS
from segbench.runner import BenchSettings

ROOT = Path(__file__).resolve().parent.parent
SLOW = "".join(f"""\
- Name: toy_slow_{tag}
  In Collection: Toy
  Build: {{callable: 'sweep_models:slow_segmentor', kwargs: {{tag: toy_slow_{tag}, delay: 0.05}}}}
  Test: {{size: [32, 64]}}
""" for tag in "abc")  # fmt: skip
FAST = BenchSettings(device=torch.device("cpu"), protocol=PROTOCOLS["mmseg"].with_overrides(images=2, warmup=0), measure=("latency", "params"))


@pytest.fixture
def slow_zoo(toy_zoo, tmp_path, monkeypatch):
    """The toy zoo plus three slow models that log each build (model and pid) to $SWEEP_BUILD_LOG."""
    (toy_zoo / "toy.yaml").write_text((toy_zoo / "toy.yaml").read_text() + SLOW)
    monkeypatch.setenv("SWEEP_BUILD_LOG", str(tmp_path / "builds.log"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return toy_zoo


def builds(tmp_path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()) for line in (tmp_path / "builds.log").read_text().splitlines()]


def slow_specs(zoo):
    return select_models(load_zoo(zoo), ["toy_slow_*"])


def cpu_hardware() -> str:
    return collect_environment(torch.device("cpu"))["hardware"]


# ---------------------------------------------------------------- one worker per device


def test_workers_measure_each_model_once_between_them(slow_zoo, tmp_path):
    results = tmp_path / "out" / "results"
    outcomes = executors.run_on_devices(slow_specs(slow_zoo), FAST, results, devices=["cpu", "cpu"])
    assert sorted((o.spec.name, o.status) for o in outcomes) == [(f"toy_slow_{t}", "ok") for t in "abc"]
    built = builds(tmp_path)
    assert sorted(model for model, _ in built) == [f"toy_slow_{t}" for t in "abc"]  # each built (measured) once
    assert os.getpid() not in {int(pid) for _, pid in built}  # in the workers, not here
    for t in "abc":
        record = read_record(results / cpu_hardware() / f"toy_slow_{t}.json")
        assert record["status"] == "ok" and record["environment"]["host"]


def test_a_worker_that_dies_leaves_failure_records_and_the_records_already_written(slow_zoo, tmp_path):
    crash = "- Name: toy_crash\n  In Collection: Toy\n  Build: {callable: 'sweep_models:exiting_segmentor'}\n  Test: {size: [32, 64]}\n"
    (slow_zoo / "toy.yaml").write_text((slow_zoo / "toy.yaml").read_text() + crash)
    specs = select_models(load_zoo(slow_zoo), ["toy_slow_a", "toy_crash"])
    results = tmp_path / "out" / "results"
    outcomes = executors.run_on_devices(specs, FAST, results, devices=["cpu"])
    assert sorted((o.spec.name, o.status) for o in outcomes) == [("toy_crash", "failed"), ("toy_slow_a", "ok")]
    failed = read_record(results / cpu_hardware() / "toy_crash.failed.json")
    assert failed["error"]["kind"] == "worker_died" and record_problem(failed) is None
    assert read_record(results / cpu_hardware() / "toy_slow_a.json")["status"] == "ok"


def test_gpus_on_a_machine_without_them_is_one_line(toy_zoo, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(tmp_path), "--gpus", "0,1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("segbench: error:") and "\n" not in err and "CUDA device 0" in err, err


def test_gpus_with_device_is_refused(toy_zoo, tmp_path, capsys):
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(tmp_path), "--gpus", "0", "--device", "cpu"]) == 1
    assert "--gpus" in capsys.readouterr().err


# ---------------------------------------------------------------- job arrays through submitit


def test_chunks_keep_entries_of_one_distinct_model_together(toy_zoo):
    twin = (toy_zoo / "toy.yaml").read_text() + "- Name: toy_a_copy\n  In Collection: Toy\n" + \
        "  Build: {callable: 'toy_models:tiny_segmentor', kwargs: {num_classes: 4}}\n  Test: {size: [32, 64]}\n"
    (toy_zoo / "toy.yaml").write_text(twin + SLOW)
    specs = select_models(load_zoo(toy_zoo), ["all"])
    names = [[s.name for s in chunk] for chunk in executors.chunks(specs, models_per_task=1)]
    assert names == [["toy_a", "toy_a_copy"], ["toy_b"], ["toy_slow_a"], ["toy_slow_b"], ["toy_slow_c"]]
    names = [[s.name for s in chunk] for chunk in executors.chunks(specs, models_per_task=2)]
    assert names == [["toy_a", "toy_a_copy", "toy_b"], ["toy_slow_a", "toy_slow_b"], ["toy_slow_c"]]


def kill_local_job(controller: int) -> None:
    """SIGKILL a local submitit job: its controller process (the job id) and the task it started,
    which would otherwise run on as an orphan. The controller is stopped first, so it cannot start
    the task between the two kills."""
    os.kill(controller, signal.SIGSTOP)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)": state, parent pid, ...
        except OSError:
            continue  # a process that ended meanwhile
        if int(fields[1]) == controller:
            os.kill(int(stat.parent.name), signal.SIGKILL)
    os.kill(controller, signal.SIGKILL)


def test_local_executor_a_killed_job_becomes_its_models_failure_record(slow_zoo, tmp_path):
    submitit = pytest.importorskip("submitit")
    results = tmp_path / "out" / "results"
    executor = submitit.LocalExecutor(folder=tmp_path / "logs")
    executor.update_parameters(timeout_min=5)
    specs = slow_specs(slow_zoo)[:2]
    submission = executors.submit(executor, specs, FAST, results, device="cpu")
    assert [[s.name for s in chunk] for chunk in submission.chunks] == [["toy_slow_a"], ["toy_slow_b"]]
    killed = submission.jobs[0]
    kill_local_job(int(killed.job_id))
    outcomes = executors.wait(submission, FAST, results, poll_s=0.2)
    by_name = {o.spec.name: o for o in outcomes}
    assert by_name["toy_slow_b"].status == "ok" and by_name["toy_slow_a"].status == "failed"
    hardware = cpu_hardware()
    failed = read_record(results / hardware / "toy_slow_a.failed.json")
    assert failed["error"]["job_state"] == "INTERRUPTED" and failed["error"]["job_id"] == killed.job_id
    assert killed.job_id in failed["error"]["message"] and "INTERRUPTED" in failed["error"]["message"]
    ok = read_record(results / hardware / "toy_slow_b.json")
    assert ok["environment"]["job_id"] == submission.jobs[1].job_id  # measured in that job, named by it
    assert [model for model, _ in builds(tmp_path)] == ["toy_slow_b"]


def test_debug_executor_a_failing_task_becomes_a_failure_record_and_the_rest_are_measured(slow_zoo, tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    results = tmp_path / "out" / "results"
    real = executors.sweep_chunk

    def lost_node(specs, *args, **kwargs):
        if specs[0].name == "toy_slow_a":
            raise RuntimeError("node lost its shared file system")
        return real(specs, *args, **kwargs)

    monkeypatch.setattr(executors, "sweep_chunk", lost_node)
    monkeypatch.setattr("pdb.post_mortem", lambda *args: None)  # the debug executor's way to show a task's error
    submission = executors.submit(submitit.DebugExecutor(folder=tmp_path / "logs"), slow_specs(slow_zoo), FAST, results, device="cpu")
    outcomes = executors.wait(submission, FAST, results, poll_s=0)
    assert sorted((o.spec.name, o.status) for o in outcomes) == [("toy_slow_a", "failed"), ("toy_slow_b", "ok"), ("toy_slow_c", "ok")]
    failed = read_record(results / cpu_hardware() / "toy_slow_a.failed.json")
    assert "node lost its shared file system" in failed["error"]["message"] + failed["error"]["traceback"]
    assert record_problem(failed) is None


def test_bench_on_an_executor_renders_the_page_and_resumes(slow_zoo, tmp_path, capsys):
    pytest.importorskip("submitit")
    out = tmp_path / "out"
    argv = ["bench", "--zoo", str(slow_zoo), "--output", str(out), "--device", "cpu", "--images", "2", "--warmup", "0",
            "--measure", "latency,params", "--models", "toy_slow_*", "--executor", "debug", "--models-per-task", "2"]  # fmt: skip
    assert main(argv) == 0
    page = (out / "model_zoo.md").read_text()
    assert all(f"toy_slow_{t}" in page for t in "abc")
    assert main(argv) == 0  # a second run: every record current, nothing measured again
    assert sorted(model for model, _ in builds(tmp_path)) == [f"toy_slow_{t}" for t in "abc"]
    assert "3 model(s) skipped" in capsys.readouterr().err


def test_no_wait_prints_the_job_ids_and_how_to_gather(slow_zoo, tmp_path, capsys):
    pytest.importorskip("submitit")
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(slow_zoo), "--output", str(out), "--device", "cpu", "--images", "2", "--warmup", "0",
                 "--measure", "latency,params", "--models", "toy_slow_a", "--executor", "debug", "--no-wait"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "submitted 1 job(s)" in err and "segbench render" in err


def test_slurm_without_submitit_is_one_line(toy_zoo, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(tmp_path), "--executor", "slurm", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("segbench: error:") and "\n" not in err and "pip install submitit" in err, err


def test_slurm_options_become_sbatch_parameters():
    assert executors.slurm_parameters(partition="gpu", gpus_per_job=2, time_limit_s=5400, array_parallelism=8,
                                      options=["qos=high", "cpus-per-task=16"]) == {  # fmt: skip
        "slurm_partition": "gpu", "gpus_per_node": 2, "timeout_min": 90, "slurm_array_parallelism": 8,
        "slurm_additional_parameters": {"qos": "high", "cpus_per_task": "16"},
    }
    with pytest.raises(executors.SegbenchError, match="--slurm-option"):
        executors.slurm_parameters(partition=None, gpus_per_job=1, time_limit_s=60, array_parallelism=1, options=["novalue"])


def test_the_slurm_script_carries_every_option(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # as if srun were installed
    parameters = executors.slurm_parameters(partition="gpu", gpus_per_job=2, time_limit_s=5400, array_parallelism=8,
                                            options=["qos=high", "cpus-per-task=16"])  # fmt: skip
    slurm = executors.make_executor("slurm", tmp_path, parameters)._executor
    slurm.parameters["map_count"] = 20  # as map_array sets it for an array of 20 tasks
    script = slurm._make_submission_file_text("python -m task", "0")
    for line in ("--array=0-19%8", "--partition=gpu", "--gpus-per-node=2", "--time=90", "--qos=high", "--cpus-per-task=16"):
        assert f"#SBATCH {line}\n" in script, line


def test_slurm_on_a_machine_without_it_is_one_line(toy_zoo, tmp_path, capsys):
    submitit = pytest.importorskip("submitit")
    if submitit.SlurmExecutor.affinity() > 0:
        pytest.skip("this machine has srun")
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(tmp_path), "--executor", "slurm", "--partition", "gpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("segbench: error: --executor slurm:") and "\n" not in err and "srun" in err, err


# ---------------------------------------------------------------- where a record was measured


def test_environment_names_the_host_and_the_slurm_array_task(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1007")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "1000")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    env = collect_environment(torch.device("cpu"))
    assert env["job_id"] == "1000_7" and env["host"] == os.uname().nodename
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    assert collect_environment(torch.device("cpu"))["job_id"] == "1007"


def test_a_record_whose_job_id_is_not_text_is_refused(tmp_path):
    good = {"schema_version": 1, "model": "m", "status": "failed", "environment": {
        "hardware": "cpu-x", "device_type": "cpu", "cpu": "x", "date": "2026-01-01", "host": "n1", "job_id": "12_3"},
        "settings": {}, "error": {"kind": "k", "message": "m"}}  # fmt: skip
    problem = record_problem(good)
    assert problem is None or not problem[0].startswith("environment."), problem
    bad = json.loads(json.dumps(good))
    bad["environment"]["job_id"] = 12
    assert record_problem(bad)[0] == "environment.job_id"
