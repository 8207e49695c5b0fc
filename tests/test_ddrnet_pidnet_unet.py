"""DDRNet, PIDNet and UNet: mmsegmentation parity (keys, shapes, params), output shapes, and the
branches that exist only for training (present so checkpoints load, absent from inference)."""

from __future__ import annotations

import pytest
import torch

from mmseg_reference import DRIVE_REFERENCE, PARAMS, REFERENCE, assert_matches_mmseg, logits_on_a_random_image, mmseg_config_tests, reference_shapes
from segbench.complexity import _meta_flops, count_params
from segbench.models import architecture_builder, list_architectures
from segbench.training import training_outputs

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {
    "ddrnet_23-slim_in1k-pre_2xb6-120k_cityscapes-1024x1024": ("ddrnet", {"channels": 32, "head_channels": 64}),
    "ddrnet_23_in1k-pre_2xb6-120k_cityscapes-1024x1024": ("ddrnet", {"channels": 64, "head_channels": 128}),
    "unet-s5-d16_fcn_4xb4-160k_cityscapes-512x1024": ("fcn_unet", {}),
    "pidnet-s_2xb6-120k_1024x1024-cityscapes": ("pidnet", {}),
    "pidnet-m_2xb6-120k_1024x1024-cityscapes": ("pidnet", {"channels": 64}),
    "pidnet-l_2xb6-120k_1024x1024-cityscapes": (
        "pidnet",
        {"channels": 64, "ppm_channels": 112, "num_stem_blocks": 3, "num_branch_blocks": 4, "head_channels": 256},
    ),
}
# mmseg ships UNet's PSP and ASPP heads for DRIVE (2 classes) only: their metafile reports Dice, not
# mIoU, so no zoo entry covers them and their key lists live apart (tests/data/mmseg-keys-drive).
DRIVE_CONFIGS = {
    "unet-s5-d16_pspnet_4xb4-40k_drive-64x64": ("pspnet_unet", {"num_classes": 2}),
    "unet-s5-d16_deeplabv3_4xb4-40k_drive-64x64": ("deeplabv3_unet", {"num_classes": 2}),
}

# architecture -> its modules that only training runs (mmseg's heads run them in train mode only)
TRAINING_ONLY = {
    "ddrnet": ("decode_head.aux_head", "decode_head.aux_cls_seg"),
    "pidnet": ("decode_head.p_head", "decode_head.p_cls_seg", "decode_head.d_head", "decode_head.d_cls_seg"),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny inputs run faster on one thread


def test_every_config_has_its_reference_file():
    for configs, folder in ((CONFIGS, REFERENCE), (DRIVE_CONFIGS, DRIVE_REFERENCE)):
        assert set(configs) <= {p.name.removesuffix(".keys.txt") for p in folder.glob("*.keys.txt")} & set(PARAMS)


_, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(CONFIGS)


@pytest.mark.parametrize("config", sorted(DRIVE_CONFIGS))
def test_unet_psp_and_aspp_heads_match_mmsegmentation_drive_configs(config):
    architecture, kwargs = DRIVE_CONFIGS[config]
    assert_matches_mmseg(architecture_builder(architecture)(**kwargs), config, DRIVE_REFERENCE)


def _reference_params(config: str, prefixes: tuple[str, ...]) -> int:
    """Parameters under `prefixes` in mmseg's key listing (weights and biases; BN buffers are not parameters)."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(
        torch.Size(shape).numel()
        for key, shape in reference_shapes(config).items()
        if key.startswith(prefixes) and not key.endswith(buffers)
    )


@pytest.mark.parametrize("config", [c for c in sorted(CONFIGS) if CONFIGS[c][0] in TRAINING_ONLY])
def test_training_only_branches_leave_the_inference_params(config):
    architecture, kwargs = CONFIGS[config]
    training_only = tuple(f"{name}." for name in TRAINING_ONLY[architecture])
    params = count_params(architecture_builder(architecture)(**kwargs))
    assert params["total"] == PARAMS[config]["params_total"]
    assert params["inference"] == PARAMS[config]["params_total"] - _reference_params(config, training_only)
    assert params["inference"] < params["total"]


def _calls(model, names) -> dict[str, int]:
    """A counter of forward calls of each named module, filled by hooks."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        model.get_submodule(name).register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
    return calls


# the smallest config of each architecture with training-only branches
SMALLEST = {}
for _config in sorted(CONFIGS, key=lambda c: PARAMS[c]["params_total"]):
    SMALLEST.setdefault(CONFIGS[_config][0], _config)


@pytest.mark.parametrize("config", [SMALLEST[a] for a in TRAINING_ONLY])
def test_training_only_branches_run_in_training_only(config):
    """mmseg's DDRHead/PIDHead run their extra branches only in train mode: segbench's eval
    forward (what latency and MACs measure) must never run them, its training step must."""
    architecture, kwargs = CONFIGS[config]
    torch.manual_seed(0)
    model = architecture_builder(architecture)(**kwargs)
    calls = _calls(model, TRAINING_ONLY[architecture])
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 64, 128))
    assert set(calls.values()) == {0}
    meta_modules = _meta_flops(model, (64, 128))
    assert [m for m in meta_modules if m.startswith(TRAINING_ONLY[architecture])] == []
    outputs = training_outputs(model.train(), torch.randn(2, 3, 64, 128))
    assert set(calls.values()) == {1}
    assert [weight for _, weight in outputs] == list(model.decode_head.loss_weights)


# builder arguments -> expected logits (classes, H, W) for a 1x3x64x128 input
OUTPUT_SHAPES = [
    ("ddrnet", {}, (19, 8, 16)),
    ("ddrnet", {"channels": 64, "head_channels": 128, "num_classes": 5}, (5, 8, 16)),
    ("fcn_unet", {}, (19, 64, 128)),  # UNet's heads read the full-resolution decoder output
    ("pspnet_unet", {"num_classes": 2}, (2, 64, 128)),
    ("deeplabv3_unet", {}, (19, 64, 128)),
    ("pidnet", {}, (19, 8, 16)),
    ("pidnet", {"channels": 64, "ppm_channels": 112, "num_stem_blocks": 3, "num_branch_blocks": 4, "num_classes": 3}, (3, 8, 16)),
]


def test_every_builder_here_has_an_output_shape_case():
    ours = {"ddrnet", "pidnet", "fcn_unet", "pspnet_unet", "deeplabv3_unet"}
    assert {name for name, _, _ in OUTPUT_SHAPES} == ours <= set(list_architectures())


@pytest.mark.parametrize(("architecture", "kwargs", "expected"), OUTPUT_SHAPES)
def test_output_shape(architecture, kwargs, expected):
    _, _, logits = logits_on_a_random_image(architecture, kwargs)
    assert tuple(logits.shape) == (1, *expected)
    assert torch.isfinite(logits).all()


def test_ddrnet_closes_a_stage_without_relu_as_mmseg():
    """mmseg's _make_layer: a BasicBlock stage's first block ends in ReLU, its last does not (the
    fusion adds to it first); a single Bottleneck ends without one. Keys cannot show this."""
    backbone = architecture_builder("ddrnet")().backbone
    for stage in (*backbone.context_branch_layers[:2], *backbone.spatial_branch_layers[:2], backbone.stem[2]):
        assert [type(block.act).__name__ for block in stage] == ["ReLU", "Identity"]
    for stage in (backbone.context_branch_layers[2], backbone.spatial_branch_layers[2]):
        assert [type(block.act).__name__ for block in stage] == ["Identity"]


def test_unet_slides_as_mmseg_tests_it_on_drive():
    """mmseg's UNet DRIVE configs slide 64x64 windows at stride 42: every window must be a multiple of 16."""
    from segbench.inference import slide_logits

    torch.manual_seed(0)
    model = architecture_builder("pspnet_unet")(num_classes=2, auxiliary_head=False).eval()
    with torch.no_grad():
        logits = slide_logits(model, torch.randn(1, 3, 64, 112), (64, 64), (42, 42), align_corners=False)
    assert tuple(logits.shape) == (1, 2, 64, 112)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("kwargs", "fusion", "pyramid"), [({}, "LightBag", "PAPPM"), ({"num_stem_blocks": 3}, "Bag", "DAPPM")])
def test_pidnet_s_m_and_l_fuse_as_mmseg_picks(kwargs, fusion, pyramid):
    """mmseg's PIDNet switches on num_stem_blocks: 2 (S, M) takes PAPPM and LightBag, 3 (L) DAPPM and Bag."""
    backbone = architecture_builder("pidnet")(**kwargs).backbone
    assert (type(backbone.dfm).__name__, type(backbone.spp).__name__) == (fusion, pyramid)


def test_pidnet_train_outputs_are_p_i_and_d_logits():
    """In train mode the head returns mmseg's (P, I, D): classes, classes and one boundary channel, all
    at 1/8; the D output trains with a binary loss; the step reaches every parameter of PIDNet-S
    (the zoo's training-step test takes PIDNet-L, whose fusion and pyramid differ)."""
    from segbench.training import training_loss

    torch.manual_seed(0)
    model = architecture_builder("pidnet")(num_classes=5).train()
    p, i, d = (logits for logits, _ in training_outputs(model, torch.randn(2, 3, 64, 128)))
    assert [tuple(t.shape) for t in (p, i, d)] == [(2, 5, 8, 16), (2, 5, 8, 16), (2, 1, 8, 16)]
    labels = torch.randint(0, 5, (2, 64, 128))
    loss = training_loss(model, torch.randn(2, 3, 64, 128), labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()] == []
