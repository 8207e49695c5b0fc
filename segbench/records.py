"""Result records: one schema-versioned JSON file per model and hardware, written atomically.

Layout: `<results>/<hardware>/<model>.json` for the latest successful measurement and
`<model>.failed.json` beside it for a failed attempt, so a failure never destroys a good record.
Statistics are not stored: they are derived from the raw samples by segbench.stats.
No torch here: render and plot read records only.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from segbench.errors import SegbenchError, SegbenchWarning, located, one_line
from segbench.protocols import DEFAULT as DEFAULT_PROTOCOL, protocol_name
from segbench.tempfiles import owned_temp_file, remove_abandoned

SCHEMA_VERSION = 1
FAILED_SUFFIX = ".failed.json"
MEASURED_DATASET = "Cityscapes"
"""The dataset of every mIoU segbench measures (cityscapes.py); other datasets' numbers are reported ones."""
CROSS_CHECK_TOLERANCE = 0.01
"""fvcore or thop may differ this much from the primary MACs count before the record and page say where."""
MEASUREMENTS = ("latency", "macs", "memory", "miou", "params", "training")
"""What a sweep can measure (`--measure`); `settings.measure` lists what was asked for, so a section
a record lacks for that reason is intended, not missing. mIoU needs a dataset as well."""
SHARED_SECTIONS = ("params", "macs", "latency", "gpu_state", "memory", "training")
"""What entries with the same Build, Test and sweep settings share: one measurement, copied into each entry's record
with `shared_from` naming the record (beside it) that measured it. mIoU is never shared: it depends on the weights."""
_RECORD_FILE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._+-]*[A-Za-z0-9_+-])?\.json")  # a model name (manifest._NAME) + .json


def chosen_measurements(names: Iterable[str]) -> tuple[str, ...]:
    """Names from MEASUREMENTS, sorted and without repeats (--measure, a preset's `measure`); ValueError for others or none."""
    chosen = tuple(sorted({name.strip() for name in names if name.strip()}))
    unknown = [name for name in chosen if name not in MEASUREMENTS]
    if unknown or not chosen:
        raise ValueError(f"expected a list of {', '.join(MEASUREMENTS)}, got {', '.join(map(repr, unknown)) or 'nothing'}")
    return chosen


def record_path(results_dir: Path, folder: str, model: str, *, failed: bool = False) -> Path:
    return Path(results_dir) / folder / (model + (FAILED_SUFFIX if failed else ".json"))


def results_folder(hardware: str, settings: dict[str, Any]) -> str:
    """The folder of results/ a record lives in: its hardware's slug, with '+<protocol>' under a timing protocol other
    than the default, so a paper's protocol never overwrites the default record of the same model on the same hardware."""
    name = protocol_name(settings)
    return hardware if name == DEFAULT_PROTOCOL else f"{hardware}+{name}"


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write JSON to a temp file in the same directory, fsync, then rename over the target.

    A crash leaves either the old file or the new one, never a torn one; the temp files of writers
    that were killed are removed here. The file gets the mode any new file gets (0666 less the
    umask), so a results folder shared by a team stays readable. A full disk or an unwritable
    folder is a SegbenchError naming the folder; the temp file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(path.parent.glob(".*.tmp"))
        fd, tmp = owned_temp_file(path.parent, path.name, ".tmp")
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, sort_keys=True, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise


def _write_error(path: Path, exc: OSError) -> SegbenchError:
    reason = exc.strerror or one_line(exc)
    return SegbenchError(f"{path.parent}: cannot write record {path.name}: {reason}; records written before are kept, "
                         "free space or fix the folder's permissions and re-run (current records are skipped)")  # fmt: skip


_MISSING = object()
_LARGEST = 2**63  # counts beyond any real model; larger ints overflow float arithmetic in the readers


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < _LARGEST and math.isfinite(v)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _LARGEST


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _samples(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(_number(s) and s > 0 for s in v)


def _optional(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is _MISSING or v is None or test(v)


def _section(v: Any) -> bool:
    return v is _MISSING or v is None or isinstance(v, dict)


_TEXT, _COUNT, _NUMBER, _SAMPLES = "text", "an integer >= 0", "a finite number", "a non-empty list of positive numbers (seconds)"
# (field, test, what it must be): what render, plot, compare, summary and resume read without further checks.
_ANY_RECORD = [
    ("model", _text, _TEXT),
    ("status", lambda v: v in ("ok", "failed"), "'ok' or 'failed'"),
    ("environment", lambda v: isinstance(v, dict), "an object"),
    ("environment.hardware", _text, _TEXT),
    ("environment.device_type", _text, _TEXT),
    ("environment.cpu", _text, _TEXT),
    ("environment.gpu_name", _optional(_text), "text or null"),
    ("environment.date", _text, _TEXT),
    ("environment.git_commit", _optional(_text), "text or null"),
    ("environment.load_average_1min", _optional(_number), "a number or null"),
    ("environment.host", _optional(_text), "text or null"),
    ("environment.job_id", _optional(_text), "text or null"),
    ("settings", lambda v: isinstance(v, dict), "an object"),
    ("settings.input_size", lambda v: isinstance(v, list) and len(v) == 2 and all(_count(n) and n > 0 for n in v), "[H, W]"),
    ("settings.images", _optional(_count), "an integer >= 0 or null (a protocol timed for a duration)"),
    ("settings.warmup", lambda v: _count(v) or v == "auto", "an integer >= 0 or 'auto'"),
    ("settings.batch_size", _optional(_count), "an integer >= 0 or null"),
    ("settings.weights", _optional(_text), "text or null"),
    ("settings.protocol", _section, "an object or null"),
    ("settings.protocol.name", _optional(_text), "text (a timing protocol's name)"),
    ("shared_from", _optional(lambda v: _text(v) and bool(_RECORD_FILE.fullmatch(v)) and not v.endswith(FAILED_SUFFIX)),
     "the file name of a successful record in the same folder, e.g. 'model.json'"),
]
_FAILED = [("error.kind", _text, _TEXT), ("error.message", _text, _TEXT)]
_OK = [
    ("params.inference", _count, _COUNT),
    ("params.total", _count, _COUNT),
    ("params.norm_statistics", _optional(_count), "an integer >= 0 or null"),
    ("macs.fvcore", _optional(lambda v: _number(v) and v >= 0), "a number >= 0 or null (fvcore not installed)"),
    ("macs.thop", _optional(lambda v: _number(v) and v >= 0), "a number >= 0 or null (thop not installed)"),
    ("macs.flop_counter_macs", _optional(lambda v: _number(v) and v >= 0), "a number >= 0 or null"),
    ("latency.samples", _samples, _SAMPLES),
    ("latency.cuda_event_samples", _optional(_samples), _SAMPLES + " or null"),
    ("latency.load_average_1min", _optional(_number), "a number or null"),
    ("latency.stages", _section, "an object or null"),
    *((f"latency.stages.{stage}", _optional(_samples), _SAMPLES) for stage in ("preprocess", "forward", "postprocess")),
    ("memory.measured", lambda v: isinstance(v, bool), "true or false"),
    ("training", _section, "an object or null"),
    ("gpu_state", _section, "an object or null"),
    ("accuracy", _section, "an object or null"),
    ("accuracy_ms_flip", _section, "an object or null"),
    ("accuracy_ms_flip.miou", _optional(_number), "a number or null"),
    ("phase_seconds", _optional(lambda v: isinstance(v, dict) and all(_number(x) and x >= 0 for x in v.values())),
     "an object of seconds >= 0 per phase"),
]
_MEASURED = {  # further fields of a section whose 'measured' (or presence) says it holds numbers
    "memory": [("memory.peak_allocated_bytes", _count, _COUNT), ("memory.peak_reserved_bytes", _count, _COUNT)],
    "training": [
        ("training.step.samples", _samples, _SAMPLES),
    ],
    "training.memory": [  # present only where the step ran on CUDA
        ("training.memory.peak_allocated_bytes", _count, _COUNT),
        ("training.memory.peak_reserved_bytes", _count, _COUNT),
    ],
    "gpu_state": [
        ("gpu_state.before", lambda v: isinstance(v, dict), "an object"),
        ("gpu_state.after", lambda v: isinstance(v, dict), "an object"),
        ("gpu_state.before.sm_clock_mhz", _optional(_number), "a number or null"),
        ("gpu_state.after.sm_clock_mhz", _optional(_number), "a number or null"),
        ("gpu_state.energy_per_image_j", _optional(_number), "a number or null"),
        ("gpu_state.warnings", lambda v: isinstance(v, list) and all(map(_text, v)), "a list of text"),
    ],
    "accuracy": [
        ("accuracy.miou", _number, "a finite number"),
        ("accuracy.classes", lambda v: isinstance(v, list) and all(map(_text, v)), "a list of class names"),
        ("accuracy.iou", lambda v: isinstance(v, list) and all(x is None or _number(x) for x in v), "a list of numbers or nulls"),
        ("accuracy.num_images", _count, _COUNT),
        ("accuracy.split", _text, _TEXT),
        ("accuracy.is_synthetic", lambda v: isinstance(v, bool), "true or false"),
    ],
}


def _requested(record: dict[str, Any]) -> set[str]:
    """The sections a successful record must hold: `--measure` leaves out the others on purpose."""
    measure = _lookup(record, "settings.measure")
    left_out = set(MEASUREMENTS) - set(measure) if isinstance(measure, list) and all(map(_text, measure)) else set()
    return {check[0].split(".")[0] for check in _OK} - left_out


def _lookup(record: Any, field: str) -> Any:
    for key in field.split("."):
        record = record.get(key, _MISSING) if isinstance(record, dict) else _MISSING
    return record


def record_problem(record: dict[str, Any]) -> tuple[str, str, Any] | None:
    """(field, what it must be, what it is) for the first field a reader needs that is missing or
    mistyped; None for a complete record. One rule for every reader, so none of them crashes on a
    record that parses but is incomplete."""
    checks = list(_ANY_RECORD)
    if record.get("status") == "failed":
        checks += _FAILED
    elif record.get("status") == "ok":
        checks += [check for check in _OK if check[0].split(".")[0] in _requested(record)]
        measured = {s for s in ("memory", "training", "gpu_state") if isinstance(record.get(s), dict) and record[s].get("measured")}
        if "training" in measured and "memory" in record["training"]:
            measured.add("training.memory")
        if isinstance(record.get("accuracy"), dict):
            measured.add("accuracy")
        checks += [check for section in sorted(measured) for check in _MEASURED[section]]
    for field, test, expected in checks:
        value = _lookup(record, field)
        if not test(value):
            return field, expected, "nothing" if value is _MISSING else value
    accuracy = record.get("accuracy")
    if isinstance(accuracy, dict) and len(accuracy["iou"]) != len(accuracy["classes"]):
        return "accuracy.iou", f"one value per class ({len(accuracy['classes'])})", accuracy["iou"]
    return None


def placement_problem(path: Path, record: dict[str, Any]) -> tuple[str, str, Any] | None:
    """A record copied under another model's file name or hardware folder would add a row for the wrong model."""
    if path.name != record["model"] + (FAILED_SUFFIX if record["status"] == "failed" else ".json"):
        return "model", f"the model its file name {path.name!r} names", record["model"]
    hardware = record["environment"]["hardware"]
    folder = results_folder(hardware, record.get("settings") or {})
    if folder != path.parent.name:
        if path.parent.name.split("+")[0] != hardware:
            return "environment.hardware", f"its folder's name {path.parent.name!r}", hardware
        return "settings.protocol", f"the protocol its folder's name {path.parent.name!r} names", protocol_name(record["settings"])
    if record.get("shared_from") == path.name:
        return "shared_from", "another model's record", record["shared_from"]
    return None


def _short(value: Any, limit: int = 80) -> str:
    return one_line(repr(value), limit)


def read_record(path: Path) -> dict[str, Any]:
    """A record with every field a reader needs, written for the model and hardware its path names.

    Anything else (unparseable, another schema, a missing or mistyped field, a copy under another
    model's name or hardware folder) is a SegbenchError naming the file and the field.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or not UTF-8; RecursionError: deep nesting
        raise SegbenchError(f"{path}: unreadable record: {one_line(exc)}; delete it or re-run bench") from exc
    version = record.get("schema_version") if isinstance(record, dict) else None
    if version != SCHEMA_VERSION:
        raise SegbenchError(f"{path}: field 'schema_version': expected {SCHEMA_VERSION}, got {_short(version)}")
    problem = record_problem(record) or placement_problem(path, record)
    if problem:
        field, expected, value = problem
        model = record["model"] if isinstance(record.get("model"), str) else None
        raise SegbenchError(
            f"{located(path, model, field)}: expected {expected}, got {_short(value)}; delete the file or re-run bench to measure it again"
        )
    return record


def _read_or_warn(path: Path, consequence: str) -> dict[str, Any] | None:
    try:
        return read_record(path)
    except SegbenchError as exc:
        warnings.warn(f"{exc} ({consequence})", SegbenchWarning, stacklevel=3)
        return None


def iter_records(results_dir: Path, pattern: str = "*/*.json") -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every valid record under results_dir (successful and failed), in path order; an invalid one is skipped with a warning."""
    for path in sorted(Path(results_dir).glob(pattern)):
        record = _read_or_warn(path, "skipped")
        if record is not None:
            yield path, record


def is_current(record: dict[str, Any], spec_hash: str, settings: dict[str, Any]) -> bool:
    """True when a successful record measured this very spec under these settings."""
    return record.get("status") == "ok" and record.get("spec_hash") == spec_hash and record.get("settings") == settings


def current_record(path: Path, spec_hash: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The record at path when it is valid and current, else None: an unreadable one is measured again (with a warning).
    A shared record is current only while the record it copied still holds the same measurement."""
    if not Path(path).exists():
        return None
    record = _read_or_warn(path, "measuring the model again")
    if record is None or not is_current(record, spec_hash, settings):
        return None
    return record if "shared_from" not in record or shared_source(Path(path), record) is not None else None


def shared_source(path: Path, record: dict[str, Any]) -> dict[str, Any] | None:
    """The successful record beside `path` that `record` copied its measurement from, while it still holds it; else None."""
    source_path = Path(path).with_name(record["shared_from"])
    if not source_path.exists():
        return None
    source = _read_or_warn(source_path, f"{Path(path).name} copied it and is measured again")
    if source is None or source.get("status") != "ok" or "shared_from" in source:
        return None
    return source if all(source.get(s) == record.get(s) for s in SHARED_SECTIONS) else None


def is_demo_accuracy(record: dict[str, Any]) -> bool:
    """An mIoU on synthetic data or from random weights proves the pipeline, not a model's accuracy."""
    return record["accuracy"]["is_synthetic"] or record["settings"]["weights"] == "random-init"


def reusable_complexity(results_dir: Path, model: str, spec_hash: str, input_size: list[int]) -> dict[str, Any] | None:
    """Params and MACs from any hardware's record of the same spec and input size: they do not depend on hardware."""
    for path in sorted(Path(results_dir).glob(f"*/{model}.json")):
        record = _read_or_warn(path, "its params and MACs are not reused")
        if record is None:
            continue
        macs = record.get("macs") or {}
        same = record.get("spec_hash") == spec_hash and macs.get("input_size") == input_size
        if record.get("status") == "ok" and same and "params" in record:  # `--measure macs` records have no params
            return {"params": record["params"], "macs": macs, "source": str(path.relative_to(results_dir))}
    return None


def macs_per_image(record: dict[str, Any]) -> int | None:
    """The primary MACs of one timed prediction (every sliding window). A record from before
    per-image counts has fvcore's count of one whole-image forward: that is the per-image count in
    whole mode, and unknown (None) in slide mode."""
    macs = record.get("macs") or {}
    if "per_image" in macs:
        return macs["per_image"]
    return macs.get("fvcore") if (record.get("settings") or {}).get("mode", "whole") == "whole" else None
