"""Named bench settings (`--preset NAME` or a YAML path): defaults that command-line flags override."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from segbench import PROJECT_ROOT
from segbench.errors import SegbenchError, located

PRESET_DIR = PROJECT_ROOT / "zoo" / "presets"
_FIELDS: dict[str, type] = {"models": list, "device": str, "images": int, "warmup": int, "input_size": list, "train_iters": int}


def load_preset(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise SegbenchError(f"--preset: no preset {name_or_path!r} (known: {known or 'none'})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SegbenchError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SegbenchError(f"{path}: expected a mapping of settings")
    for key, value in data.items():
        if key not in _FIELDS:
            raise SegbenchError(f"{located(path, None, key)}: unknown setting (known: {', '.join(_FIELDS)})")
        if not isinstance(value, _FIELDS[key]) or isinstance(value, bool):
            raise SegbenchError(f"{located(path, None, key)}: expected {_FIELDS[key].__name__}, got {value!r}")
    for key, least in (("images", 1), ("warmup", 0), ("train_iters", 0)):
        if key in data and data[key] < least:
            raise SegbenchError(f"{located(path, None, key)}: expected an integer of at least {least}, got {data[key]}")
    size = data.get("input_size")
    if size is not None and not (len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise SegbenchError(f"{located(path, None, 'input_size')}: expected [H, W], got {size!r}")
    if "input_size" in data:
        data["input_size"] = tuple(size)
    return data
