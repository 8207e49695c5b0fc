"""Segmenter (Strudel et al., ICCV 2021): a ViT with a linear or mask-transformer decoder, as
mmsegmentation 1.2.2's `segmenter_vit-*` ADE20K configs build it.

The backbone's last block, after its final LayerNorm, without the class token, is the only
feature. The linear decoder is mmseg's FCNHead without convs (a 1x1 classifier on the tokens).
The mask decoder appends one learnt embedding per class to the projected patch tokens, runs two
transformer blocks over both (LayerNorm eps 1e-5, mmseg's default there), and scores every
patch against every class by the product of their L2-normalized projections, LayerNorm'd over
the classes. Logits are at stride 16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.backbones.mit import drop_path_rates, map_to_tokens, tokens_to_map
from segbench.models.backbones.vit import TransformerEncoderLayer, VisionTransformer
from segbench.models.fcn import FCNHead
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder

SEGMENTER_VARIANTS = {"t": (192, 12, 3, 512), "s": (384, 12, 6, 512), "b": (768, 12, 12, 512), "l": (1024, 24, 16, 640)}
"""Variant -> (embed_dims, blocks, heads, training crop = position-embedding size)."""
DECODERS = ("mask", "linear")
MASK_HEAD_EPS = 1e-5


class MaskTransformerHead(nn.Module):
    """mmseg's SegmenterMaskTransformerHead: class embeddings decoded jointly with the patches."""

    def __init__(
        self, channels: int, num_classes: int, *, num_heads: int, num_layers: int = 2, drop_path_rate: float = 0.1
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        rates = drop_path_rates(drop_path_rate, num_layers)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(channels, num_heads, drop_path=rate, eps=MASK_HEAD_EPS) for rate in rates
        )
        self.dec_proj = nn.Linear(channels, channels)
        self.cls_emb = nn.Parameter(torch.randn(1, num_classes, channels))
        self.patch_proj = nn.Linear(channels, channels, bias=False)
        self.classes_proj = nn.Linear(channels, channels, bias=False)
        self.decoder_norm = nn.LayerNorm(channels, eps=MASK_HEAD_EPS)
        self.mask_norm = nn.LayerNorm(num_classes, eps=MASK_HEAD_EPS)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        grid = tuple(x.shape[2:])
        tokens = self.dec_proj(map_to_tokens(x))
        tokens = torch.cat([tokens, self.cls_emb.expand(tokens.shape[0], -1, -1)], dim=1)
        for layer in self.layers:
            tokens = layer(tokens)
        tokens = self.decoder_norm(tokens)
        patches = F.normalize(self.patch_proj(tokens[:, : -self.num_classes]), dim=2)
        classes = F.normalize(self.classes_proj(tokens[:, -self.num_classes :]), dim=2)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))
        return tokens_to_map(masks, grid)


@register_architecture("segmenter_vit")
def segmenter_vit(
    *, variant: str = "s", decoder: str = "mask", num_classes: int = 150, drop_path_rate: float = 0.1
) -> EncoderDecoder:
    """Segmenter on ViT-`variant` (t, s, b, l) with the `decoder` (mask or linear); drop-path 0.1
    in the backbone and the mask decoder as the configs train."""
    if variant not in SEGMENTER_VARIANTS:
        raise ValueError(f"unknown Segmenter variant {variant!r}: choose one of {', '.join(SEGMENTER_VARIANTS)}")
    if decoder not in DECODERS:
        raise ValueError(f"unknown Segmenter decoder {decoder!r}: choose one of {', '.join(DECODERS)}")
    channels, layers, heads, img_size = SEGMENTER_VARIANTS[variant]
    backbone = VisionTransformer(channels, layers, heads, img_size=img_size, final_norm=True, drop_path_rate=drop_path_rate)
    if decoder == "mask":
        head = MaskTransformerHead(channels, num_classes, num_heads=heads, drop_path_rate=drop_path_rate)
    else:
        head = FCNHead(channels, channels, num_classes, num_convs=0, concat_input=False, dropout=0)
    return EncoderDecoder(backbone, head)
