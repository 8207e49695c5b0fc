"""The company zoo's df_seg (DFNet + PPM/FPN decoder) and sf_seg (DFNet + SFNet's flow-alignment
head), as its code builds them (module names `encoder` and `decoder`, `decoder.head` for sf_seg),
quirks included, with `inner_planes` 128 as its configs set it:

- The PPM (shared by both) concatenates its pooled branches (each pool, 1x1 conv, BN, no ReLU)
  before the input, and its 1x1 bottleneck conv has padding=1: its output is 2 px larger each way,
  a frame of BN(0) values that the next resize folds in.
- df_seg: 1x1 convs with bias bring PPM output, middle and finest feature to 128 channels; two
  fusion nodes (upsample, concatenate, 3x3 conv without bias or BN); then a 3x3 conv (bias) +
  BN + ReLU to 256 and a 1x1 classifier.
- sf_seg: SFNet's head with 1x1 (not 3x3) conv-BN-ReLU blocks in fpn_out and conv_last, and
  grid_sample at PyTorch's default align_corners=False.
- Every resize is bilinear with align_corners=True, the logits' to the input size too. Dropout
  (0.1) acts in training only; the configs train no auxiliary head (aux_weight 0).
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, resize
from segbench.models.backbones.dfnet import DFNet
from segbench.models.registry import register_architecture
from segbench.models.sfnet import SFNetHead

INNER_PLANES = 128


class PaddedBottleneckPPM(nn.Module):
    """The company's PSPModule: bins 1, 2, 3, 6 (pool, 1x1 conv, BN), resized back, then
    [bins..., input] through a 1x1 conv with padding=1, BN, ReLU, Dropout2d(0.1)."""

    def __init__(self, in_channels: int, out_channels: int, *, bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(size), nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
            for size in bins
        )
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels + len(bins) * out_channels, out_channels, 1, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout2d(0.1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        return self.bottleneck(torch.cat([*(resize(stage(x), size, True) for stage in self.stages), x], dim=1))


class FusionNode(nn.Module):
    """Upsample the coarser map to the finer one, concatenate, 3x3 conv (no bias, no BN)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fusion = nn.Conv2d(2 * channels, channels, 3, padding=1, bias=False)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        return self.fusion(torch.cat([resize(coarse, tuple(fine.shape[-2:]), True), fine], dim=1))


class ClassifierModule(nn.Module):
    """The company's `Aux_Module`, here the main classifier: 3x3 conv (bias) to 256, BN, ReLU,
    Dropout2d(0.1), 1x1 conv (bias) to the classes; key prefix `aux`."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.aux = nn.Sequential(
            nn.Conv2d(in_channels, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(inplace=True), nn.Dropout2d(0.1),
            nn.Conv2d(256, num_classes, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aux(x)


class DFSegDecoder(nn.Module):
    """PPM on the coarsest feature, lateral 1x1 convs, two fusion nodes from coarse to fine, classifier."""

    def __init__(self, in_channels: list[int], num_classes: int) -> None:
        super().__init__()
        finest, middle, coarsest = in_channels
        self.cc5 = nn.Conv2d(INNER_PLANES, INNER_PLANES, 1)
        self.cc4 = nn.Conv2d(middle, INNER_PLANES, 1)
        self.cc3 = nn.Conv2d(finest, INNER_PLANES, 1)
        self.ppm = PaddedBottleneckPPM(coarsest, INNER_PLANES)
        self.fn4 = FusionNode(INNER_PLANES)
        self.fn3 = FusionNode(INNER_PLANES)
        self.fc = ClassifierModule(INNER_PLANES, num_classes)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x3, x4, x5 = features
        f4 = self.fn4(self.cc5(self.ppm(x5)), self.cc4(x4))
        return self.fc(self.fn3(f4, self.cc3(x3)))


class SFSegDecoder(nn.Module):
    """The company's sfnet_decoder: SFNet's head (`head`) over the three DFNet features."""

    def __init__(self, in_channels: list[int], num_classes: int) -> None:
        super().__init__()
        self.head = SFNetHead(
            in_channels, INNER_PLANES, num_classes,
            ppm=PaddedBottleneckPPM(in_channels[-1], INNER_PLANES), conv_bn_relu=ConvBNReLU, kernel_size=1,
            grid_align_corners=False,
        )  # fmt: skip

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.head(features)


class CompanySegmentor(nn.Module):
    """`encoder`, `decoder`; the decoder's logits resized to the input with align_corners=True."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return resize(self.decoder(self.encoder(image)), tuple(image.shape[-2:]), True)


@register_architecture("df_seg")
def df_seg(*, version: int = 1, num_classes: int = 19) -> CompanySegmentor:
    """The company's df_seg_v{version}: DFNet{version} with the PPM + FPN-style fusion decoder."""
    encoder = DFNet(version)
    return CompanySegmentor(encoder, DFSegDecoder(encoder.out_channels, num_classes))


@register_architecture("sf_seg")
def sf_seg(*, version: int = 1, num_classes: int = 19) -> CompanySegmentor:
    """The company's sf_seg_v{version}: DFNet{version} with SFNet's flow-alignment head (fpn_dim 128)."""
    encoder = DFNet(version)
    return CompanySegmentor(encoder, SFSegDecoder(encoder.out_channels, num_classes))
