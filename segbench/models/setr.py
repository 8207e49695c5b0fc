"""SETR (Zheng et al., CVPR 2021): ViT-L/16 with the Naive, PUP or MLA decoder, as mmsegmentation
1.2.2's `setr_vit-l_*` Cityscapes configs build them.

Naive and PUP read four backbone blocks (9, 14, 19, 23): the last feeds the decode head, the
other three the auxiliary heads (same head type). MLA reads blocks 5, 11, 17, 23 without the
class token through the MLA neck; its decode head upsamples each neck level and concatenates,
and four 1x1 FCN heads on the neck levels are the auxiliary heads. Auxiliary heads are
training-only (segmentor.py).
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, resize
from segbench.models.backbones.mit import map_to_tokens, tokens_to_map
from segbench.models.backbones.vit import LAYER_NORM_EPS, VisionTransformer
from segbench.models.fcn import FCNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import AuxiliaryHeads, EncoderDecoder

DECODERS = ("naive", "pup", "mla")


def norm_map(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channels of an (N, C, H, W) map, as SETR's head and neck apply it."""
    return tokens_to_map(norm(map_to_tokens(x)), tuple(x.shape[2:]))


class Upsample(nn.Module):
    """Bilinear resize by an integer factor (mmseg's Upsample: size = input size × factor)."""

    def __init__(self, scale: int, align_corners: bool) -> None:
        super().__init__()
        self.scale, self.align_corners = scale, align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(x, (x.shape[2] * self.scale, x.shape[3] * self.scale), self.align_corners)


class SETRUPHead(nn.Module):
    """LayerNorm on one backbone level, then `num_convs` × (conv + BN + ReLU, upsample ×`up_scale`),
    then the 1x1 classifier. Naive: one 1x1 conv, ×4. PUP: four 3x3 convs, ×2 each."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        in_index: int,
        num_convs: int,
        up_scale: int,
        kernel_size: int,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.norm = nn.LayerNorm(in_channels, eps=LAYER_NORM_EPS)
        widths = [in_channels] + [channels] * num_convs
        self.up_convs = nn.ModuleList(
            nn.Sequential(ConvBNReLU(cin, channels, kernel_size, padding=kernel_size // 2), Upsample(up_scale, align_corners))
            for cin in widths[:-1]
        )
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = norm_map(self.norm, features[self.in_index])
        for up_conv in self.up_convs:
            x = up_conv(x)
        return self.conv_seg(x)


class MLAModule(nn.Module):
    """1x1 projections, a top-down running sum (deepest level first), a 3x3 conv on each sum.
    Outputs are in that deepest-first order, as mmseg returns them."""

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.channel_proj = nn.ModuleList(ConvBNReLU(cin, channels, 1) for cin in in_channels)
        self.feat_extract = nn.ModuleList(ConvBNReLU(channels, channels, 3, padding=1) for _ in in_channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        projected = [conv(x) for conv, x in zip(self.channel_proj, features)][::-1]
        sums = [projected[0]]
        for x in projected[1:]:
            sums.append(sums[-1] + x)
        return [conv(x) for conv, x in zip(self.feat_extract, sums)]


class MLANeck(nn.Module):
    """mmseg's MLANeck: a LayerNorm per level (eps 1e-6), then the MLA module."""

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.norm = nn.ModuleList(nn.LayerNorm(c, eps=LAYER_NORM_EPS) for c in in_channels)
        self.mla = MLAModule(in_channels, channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.mla([norm_map(norm, x) for norm, x in zip(self.norm, features)])


class SETRMLAHead(nn.Module):
    """Per level two 3x3 ConvBNReLU to `mla_channels` and ×`up_scale`; concatenated; 1x1 classifier."""

    def __init__(
        self, in_channels: int, mla_channels: int, num_levels: int, num_classes: int, *, up_scale: int = 4, align_corners: bool = False
    ) -> None:
        super().__init__()
        self.up_convs = nn.ModuleList(
            nn.Sequential(
                ConvBNReLU(in_channels, mla_channels, 3, padding=1),
                ConvBNReLU(mla_channels, mla_channels, 3, padding=1),
                Upsample(up_scale, align_corners),
            )
            for _ in range(num_levels)
        )
        self.conv_seg = nn.Conv2d(num_levels * mla_channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.conv_seg(torch.cat([up(x) for up, x in zip(self.up_convs, features)], dim=1))


@register_architecture("setr_vit")
def setr_vit(
    *, decoder: str = "naive", num_classes: int = 19, img_size: int = 768, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """SETR-`decoder` (naive, pup, mla) on ViT-L/16 (24 blocks, 1024 wide, 16 heads, LN eps 1e-6,
    position embedding for `img_size` (the 768x768 crop), bilinear interpolation to other sizes)."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown SETR decoder {decoder!r}: choose one of {', '.join(DECODERS)}")
    mla = decoder == "mla"
    backbone = VisionTransformer(
        1024, 24, 16, img_size=img_size, out_indices=(5, 11, 17, 23) if mla else (9, 14, 19, 23),
        with_cls_token=not mla, interpolate_mode="bilinear",
    )  # fmt: skip
    if mla:
        neck = MLANeck(backbone.out_channels, 256)
        head = SETRMLAHead(256, 128, 4, num_classes, align_corners=align_corners)
        aux = AuxiliaryHeads(FCNHead(256, 256, num_classes, in_index=i, num_convs=0, concat_input=False, dropout=0) for i in range(4))
        return EncoderDecoder(backbone, head, aux if auxiliary_head else None, neck=neck, align_corners=align_corners)
    convs, scale, kernel = (1, 4, 1) if decoder == "naive" else (4, 2, 3)
    aux_convs = 1 if decoder == "naive" else 2

    def up_head(in_index: int, num_convs: int, up_scale: int) -> SETRUPHead:
        return SETRUPHead(
            1024, 256, num_classes, in_index=in_index, num_convs=num_convs, up_scale=up_scale, kernel_size=kernel,
            align_corners=align_corners,
        )  # fmt: skip

    head = up_head(3, convs, scale)
    aux = AuxiliaryHeads(up_head(i, aux_convs, 4) for i in range(3))
    return EncoderDecoder(backbone, head, aux if auxiliary_head else None, align_corners=align_corners)
