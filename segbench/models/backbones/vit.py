"""Vision Transformer (Dosovitskiy et al., ICLR 2021) with mmsegmentation 1.2.2's
`VisionTransformer` state_dict layout, and its `MultiLevelNeck`.

The image is padded at the bottom and right to a multiple of the patch size (mmseg's 'corner'
padding), cut into patches by a bias-free strided conv, prefixed with the class token and added
to the position embedding. The embedding is learnt for `img_size`; at any other input size its
grid is interpolated (bicubic or bilinear, align_corners false) to the token grid, as mmseg's
resize_pos_embed does, at every forward. Blocks are pre-norm (`ln1`, attention, `ln2`, FFN).
The attention is a sequence-first nn.MultiheadAttention called as mmcv's MultiheadAttention
calls it (need_weights left on), so keys are `attn.attn.in_proj_weight` etc. and the work is
the same; mmcv puts drop-path on the FFN branch only, and it acts in training only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import ConvNoNorm
from segbench.models.backbones.mit import DropPath, drop_path_rates, map_to_tokens, tokens_to_map

LAYER_NORM_EPS = 1e-6
"""mmseg's ViT configs set LN eps 1e-6 for the backbone (Segmenter's mask decoder keeps 1e-5)."""


class SelfAttention(nn.Module):
    """mmcv's MultiheadAttention on batch-first tokens: no residual here, the block adds it."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(channels, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(0, 1)  # sequence first, as mmcv calls it
        return self.attn(x, x, x)[0].transpose(0, 1)


class FFN(nn.Module):
    """Linear up, GELU, linear down; `layers` indices follow mmcv's FFN (its dropouts are rate 0)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(channels, hidden), nn.GELU()), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerEncoderLayer(nn.Module):
    """Pre-norm block: x + attn(ln1(x)), then x + drop_path(ffn(ln2(x)))."""

    def __init__(
        self, channels: int, num_heads: int, *, mlp_ratio: int = 4, drop_path: float = 0.0, eps: float = LAYER_NORM_EPS
    ) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(channels, eps=eps)
        self.attn = SelfAttention(channels, num_heads)
        self.ln2 = nn.LayerNorm(channels, eps=eps)
        self.ffn = FFN(channels, mlp_ratio * channels)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.drop_path(self.ffn(self.ln2(x)))


class PatchEmbed(nn.Module):
    """Pad bottom/right to a multiple of the patch, then a patch×patch stride-patch conv (no bias)."""

    def __init__(self, channels: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(3, channels, patch_size, stride=patch_size, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        p = self.patch_size
        h, w = x.shape[-2:]
        x = self.projection(F.pad(x, [0, -w % p, 0, -h % p]))
        return map_to_tokens(x), tuple(x.shape[2:])


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], trained: tuple[int, int], mode: str) -> torch.Tensor:
    """(1, 1 + h·w, C) embedding learnt on the `trained` grid -> one for `grid`: the class token's
    entry kept, the grid interpolated (align_corners false)."""
    cls_entry, table = pos_embed[:, :1], pos_embed[:, 1:]
    table = tokens_to_map(table, trained)
    table = F.interpolate(table, size=grid, mode=mode, align_corners=False)
    return torch.cat([cls_entry, map_to_tokens(table)], dim=1)


class VisionTransformer(nn.Module):
    """Plain ViT: one stride-`patch_size` token grid through `num_layers` blocks; returns the maps
    after the blocks in `out_indices` (class token dropped), the last one after `ln1` when
    `final_norm`. `with_cls_token=False` (SETR-MLA) drops the class token after the position
    embedding, so the blocks see image tokens only."""

    def __init__(
        self,
        embed_dims: int,
        num_layers: int,
        num_heads: int,
        *,
        img_size: int = 512,
        patch_size: int = 16,
        mlp_ratio: int = 4,
        out_indices: tuple[int, ...] = (-1,),
        with_cls_token: bool = True,
        final_norm: bool = False,
        interpolate_mode: str = "bicubic",
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.out_indices = tuple(i % num_layers for i in out_indices)
        self.with_cls_token = with_cls_token
        self.interpolate_mode = interpolate_mode
        self.out_channels = [embed_dims] * len(out_indices)
        self.patch_embed = PatchEmbed(embed_dims, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + math.prod(self.grid), embed_dims))
        rates = drop_path_rates(drop_path_rate, num_layers)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dims, num_heads, mlp_ratio=mlp_ratio, drop_path=rate) for rate in rates
        )
        self.ln1 = nn.LayerNorm(embed_dims, eps=LAYER_NORM_EPS) if final_norm else None

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x, grid = self.patch_embed(image)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        pos_embed = self.pos_embed
        if math.prod(grid) != math.prod(self.grid):  # mmseg compares token counts, not grids
            pos_embed = resize_pos_embed(pos_embed, grid, self.grid, self.interpolate_mode)
        x = x + pos_embed
        if not self.with_cls_token:
            x = x[:, 1:]
        outputs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == len(self.layers) - 1 and self.ln1 is not None:
                x = self.ln1(x)
            if i in self.out_indices:
                tokens = x[:, 1:] if self.with_cls_token else x
                outputs.append(tokens_to_map(tokens, grid).contiguous())  # as mmseg's: convs then pick the same kernels
        return outputs


class MultiLevelNeck(nn.Module):
    """mmseg's MultiLevelNeck: a 1x1 conv per level, each level resized by its scale (bilinear,
    by scale factor as mmseg calls it), then a 3x3 conv; convs have bias, no norm, no activation.
    Scales (4, 2, 1, 0.5) turn ViT's four stride-16 maps into a stride-4..32 pyramid."""

    def __init__(self, channels: int, num_levels: int = 4, scales: tuple[float, ...] = (4, 2, 1, 0.5)) -> None:
        super().__init__()
        self.scales = scales
        self.lateral_convs = nn.ModuleList(ConvNoNorm(channels, channels, 1) for _ in range(num_levels))
        self.convs = nn.ModuleList(ConvNoNorm(channels, channels, 3, padding=1) for _ in scales)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, features)]
        return [
            conv(F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False))
            for conv, x, scale in zip(self.convs, laterals, self.scales)
        ]
