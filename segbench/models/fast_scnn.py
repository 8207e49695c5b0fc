"""Fast-SCNN (Poudel et al., BMVC 2019) as mmsegmentation 1.2.2 builds it.

A shared "learning to downsample" path (stride 8) feeds both a global feature extractor
(inverted residuals to stride 32, pyramid pooling) and, as the high-resolution branch, the
feature fusion module; a depthwise-separable FCN head classifies at stride 8. mmseg's details
kept here: the depthwise convs of its separable convs carry no ReLU (`dw_act_cfg=None`), the
inverted residuals use ReLU (not ReLU6), the extractor's output conv is 3x3, and the fusion
module's lower branch is upsampled, then a depthwise 3x3 ConvBNReLU and a 1x1 ConvBN, added to
the 1x1 ConvBN of the higher branch and passed through ReLU. Two auxiliary FCN heads (on the
stride-32 and stride-8 features) exist only for training.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, DepthwiseSeparableConvBNReLU, InvertedResidual, PyramidPooling, resize
from segbench.models.fcn import FCNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


class LearningToDownsample(nn.Module):
    """3x3 ConvBNReLU (stride 2), then two depthwise-separable convs (stride 2 each): stride 8."""

    def __init__(self, in_channels: int, dw_channels: tuple[int, int], out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, dw_channels[0], 3, stride=2, padding=1)
        self.dsconv1 = DepthwiseSeparableConvBNReLU(
            dw_channels[0], dw_channels[1], 3, stride=2, padding=1, depthwise_relu=False
        )
        self.dsconv2 = DepthwiseSeparableConvBNReLU(
            dw_channels[1], out_channels, 3, stride=2, padding=1, depthwise_relu=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dsconv2(self.dsconv1(self.conv(x)))


class GlobalFeatureExtractor(nn.Module):
    """Three groups of inverted residuals (strides 2, 2, 1), pyramid pooling, a 3x3 ConvBNReLU."""

    def __init__(
        self,
        in_channels: int,
        block_channels: tuple[int, int, int],
        out_channels: int,
        *,
        num_blocks: tuple[int, int, int] = (3, 3, 3),
        strides: tuple[int, int, int] = (2, 2, 1),
        expand_ratio: int = 6,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        widths = (in_channels, *block_channels)
        for i, (n, stride) in enumerate(zip(num_blocks, strides)):
            blocks = [
                InvertedResidual(
                    widths[i] if j == 0 else widths[i + 1],
                    widths[i + 1],
                    stride=stride if j == 0 else 1,
                    expand_ratio=expand_ratio,
                    activation=nn.ReLU,
                )
                for j in range(n)
            ]
            self.add_module(f"bottleneck{i + 1}", nn.Sequential(*blocks))
        last = block_channels[2]
        self.ppm = PyramidPooling(last, last // 4, pool_scales=pool_scales, align_corners=align_corners)
        self.out = ConvBNReLU(last * 2, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bottleneck3(self.bottleneck2(self.bottleneck1(x)))
        return self.out(torch.cat([x, *self.ppm(x)], dim=1))


class FeatureFusionModule(nn.Module):
    """Upsampled low-resolution features (depthwise 3x3 ConvBNReLU, 1x1 ConvBN) plus the
    high-resolution ones (1x1 ConvBN), then ReLU."""

    def __init__(self, higher_in_channels: int, lower_in_channels: int, out_channels: int, *, align_corners: bool) -> None:
        super().__init__()
        self.dwconv = ConvBNReLU(lower_in_channels, out_channels, 3, padding=1, groups=out_channels)
        self.conv_lower_res = ConvBNReLU(out_channels, out_channels, 1, relu=False)
        self.conv_higher_res = ConvBNReLU(higher_in_channels, out_channels, 1, relu=False)
        self.relu = nn.ReLU(inplace=True)
        self.align_corners = align_corners

    def forward(self, higher: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
        lower = resize(lower, tuple(higher.shape[-2:]), self.align_corners)
        lower = self.conv_lower_res(self.dwconv(lower))
        return self.relu(self.conv_higher_res(higher) + lower)


class FastSCNN(nn.Module):
    """Returns [high-resolution features (stride 8), global features (stride 32), fused (stride 8)]."""

    def __init__(
        self,
        *,
        downsample_dw_channels: tuple[int, int] = (32, 48),
        global_in_channels: int = 64,
        global_block_channels: tuple[int, int, int] = (64, 96, 128),
        global_out_channels: int = 128,
        fusion_out_channels: int = 128,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.learning_to_downsample = LearningToDownsample(3, downsample_dw_channels, global_in_channels)
        self.global_feature_extractor = GlobalFeatureExtractor(
            global_in_channels, global_block_channels, global_out_channels, align_corners=align_corners
        )
        self.feature_fusion = FeatureFusionModule(
            global_in_channels, global_out_channels, fusion_out_channels, align_corners=align_corners
        )
        self.out_channels = [global_in_channels, global_out_channels, fusion_out_channels]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        higher = self.learning_to_downsample(x)
        lower = self.global_feature_extractor(higher)
        return [higher, lower, self.feature_fusion(higher, lower)]


class DepthwiseSeparableFCNHead(FCNHead):
    """mmseg's DepthwiseSeparableFCNHead: an FCN head whose 3x3 convs are depthwise separable."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, num_convs: int = 2) -> None:
        super().__init__(in_channels, channels, num_classes, num_convs=num_convs, concat_input=False)
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(
            *(DepthwiseSeparableConvBNReLU(cin, channels, 3, padding=1, depthwise_relu=False) for cin in widths[:-1])
        )


@register_architecture("fast_scnn")
def fast_scnn(*, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False) -> EncoderDecoder:
    """mmseg's `fast_scnn_8xb4-160k_cityscapes-512x1024`; the auxiliary heads are mmseg's list
    of two FCN heads (global features, then high-resolution features)."""
    backbone = FastSCNN(align_corners=align_corners)
    higher, lower, fused = backbone.out_channels
    head = DepthwiseSeparableFCNHead(fused, 128, num_classes)
    aux = None
    if auxiliary_head:
        aux = nn.ModuleList(
            FCNHead(width, 32, num_classes, in_index=index, num_convs=1, concat_input=False)
            for width, index in ((lower, -2), (higher, -3))
        )
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
