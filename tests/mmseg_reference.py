"""The mmsegmentation 1.2.2 reference data copied into tests/data/mmseg-keys (a clone has no ../shared)."""

import json
import re
from pathlib import Path

REFERENCE = Path(__file__).parent / "data" / "mmseg-keys"
DRIVE_REFERENCE = Path(__file__).parent / "data" / "mmseg-keys-drive"
"""Key lists of DRIVE-only configs (UNet's PSP and ASPP heads): no Cityscapes zoo entry covers them."""
PARAMS = {row["config"]: row for row in json.loads((REFERENCE / "params.json").read_text())}


def reference_shapes(config: str, folder: Path = REFERENCE) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of the config with its shape, from its `key (shape)` listing."""
    shapes = {}
    for line in (folder / f"{config}.keys.txt").read_text().splitlines():
        key, dims = re.fullmatch(r"(\S+) \((.*)\)", line).groups()
        shapes[key] = tuple(int(d) for d in dims.split(",") if d.strip())
    return shapes


def assert_matches_mmseg(model, config: str, folder: Path = REFERENCE) -> None:
    """The model's state_dict keys, shapes and parameter counts (all, and without the auxiliary
    head) equal mmsegmentation's for `config`: then its checkpoints load with strict=True."""
    from segbench.models.segmentor import AUXILIARY_PREFIX

    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    reference = reference_shapes(config, folder)
    assert sorted(set(reference) - set(ours)) == [], "missing keys"
    assert sorted(set(ours) - set(reference)) == [], "unexpected keys"
    assert {k: v for k, v in ours.items() if reference[k] != v} == {}, "shape mismatches"
    total = sum(p.numel() for p in model.parameters())
    inference = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(AUXILIARY_PREFIX))
    assert (total, inference) == (PARAMS[config]["params_total"], PARAMS[config]["params_inference"])


def mmseg_config_tests(configs: dict[str, tuple[str, dict]], build=None):
    """The two tests every mmsegmentation family's file runs over its configs (config -> (architecture, kwargs)): each
    config has its reference key list and parameter counts, and each model built for it matches them
    (assert_matches_mmseg). `build(architecture, **kwargs)` makes the model (default: the architecture's builder).
    Assign both to module names beginning with test_, so that pytest collects them there."""
    import pytest

    from segbench.models import architecture_builder

    make = build or (lambda architecture, **kwargs: architecture_builder(architecture)(**kwargs))

    def test_every_config_has_its_reference_file():
        assert set(configs) <= {p.name.removesuffix(".keys.txt") for p in REFERENCE.glob("*.keys.txt")} & set(PARAMS)

    @pytest.mark.parametrize("config", sorted(configs))
    def test_state_dict_and_params_match_mmsegmentation(config):
        architecture, kwargs = configs[config]
        assert_matches_mmseg(make(architecture, **kwargs), config)

    return test_every_config_has_its_reference_file, test_state_dict_and_params_match_mmsegmentation


def logits_on_a_random_image(architecture: str, kwargs: dict, size: tuple[int, int] = (64, 128)):
    """(model in eval mode, the 1x3xHxW random image, its logits): the shape check every family's
    tests make. Seeded, so a failure reproduces."""
    import torch

    from segbench.models import architecture_builder

    torch.manual_seed(0)
    model = architecture_builder(architecture)(**kwargs).eval()
    image = torch.randn(1, 3, *size)
    with torch.no_grad():
        return model, image, model(image)
