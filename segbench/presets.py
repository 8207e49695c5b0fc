"""Named bench settings (`--preset NAME` or a YAML path): defaults that command-line flags override."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segbench import PROJECT_ROOT
from segbench.errors import SegbenchError, located, one_line
from segbench.manifest import load_yaml_data
from segbench.records import chosen_measurements

PRESET_DIR = PROJECT_ROOT / "zoo" / "presets"
_FIELDS: dict[str, type] = {"models": list, "device": str, "images": int, "warmup": int, "input_size": list, "train_iters": int,
                            "measure": list, "protocol": str}  # fmt: skip


def load_preset(name_or_path: str) -> dict[str, Any]:
    """A preset's settings, checked as the flags they stand for; a file from elsewhere stays data, as a manifest does."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise SegbenchError(f"--preset: no preset {name_or_path!r} (known: {known or 'none'})")
    data = load_yaml_data(path, "preset") or {}
    if not isinstance(data, dict):
        raise SegbenchError(f"{path}: expected a mapping of settings")
    for key, value in data.items():
        if key not in _FIELDS:
            raise SegbenchError(f"{located(path, None, one_line(key, 80))}: unknown setting (known: {', '.join(_FIELDS)})")
        if not isinstance(value, _FIELDS[key]) or isinstance(value, bool):
            raise SegbenchError(f"{located(path, None, key)}: expected {_FIELDS[key].__name__}, got {one_line(repr(value), 80)}")
    for key, least in (("images", 1), ("warmup", 0), ("train_iters", 0)):
        if key in data and data[key] < least:
            raise SegbenchError(f"{located(path, None, key)}: expected an integer of at least {least}, got {data[key]}")
    for key in ("models", "measure"):
        if not all(isinstance(name, str) for name in data.get(key, [])):
            raise SegbenchError(f"{located(path, None, key)}: expected a list of names, got {one_line(repr(data[key]), 80)}")
    if "measure" in data:
        try:
            data["measure"] = chosen_measurements(data["measure"])
        except ValueError as exc:
            raise SegbenchError(f"{located(path, None, 'measure')}: {exc}") from None
    size = data.get("input_size")
    if size is not None and not (len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise SegbenchError(f"{located(path, None, 'input_size')}: expected [H, W], got {one_line(repr(size), 80)}")
    if "input_size" in data:
        data["input_size"] = tuple(size)
    return data
