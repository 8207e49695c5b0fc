"""A verdict on every GPU record, in the spirit of MLPerf's VALID/INVALID: a number is VALID only
when the record shows that the GPU ran the timed loop at held clocks, to itself, long enough.

The checks, from the NVML readings taken just before and just after the timed loop
(`gpu_state.before` / `.after`):
1. clocks held: no throttle reason but "idle" and "application clocks" at either end, no growth
   of NVML's power or thermal violation counters over the loop (they count nanoseconds of
   throttling, so they see what happened between the two readings), the SM clock not down by
   more than 5%;
2. no other process on the GPU: NVML's compute processes at either end are this process and the
   one that started it (an isolating sweep waits for its child). Where NVML reports pids of
   another pid namespace (a container), only their number can be judged: at most those two.
   A process that starts and ends inside the loop is not seen;
3. the timed samples reached `MIN_TIMED_SAMPLES` and the count the settings asked for;
4. no other segbench worker on the same GPU: each worker holds a lock file in a per-GPU
   directory for its life and counts the workers that joined (`segbench_workers`).
What cannot be shown counts against the record (no NVML, no throttle reasons, no process list).
A record from the CPU gets "not applicable". No torch here: render and plot use the verdict.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

VALID, INVALID, NOT_APPLICABLE = "VALID", "INVALID", "not applicable"

MIN_TIMED_SAMPLES = 100
"""Half the 200 images of mmsegmentation's benchmark: fewer cannot stand beside its numbers."""

CLOCK_DROP = 0.95
"""A timed loop whose SM clock ends below this fraction of where it started is flagged."""

HARMLESS_THROTTLE = 0x1 | 0x2
"""NVML's "nothing is holding the clocks back" reasons: GPU idle, application clocks setting."""

THROTTLE_NAMES = {0x4: "software power cap", 0x8: "hardware slowdown", 0x10: "sync boost", 0x20: "software thermal slowdown",
                  0x40: "hardware thermal slowdown", 0x80: "hardware power brake", 0x100: "display clock setting"}  # fmt: skip
VIOLATION_POLICIES = {"power": "NVML_PERF_POLICY_POWER", "thermal": "NVML_PERF_POLICY_THERMAL"}

# Per GPU directory: this process's open, locked worker file and its path, kept for the life of the process.
_CLAIMS: dict[str, tuple[Any, Path]] = {}


def workers_directory(gpu_uuid: str) -> Path:
    return Path(tempfile.gettempdir()) / "segbench-gpu-workers" / re.sub(r"[^A-Za-z0-9_-]", "_", gpu_uuid)


def segbench_workers(gpu_uuid: str | None, directory: Path | None = None) -> dict[str, Any] | None:
    """Other live segbench workers on this GPU, and how many ever joined (`joined` grows by one per worker).

    The first call in a process joins: an exclusively locked file `<pid>.<n>.worker` that the
    process holds until it exits (then the OS drops the lock and the file counts as stale). A
    worker that is alive at one reading, or joined between two, shared the GPU. None where
    there is no GPU id or no fcntl (Windows).
    """
    try:
        import fcntl
    except ImportError:
        return None
    if not gpu_uuid:
        return None
    directory = directory or workers_directory(gpu_uuid)
    directory.mkdir(parents=True, exist_ok=True)
    if str(directory) not in _CLAIMS:
        joining = directory / f".{os.getpid()}.{len(_CLAIMS)}.joining"
        held = open(joining, "w")  # noqa: SIM115  (held open, and locked, for the life of the process)
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = directory / f"{os.getpid()}.{len(_CLAIMS)}.worker"
        os.replace(joining, path)  # locked before it is visible: never taken for a stale file
        with open(directory / "joined", "a") as joined:
            joined.write("+")  # one byte per worker that ever joined; an append is atomic
        _CLAIMS[str(directory)] = (held, path)
    own = _CLAIMS[str(directory)][1]
    others = []
    for path in sorted(directory.glob("*.worker")):
        if path == own:
            continue
        with open(path) as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                others.append(int(path.name.split(".")[0]))
                continue
        path.unlink(missing_ok=True)  # its process is gone
    return {"others": others, "joined": (directory / "joined").stat().st_size}


def nvml_evidence(pynvml, handle) -> dict[str, Any]:
    """The readings the verdict needs beyond clocks: compute processes, violation counters, segbench workers."""

    def optional(name: str, *args):
        try:
            return getattr(pynvml, name)(*args)
        except Exception:  # noqa: BLE001  (an older pynvml without the call, NVMLError_NotSupported and friends)
            return None

    processes = optional("nvmlDeviceGetComputeRunningProcesses", handle)
    violations = {}
    for name, policy in VIOLATION_POLICIES.items():
        status = optional("nvmlDeviceGetViolationStatus", handle, getattr(pynvml, policy, None))
        violations[name] = getattr(status, "violationTime", None)
    uuid = optional("nvmlDeviceGetUUID", handle)
    return {
        "processes": None if processes is None else [{"pid": int(p.pid), "used_memory_bytes": p.usedGpuMemory} for p in processes],
        "own_pids": sorted({os.getpid(), os.getppid()}),
        "violation_ns": violations,
        "segbench_workers": segbench_workers(uuid.decode() if isinstance(uuid, bytes) else uuid),
    }


def _clock_failures(before: dict, after: dict) -> list[str]:
    failures = []
    for when, reading in (("start", before), ("end", after)):
        reasons = reading.get("throttle_reasons")
        if reasons is None:
            failures.append(f"no NVML throttle reasons at the {when} of the timed loop")
        elif reasons & ~HARMLESS_THROTTLE:
            names = [text for bit, text in THROTTLE_NAMES.items() if reasons & bit] or ["unknown reason"]
            failures.append(f"clocks throttled at the {when} of the timed loop (NVML reasons 0x{reasons:x}: {', '.join(names)})")
    for name in VIOLATION_POLICIES:
        start, end = (before.get("violation_ns") or {}).get(name), (after.get("violation_ns") or {}).get(name)
        if start is not None and end is not None and end > start:
            failures.append(f"{name} throttling for {(end - start) / 1e6:.1f} ms during the timed loop (NVML violation counter)")
    start, end = before.get("sm_clock_mhz"), after.get("sm_clock_mhz")
    if start and end is not None and end < CLOCK_DROP * start:
        failures.append(f"SM clock fell from {start} to {end} MHz during the timed loop")
    return failures


def _process_failures(before: dict, after: dict) -> list[str]:
    failures = []
    for when, reading in (("start", before), ("end", after)):
        processes = reading.get("processes")
        if processes is None:
            failures.append(f"NVML did not list the GPU's processes at the {when} of the timed loop")
            continue
        own, pids = set(reading.get("own_pids") or []), [p["pid"] for p in processes]
        if own & set(pids):
            foreign = sorted(set(pids) - own)
            if foreign:
                failures.append(f"other process(es) on the GPU at the {when} of the timed loop: pid {', '.join(map(str, foreign))}")
        elif len(pids) > len(own):  # pids from another namespace: only their number can be judged
            failures.append(f"{len(pids)} processes on the GPU at the {when} of the timed loop (NVML pids of another "
                            f"namespace; at most {len(own)}, this one and its parent, expected)")  # fmt: skip
    return failures


def _worker_failures(before: dict, after: dict) -> list[str]:
    start, end = before.get("segbench_workers"), after.get("segbench_workers")
    if start is None or end is None:
        return []
    others = sorted(set(start["others"]) | set(end["others"]))
    failures = [f"shared with other segbench worker(s) on this GPU: pid {', '.join(map(str, others))}"] if others else []
    if end["joined"] > start["joined"]:
        failures.append(f"{end['joined'] - start['joined']} segbench worker(s) started on this GPU during the timed loop")
    return failures


def verdict(record: dict[str, Any]) -> dict[str, Any]:
    """VALID / INVALID (with every failed check) for a GPU record; "not applicable" for a CPU record."""
    device_type = (record.get("settings") or {}).get("device_type")
    if device_type != "cuda":
        return {"verdict": NOT_APPLICABLE, "reason": f"measured on {device_type}: the checks are of a GPU's clocks and processes"}
    failures = []
    samples = len((record.get("latency") or {}).get("samples") or [])
    wanted = max(MIN_TIMED_SAMPLES, int(record["settings"].get("images") or 0))
    if samples < wanted:
        failures.append(f"{samples} timed samples, fewer than {wanted}")
    gpu = record.get("gpu_state") or {}
    if not gpu.get("measured"):
        failures.append("no NVML readings around the timed loop: held clocks and a GPU to itself cannot be shown")
    else:
        before, after = gpu["before"], gpu["after"]
        failures += _clock_failures(before, after) + _process_failures(before, after) + _worker_failures(before, after)
    return {"verdict": INVALID if failures else VALID, "failures": failures, "minimum_samples": MIN_TIMED_SAMPLES}


def validity_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record's stored verdict, else one computed from its readings (records older than the verdict); None for a failure."""
    if record.get("status") != "ok":
        return None
    return record.get("validity") or verdict(record)
