"""PP-LiteSeg (STDC1/STDC2), HRNetW48Contrast and MLATransformer in PaddleSeg's layout: keys, shapes
and parameter counts equal PaddleSeg 2.8's after the `paddleseg` adapter, training-only branches
stay out of the inference forward, output shapes, and the zoo entries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paddle_reference import PARAMS, REFERENCE, assert_matches_paddleseg
from segbench.complexity import count_macs
from segbench.manifest import load_zoo
from segbench.models import architecture_builder
from segbench.models.backbones.resnet_vd import ConvBN
from segbench.models.backbones.stdc_paddle import CatBottleneck
from segbench.training import training_loss

ZOO = Path(__file__).resolve().parent.parent / "zoo"

# PaddleSeg config -> (segbench architecture, builder arguments)
CONFIGS = {
    "pp_liteseg_stdc1_cityscapes_1024x512_scale1.0_160k": (
        "pp_liteseg_stdc", {"version": 1, "arm_out_chs": [32, 64, 128], "seg_head_inter_chs": [32, 64, 64]}
    ),
    "pp_liteseg_stdc2_cityscapes_1024x512_scale1.0_160k": ("pp_liteseg_stdc", {"version": 2}),
    "HRNet_W48_contrast_cityscapes_1024x512_60k": ("hrnet_contrast", {"width": 48, "proj_dim": 720}),
}


def build(config: str, **extra):
    architecture, kwargs = CONFIGS[config]
    torch.manual_seed(0)
    return architecture_builder(architecture)(**kwargs, **extra).eval()


def test_every_config_has_its_reference_file():
    assert set(CONFIGS) <= {p.name.removesuffix(".keys.txt") for p in REFERENCE.glob("*.keys.txt")} & set(PARAMS)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_state_dict_and_params_match_paddleseg(config):
    assert_matches_paddleseg(build(config), config)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_logits_come_back_at_the_input_size(config):
    model = build(config)
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 96))
    num_classes = PARAMS[config]["num_classes"]
    assert logits.shape == (1, num_classes, 64, 96) and torch.isfinite(logits).all()


@pytest.mark.usefixtures("one_thread")
def test_pp_liteseg_trains_three_seg_heads_and_infers_with_one():
    """PaddleSeg's eval forward runs seg_heads[0] only: removing the other two changes neither the
    logits nor the MACs; training returns the logits of all three at the input size."""
    config = "pp_liteseg_stdc1_cityscapes_1024x512_scale1.0_160k"
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        train_logits = build(config).train()(image.expand(2, -1, -1, -1))  # BatchNorm trains on more than one value
    assert [t.shape for t in train_logits] == [(2, 19, 64, 96)] * 3
    model = build(config)
    with torch.no_grad():
        logits = model(image)
    macs = count_macs(model, (64, 96), cross_check=False)["per_forward"]
    model.seg_heads[1] = model.seg_heads[2] = None
    with torch.no_grad():
        assert torch.equal(model(image), logits)
    assert count_macs(model, (64, 96), cross_check=False)["per_forward"] == macs


def test_strided_stdc_block_pools_without_the_padding():
    """Paddle's AvgPool2D(3, 2, 1) is exclusive: a corner output of the pooled first branch is the
    mean of the 4 pixels inside the window, not of 9 with the zero padding."""
    block = CatBottleneck(4, 16, stride=2).eval()
    for conv in block.conv_list[1:]:
        torch.nn.init.zeros_(conv.conv.weight)
    torch.nn.init.ones_(block.conv_list[0].conv.weight)
    with torch.no_grad():
        x = torch.rand(1, 4, 6, 6)
        first = block.conv_list[0](x)
        pooled = block(x)[:, :8]
    assert torch.allclose(pooled[0, :, 0, 0], first[0, :, :2, :2].mean(dim=(-2, -1)))


@pytest.mark.usefixtures("one_thread")
def test_the_contrast_projection_trains_only():
    """PaddleSeg's eval forward skips proj_head: without it the logits and MACs stay the same; in
    training it gives L2-normalized embeddings at stride 4, and a training step reaches it."""
    torch.manual_seed(0)
    model = architecture_builder("hrnet_contrast")(width=18, proj_dim=32).eval()  # W48's layout, smaller
    image = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        logits = model(image)
    macs = count_macs(model, (32, 64), cross_check=False)["per_forward"]
    trained = architecture_builder("hrnet_contrast")(width=18, proj_dim=32).train()
    images, labels = torch.randn(2, 3, 32, 64), torch.randint(0, 19, (2, 32, 64))
    _, embeddings = trained(images)
    assert embeddings.shape == (2, 32, 8, 16)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(2, 8, 16), atol=1e-5)
    training_loss(trained, images, labels).backward()
    assert trained.proj_head.proj[1].weight.grad.abs().sum() > 0
    model.proj_head = None
    with torch.no_grad():
        assert torch.equal(model(image), logits)
    assert count_macs(model, (32, 64), cross_check=False)["per_forward"] == macs


def test_paddle_same_padding_at_stride_2_pads_after():
    """Paddle's padding='same' (HRNet's convs) at stride 2 on an even side pads 0 before, 1 after:
    a 3x3 box sum at stride 2 over a 4x4 input covers rows/cols 0-2 and 2-3, not -1-1 and 1-3."""
    block = ConvBN(1, 1, 3, stride=2, same_padding=True).eval()
    torch.nn.init.ones_(block._conv.weight)
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    expected = torch.tensor([[x[0, 0, :3, :3].sum(), x[0, 0, :3, 2:].sum()], [x[0, 0, 2:, :3].sum(), x[0, 0, 2:, 2:].sum()]])
    with torch.no_grad():
        assert torch.allclose(block(x)[0, 0], expected / (1 + 1e-5) ** 0.5)


ENTRIES = [s for s in load_zoo(ZOO) if s.build.architecture in {a for a, _ in CONFIGS.values()}]


def test_the_zoo_has_every_published_config_with_paddle_weights():
    names = {s.name for s in ENTRIES}
    for scale in ("0.5", "0.75", "1.0"):
        assert {f"pp_liteseg_stdc{v}_cityscapes_1024x512_scale{scale}_160k" for v in (1, 2)} <= names
    for spec in ENTRIES:
        reference = min(CONFIGS, key=lambda c: (c.split("_scale")[0] != spec.name.split("_scale")[0], c))
        assert CONFIGS[reference] == (spec.build.architecture, {k: v for k, v in spec.build.kwargs.items() if k != "num_classes"})
        assert spec.weights.endswith(f"/{spec.name}/model.pdparams") and spec.weights_adapter == "paddleseg"
        assert spec.reported[0].source.startswith("PaddleSeg v2.8.0 ")
