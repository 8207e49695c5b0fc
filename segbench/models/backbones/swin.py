"""Swin Transformer (Liu et al., ICCV 2021) with mmsegmentation 1.2.2's `SwinTransformer` state_dict
layout and forward.

A 4x4 stride-4 patch embed (+ LayerNorm), then four stages of pre-norm blocks; each block is
window attention (W-MSA) then an MLP, every second block with its windows shifted by half a
window (SW-MSA). Between stages a patch merging concatenates each 2x2 neighbourhood in
`F.unfold`'s order (channel-major, as mmseg's `nn.Unfold` sampler), normalizes it and halves the
width by a bias-free linear. Stage i's output passes through its own LayerNorm `norm<i>`.

What mmseg does and this file keeps, because the logits depend on it:
- the token map is padded at the bottom/right to a multiple of the window before partitioning
  (the padded zeros take part in attention as keys) and cropped afterwards; the patch embed and
  patch merging pad the image/map at the bottom/right too ("corner" padding);
- the shift rolls the padded map by -window//2 and masks, with -100 added before the softmax,
  the pairs of tokens that came from different regions of the unrolled map;
- a learned relative position bias per head, read through the `relative_position_index` buffer;
- every LayerNorm has eps 1e-5 (mmcv's LN default);
- drop-path (stochastic depth, rising linearly to `drop_path_rate`) acts in training only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.backbones.mit import DropPath, drop_path_rates


def relative_position_index(window: int) -> torch.Tensor:
    """(w², w²) index into the (2w-1)² bias table: for tokens i and j of a window at (yᵢ, xᵢ) and
    (yⱼ, xⱼ), (yᵢ-yⱼ+w-1)·(2w-1) + (xᵢ-xⱼ+w-1)."""
    y, x = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    y, x = y.flatten(), x.flatten()
    return (y[:, None] - y[None, :] + window - 1) * (2 * window - 1) + (x[:, None] - x[None, :] + window - 1)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(N, H, W, C) with H, W multiples of `window` -> (N·windows, window², C), windows in row-major order."""
    n, h, w, c = x.shape
    x = x.view(n, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_merge(windows: torch.Tensor, window: int, hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of window_partition: (N·windows, window², C) -> (N, H, W, C)."""
    h, w = hw
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shifted_window_mask(hw: tuple[int, int], window: int, shift: int, device: torch.device) -> torch.Tensor:
    """(windows, w², w²) additive mask for attention over a map rolled by -shift: 0 between tokens
    of the same region of the unrolled map, -100 between tokens of different regions. Along each
    axis the regions are [0, L-window), [L-window, L-shift) and [L-shift, L)."""

    def region(length: int) -> torch.Tensor:
        position = torch.arange(length, device=device)
        return (position >= length - window).long() + (position >= length - shift).long()

    h, w = hw
    regions = region(h)[:, None] * 3 + region(w)[None, :]
    regions = window_partition(regions[None, :, :, None], window).squeeze(-1)
    different = regions[:, :, None] != regions[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill(different, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, plus a relative position bias per head
    (mmseg's `WindowMSA`): softmax(q·scale·kᵀ + bias [+ mask]) v, then the output projection."""

    def __init__(self, channels: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.scale = (channels // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N·windows, w², C); mask: (windows, w², w²) or None."""
        batch, length, channels = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, channels // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(length, length, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(batch // windows, windows, self.num_heads, length, length) + mask[None, :, None]
            attn = attn.view(-1, self.num_heads, length, length)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, channels)
        return self.proj(x)


class ShiftedWindowAttention(nn.Module):
    """mmseg's `ShiftWindowMSA`: pad the map to a multiple of the window, roll it by -shift (shift > 0),
    attend within windows (masked across regions when shifted), roll back, crop the padding."""

    def __init__(self, channels: int, num_heads: int, window: int, shift: int) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.w_msa = WindowAttention(channels, num_heads, window)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        n, _, c = x.shape
        h, w = hw
        x = x.view(n, h, w, c)
        x = F.pad(x, (0, 0, 0, -w % self.window, 0, -h % self.window))
        padded = (x.shape[1], x.shape[2])
        mask = None
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shifted_window_mask(padded, self.window, self.shift, x.device)
        x = window_merge(self.w_msa(window_partition(x, self.window), mask), self.window, padded)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x[:, :h, :w, :].reshape(n, h * w, c)


class MLP(nn.Module):
    """Linear up, GELU, linear down, in mmcv's `FFN` layout (`layers.0.0`, `layers.1`)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(channels, hidden), nn.GELU()), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SwinBlock(nn.Module):
    """x + attn(norm1(x)), then x + ffn(norm2(x)), each branch under drop-path."""

    def __init__(self, channels: int, num_heads: int, window: int, shift: int, mlp_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.attn = ShiftedWindowAttention(channels, num_heads, window, shift)
        self.norm2 = nn.LayerNorm(channels)
        self.ffn = MLP(channels, mlp_ratio * channels)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.ffn(self.norm2(x)))


class PatchMerging(nn.Module):
    """Each 2x2 neighbourhood (map padded bottom/right to even size) -> 4C features in F.unfold's
    channel-major order -> LayerNorm -> bias-free linear to `out_channels`."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * channels)
        self.reduction = nn.Linear(4 * channels, out_channels, bias=False)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        n, _, c = x.shape
        h, w = hw
        x = F.pad(x.transpose(1, 2).reshape(n, c, h, w), (0, w % 2, 0, h % 2))
        x = F.unfold(x, kernel_size=2, stride=2).transpose(1, 2)
        return self.reduction(self.norm(x)), ((h + 1) // 2, (w + 1) // 2)


class SwinStage(nn.Module):
    """`blocks` (even ones plain windows, odd ones shifted by window//2), then `downsample` if any."""

    def __init__(
        self, channels: int, depth: int, num_heads: int, window: int, mlp_ratio: int, rates: list[float], downsample: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(channels, num_heads, window, window // 2 if i % 2 else 0, mlp_ratio, rates[i]) for i in range(depth)
        )
        self.downsample = PatchMerging(channels, 2 * channels) if downsample else None


class PatchEmbed(nn.Module):
    """Non-overlapping `patch`x`patch` conv on the image padded bottom/right to a multiple of `patch`, then LayerNorm."""

    def __init__(self, channels: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.projection = nn.Conv2d(3, channels, patch, stride=patch)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.projection(F.pad(x, (0, -x.shape[-1] % self.patch, 0, -x.shape[-2] % self.patch)))
        return self.norm(x.flatten(2).transpose(1, 2)), (x.shape[2], x.shape[3])


class SwinTransformer(nn.Module):
    """Four stages at strides 4, 8, 16, 32 with embed_dims·2^i channels; returns every stage's
    normalized map (mmseg's out_indices (0, 1, 2, 3), no absolute position embedding)."""

    def __init__(
        self,
        embed_dims: int,
        depths: tuple[int, ...],
        num_heads: tuple[int, ...],
        *,
        window_size: int = 7,
        patch_size: int = 4,
        mlp_ratio: int = 4,
        drop_path_rate: float = 0.3,
    ) -> None:
        super().__init__()
        rates = drop_path_rates(drop_path_rate, sum(depths))
        self.out_channels = [embed_dims * 2**i for i in range(len(depths))]
        self.patch_embed = PatchEmbed(embed_dims, patch_size)
        self.stages = nn.ModuleList(
            SwinStage(
                channels, depths[i], num_heads[i], window_size, mlp_ratio,
                rates[sum(depths[:i]) : sum(depths[: i + 1])], downsample=i < len(depths) - 1,
            )
            for i, channels in enumerate(self.out_channels)
        )  # fmt: skip
        for i, channels in enumerate(self.out_channels):
            self.add_module(f"norm{i}", nn.LayerNorm(channels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, hw = self.patch_embed(x)
        outputs = []
        for i, stage in enumerate(self.stages):
            for block in stage.blocks:
                x = block(x, hw)
            out = getattr(self, f"norm{i}")(x)
            outputs.append(out.view(-1, *hw, self.out_channels[i]).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x, hw = stage.downsample(x, hw)
        return outputs
