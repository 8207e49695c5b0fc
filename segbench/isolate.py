"""--isolate: each model measured in a fresh Python process.

One model's allocator state (cached blocks, fragmentation, cuDNN workspaces), a crash of the
interpreter or an out-of-memory cannot touch the next model. The parent sends the job as JSON
on the child's stdin; the child sends back the record it would have written in-process on its
stdout (anything the model prints goes to stderr), so nothing is written to disk that a killed
sweep could leave behind. A child that dies without a record becomes a failure record with its
exit code and the end of its stderr, of kind `out_of_memory` when the stderr says so, `killed`
for a signal, `crashed` otherwise. The child ends with its parent: an orphan would go on
measuring and, on a GPU, hold memory that skews whatever runs next.

Child: `python -m segbench.isolate` (job on stdin, record on stdout).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from segbench.manifest import ModelSpec, load_manifest
from segbench.protocols import protocol_from_settings
from segbench.runner import BenchSettings, Evaluation, failure_record, is_out_of_memory, measure_or_failure

STDERR_TAIL = 4000
"""Characters of a crashed child's stderr kept in its failure record."""
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 0.5


def _settings_json(settings: BenchSettings) -> dict[str, Any]:
    return dataclasses.asdict(settings) | {"device": str(settings.device)}


def _settings_from_json(raw: dict[str, Any]) -> BenchSettings:
    return BenchSettings(**raw | {
        "device": torch.device(raw["device"]),
        "input_size": tuple(raw["input_size"]) if raw["input_size"] else None,
        "evaluation": Evaluation(**raw["evaluation"]) if raw["evaluation"] else None,
        "measure": tuple(raw["measure"]),
        "protocol": protocol_from_settings(raw["protocol"]),
    })  # fmt: skip


def _child_environment() -> dict[str, str]:
    """The parent's import path, so the child imports the same segbench and the same user models."""
    paths = [str(Path(p).resolve()) for p in sys.path if p and Path(p).exists()]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def _exit_failure(spec: ModelSpec, settings: BenchSettings, env: dict, code: int, stderr: str) -> dict:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if code < 0:
        kind, how = "killed", f"killed by {signal.Signals(-code).name}"
    else:
        kind, how = "crashed", f"exited with code {code} without writing a record"
    if is_out_of_memory(stderr):
        kind = "out_of_memory"
    message = f"isolated process {how}" + (f": {lines[-1]}" if lines else "")
    return failure_record(spec, settings.for_spec(spec), env, kind=kind, message=message, details=stderr[-STDERR_TAIL:], exit_code=code)


def run_isolated(spec: ModelSpec, settings: BenchSettings, results_dir: Path, env: dict, progress: Progress, task) -> dict:
    """The record of one model measured in a fresh process: the child's own, or a failure record."""
    progress.update(task, description=f"{spec.name}: measuring in a fresh process")
    job = json.dumps({
        "manifest": spec.file, "model": spec.name, "settings": _settings_json(settings), "results_dir": str(results_dir),
        "environment": env, "parent": os.getpid(),
    })  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "segbench.isolate"], input=job, capture_output=True, encoding="utf-8", errors="replace",
        env=_child_environment(),
    )  # fmt: skip
    if done.returncode == 0 and done.stdout.strip():
        record = json.loads(done.stdout)
    else:
        record = _exit_failure(spec, settings, env, done.returncode, done.stderr)
    return record | {"isolated": True}


def _end_with_parent(parent: int) -> None:
    """Exit as soon as the sweep that started this process is gone, even when it was killed by SIGKILL.

    Linux: the kernel kills this process when its parent dies (prctl PR_SET_PDEATHSIG). Elsewhere, and
    as a second line, a daemon thread polls the parent's pid. Either way the process ends at once
    (SIGKILL, os._exit): it has nothing on disk to clean up.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="segbench-parent-watch", daemon=True).start()


def main() -> int:
    record_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # prints of the model (Python or C++) must not corrupt the record
    job = json.loads(sys.stdin.read())
    _end_with_parent(job["parent"])
    (spec,) = [s for s in load_manifest(job["manifest"]) if s.name == job["model"]]
    settings = _settings_from_json(job["settings"])
    with Progress(disable=True) as progress:
        task = progress.add_task(spec.name)
        record = measure_or_failure(spec, settings, Path(job["results_dir"]), job["environment"], progress, task)
    with record_out:
        json.dump(record, record_out, allow_nan=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
