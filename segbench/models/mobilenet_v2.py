"""mmsegmentation's `configs/mobilenet_v2`: the FCN, PSPNet, DeepLabV3 and DeepLabV3+ heads of the
R-101-D8 configs (512 channels, auxiliary FCN head of 256) on a D8 MobileNetV2 instead.

The heads are the ResNet families' own; only their input widths change: 320 (stage 7) for the
decode head, 96 (stage 5) for the auxiliary head, 24 (stage 2) for DeepLabV3+'s low-level branch.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from segbench.models.backbones.mobilenet_v2 import MobileNetV2
from segbench.models.deeplabv3 import ASPPHead
from segbench.models.deeplabv3plus import DeepLabV3PlusHead
from segbench.models.fcn import FCNHead, auxiliary_fcn_head
from segbench.models.pspnet import PSPHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder

_CHANNELS, _AUX_CHANNELS = 512, 256


def _segmentor(
    decode_head: Callable[[MobileNetV2], nn.Module], *, num_classes: int, auxiliary_head: bool, align_corners: bool
) -> EncoderDecoder:
    backbone = MobileNetV2()
    aux = auxiliary_fcn_head(backbone, _AUX_CHANNELS, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, decode_head(backbone), aux, align_corners=align_corners)


@register_architecture("fcn_mobilenet_v2")
def fcn_mobilenet_v2(*, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `mobilenet-v2-d8_fcn`."""
    return _segmentor(
        lambda b: FCNHead(b.out_channels[3], _CHANNELS, num_classes, in_index=3),
        num_classes=num_classes, auxiliary_head=auxiliary_head, align_corners=align_corners,
    )  # fmt: skip


@register_architecture("pspnet_mobilenet_v2")
def pspnet_mobilenet_v2(*, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `mobilenet-v2-d8_pspnet` (pool scales 1, 2, 3, 6)."""
    return _segmentor(
        lambda b: PSPHead(b.out_channels[3], _CHANNELS, num_classes, in_index=3, align_corners=align_corners),
        num_classes=num_classes, auxiliary_head=auxiliary_head, align_corners=align_corners,
    )  # fmt: skip


@register_architecture("deeplabv3_mobilenet_v2")
def deeplabv3_mobilenet_v2(*, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `mobilenet-v2-d8_deeplabv3` (ASPP rates 1, 12, 24, 36)."""
    return _segmentor(
        lambda b: ASPPHead(b.out_channels[3], _CHANNELS, num_classes, in_index=3, align_corners=align_corners),
        num_classes=num_classes, auxiliary_head=auxiliary_head, align_corners=align_corners,
    )  # fmt: skip


@register_architecture("deeplabv3plus_mobilenet_v2")
def deeplabv3plus_mobilenet_v2(*, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `mobilenet-v2-d8_deeplabv3plus` (separable ASPP rates 1, 12, 24, 36; 48-channel stage-2 branch)."""
    return _segmentor(
        lambda b: DeepLabV3PlusHead(
            b.out_channels[3], _CHANNELS, num_classes, c1_in_channels=b.out_channels[0], c1_channels=48,
            in_index=3, align_corners=align_corners,
        ),
        num_classes=num_classes, auxiliary_head=auxiliary_head, align_corners=align_corners,
    )  # fmt: skip
