"""Mix Transformer (MiT-B0..B5), SegFormer's backbone (Xie et al., NeurIPS 2021), with
mmsegmentation's `MixVisionTransformer` state_dict layout.

Four stages, each `layers.<i>` = [overlapping patch embed (conv, stride 4 then 2, padding k//2,
+ LayerNorm), the transformer blocks, a LayerNorm]. A block is pre-norm: efficient self-attention
(keys and values from an r×r stride-r conv + LayerNorm, r = 8, 4, 2, 1) and a Mix-FFN (1x1 conv,
3x3 depthwise conv, GELU, 1x1 conv). Every LayerNorm has eps 1e-6 (mmseg's norm_cfg for MiT).
The attention is a sequence-first nn.MultiheadAttention called as mmcv calls it (need_weights left
on), so keys are `attn.attn.in_proj_weight` etc. and the work done is the same. Drop-path
(stochastic depth, rate rising linearly to `drop_path_rate`) acts in training only.
"""

from __future__ import annotations

import torch
from torch import nn

LAYER_NORM_EPS = 1e-6


def tokens_to_map(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(N, H·W, C) tokens -> (N, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *hw)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H·W, C) tokens."""
    return x.flatten(2).transpose(1, 2)


def drop_path_rates(rate: float, blocks: int) -> list[float]:
    """Drop-path rate of each block, rising linearly from 0 to `rate` (torch.linspace's values, as
    mmseg's). On the CPU whatever the default device, so a model builds on the meta device too."""
    return torch.linspace(0, rate, blocks, device="cpu").tolist()


class DropPath(nn.Module):
    """In training, zero a residual branch for a random `rate` of the samples and rescale the rest."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return x
        keep = 1 - self.rate
        mask = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device) < keep
        return x * mask / keep


class OverlapPatchEmbed(nn.Module):
    """Strided conv with kernel larger than its stride (patches overlap), then LayerNorm on the tokens."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_channels, channels, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(channels, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.projection(x)
        return self.norm(map_to_tokens(x)), tuple(x.shape[2:])


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys and values come from the token map shrunk r× per side by
    an r×r stride-r conv (`sr`) and LayerNorm: QKᵀ costs N·N/r² instead of N²."""

    def __init__(self, channels: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(channels, num_heads)
        self.sr = nn.Conv2d(channels, channels, sr_ratio, stride=sr_ratio) if sr_ratio > 1 else None
        self.norm = nn.LayerNorm(channels, eps=LAYER_NORM_EPS) if sr_ratio > 1 else None

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        kv = x if self.sr is None else self.norm(map_to_tokens(self.sr(tokens_to_map(x, hw))))
        query, kv = x.transpose(0, 1), kv.transpose(0, 1)  # sequence first, as mmcv calls it
        return self.attn(query, kv, kv)[0].transpose(0, 1)


class MixFFN(nn.Module):
    """1x1 conv up, 3x3 depthwise conv (the positional information), GELU, 1x1 conv down.

    `layers` indices follow mmseg's Sequential (fc1, pe_conv, GELU, dropout, fc2): its dropout
    rate is 0 in every config, so that slot is an Identity."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.GELU(),
            nn.Identity(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return map_to_tokens(self.layers(tokens_to_map(x, hw)))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + ffn(norm2(x))."""

    def __init__(self, channels: int, num_heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(channels, eps=LAYER_NORM_EPS)
        self.attn = EfficientSelfAttention(channels, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(channels, eps=LAYER_NORM_EPS)
        self.ffn = MixFFN(channels, mlp_ratio * channels)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.ffn(self.norm2(x), hw))


class MixVisionTransformer(nn.Module):
    """Four stages at strides 4, 8, 16, 32 with `embed_dims`·heads channels; returns every stage's map."""

    def __init__(
        self,
        embed_dims: int,
        num_layers: tuple[int, ...],
        *,
        num_heads: tuple[int, ...] = (1, 2, 5, 8),
        patch_sizes: tuple[int, ...] = (7, 3, 3, 3),
        strides: tuple[int, ...] = (4, 2, 2, 2),
        sr_ratios: tuple[int, ...] = (8, 4, 2, 1),
        mlp_ratio: int = 4,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        rates = drop_path_rates(drop_path_rate, sum(num_layers))
        self.out_channels = [embed_dims * heads for heads in num_heads]
        self.layers = nn.ModuleList()
        in_channels = 3
        for i, channels in enumerate(self.out_channels):
            first = sum(num_layers[:i])
            blocks = nn.ModuleList(
                MiTBlock(channels, num_heads[i], sr_ratios[i], mlp_ratio, rates[first + j]) for j in range(num_layers[i])
            )
            embed = OverlapPatchEmbed(in_channels, channels, patch_sizes[i], strides[i])
            self.layers.append(nn.ModuleList([embed, blocks, nn.LayerNorm(channels, eps=LAYER_NORM_EPS)]))
            in_channels = channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for embed, blocks, norm in self.layers:
            x, hw = embed(x)
            for block in blocks:
                x = block(x, hw)
            x = tokens_to_map(norm(x), hw)
            outputs.append(x)
        return outputs
