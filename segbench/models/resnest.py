"""ResNeSt-101 (S-101) at output stride 8 with the FCN, PSPNet, DeepLabV3 and DeepLabV3+ heads:
mmsegmentation's `resnest_s101-d8_*` configs, which swap the backbone of the R-101-D8 configs and
keep their heads and auxiliary FCN head."""

from __future__ import annotations

from segbench.models.backbones.resnest import ResNeSt
from segbench.models.deeplabv3 import ASPPHead
from segbench.models.deeplabv3plus import DeepLabV3PlusHead
from segbench.models.fcn import FCNHead, auxiliary_fcn_head, dilated_head_channels
from segbench.models.pspnet import PSPHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder

_DEPTH = 101


def _resnest_segmentor(head_for, *, num_classes: int, auxiliary_head: bool, align_corners: bool) -> EncoderDecoder:
    """S-101-D8 backbone, the head `head_for(backbone, channels)` builds, the auxiliary FCN head."""
    channels, aux_channels = dilated_head_channels(_DEPTH)
    backbone = ResNeSt(_DEPTH, output_stride=8)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head_for(backbone, channels), aux, align_corners=align_corners)


@register_architecture("fcn_resnest")
def fcn_resnest(*, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `resnest_s101-d8_fcn`."""
    return _resnest_segmentor(
        lambda backbone, channels: FCNHead(backbone.out_channels[3], channels, num_classes, in_index=3),
        num_classes=num_classes, auxiliary_head=auxiliary_head, align_corners=align_corners,
    )  # fmt: skip


@register_architecture("pspnet_resnest")
def pspnet_resnest(*, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `resnest_s101-d8_pspnet`."""
    return _resnest_segmentor(
        lambda backbone, channels: PSPHead(backbone.out_channels[3], channels, num_classes, in_index=3, align_corners=align_corners),
        num_classes=num_classes, auxiliary_head=auxiliary_head, align_corners=align_corners,
    )  # fmt: skip


@register_architecture("deeplabv3_resnest")
def deeplabv3_resnest(*, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `resnest_s101-d8_deeplabv3` (ASPP rates 1, 12, 24, 36)."""
    return _resnest_segmentor(
        lambda backbone, channels: ASPPHead(backbone.out_channels[3], channels, num_classes, in_index=3, align_corners=align_corners),
        num_classes=num_classes, auxiliary_head=auxiliary_head, align_corners=align_corners,
    )  # fmt: skip


@register_architecture("deeplabv3plus_resnest")
def deeplabv3plus_resnest(*, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `resnest_s101-d8_deeplabv3plus` (48-channel low-level branch from stage 1)."""
    return _resnest_segmentor(
        lambda backbone, channels: DeepLabV3PlusHead(
            backbone.out_channels[3], channels, num_classes, c1_in_channels=backbone.out_channels[0], c1_channels=48,
            in_index=3, align_corners=align_corners,
        ),
        num_classes=num_classes, auxiliary_head=auxiliary_head, align_corners=align_corners,
    )  # fmt: skip
