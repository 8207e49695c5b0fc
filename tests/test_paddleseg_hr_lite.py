"""PP-LiteSeg (STDC1/STDC2), HRNetW48Contrast and MLATransformer in PaddleSeg's layout: keys, shapes
and parameter counts equal PaddleSeg 2.8's after the `paddleseg` adapter, training-only branches
stay out of the inference forward, output shapes, and the zoo entries."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from paddle_reference import PARAMS, REFERENCE, assert_matches_paddleseg
from segbench.checkpoint import load_checkpoint
from segbench.complexity import count_macs
from segbench.manifest import load_zoo
from segbench.models import architecture_builder
from segbench.models.backbones.hrnet_paddle import HighResolutionModule
from segbench.models.backbones.resnet_vd import ConvBN
from segbench.models.backbones.stdc_paddle import CatBottleneck
from segbench.models.backbones.swin_paddle import SwinTransformerPaddle, WindowAttention
from segbench.models.mla_transformer import MLATransformer
from segbench.models.pp_liteseg import PPLiteSegHead
from segbench.training import training_loss

ZOO = Path(__file__).resolve().parent.parent / "zoo"
LOGITS = Path(__file__).parent / "data" / "paddleseg-logits"

# PaddleSeg config -> (segbench architecture, builder arguments)
CONFIGS = {
    "pp_liteseg_stdc1_cityscapes_1024x512_scale1.0_160k": (
        "pp_liteseg_stdc", {"version": 1, "arm_out_chs": [32, 64, 128], "seg_head_inter_chs": [32, 64, 64]}
    ),
    "pp_liteseg_stdc2_cityscapes_1024x512_scale1.0_160k": ("pp_liteseg_stdc", {"version": 2}),
    "HRNet_W48_contrast_cityscapes_1024x512_60k": ("hrnet_contrast", {"width": 48, "proj_dim": 720}),
    "swin_transformer_mla_base_patch4_window7_160k_autonue": ("mla_transformer_swin", {"variant": "base"}),
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


def outputs_from_paddles_own_pdparams(name: str, module: torch.nn.Module, *, listed: bool):
    """`module` loaded from PaddleSeg's .pdparams `name` through segbench's reader and the adapter,
    run in eval on the saved inputs (one list, or one tensor); (its outputs, PaddleSeg's)."""
    load_checkpoint(module.eval(), LOGITS / f"{name}.pdparams", model_name=name, adapter="paddleseg")
    data = np.load(LOGITS / f"{name}.npz", allow_pickle=False)
    inputs = [torch.from_numpy(data[k]) for k in sorted(k for k in data.files if k.startswith("input"))]
    with torch.no_grad():
        ours = module(inputs if listed else inputs[0])
    return ours, [torch.from_numpy(data[f"output{i}"]) for i in range(len(ours))]


def test_pp_liteseg_head_equals_paddlesegs_from_its_own_pdparams():
    """PaddleSeg 2.8's PPLiteSegHead (inputs 8/12/16 channels at 13x19, 7x10, 4x5; arm 4/6/8; SPPM
    bins 1, 2, 4 to 8 channels) with random weights, saved by paddle.save: same fused maps (SPPM sum,
    UAFM attention order and mix, resizes, BN eps)."""
    ours, theirs = outputs_from_paddles_own_pdparams("pp_liteseg_head", PPLiteSegHead([8, 12, 16], [4, 6, 8], 8, (1, 2, 4)), listed=True)
    assert len(ours) == 3 and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, theirs))


def test_hrnet_module_equals_paddlesegs_from_its_own_pdparams():
    """PaddleSeg 2.8's HighResolutionModule (branches 4/8/12 channels at 15x22, 8x11, 4x6, one block
    each): same outputs, so the stride-2 'same' padding of its fuse chains, their ReLUs and widths,
    and the upsampling match."""
    module = HighResolutionModule([4, 8, 12], "st3_1", blocks=1)
    ours, theirs = outputs_from_paddles_own_pdparams("hrnet_module", module, listed=True)
    assert len(ours) == 3 and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, theirs))


def test_swin_equals_paddlesegs_from_its_own_pdparams():
    """PaddleSeg 2.8's SwinTransformer (embed 8, depths 2, 2, heads 1, 2, window 7) on a 61x93 image:
    patch padding, windows padded from 16x24 and 8x12 tokens, shifted-window masks, patch merging of
    an odd side; our relative_position_index equals the one Paddle saved."""
    model = SwinTransformerPaddle(8, (2, 2), (1, 2), drop_path_rate=0.0)
    index = model.layers[0].blocks[0].attn.relative_position_index.clone()
    ours, theirs = outputs_from_paddles_own_pdparams("swin_tiny", model, listed=False)
    assert torch.equal(model.layers[1].blocks[1].attn.relative_position_index, index)
    assert [tuple(t.shape) for t in ours] == [(1, 8, 16, 24), (1, 16, 8, 12)]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, theirs))


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


@pytest.mark.usefixtures("one_thread")
def test_mla_auxiliary_head_trains_only_and_a_wide_input_is_squared():
    """PaddleSeg's eval forward skips aux_head (logits and MACs the same without it); MLAHeads
    resize each level to 4x its width on both sides, so a 32x64 input's stride-4 map (8x16) reaches
    the classifier at 64x64."""
    torch.manual_seed(0)
    model = MLATransformer(SwinTransformerPaddle(8, (2, 2, 2, 2), (1, 1, 1, 1), drop_path_rate=0.0), 5, mlahead_channels=8).eval()
    image = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        train_logits = copy.deepcopy(model).train()(image.expand(2, -1, -1, -1))
    classifier_inputs = []
    model.cls.register_forward_hook(lambda module, args, out: classifier_inputs.append(args[0].shape))
    with torch.no_grad():
        logits = model(image)
    assert logits.shape == (1, 5, 32, 64) and [t.shape for t in train_logits] == [(2, 5, 32, 64)] * 2
    assert classifier_inputs == [(1, 32, 64, 64)]
    macs = count_macs(model, (32, 64), cross_check=False)["per_forward"]
    model.aux_head = None
    with torch.no_grad():
        assert torch.equal(model(image), logits)
    assert count_macs(model, (32, 64), cross_check=False)["per_forward"] == macs


def test_window_attention_macs_equal_a_hand_count():
    """Swin's MACs with the attention matmuls, on a map that each stage pads to whole 7x7 windows:
    per block qkv (3C^2), q.k and attn.v (N*C each, N = 49 tokens a window) and proj (C^2) per padded
    token, the MLP (8C^2) per real token; patch merging 8C^2 per merged token; the 4x4 patch conv."""
    model = SwinTransformerPaddle(8, (2, 2), (2, 4), window=7).eval()
    height, width = 60, 92  # 15x23 tokens, padded to 21x28; then 8x12, padded to 14x14
    h, w, channels = height // 4, width // 4, 8
    expected = h * w * channels * 3 * 16
    for stage in range(2):
        hp, wp = -(-h // 7) * 7, -(-w // 7) * 7
        per_block = hp * wp * (3 * channels**2 + 2 * 49 * channels + channels**2) + h * w * 8 * channels**2
        expected += 2 * per_block
        if stage == 0:
            h, w = (h + 1) // 2, (w + 1) // 2
            expected += h * w * 4 * channels * 2 * channels
            channels *= 2
    assert count_macs(model, (height, width), cross_check=False)["per_forward"] == expected


def test_relative_position_index_points_into_the_bias_table():
    """Index of (query, key) = (dy + 6) * 13 + (dx + 6) for a 7x7 window: the table's centre for a
    token with itself, its first row for the top-left key seen from the bottom-right query."""
    index = WindowAttention(8, 7, 2).relative_position_index
    assert index.shape == (49, 49) and torch.equal(index.diagonal(), torch.full((49,), 84))
    assert index[48, 0] == 168 and index[0, 48] == 0 and index[0, 1] == 6 * 13 + 5 and index[0, 7] == 5 * 13 + 6


ENTRIES = [s for s in load_zoo(ZOO) if s.build.architecture in {a for a, _ in CONFIGS.values()}]


def test_the_zoo_has_every_published_config_with_paddle_weights():
    names = {s.name for s in ENTRIES}
    for scale in ("0.5", "0.75", "1.0"):
        assert {f"pp_liteseg_stdc{v}_cityscapes_1024x512_scale{scale}_160k" for v in (1, 2)} <= names
    for spec in ENTRIES:
        reference = min(CONFIGS, key=lambda c: (c.split("_scale")[0] != spec.name.split("_scale")[0], c))
        assert CONFIGS[reference] == (spec.build.architecture, {k: v for k, v in spec.build.kwargs.items() if k != "num_classes"})
        if spec.build.architecture == "mla_transformer_swin":  # PaddleSeg publishes neither weights nor mIoU for it
            assert (spec.weights, spec.reported, spec.test.size) == (None, (), (256, 256))
            continue
        assert spec.weights.endswith(f"/{spec.name}/model.pdparams") and spec.weights_adapter == "paddleseg"
        assert spec.reported[0].source.startswith("PaddleSeg v2.8.0 ")
