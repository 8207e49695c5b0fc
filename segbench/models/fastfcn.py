"""FastFCN (Wu et al., 2019): joint pyramid upsampling (JPU) on an output-stride-32 ResNet-50 in
place of a dilated backbone, with mmsegmentation's ASPP, PSP or Enc head on top (its `fastfcn_r50-d32_jpu_*`
configs). The backbone strides (1, 2, 2, 2) keep D8's dilations (1, 1, 2, 4), as the configs say."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, DepthwiseSeparableConvBNReLU, resize
from segbench.models.deeplabv3 import ASPPHead
from segbench.models.encnet import EncHead
from segbench.models.fcn import FCNHead
from segbench.models.pspnet import PSPHead
from segbench.models.registry import register_architecture
from segbench.models.backbones.resnet import ResNet
from segbench.models.segmentor import EncoderDecoder


class JPU(nn.Module):
    """Stages 2-4 each through a 3x3 ConvBNReLU to `mid_channels`, upsampled to stage 2's size and
    concatenated; four dilated depthwise-separable convs (no ReLU after the depthwise one) read the
    concatenation. Returns (stage 2, stage 3, the four outputs concatenated), as mmseg's JPU."""

    def __init__(
        self,
        in_channels: tuple[int, ...] = (512, 1024, 2048),
        mid_channels: int = 512,
        *,
        dilations: tuple[int, ...] = (1, 2, 4, 8),
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.conv_layers = nn.ModuleList(nn.Sequential(ConvBNReLU(c, mid_channels, 3, padding=1)) for c in in_channels)
        width = len(in_channels) * mid_channels
        self.dilation_layers = nn.ModuleList(
            nn.Sequential(DepthwiseSeparableConvBNReLU(width, mid_channels, 3, padding=d, dilation=d, depthwise_relu=False))
            for d in dilations
        )  # fmt: skip

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        inputs = features[-len(self.conv_layers) :]  # mmseg's backbone returns stages 2-4 only (out_indices 1, 2, 3)
        feats = [conv(x) for conv, x in zip(self.conv_layers, inputs)]
        size = feats[0].shape[-2:]
        feat = torch.cat([feats[0], *(resize(f, size, self.align_corners) for f in feats[1:])], dim=1)
        return [*inputs[:-1], torch.cat([layer(feat) for layer in self.dilation_layers], dim=1)]


def _decode_head(name: str, num_classes: int, align_corners: bool) -> nn.Module:
    if name == "aspp":
        return ASPPHead(2048, 512, num_classes, dilations=(1, 12, 24, 36), align_corners=align_corners)
    if name == "psp":
        return PSPHead(2048, 512, num_classes, align_corners=align_corners)
    if name == "enc":
        return EncHead(2048, 512, num_classes)
    raise ValueError(f"FastFCN decode_head must be 'aspp', 'psp' or 'enc', got {name!r}")


@register_architecture("fastfcn_resnet")
def fastfcn_resnet(
    *, decode_head: str = "psp", num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """FastFCN: ResNet-50-D32 (V1c stem), JPU neck, then the `decode_head` ('aspp', 'psp' or 'enc')
    on the JPU output; the auxiliary FCN head reads stage 3 (the neck's second output)."""
    backbone = ResNet(50, output_stride=32, dilations=(1, 1, 2, 4))
    head = _decode_head(decode_head, num_classes, align_corners)
    aux = FCNHead(1024, 256, num_classes, in_index=1, num_convs=1, concat_input=False) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, neck=JPU(align_corners=align_corners), align_corners=align_corners)
