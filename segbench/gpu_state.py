"""GPU clocks, temperature, power and energy read through NVML before and after a timing loop.

A GPU that heats up and lowers its clocks mid-loop measures a slower model than it is; the
record keeps both readings and a warning, so a reader can discount the number. Energy comes
from NVML's total-energy counter (Volta and newer); older GPUs and missing drivers give none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from segbench.validity import CLOCK_DROP, HARMLESS_THROTTLE as _HARMLESS_THROTTLE, nvml_evidence


def _nvml_handle(pynvml, device: torch.device):
    """The NVML handle of a CUDA device, by UUID so that CUDA_VISIBLE_DEVICES cannot mismatch it."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        return pynvml.nvmlDeviceGetHandleByUUID("GPU-" + str(torch.cuda.get_device_properties(index).uuid))
    except Exception:  # noqa: BLE001  (any NVML error: fall back to the CUDA index)
        return pynvml.nvmlDeviceGetHandleByIndex(index)


def _optional(call, *args):
    """One NVML query, None where this GPU or driver does not support it."""
    try:
        return call(*args)
    except Exception:  # noqa: BLE001  (NVMLError_NotSupported and friends)
        return None


@contextmanager
def nvml_device(device: torch.device) -> Iterator[tuple[Any, Any] | None]:
    """(pynvml, handle) of a CUDA device for the block; None off CUDA, without NVML (no library,
    no driver), or where NVML refuses the device. NVML is shut down after the block."""
    if device.type != "cuda":
        yield None
        return
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001  (NVMLError has many subclasses; any means "no NVML")
        pynvml = None
    if pynvml is None:
        yield None
        return
    try:
        handle = _optional(_nvml_handle, pynvml, device)
        yield None if handle is None else (pynvml, handle)
    finally:
        pynvml.nvmlShutdown()


def read_gpu_state(device: torch.device) -> dict[str, Any] | None:
    """SM and memory clocks (MHz), max SM clock, temperature (°C), power (W), energy counter (J),
    throttle reasons, and validity.nvml_evidence; None off CUDA or without NVML."""
    with nvml_device(device) as nvml:
        if nvml is None:
            return None
        pynvml, handle = nvml
        power_mw = _optional(pynvml.nvmlDeviceGetPowerUsage, handle)
        energy_mj = _optional(pynvml.nvmlDeviceGetTotalEnergyConsumption, handle)
        # "Clocks event reasons" is NVML 12's name for throttle reasons; the old name goes in CUDA 14.
        reasons = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        return {
            "sm_clock_mhz": _optional(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_SM),
            "memory_clock_mhz": _optional(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": _optional(pynvml.nvmlDeviceGetMaxClockInfo, handle, pynvml.NVML_CLOCK_SM),
            "temperature_c": _optional(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU),
            "power_w": power_mw / 1000 if power_mw is not None else None,
            "energy_j": energy_mj / 1000 if energy_mj is not None else None,
            "throttle_reasons": _optional(reasons, handle) if reasons else None,
            **nvml_evidence(pynvml, handle),  # processes, violation counters, segbench workers: for the validity verdict
        }


def gpu_state_section(before: dict | None, after: dict | None, images: int) -> dict[str, Any]:
    """The record's gpu_state: both readings, energy per timed image, and warnings about clocks."""
    if before is None or after is None:
        return {"measured": False, "reason": "no NVML readings (not a CUDA device, or no NVIDIA driver/pynvml)"}
    section: dict[str, Any] = {"measured": True, "before": before, "after": after, "warnings": []}
    if before["energy_j"] is not None and after["energy_j"] is not None and images:
        section["energy_per_image_j"] = (after["energy_j"] - before["energy_j"]) / images
    start, end = before["sm_clock_mhz"], after["sm_clock_mhz"]
    if start and end is not None and end < CLOCK_DROP * start:
        section["warnings"].append(f"SM clock dropped from {start} to {end} MHz during timing")
    reasons = after["throttle_reasons"]
    if reasons and reasons & ~_HARMLESS_THROTTLE:
        section["warnings"].append(f"clocks throttled at the end of timing (NVML reasons 0x{reasons:x})")
    return section
