"""NonLocal Net (Wang et al., CVPR 2018): a non-local block between the two convs of an FCN head."""

from __future__ import annotations

import torch

from segbench.layers.attention_ops import NonLocal2d
from segbench.models.backbones.resnet import ResNet
from segbench.models.fcn import ContextFCNHead, auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


class NLHead(ContextFCNHead):
    """mmseg's NLHead: embedded-Gaussian non-local block (reduction 2, scaled) as `nl_block`."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, in_index: int = -1) -> None:
        super().__init__(in_channels, channels, num_classes, in_index=in_index)
        self.nl_block = NonLocal2d(channels, reduction=2, use_scale=True)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        return self.nl_block(x)


@register_architecture("nonlocal_resnet")
def nonlocal_resnet(
    *, depth: int = 50, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """NonLocal Net on a dilated ResNet-D8: mmseg's `nonlocal_r{depth}-d8`."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth)
    head = NLHead(backbone.out_channels[3], channels, num_classes, in_index=3)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
