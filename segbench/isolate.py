"""--isolate: each model measured in a fresh Python process.

One model's allocator state (cached blocks, fragmentation, cuDNN workspaces), a crash of the
interpreter or an out-of-memory cannot touch the next model. The child writes the record it
would have written in-process to a file the parent names; a child that dies without writing
one becomes a failure record with its exit code and the end of its stderr, of kind
`out_of_memory` when the stderr says so, `killed` for a signal, `crashed` otherwise.

Child: `python -m segbench.isolate JOB.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from segbench.manifest import ModelSpec, load_manifest
from segbench.records import write_record
from segbench.runner import BenchSettings, Evaluation, failure_record, measure_or_failure

STDERR_TAIL = 4000
"""Characters of a crashed child's stderr kept in its failure record."""


def _settings_json(settings: BenchSettings) -> dict[str, Any]:
    return dataclasses.asdict(settings) | {"device": str(settings.device)}


def _settings_from_json(raw: dict[str, Any]) -> BenchSettings:
    return BenchSettings(**raw | {
        "device": torch.device(raw["device"]),
        "input_size": tuple(raw["input_size"]) if raw["input_size"] else None,
        "evaluation": Evaluation(**raw["evaluation"]) if raw["evaluation"] else None,
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
    if "out of memory" in stderr.lower():
        kind = "out_of_memory"
    message = f"isolated process {how}" + (f": {lines[-1]}" if lines else "")
    return failure_record(spec, settings.for_spec(spec), env, kind=kind, message=message, details=stderr[-STDERR_TAIL:], exit_code=code)


def run_isolated(spec: ModelSpec, settings: BenchSettings, results_dir: Path, env: dict, progress: Progress, task) -> dict:
    """The record of one model measured in a fresh process: the child's own, or a failure record."""
    progress.update(task, description=f"{spec.name}: measuring in a fresh process")
    with tempfile.TemporaryDirectory(prefix="segbench-isolate-") as tmp:
        job, outcome = Path(tmp) / "job.json", Path(tmp) / "record.json"
        job.write_text(json.dumps({
            "manifest": spec.file, "model": spec.name, "settings": _settings_json(settings),
            "results_dir": str(results_dir), "environment": env, "record": str(outcome),
        }))  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "segbench.isolate", str(job)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_child_environment(),
        )  # fmt: skip
        if outcome.is_file():
            record = json.loads(outcome.read_text(encoding="utf-8"))
        else:
            record = _exit_failure(spec, settings, env, done.returncode, done.stderr)
    return record | {"isolated": True}


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    (spec,) = [s for s in load_manifest(job["manifest"]) if s.name == job["model"]]
    settings = _settings_from_json(job["settings"])
    with Progress(disable=True) as progress:
        task = progress.add_task(spec.name)
        record = measure_or_failure(spec, settings, Path(job["results_dir"]), job["environment"], progress, task)
    write_record(Path(job["record"]), record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
