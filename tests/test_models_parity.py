"""The issue-2 architectures against mmsegmentation 1.2.2's state_dict keys, shapes and parameter counts."""

import json
import re
from pathlib import Path

import pytest

from segbench.complexity import count_params
from segbench.models import architecture_builder

KEYS = Path(__file__).parent / "data" / "mmseg-keys"
PARAMS = {row["config"]: row for row in json.loads((KEYS / "params.json").read_text())}


def reference_shapes(config: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (KEYS / f"{config}.keys.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        shapes[key] = tuple(int(n) for n in re.findall(r"\d+", shape))
    return shapes


@pytest.mark.parametrize(
    "config, architecture, depth",
    [
        ("fcn_r50-d8_4xb2-80k_cityscapes-512x1024", "fcn_resnet", 50),
        ("fcn_r101-d8_4xb2-80k_cityscapes-512x1024", "fcn_resnet", 101),
        ("deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024", "deeplabv3_resnet", 18),
        ("deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024", "deeplabv3_resnet", 50),
        ("deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024", "deeplabv3_resnet", 101),
    ],
)
def test_keys_shapes_and_params_match_mmsegmentation(config, architecture, depth):
    model = architecture_builder(architecture)(depth=depth, num_classes=19)
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = reference_shapes(config)
    assert sorted(set(mine) - set(theirs)) == [] and sorted(set(theirs) - set(mine)) == []
    assert mine == theirs
    assert count_params(model) == {"total": PARAMS[config]["params_total"], "inference": PARAMS[config]["params_inference"]}
