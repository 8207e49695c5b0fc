"""SFNet on ResNet_vd in PaddleSeg's layout: keys, shapes and parameter counts equal PaddleSeg 2.8's
after the `paddleseg` adapter, the flow warp moves features as PaddleSeg's grid says, output
shapes, and the zoo entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from paddle_reference import PARAMS, REFERENCE, assert_matches_paddleseg, paddle_param_counts, paddle_reference_shapes
from segbench.complexity import count_macs
from segbench.manifest import load_zoo
from segbench.models import architecture_builder
from segbench.models.backbones.resnet_vd import ResNetVd
from segbench.checkpoint import load_checkpoint
from segbench.models.sfnet import AlignedModule, PaddlePyramidPooling, SFNetHead, paddle_conv_bn_relu

ZOO = Path(__file__).resolve().parent.parent / "zoo"

# PaddleSeg config -> (segbench architecture, builder arguments)
CONFIGS = {
    "sfnet_resnet18_os8_cityscapes_1024x1024_80k": ("sfnet_resnet_vd", {"depth": 18}),
    "sfnet_resnet50_os8_cityscapes_1024x1024_80k": ("sfnet_resnet_vd", {"depth": 50}),
}


def build(config: str):
    architecture, kwargs = CONFIGS[config]
    torch.manual_seed(0)
    return architecture_builder(architecture)(**kwargs).eval()


def test_every_config_has_its_reference_file():
    assert set(CONFIGS) <= {p.name.removesuffix(".keys.txt") for p in REFERENCE.glob("*.keys.txt")} & set(PARAMS)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_state_dict_and_params_match_paddleseg(config):
    model = build(config)
    assert_matches_paddleseg(model, config)
    assert paddle_param_counts(model)[0] / 1e6 == pytest.approx(PARAMS[config]["published_params_m"], abs=0.005)


def test_resnet101_vd_equals_the_backbone_of_paddlesegs_deeplabv3_r101():
    """ResNet101_vd (23 blocks in stage 3, multi_grid 1, 2, 4 as that config sets it) in PaddleSeg's keys."""
    reference = paddle_reference_shapes("deeplabv3_resnet101_os8_cityscapes_1024x512_80k")
    backbone = {k.removeprefix("backbone."): v for k, v in reference.items() if k.startswith("backbone.")}
    ours = ResNetVd(101, output_stride=8, multi_grid=(1, 2, 4))
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == backbone
    assert ours.bb_3_2.conv1._conv.dilation == (16, 16) and ours.bb_1_0.short.avg_pool_first


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("size", [(64, 128), (50, 70)])
def test_logits_come_back_at_the_input_size(size):
    model = build("sfnet_resnet18_os8_cityscapes_1024x1024_80k")
    with torch.no_grad():
        logits = model(torch.randn(1, 3, *size))
    assert logits.shape == (1, 19, *size) and torch.isfinite(logits).all()


LOGITS = Path(__file__).parent / "data" / "paddleseg-logits"


def test_head_logits_equal_paddlesegs_from_its_own_pdparams():
    """A small SFNetHead (fpn_inplanes 4, 8, 12, 16, fpn_dim 8, 3 classes) built by PaddleSeg 2.8 on
    paddle 3.3.1 with random weights and statistics, saved by paddle.save, and its eval logits on
    random features of four sizes: read through segbench's .pdparams reader and the adapter, our
    head gives the same logits (PPM order, FAM flow and warp, resizes, BN eps). PaddleSeg's
    flow_warp needed one cast on paddle 3 (its int shape tensor to float, as paddle 2 did)."""
    head = SFNetHead(
        [4, 8, 12, 16], 8, 3, ppm=PaddlePyramidPooling(16, 8), conv_bn_relu=paddle_conv_bn_relu, kernel_size=3,
        grid_align_corners=True,
    ).eval()  # fmt: skip
    load_checkpoint(head, LOGITS / "sfnet_head.pdparams", model_name="sfnet_head", adapter="paddleseg")
    data = np.load(LOGITS / "sfnet_head.npz", allow_pickle=False)
    with torch.no_grad():
        logits = head([torch.from_numpy(data[f"feature{i}"]) for i in range(4)])
    assert torch.allclose(logits, torch.from_numpy(data["logits"]), atol=1e-5)


def test_flow_warp_follows_paddles_grid():
    """PaddleSeg divides the flow by (W, H) and samples with align_corners=True: a flow of 2W/(W-1)
    in x moves every column by exactly one pixel (zeros past the edge); zero flow is the identity."""
    fam = AlignedModule(4)
    x = torch.arange(2 * 3 * 5, dtype=torch.float64).reshape(1, 2, 3, 5)
    zero = torch.zeros(1, 2, 3, 5, dtype=torch.float64)
    assert torch.allclose(fam.flow_warp(x, zero), x)
    shift = zero.clone()
    shift[:, 0] = 2 * 5 / 4
    expected = torch.cat([x[..., 1:], torch.zeros(1, 2, 3, 1, dtype=torch.float64)], dim=-1)
    assert torch.allclose(fam.flow_warp(x, shift), expected)


def test_the_companys_warp_samples_with_pytorchs_default():
    """The company's sf_seg keeps grid_sample's default align_corners=False on the same grid: then
    -1 and 1 are the outer pixel edges, and on a 5-wide map the grid's x = -1, -0.5, 0, 0.5, 1
    fall on pixels -0.5, 0.75, 2, 3.25, 4.5 (zeros outside); the middle of 3 rows is row 1 exactly."""
    x = torch.arange(5, dtype=torch.float64).expand(1, 1, 3, 5)
    zero = torch.zeros(1, 2, 3, 5, dtype=torch.float64)
    warped = AlignedModule(4, grid_align_corners=False).flow_warp(x, zero)
    assert torch.allclose(warped[0, 0, 1], torch.tensor([0.0, 0.75, 2.0, 3.25, 2.0], dtype=torch.float64))


def test_macs_count_on_the_meta_device():
    macs = count_macs(build("sfnet_resnet18_os8_cityscapes_1024x1024_80k"), (64, 128), cross_check=False)
    assert macs["primary"] == "flop_counter" and macs["per_forward"] > 0


ENTRIES = [s for s in load_zoo(ZOO) if s.build.architecture == "sfnet_resnet_vd"]


def test_the_zoo_has_every_cityscapes_config_with_paddle_weights():
    assert sorted(s.name for s in ENTRIES) == sorted(CONFIGS)
    for spec in ENTRIES:
        assert CONFIGS[spec.name] == (spec.build.architecture, {k: v for k, v in spec.build.kwargs.items() if k != "num_classes"})
        assert spec.weights.endswith(f"/{spec.name}/model.pdparams") and spec.weights_adapter == "paddleseg"
        assert spec.reported[0].source == "PaddleSeg v2.8.0 configs/sfnet/README.md"
        assert (spec.test.mode, spec.test.size, spec.test.mean) == ("whole", (1024, 2048), (127.5, 127.5, 127.5))
