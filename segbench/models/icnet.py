"""ICNet (Zhao et al., ECCV 2018) as mmsegmentation 1.2.2 builds it: a dilated ResNetV1c shared by
two downsampled branches, a light three-conv branch at full input resolution, cascade feature
fusion (mmseg's ICNeck) and FCN heads.

mmseg's details kept here: the ResNet max-pool uses ceil_mode=True; the image is halved
(bilinear, scale_factor 0.5) before the stem, and the stride-16 features halved again before
layer3; the pyramid pooling outputs are concatenated *before* the features (PSPNet's head puts
the features first); each fusion upsamples the coarser input bilinearly, then a dilated (2)
3x3 ConvBNReLU on it and a 1x1 ConvBNReLU on the finer one, summed and passed through ReLU.
The decode head has no dropout; two auxiliary FCN heads on the fusions' coarse branches exist
only for training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvBNReLU, PyramidPooling, resize
from segbench.models.backbones.resnet import ResNet
from segbench.models.fcn import FCNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


class ICNetBackbone(nn.Module):
    """mmseg's `ICNet` backbone: returns [light branch (stride 8), stride 16, stride 32] features."""

    def __init__(
        self,
        depth: int,
        *,
        light_branch_middle_channels: int = 32,
        psp_out_channels: int = 512,
        out_channels: tuple[int, int, int] = (64, 256, 256),
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.backbone = ResNet(depth, output_stride=8)
        self.backbone.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        layer2_channels, layer4_channels = self.backbone.out_channels[1], self.backbone.out_channels[3]
        self.psp_modules = PyramidPooling(
            layer4_channels, psp_out_channels, pool_scales=pool_scales, align_corners=align_corners
        )
        self.psp_bottleneck = ConvBNReLU(
            layer4_channels + len(pool_scales) * psp_out_channels, psp_out_channels, 3, padding=1
        )
        middle = light_branch_middle_channels
        self.conv_sub1 = nn.Sequential(
            ConvBNReLU(3, middle, 3, stride=2, padding=1),
            ConvBNReLU(middle, middle, 3, stride=2, padding=1),
            ConvBNReLU(middle, out_channels[0], 3, stride=2, padding=1),
        )
        self.conv_sub2 = ConvBNReLU(layer2_channels, out_channels[1], 1)
        self.conv_sub4 = ConvBNReLU(psp_out_channels, out_channels[2], 1)
        self.out_channels = list(out_channels)

    def _half(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=self.align_corners)

    def pyramid_pooling(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled pyramid, then the features, through the 3x3 bottleneck (mmseg's order)."""
        return self.psp_bottleneck(torch.cat([*self.psp_modules(x), x], dim=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        resnet = self.backbone
        sub1 = self.conv_sub1(x)
        x = resnet.layer2(resnet.layer1(resnet.maxpool(resnet.stem(self._half(x)))))
        sub2 = self.conv_sub2(x)
        x = resnet.layer4(resnet.layer3(self._half(x)))
        sub4 = self.conv_sub4(self.pyramid_pooling(x))
        return [sub1, sub2, sub4]


class CascadeFeatureFusion(nn.Module):
    """Returns (fused, the coarse branch after its conv): the latter feeds an auxiliary head."""

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, *, align_corners: bool) -> None:
        super().__init__()
        self.conv_low = ConvBNReLU(low_channels, out_channels, 3, padding=2, dilation=2)
        self.conv_high = ConvBNReLU(high_channels, out_channels, 1)
        self.align_corners = align_corners

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.conv_low(resize(low, tuple(high.shape[-2:]), self.align_corners))
        return F.relu(low + self.conv_high(high)), low


class ICNeck(nn.Module):
    """Fuses stride 32 into 16, then into the light branch at 8: [aux 16, aux 8, fused 8]."""

    def __init__(self, in_channels: tuple[int, int, int], out_channels: int = 128, *, align_corners: bool) -> None:
        super().__init__()
        self.cff_24 = CascadeFeatureFusion(in_channels[2], in_channels[1], out_channels, align_corners=align_corners)
        self.cff_12 = CascadeFeatureFusion(out_channels, in_channels[0], out_channels, align_corners=align_corners)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        sub1, sub2, sub4 = features
        fused_24, low_24 = self.cff_24(sub4, sub2)
        fused_12, low_12 = self.cff_12(fused_24, sub1)
        return [low_24, low_12, fused_12]


@register_architecture("icnet_resnet")
def icnet_resnet(
    *, depth: int = 50, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """mmseg's `icnet_r{depth}-d8[-in1k-pre]_4xb2-*_cityscapes-832x832` (ImageNet pre-training
    changes the weights, not the model)."""
    backbone = ICNetBackbone(depth, align_corners=align_corners)
    neck = ICNeck(tuple(backbone.out_channels), align_corners=align_corners)
    head = FCNHead(128, 128, num_classes, in_index=2, num_convs=1, concat_input=False, dropout=0.0)
    aux = None
    if auxiliary_head:
        aux = nn.ModuleList(
            FCNHead(128, 128, num_classes, in_index=index, num_convs=1, concat_input=False) for index in (0, 1)
        )
    return EncoderDecoder(backbone, head, aux, neck=neck, align_corners=align_corners)
