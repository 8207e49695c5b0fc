"""UPerNet on a plain ViT or DeiT, as mmsegmentation 1.2.2's `vit_*_upernet` ADE20K configs build it.

The backbone's blocks 2, 5, 8, 11 (all stride 16) feed the UPerNet head directly, or through the
MultiLevelNeck (`mln`), which resizes them to strides 4, 8, 16, 32 first. The `-ln` configs add
the backbone's final LayerNorm. The auxiliary FCN head on block 11 is training-only. ViT-B and
DeiT-B share the architecture (they differ in pretraining and drop-path rate).
"""

from __future__ import annotations

from segbench.models.backbones.vit import MultiLevelNeck, VisionTransformer
from segbench.models.fcn import FCNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder
from segbench.models.upernet import UPerHead

VIT_VARIANTS = {"vit-b16": (768, 12), "deit-b16": (768, 12), "deit-s16": (384, 6)}
"""Variant -> (embed_dims, heads); every variant has 12 blocks and patch size 16."""


@register_architecture("upernet_vit")
def upernet_vit(
    *,
    variant: str = "vit-b16",
    mln: bool = False,
    final_norm: bool = False,
    num_classes: int = 150,
    drop_path_rate: float = 0.1,
    auxiliary_head: bool = True,
    align_corners: bool = False,
) -> EncoderDecoder:
    """UPerNet (head width 512, auxiliary 256) on `variant`, position embedding for 512x512 crops
    (bicubic interpolation to other sizes); drop_path_rate as the configs train (0 for ViT-B)."""
    if variant not in VIT_VARIANTS:
        raise ValueError(f"unknown ViT variant {variant!r}: choose one of {', '.join(VIT_VARIANTS)}")
    channels, heads = VIT_VARIANTS[variant]
    backbone = VisionTransformer(
        channels, 12, heads, img_size=512, out_indices=(2, 5, 8, 11), final_norm=final_norm, drop_path_rate=drop_path_rate
    )
    neck = MultiLevelNeck(channels) if mln else None
    head = UPerHead(tuple(backbone.out_channels), 512, num_classes, align_corners=align_corners)
    aux = FCNHead(channels, 256, num_classes, in_index=3, num_convs=1, concat_input=False) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, neck=neck, align_corners=align_corners)
