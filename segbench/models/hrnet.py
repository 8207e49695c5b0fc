"""FCN on HRNetV2 (Wang et al., TPAMI 2020), as mmsegmentation's `fcn_hr18s`, `fcn_hr18`, `fcn_hr48` build it."""

from __future__ import annotations

from segbench.models.backbones.hrnet import HRNET_VARIANTS, HRNet
from segbench.models.fcn import FCNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


def hrnet_backbone(variant: str) -> HRNet:
    if variant not in HRNET_VARIANTS:
        raise ValueError(f"unknown HRNet variant {variant!r}: choose one of {', '.join(HRNET_VARIANTS)}")
    return HRNet(variant)


def hrnet_fcn_head(backbone: HRNet, num_classes: int, *, align_corners: bool) -> FCNHead:
    """mmseg's HRNet FCN head: the four levels resized to stride 4 and concatenated, one 1x1
    ConvBNReLU at that width (270 for W18, 720 for W48), no dropout, the classifier."""
    width = sum(backbone.out_channels)
    return FCNHead(
        width, width, num_classes, in_index=(0, 1, 2, 3), kernel_size=1, num_convs=1, concat_input=False,
        dropout=0.0, align_corners=align_corners,
    )  # fmt: skip


@register_architecture("fcn_hrnet")
def fcn_hrnet(*, variant: str = "w18", num_classes: int = 19, align_corners: bool = False) -> EncoderDecoder:
    """FCN on HRNetV2-`variant` (w18s = W18-Small, w18, w48): logits at stride 4, no auxiliary head."""
    backbone = hrnet_backbone(variant)
    head = hrnet_fcn_head(backbone, num_classes, align_corners=align_corners)
    return EncoderDecoder(backbone, head, align_corners=align_corners)
