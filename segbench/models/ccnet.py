"""CCNet (Huang et al., ICCV 2019): recurrent criss-cross attention between the two convs of an FCN head."""

from __future__ import annotations

import torch

from segbench.layers.attention_ops import CrissCrossAttention
from segbench.models.backbones.resnet import ResNet
from segbench.models.fcn import ContextFCNHead, auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


class CCHead(ContextFCNHead):
    """mmseg's CCHead: one criss-cross attention module `cca`, applied `recurrence` times (2: every
    pixel then reaches every other)."""

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, *, in_index: int = -1, recurrence: int = 2
    ) -> None:
        super().__init__(in_channels, channels, num_classes, in_index=in_index)
        self.recurrence = recurrence
        self.cca = CrissCrossAttention(channels)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.recurrence):
            x = self.cca(x)
        return x


@register_architecture("ccnet_resnet")
def ccnet_resnet(
    *, depth: int = 50, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """CCNet on a dilated ResNet-D8: mmseg's `ccnet_r{depth}-d8` (recurrence 2)."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth)
    head = CCHead(backbone.out_channels[3], channels, num_classes, in_index=3)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
