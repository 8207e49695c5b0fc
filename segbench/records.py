"""Result records: one schema-versioned JSON file per model and hardware, written atomically.

Layout: `<results>/<hardware>/<model>.json` for the latest successful measurement and
`<model>.failed.json` beside it for a failed attempt, so a failure never destroys a good record.
Statistics are not stored: they are derived from the raw samples by segbench.stats.
No torch here: render and plot read records only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from segbench.errors import SegbenchError

SCHEMA_VERSION = 1
FAILED_SUFFIX = ".failed.json"


def record_path(results_dir: Path, hardware: str, model: str, *, failed: bool = False) -> Path:
    return Path(results_dir) / hardware / (model + (FAILED_SUFFIX if failed else ".json"))


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write JSON to a temp file in the same directory, fsync, then rename over the target.

    A crash leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, sort_keys=True, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SegbenchError(f"{path}: unreadable record: {exc}") from exc
    version = record.get("schema_version") if isinstance(record, dict) else None
    if version != SCHEMA_VERSION:
        raise SegbenchError(f"{path}: field 'schema_version': expected {SCHEMA_VERSION}, got {version!r}")
    return record


def iter_records(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every record under results_dir (successful and failed), in path order."""
    for path in sorted(Path(results_dir).glob("*/*.json")):
        yield path, read_record(path)


def is_current(record: dict[str, Any], spec_hash: str, settings: dict[str, Any]) -> bool:
    """True when a successful record measured this very spec under these settings."""
    return record.get("status") == "ok" and record.get("spec_hash") == spec_hash and record.get("settings") == settings


def is_demo_accuracy(record: dict[str, Any]) -> bool:
    """An mIoU on synthetic data or from random weights proves the pipeline, not a model's accuracy."""
    return record["accuracy"]["is_synthetic"] or record["settings"]["weights"] == "random-init"


def reusable_complexity(results_dir: Path, model: str, spec_hash: str, input_size: list[int]) -> dict[str, Any] | None:
    """Params and MACs from any hardware's record of the same spec and input size: they do not depend on hardware."""
    for path in sorted(Path(results_dir).glob(f"*/{model}.json")):
        record = read_record(path)
        macs = record.get("macs") or {}
        if record.get("status") == "ok" and record.get("spec_hash") == spec_hash and macs.get("input_size") == input_size:
            return {"params": record["params"], "macs": macs, "source": str(path.relative_to(results_dir))}
    return None


def macs_per_image(record: dict[str, Any]) -> int | None:
    """The primary MACs of one timed prediction (every sliding window). A record from before
    per-image counts has fvcore's count of one whole-image forward: that is the per-image count in
    whole mode, and unknown (None) in slide mode."""
    macs = record.get("macs") or {}
    if "per_image" in macs:
        return macs["per_image"]
    return macs.get("fvcore") if record["settings"].get("mode", "whole") == "whole" else None
