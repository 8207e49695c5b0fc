"""Where a measurement was taken: device, drivers, library versions, code version, date."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import socket
import subprocess
from pathlib import Path

import segbench
from segbench import PROJECT_ROOT



def load_average_1min() -> float | None:
    """The 1-minute load average (None where the OS has none): other work on the machine slows every
    timing, so a reader can discount a loaded run. Read before each model's timed loop."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def job_id() -> str | None:
    """The SLURM job (array job_task) this process runs in; submitit's local executor's job; None outside a job."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")


def git_commit() -> str | None:
    """HEAD of the segbench checkout, suffixed '-dirty' when code (not results/) has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!results"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _nvml_info(device) -> dict:
    """GPU name, driver and memory from NVML; empty when NVML is missing or refuses the device."""
    from segbench.gpu_state import nvml_device

    with nvml_device(device) as nvml:
        if nvml is None:
            return {}
        pynvml, handle = nvml
        try:
            name, driver = pynvml.nvmlDeviceGetName(handle), pynvml.nvmlSystemGetDriverVersion()
            return {
                "gpu_name": name.decode() if isinstance(name, bytes) else name,
                "driver": driver.decode() if isinstance(driver, bytes) else driver,
                "gpu_memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
            }
        except Exception:  # noqa: BLE001  (an NVML error leaves torch's device name; no driver version)
            return {}


def hardware_slug(env: dict) -> str:
    """A file-system-safe name of the measuring device: 'nvidia-h100-80gb-hbm3' or 'cpu-<model>'."""
    name = env["gpu_name"] if env["device_type"] == "cuda" else "cpu " + env["cpu"]
    slug = re.sub(r"\(r\)|\(tm\)|cpu @.*$", "", name.lower())
    return re.sub(r"[^a-z0-9]+", "-", slug).strip("-")


def collect_environment(device) -> dict:
    """Everything about this machine that a reader needs to reproduce or discount a number."""
    import torch

    env = {
        "device": str(device),
        "device_type": device.type,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": load_average_1min(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "segbench": segbench.__version__,
        "git_commit": git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "job_id": job_id(),
    }
    if device.type == "cuda":
        env.update({"gpu_name": torch.cuda.get_device_name(device), "driver": None})
        env.update(_nvml_info(device))
    env["hardware"] = hardware_slug(env)
    return env
