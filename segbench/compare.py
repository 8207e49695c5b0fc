"""Two result sets side by side: ratios B/A per model, and a verdict on latency that respects noise.

A and B are two GPUs, or one GPU before and after a change. A latency difference is flagged only
when it exceeds what the measured spread of both samples allows:

1. Each side's median gets a distribution-free 95% confidence interval from its raw samples
   (stats.median_ci: order statistics, no normality assumed — latency is skewed).
2. B is *slower* when B's whole interval lies above A's, *faster* when below; overlapping
   intervals are *within noise*. Non-overlap of two 95% intervals is a conservative test (a
   false alarm rate well under 5% for equal spreads), which is what a CI gate wants.
3. The change must also reach `min_change` (default 2%): within-run samples cannot see
   run-to-run drift (GPU clocks, temperature), so a statistically clear 0.5% shift is not a
   regression worth failing a build for. `--min-change 0` turns the floor off (as pyperf's
   `compare_to --min-speed`).
4. Fewer than 6 samples on a side cannot give a 95% interval: the verdict says so and flags nothing.
5. A record that fails its validity checks (segbench.validity: INVALID) gets no verdict: "invalid record".

Params, MACs and memory are single numbers without a spread: their ratios are shown, not judged.
Records measured under different settings (COMPARED_SETTINGS), a different timing protocol above all, are
paired but neither judged nor divided: the row says which settings differ, and the CI gate never fires on it.
No torch here.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench.errors import SegbenchError
from segbench.protocols import protocol_name
from segbench.records import iter_records, macs_per_image, results_folder
from segbench.stats import median_ci
from segbench.validity import INVALID, validity_of

CONFIDENCE = 0.95
MIN_CHANGE = 0.02


@dataclass(frozen=True)
class LatencyVerdict:
    median_a_ms: float
    median_b_ms: float
    ci_a_ms: tuple[float, float]
    ci_b_ms: tuple[float, float]
    ratio: float  # median B / median A
    verdict: str  # "slower", "faster", "within noise", "too few samples"


def compare_latency(a: list[float], b: list[float], *, min_change: float = MIN_CHANGE, confidence: float = CONFIDENCE) -> LatencyVerdict:
    """Compare two latency samples (seconds) as the module docstring explains."""
    interval_a, interval_b = median_ci(a, confidence), median_ci(b, confidence)
    # Too few samples for an interval at this confidence: show the whole range, flag nothing.
    ci_a = tuple(1000 * v for v in (interval_a[:2] if interval_a else (min(a), max(a))))
    ci_b = tuple(1000 * v for v in (interval_b[:2] if interval_b else (min(b), max(b))))
    median_a, median_b = 1000 * statistics.median(a), 1000 * statistics.median(b)
    ratio = median_b / median_a
    if interval_a is None or interval_b is None:
        verdict = "too few samples"
    elif ci_b[0] > ci_a[1] and ratio - 1 >= min_change:
        verdict = "slower"
    elif ci_b[1] < ci_a[0] and 1 / ratio - 1 >= min_change:
        verdict = "faster"
    else:
        verdict = "within noise"
    return LatencyVerdict(median_a, median_b, ci_a, ci_b, ratio, verdict)


def load_result_set(path: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Successful records by (model, hardware) from an output root, a results/ directory or one hardware's directory."""
    path = Path(path)
    if (path / "results").is_dir():
        path = path / "results"
    if not path.is_dir():
        raise SegbenchError(f"{path}: not a directory of results (expected results/<hardware>/<model>.json)")
    found = list(iter_records(path)) or list(iter_records(path, "*.json"))
    # keyed by results folder, hardware and protocol together: only records of one protocol are ever paired on one hardware
    records = {(r["model"], results_folder(r["environment"]["hardware"], r["settings"])): r for _, r in found if r.get("status") == "ok"}
    if not records:
        raise SegbenchError(f"{path}: no successful records (expected results/<hardware>/<model>.json)")
    return records


def pair_records(a: dict, b: dict) -> list[tuple[dict, dict]]:
    """Pairs of records of the same model: across hardware when each side has one, else on the same hardware."""
    hardware_a, hardware_b = {hw for _, hw in a}, {hw for _, hw in b}
    if len(hardware_a) == 1 and len(hardware_b) == 1:
        by_model_b = {model: r for (model, _), r in b.items()}
        return [(r, by_model_b[model]) for (model, _), r in sorted(a.items()) if model in by_model_b]
    if not hardware_a & hardware_b:
        raise SegbenchError(
            f"both sides hold several hardware ({', '.join(sorted(hardware_a))} vs {', '.join(sorted(hardware_b))}) "
            "and none in common: pass one hardware directory on each side, e.g. results/<hardware>"
        )
    return [(r, b[key]) for key, r in sorted(a.items()) if key in b]


def _ratio(a: Any, b: Any) -> float | None:
    return b / a if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else None


def _get(record: dict, *keys: str) -> Any:
    for key in keys:
        record = record.get(key) if isinstance(record, dict) else None
    return record


# The settings that change a measured number; a pair that differs in any of them is shown, not judged.
COMPARED_SETTINGS = ("protocol", "backend", "input_size", "dtype", "autocast", "channels_last", "compile", "cudnn_benchmark",
                     "device_type", "mode", "batch_size", "images", "weights", "evaluation")  # fmt: skip
_EVALUATION_PLACE = ("data_root", "world_size")  # where the dataset sits and how many ranks shared it: the same mIoU either way


def _setting(record: dict, key: str) -> Any:
    """A record's value of one COMPARED_SETTINGS key; records made before protocols followed mmseg's, eagerly."""
    settings = record.get("settings") or {}
    if key == "protocol":  # what a protocol's overrides change (count, backend, precision) is compared on its own
        return protocol_name(settings)
    if key == "backend":
        return settings.get("backend") or ("compile" if settings.get("compile") else "eager")
    value = settings.get(key)
    if key == "evaluation" and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in _EVALUATION_PLACE}
    return value


def _setting_text(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return "×".join(map(str, value))
    return "none" if value is None else str(value)


def settings_differences(a: dict, b: dict) -> list[str]:
    """'input_size 512×1024 vs 128×256' for each setting that changes a number and differs between A and B."""
    return [f"{key} {_setting_text(_setting(a, key))} vs {_setting_text(_setting(b, key))}"
            for key in COMPARED_SETTINGS if _setting(a, key) != _setting(b, key)]  # fmt: skip


def compare_records(a: dict, b: dict, *, min_change: float = MIN_CHANGE) -> dict[str, Any]:
    """One row of the comparison: the latency verdict and the ratios of the single-number figures.

    Records measured under different settings (input size, dtype, ...) get neither: a 512×1024
    run is not "slower" than a 128×256 one. `settings_differ` says which settings differ.
    """
    row = {"model": a["model"], "hardware_a": a["environment"]["hardware"], "hardware_b": b["environment"]["hardware"],
           "settings_differ": settings_differences(a, b)}  # fmt: skip
    if row["settings_differ"]:
        return row | {"latency": None, "memory_ratio": None, "macs_ratio": None, "params_ratio": None, "miou_diff": None}
    miou_a, miou_b = _get(a, "accuracy", "miou"), _get(b, "accuracy", "miou")
    memory = [_get(r, "memory", "peak_allocated_bytes") if _get(r, "memory", "measured") else None for r in (a, b)]
    latency = compare_latency(a["latency"]["samples"], b["latency"]["samples"], min_change=min_change)
    if any(validity_of(r)["verdict"] == INVALID for r in (a, b)):  # its number cannot back a verdict either way
        latency = dataclasses.replace(latency, verdict="invalid record")
    return row | {
        "latency": latency,
        "memory_ratio": _ratio(*memory),
        "macs_ratio": _ratio(macs_per_image(a), macs_per_image(b)),
        "params_ratio": _ratio(_get(a, "params", "inference"), _get(b, "params", "inference")),
        "miou_diff": miou_b - miou_a if miou_a is not None and miou_b is not None else None,
    }


def compare_result_sets(path_a: str | Path, path_b: str | Path, *, min_change: float = MIN_CHANGE) -> tuple[list[dict], list[str]]:
    """Rows for every model in both sets, and the models found on one side only."""
    a, b = load_result_set(path_a), load_result_set(path_b)
    pairs = pair_records(a, b)
    paired = {ra["model"] for ra, _ in pairs}
    unpaired = sorted(({m for m, _ in a} | {m for m, _ in b}) - paired)
    return [compare_records(ra, rb, min_change=min_change) for ra, rb in pairs], unpaired
