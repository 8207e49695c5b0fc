"""DNLNet (Yin et al., ECCV 2020): a disentangled non-local block between the two convs of an FCN head."""

from __future__ import annotations

import torch

from segbench.layers.attention_ops import DisentangledNonLocal2d
from segbench.models.backbones.resnet import ResNet
from segbench.models.fcn import ContextFCNHead, auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


class DNLHead(ContextFCNHead):
    """mmseg's DNLHead: disentangled non-local block (reduction 2, scaled, temperature 0.05) as `dnl_block`."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, in_index: int = -1) -> None:
        super().__init__(in_channels, channels, num_classes, in_index=in_index)
        self.dnl_block = DisentangledNonLocal2d(channels, reduction=2, use_scale=True, temperature=0.05)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        return self.dnl_block(x)


@register_architecture("dnl_resnet")
def dnl_resnet(
    *, depth: int = 50, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """DNLNet on a dilated ResNet-D8: mmseg's `dnl_r{depth}-d8`."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth)
    head = DNLHead(backbone.out_channels[3], channels, num_classes, in_index=3)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
