"""mmsegmentation parity and forward details of the real-time families: Fast-SCNN, ERFNet, CGNet, ICNet."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmseg_reference import logits_on_a_random_image, mmseg_config_tests
from segbench.complexity import count_macs
from segbench.inference import slide_logits
from segbench.models import architecture_builder
from segbench.models.segmentor import AUXILIARY_PREFIX
from segbench.training import training_outputs

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {
    "fast_scnn_8xb4-160k_cityscapes-512x1024": ("fast_scnn", {}),
    "erfnet_fcn_4xb4-160k_cityscapes-512x1024": ("erfnet_fcn", {}),
    "cgnet_fcn_4xb8-60k_cityscapes-512x1024": ("cgnet_fcn", {}),
    "icnet_r18-d8_4xb2-80k_cityscapes-832x832": ("icnet_resnet", {"depth": 18}),
    "icnet_r50-d8_4xb2-80k_cityscapes-832x832": ("icnet_resnet", {"depth": 50}),
    "icnet_r101-d8_4xb2-80k_cityscapes-832x832": ("icnet_resnet", {"depth": 101}),
}

# builder arguments -> expected logits (classes, H, W) for a 1x3x64x128 input
OUTPUT_SHAPES = [
    ("fast_scnn", {}, (19, 8, 16)),  # stride 8
    ("erfnet_fcn", {}, (19, 32, 64)),  # the decoder upsamples back to stride 2
    ("cgnet_fcn", {"num_classes": 5}, (5, 8, 16)),  # stride 8
    ("icnet_resnet", {"depth": 18}, (19, 8, 16)),  # fused at the stride of the light branch, 8
]
REALTIME_ARCHITECTURES = {"fast_scnn", "erfnet_fcn", "cgnet_fcn", "icnet_resnet"}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny inputs run faster on one thread


def build(architecture: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return architecture_builder(architecture)(**kwargs)


test_every_config_has_its_reference_file, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(CONFIGS)


def test_every_realtime_architecture_has_an_output_shape_case():
    assert {name for name, _, _ in OUTPUT_SHAPES} == REALTIME_ARCHITECTURES


@pytest.mark.parametrize(("architecture", "kwargs", "expected"), OUTPUT_SHAPES)
def test_output_shape_whole_and_slide(architecture, kwargs, expected):
    model, image, logits = logits_on_a_random_image(architecture, kwargs)
    with torch.no_grad():
        slid = slide_logits(model, image, (64, 64), (32, 32), align_corners=False)
    assert tuple(logits.shape) == (1, *expected)
    assert torch.isfinite(logits).all()
    assert tuple(slid.shape) == (1, expected[0], 64, 128) and torch.isfinite(slid).all()


class _Calls:
    """Counts forward calls of the modules it is attached to."""

    def __init__(self, modules):
        self.count = 0
        for module in modules:
            module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.count += 1


@pytest.mark.parametrize(("architecture", "kwargs"), [("fast_scnn", {}), ("icnet_resnet", {"depth": 18})])
def test_auxiliary_heads_train_but_stay_out_of_inference_and_its_macs(architecture, kwargs):
    """Two auxiliary FCN heads (mmseg's list of auxiliary_head): trained with weight 0.4 each,
    never run by forward, absent from the inference MACs."""
    model = build(architecture, **kwargs).eval()
    assert isinstance(model.auxiliary_head, nn.ModuleList) and len(model.auxiliary_head) == 2
    calls = _Calls(model.auxiliary_head)
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 128))
        assert calls.count == 0
        outputs = training_outputs(model, torch.randn(1, 3, 64, 128))
    assert calls.count == 2 and [weight for _, weight in outputs] == [1.0, 0.4, 0.4]
    without = build(architecture, **kwargs, auxiliary_head=False)
    assert not any(key.startswith(AUXILIARY_PREFIX) for key in without.state_dict())
    macs = count_macs(model, (64, 128), cross_check=False)["per_forward"]
    assert macs == count_macs(without, (64, 128), cross_check=False)["per_forward"] > 0


def _batchnorm_eps(module: nn.Module) -> set[float]:
    return {m.eps for m in module.modules() if isinstance(m, nn.BatchNorm2d)}


def test_batchnorm_eps_follows_the_configs():
    """CGNet's config sets BN eps 1e-3 (backbone); ERFNet's blocks default to eps 1e-3 while its
    FCN head keeps 1e-5; the rest use PyTorch's 1e-5. With a checkpoint's statistics the eps
    changes the logits, and no key or shape shows it."""
    cgnet, erfnet = build("cgnet_fcn"), build("erfnet_fcn")
    assert _batchnorm_eps(cgnet.backbone) == {1e-3}
    assert _batchnorm_eps(erfnet.backbone) == {1e-3} and _batchnorm_eps(erfnet.decode_head) == {1e-5}
    assert _batchnorm_eps(build("fast_scnn")) == {1e-5}
    assert _batchnorm_eps(build("icnet_resnet", depth=18)) == {1e-5}


def test_fast_scnn_depthwise_convs_have_no_activation():
    """mmseg builds Fast-SCNN's depthwise-separable convs with dw_act_cfg=None (no ReLU after
    the depthwise conv), backbone and head alike; an extra ReLU would change every logit."""
    model = build("fast_scnn").eval()
    separable = [
        model.backbone.learning_to_downsample.dsconv1,
        model.backbone.learning_to_downsample.dsconv2,
        *model.decode_head.convs,
    ]
    x = -torch.ones(1, 32, 8, 8)
    for block in separable:
        depthwise = block.depthwise_conv
        channels = depthwise.conv.in_channels
        nn.init.ones_(depthwise.conv.weight)
        out = depthwise(x[:, :1].expand(1, channels, 8, 8))
        assert (out < 0).any(), "negative inputs must pass the depthwise conv unclipped"


def test_icnet_pooling_follows_mmsegmentation():
    """ICNet replaces the ResNet max-pool by one with ceil_mode=True and concatenates the
    pyramid before the features (mmseg: `self.psp_modules(x) + [x]`): a 1x1 input shows both."""
    model = build("icnet_resnet", depth=18).eval()
    assert model.backbone.backbone.maxpool.ceil_mode
    # 8x8, kernel 3, stride 2, padding 1: ceil((8 + 2 - 3) / 2) + 1 = 5 windows a side; floor gives 4
    with torch.no_grad():
        pooled = model.backbone.backbone.maxpool(torch.randn(1, 64, 8, 8))
    assert tuple(pooled.shape[-2:]) == (5, 5)
    bottleneck = model.backbone.psp_bottleneck.conv
    x_channels = model.backbone.backbone.out_channels[3]
    pyramid_channels = bottleneck.in_channels - x_channels
    with torch.no_grad():
        bottleneck.weight.zero_()
        bottleneck.weight[:, pyramid_channels:] = 1.0  # only the last input channels: the features
        features = torch.randn(1, x_channels, 3, 3)
        ours = model.backbone.pyramid_pooling(features)
        expected = model.backbone.psp_bottleneck.activate(
            model.backbone.psp_bottleneck.bn(nn.functional.conv2d(features, bottleneck.weight[:, pyramid_channels:], padding=1))
        )
    assert torch.allclose(ours, expected, atol=1e-5)
