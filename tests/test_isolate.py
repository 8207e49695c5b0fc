"""--isolate: each model in a fresh process; a crash, a hard OOM or a raised OOM fail only that model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from segbench.cli import main

ROOT = Path(__file__).resolve().parent.parent
SLOW = """\
- Name: toy_slow
  In Collection: Toy
  Build: {callable: 'sweep_models:slow_segmentor', kwargs: {tag: toy_slow, delay: 0.2}}
  Test: {size: [32, 64]}
"""

ISOLATED = """\
- Name: toy_crash
  In Collection: Toy
  Build: {callable: 'toy_models:crashing_segmentor'}
- Name: toy_oom_crash
  In Collection: Toy
  Build: {callable: 'toy_models:oom_crashing_segmentor'}
- Name: toy_oom
  In Collection: Toy
  Build: {callable: 'toy_models:oom_raising_segmentor'}
"""


def test_isolated_sweep_records_crashes_and_ooms_and_measures_the_rest(toy_zoo, tmp_path, capsys):
    (toy_zoo / "toy.yaml").write_text((toy_zoo / "toy.yaml").read_text() + ISOLATED)
    out = tmp_path / "out"
    args = ["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_crash", "toy_oom_crash", "toy_oom", "toy_a",
            "--isolate", "--device", "cpu", "--images", "2", "--warmup", "1", "--no-report"]  # fmt: skip
    assert main(args) == 1
    found = {p.name: json.loads(p.read_text()) for p in (out / "results").glob("*/*.json")}
    assert sorted(found) == ["toy_a.json", "toy_crash.failed.json", "toy_oom.failed.json", "toy_oom_crash.failed.json"]

    good = found["toy_a.json"]
    assert good["status"] == "ok" and good["isolated"] and len(good["latency"]["samples"]) == 2
    assert good["macs"]["fvcore"] == 16 * 32 * (8 * 3 * 9 + 4 * 8)

    crash = found["toy_crash.failed.json"]["error"]
    assert crash["kind"] == "crashed" and crash["exit_code"] == 3
    assert crash["message"] == "isolated process exited with code 3 without writing a record"
    hard_oom = found["toy_oom_crash.failed.json"]["error"]
    assert hard_oom["kind"] == "out_of_memory" and hard_oom["exit_code"] == 1 and "Tried to allocate 2.00 GiB" in hard_oom["message"]
    raised_oom = found["toy_oom.failed.json"]["error"]
    assert raised_oom["kind"] == "out_of_memory" and "exit_code" not in raised_oom  # the child recorded it itself
    assert "3 of 4 model(s) failed" in capsys.readouterr().err


def test_an_allocation_failure_on_a_childs_stderr_is_out_of_memory(toy_zoo):
    from segbench.isolate import _exit_failure
    from segbench.manifest import load_zoo
    from segbench.runner import BenchSettings

    spec = load_zoo(toy_zoo)[0]
    settings = BenchSettings(device=torch.device("cpu"))
    for stderr in ("terminate called after throwing an instance of 'std::bad_alloc'\n  what():  std::bad_alloc\n",
                   "RuntimeError: [enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: not enough memory\n"):  # fmt: skip
        assert _exit_failure(spec, settings, {}, -6, stderr)["error"]["kind"] == "out_of_memory"
    assert _exit_failure(spec, settings, {}, -6, "Segmentation fault\n")["error"]["kind"] == "killed"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_isolated_child_ends_with_its_killed_parent_and_leaves_nothing(toy_zoo, tmp_path):
    (toy_zoo / "toy.yaml").write_text((toy_zoo / "toy.yaml").read_text() + SLOW)
    tmp, log = tmp_path / "tmp", tmp_path / "builds.log"
    tmp.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), TMPDIR=str(tmp), SWEEP_BUILD_LOG=str(log))
    parent = subprocess.Popen(
        [sys.executable, "-m", "segbench.cli", "bench", "--zoo", str(toy_zoo), "--output", str(tmp_path / "out"), "--models", "toy_slow",
         "--isolate", "--device", "cpu", "--images", "200", "--warmup", "1", "--no-report"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    child = None
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(log.read_text().split()[1])  # the slow model is being built in the child: it measures for 40 s
        assert child in _children(parent.pid)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the isolated child outlived its parent"
        assert list(tmp.iterdir()) == []
    finally:
        parent.kill()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_without_prctl_the_polling_thread_ends_the_child_with_its_parent(tmp_path):
    """The fallback of other systems: only the thread that polls the parent's pid is armed."""
    grandchild = (
        "import os, sys, time\n"
        "import segbench.isolate as isolate\n"
        "sys.platform = 'darwin'\n"
        "isolate._end_with_parent(os.getppid())\n"
        "print(os.getpid(), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent_code = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {grandchild!r}])\n"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env=env, stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        parent.kill()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)
