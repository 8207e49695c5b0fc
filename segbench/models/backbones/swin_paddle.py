"""PaddleSeg 2.8's SwinTransformer in its state_dict layout, for MLATransformer's `.pdparams`
weights (`paddleseg` adapter; Linear weights there are [in, out]). segbench's mmseg-layout Swin is a
different file with other key names.

Liu et al. 2021 ("Swin Transformer"), as PaddleSeg writes it: a 4x4 patch embedding (the image
padded right/bottom to a multiple of 4) with LayerNorm; stages of blocks alternating plain and
shifted (by window // 2) window attention with a relative position bias table indexed by the
`relative_position_index` buffer (in the state_dict); each block pads its map right/bottom to a
multiple of the window after norm1 and crops back; shifted windows mask pairs from different
regions with -100; patch merging pads odd sides and concatenates (0,0), (1,0), (0,1), (1,1)
neighbours. One LayerNorm per output (`norm0`..`norm3`). Attention uses explicit matmuls, so the
MAC counter sees them. Drop-path (0.3 in the config) acts in training only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.backbones.mit import DropPath, drop_path_rates

_VARIANTS = {  # embed_dim, depths, heads (PaddleSeg's SwinTransformer_*_patch4_window7_224)
    "tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "small": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "base": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
}


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, window * window, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.reshape(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", relative[..., 0] * (2 * window - 1) + relative[..., 1])
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attention = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)].reshape(n, n, -1)
        attention = attention + bias.permute(2, 0, 1)[None]
        if mask is not None:
            windows = mask.shape[0]
            attention = (attention.reshape(b // windows, windows, self.heads, n, n) + mask[None, :, None]).reshape(b, self.heads, n, n)
        return self.proj((attention.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, drop_path: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 4)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).reshape(b, h, w, c)
        pad_r, pad_b = (-w) % self.window, (-h) % self.window
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if self.shift:
            x = torch.roll(x, (-self.shift, -self.shift), dims=(1, 2))
        x = window_reverse(self.attn(window_partition(x, self.window), mask if self.shift else None), self.window, hp, wp)
        if self.shift:
            x = torch.roll(x, (self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x[:, :h, :w].reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = F.pad(x.reshape(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, window: int, drop_paths: list[float], *, downsample: bool) -> None:
        super().__init__()
        self.window = window
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2, drop_paths[i]) for i in range(depth)
        )
        if downsample:
            self.downsample = PatchMerging(dim)

    def shift_mask(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """(windows, N, N): -100 between tokens of different regions of the shifted padded map."""
        window, shift = self.window, self.window // 2
        hp, wp = -(-h // window) * window, -(-w // window) * window
        region = torch.zeros(1, hp, wp, 1, device=device)
        count = 0
        for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
                region[:, rows, cols] = count
                count += 1
        windows = window_partition(region, window)[..., 0]
        return (windows[:, None, :] - windows[:, :, None] != 0).float() * -100.0

    def forward(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.shift_mask(h, w, x.device)
        for block in self.blocks:
            x = block(x, h, w, mask)
        return x, (self.downsample(x, h, w) if hasattr(self, "downsample") else x)


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int = 4) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self.proj(F.pad(x, (0, (-w) % self.patch, 0, (-h) % self.patch)))
        return self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(x.shape)


class SwinTransformerPaddle(nn.Module):
    """Returns the four stage outputs (strides 4, 8, 16, 32); `feat_channels` their widths."""

    def __init__(
        self,
        embed_dim: int,
        depths: tuple[int, ...],
        heads: tuple[int, ...],
        *,
        window: int = 7,
        drop_path_rate: float = 0.3,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(embed_dim)
        rates = drop_path_rates(drop_path_rate, sum(depths))
        self.feat_channels = [embed_dim * 2**i for i in range(len(depths))]
        self.layers = nn.ModuleList()
        for i, (depth, n_heads) in enumerate(zip(depths, heads)):
            start = sum(depths[:i])
            self.layers.append(
                BasicLayer(self.feat_channels[i], depth, n_heads, window, rates[start : start + depth], downsample=i < len(depths) - 1)
            )
        for i, channels in enumerate(self.feat_channels):
            self.add_module(f"norm{i}", nn.LayerNorm(channels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        outs = []
        for i, layer in enumerate(self.layers):
            out, x = layer(x, h, w)
            out = getattr(self, f"norm{i}")(out)
            outs.append(out.reshape(-1, h, w, self.feat_channels[i]).permute(0, 3, 1, 2))
            h, w = (h + 1) // 2, (w + 1) // 2
        return outs


def swin_paddle(variant: str, **kwargs) -> SwinTransformerPaddle:
    """PaddleSeg's SwinTransformer_{variant}_patch4_window7_224."""
    if variant not in _VARIANTS:
        raise ValueError(f"Swin variant must be one of {sorted(_VARIANTS)}, got {variant!r}")
    embed_dim, depths, heads = _VARIANTS[variant]
    return SwinTransformerPaddle(embed_dim, depths, heads, **kwargs)
