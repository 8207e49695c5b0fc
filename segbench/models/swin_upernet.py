"""UPerNet on a Swin Transformer, as mmsegmentation's `swin-*_upernet_*` configs build it: the UPerHead
(width 512) on the four stages and, for training only, an FCN auxiliary head (width 256) on stage 3."""

from __future__ import annotations

from segbench.models.backbones.swin import SwinTransformer
from segbench.models.fcn import auxiliary_fcn_head
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder
from segbench.models.upernet import UPerHead

SWIN_VARIANTS = {
    "tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "small": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "base": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
}
"""Swin variant -> (embed_dims, blocks per stage, heads per stage), from mmseg's swin configs."""


@register_architecture("upernet_swin")
def upernet_swin(
    *,
    variant: str = "tiny",
    window_size: int = 7,
    num_classes: int = 150,
    drop_path_rate: float = 0.3,
    auxiliary_head: bool = True,
    align_corners: bool = False,
) -> EncoderDecoder:
    """UPerNet on Swin-`variant` (tiny, small, base) with `window_size` 7 (224-pretrained) or 12
    (384-pretrained); drop_path_rate 0.3 as every mmseg Swin config trains."""
    if variant not in SWIN_VARIANTS:
        raise ValueError(f"unknown Swin variant {variant!r}: choose one of {', '.join(SWIN_VARIANTS)}")
    embed_dims, depths, num_heads = SWIN_VARIANTS[variant]
    backbone = SwinTransformer(embed_dims, depths, num_heads, window_size=window_size, drop_path_rate=drop_path_rate)
    head = UPerHead(tuple(backbone.out_channels), 512, num_classes, align_corners=align_corners)
    aux = auxiliary_fcn_head(backbone, 256, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
