"""The mmsegmentation 1.2.2 reference data copied into tests/data/mmseg-keys (a clone has no ../shared)."""

import json
import re
from pathlib import Path

REFERENCE = Path(__file__).parent / "data" / "mmseg-keys"
PARAMS = {row["config"]: row for row in json.loads((REFERENCE / "params.json").read_text())}


def reference_shapes(config: str) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of the config with its shape, from its `key (shape)` listing."""
    shapes = {}
    for line in (REFERENCE / f"{config}.keys.txt").read_text().splitlines():
        key, dims = re.fullmatch(r"(\S+) \((.*)\)", line).groups()
        shapes[key] = tuple(int(d) for d in dims.split(",") if d.strip())
    return shapes
