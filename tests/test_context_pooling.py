"""EncNet, APCNet, DMNet, ANN, EMANet, ISANet and FastFCN: mmsegmentation parity (keys, shapes,
parameter counts), output shapes, and their custom operations against naive loops and hand counts.

Logits were compared with mmsegmentation 1.2.2's own modules (same random weights, eval mode) in
a throwaway script outside the repository; see the README's architectures table."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmseg_reference import PARAMS, REFERENCE, assert_matches_mmseg, logits_on_a_random_image
from segbench.complexity import count_macs, count_params
from segbench.models import architecture_builder, list_architectures
from segbench.models.apcnet import ACM
from segbench.models.dmnet import dynamic_depthwise_conv
from segbench.models.emanet import EMAModule
from segbench.models.encnet import Encoding
from segbench.models.isanet import ISAHead
from segbench.training import training_loss, training_outputs

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {
    "encnet_r50-d8_4xb2-80k_cityscapes-512x1024": ("encnet_resnet", {"depth": 50}),
    "apcnet_r50-d8_4xb2-80k_cityscapes-512x1024": ("apcnet_resnet", {"depth": 50}),
    "dmnet_r50-d8_4xb2-80k_cityscapes-512x1024": ("dmnet_resnet", {"depth": 50}),
    "ann_r50-d8_4xb2-80k_cityscapes-512x1024": ("ann_resnet", {"depth": 50}),
    "emanet_r50-d8_4xb2-80k_cityscapes-512x1024": ("emanet_resnet", {"depth": 50}),
    "isanet_r50-d8_4xb2-80k_cityscapes-512x1024": ("isanet_resnet", {"depth": 50}),
    "fastfcn_r50-d32_jpu_aspp_4xb2-80k_cityscapes-512x1024": ("fastfcn_resnet", {"decode_head": "aspp"}),
    "fastfcn_r50-d32_jpu_psp_4xb2-80k_cityscapes-512x1024": ("fastfcn_resnet", {"decode_head": "psp"}),
    "fastfcn_r50-d32_jpu_enc_4xb2-80k_cityscapes-512x1024": ("fastfcn_resnet", {"decode_head": "enc"}),
}
FAMILY_MODULES = {"encnet", "apcnet", "dmnet", "ann", "emanet", "isanet", "fastfcn"}


def test_every_config_has_its_reference_file():
    assert set(CONFIGS) <= {p.name.removesuffix(".keys.txt") for p in REFERENCE.glob("*.keys.txt")} & set(PARAMS)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_state_dict_and_params_match_mmsegmentation(config):
    architecture, kwargs = CONFIGS[config]
    assert_matches_mmseg(architecture_builder(architecture)(**kwargs), config)


def test_every_builder_has_a_reference_config():
    ours = {n for n in list_architectures() if architecture_builder(n).__module__.rsplit(".", 1)[-1] in FAMILY_MODULES}
    assert ours == {architecture for architecture, _ in CONFIGS.values()}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("architecture", sorted({a for a, _ in CONFIGS.values()} - {"fastfcn_resnet"}) + ["fastfcn_resnet"])
def test_output_shape_is_one_eighth_of_the_input(architecture):
    kwargs = {"depth": 18} if architecture != "fastfcn_resnet" else {"decode_head": "enc"}
    _, _, logits = logits_on_a_random_image(architecture, {**kwargs, "num_classes": 5}, size=(72, 104))
    assert tuple(logits.shape) == (1, 5, 9, 13)  # ISANet pads 9x13 to its 8x8 groups and crops back
    assert torch.isfinite(logits).all()


def test_fastfcn_backbone_strides_to_32_with_d8_dilations():
    model = architecture_builder("fastfcn_resnet")()
    assert [block.conv2.dilation[0] for block in model.backbone.layer3] == [1] + [2] * 5
    assert [block.conv2.dilation[0] for block in model.backbone.layer4] == [2, 4, 4]
    assert (model.backbone.layer3[0].conv2.stride, model.backbone.layer4[0].conv2.stride) == ((2, 2), (2, 2))
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, 64, 128))
        neck = model.neck(features)
    assert [tuple(f.shape[-2:]) for f in features[1:]] == [(8, 16), (4, 8), (2, 4)]
    assert [tuple(f.shape[1:]) for f in neck] == [(512, 8, 16), (1024, 4, 8), (2048, 8, 16)]


def test_fastfcn_rejects_an_unknown_head():
    with pytest.raises(ValueError, match="'aspp', 'psp' or 'enc'"):
        architecture_builder("fastfcn_resnet")(decode_head="fcn")


# --- EncNet's SE-loss branch: trained only -----------------------------------------------------


def test_encnet_se_branch_runs_in_training_only_and_learns_class_presence():
    torch.manual_seed(0)
    model = architecture_builder("encnet_resnet")(depth=18, num_classes=4, auxiliary_head=False)
    images = torch.randn(2, 3, 32, 32)
    labels = torch.tensor([0, 2, 255]).repeat(2, 32, 11)[:, :, :32].clone()
    labels[1] = 3
    model.eval()
    with torch.no_grad():
        (eval_logits, _), = training_outputs(model, images)
    assert eval_logits.dim() == 4  # eval mode: the segmentation logits alone, se_layer never called
    model.train()
    features = model.backbone(images)
    seg, se = model.decode_head(features)
    assert tuple(se.shape) == (2, 4)
    # mmseg's target: which classes occur in each image (histc over 0..C-1, so 255 is left out)
    present = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]])
    torch.manual_seed(1)  # the dropout draws of training_loss's forward, replayed below
    loss = training_loss(model, images, labels)
    torch.manual_seed(1)
    seg, se = model.decode_head(model.backbone(images))
    seg_loss = F.cross_entropy(F.interpolate(seg, size=(32, 32), mode="bilinear"), labels, ignore_index=255)
    expected = seg_loss + 0.2 * F.binary_cross_entropy_with_logits(se, present)
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert count_params(model)["inference"] == count_params(model)["total"] - (128 * 4 + 4)  # se_layer left out
