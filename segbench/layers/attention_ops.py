"""Context blocks of the attention-style heads, in plain PyTorch with mmcv's state_dict layout.

mmcv compiles PSAMask (PSANet) as a CUDA/C++ op and once compiled criss-cross attention (CCNet);
here both are tensor expressions (einsum, padding, strided views) that run on any device, the meta
device included, so FlopCounterMode sees their matrix products. NonLocal2d, its disentangled
variant (DNLNet) and ContextBlock (GCNet) are plain PyTorch in mmcv too; they live here with the
others so every head finds its block in one place.

Learnable scales (`Scale`) start at 1 and BatchNorm at PyTorch's defaults, not at mmcv's zero
initialisation: segbench loads trained weights, and a zero scale would leave the attention
branch without gradient in a training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers.conv import ConvBNReLU, ConvNoNorm


class Scale(nn.Module):
    """One learnable scalar multiplying the input (mmcv's Scale: key `scale`, shape ())."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def criss_cross_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Each pixel attends to the pixels of its row and of its column (CCNet): (B, C, H, W) value out.

    One softmax over the H column and W row affinities together; the pixel itself lies on both,
    so its column entry is -inf, as mmcv does, and it is counted once.
    """
    height = query.shape[2]
    column = torch.einsum("bchw,bciw->bhwi", query, key)
    itself = torch.eye(height, dtype=torch.bool, device=query.device).view(1, height, 1, height)
    column = column.masked_fill(itself, float("-inf"))
    row = torch.einsum("bchw,bchj->bhwj", query, key)
    attention = torch.cat([column, row], dim=-1).softmax(dim=-1)
    out = torch.einsum("bciw,bhwi->bchw", value, attention[..., :height])
    return out + torch.einsum("bchj,bhwj->bchw", value, attention[..., height:])


class CrissCrossAttention(nn.Module):
    """mmcv's CrissCrossAttention: 1x1 query/key (C/8) and value (C) projections, criss-cross
    attention, a learnable scale `gamma`, and the input added back."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // 8, 1)
        self.key_conv = nn.Conv2d(channels, channels // 8, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = Scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = criss_cross_attention(self.query_conv(x), self.key_conv(x), self.value_conv(x))
        return self.gamma(out) + x


PSA_MODES = ("collect", "distribute")


def psa_mask(mask: torch.Tensor, mask_size: tuple[int, int], mode: str) -> torch.Tensor:
    """mmcv's PSAMask: a (N, Hm*Wm, H, W) map of relative weights -> (N, H*W, H, W) absolute ones.

    Channel (a, b) at pixel (h, w) is the weight of the pixel at offset (a - (Hm-1)//2, b - (Wm-1)//2)
    from it. 'collect' puts it at out[n, i*W + j, h, w] for the pixel (i, j) at that offset,
    'distribute' at out[n, h*W + w, i, j]; offsets outside the image are dropped and pixels no
    offset reaches stay 0 (the mask need not cover the image, nor the image the mask).

    The weight of (i, j) for (h, w) depends on the offset i - h only, so the mask is padded (or
    cropped) to exactly the 2H-1 x 2W-1 offsets an HxW image has, and read along its diagonals by
    a strided view: no index tensor, no loop, and autograd passes gradients back unchanged.
    """
    if mode not in PSA_MODES:
        raise ValueError(f"PSA mask mode {mode!r}: expected one of {PSA_MODES}")
    n, channels, height, width = mask.shape
    mask_h, mask_w = mask_size
    if channels != mask_h * mask_w:
        raise ValueError(f"PSA mask: {channels} channels for a {mask_h}x{mask_w} mask")
    half_h, half_w = (mask_h - 1) // 2, (mask_w - 1) // 2
    # pixels reversed, so that the diagonal read below steps forward along every axis
    offsets = mask.reshape(n, mask_h, mask_w, height, width).flip(3, 4)
    # then offsets[:, a, b] is the offset (a - (H-1), b - (W-1)); negative padding crops
    offsets = F.pad(
        offsets,
        (0, 0, 0, 0, (width - 1) - half_w, half_w - (mask_w - width), (height - 1) - half_h, half_h - (mask_h - height)),
    ).contiguous()
    # out[n, i, j, h, w] = offsets[n, i - h + H-1, j - w + W-1, H-1-h, W-1-w]: with h' = H-1-h that is
    # offsets[n, i + h', j + w', h', w'], a strided view, read back with h' and w' reversed
    s_n, s_a, s_b, s_h, s_w = offsets.stride()
    diagonals = offsets.as_strided(
        (n, height, width, height, width), (s_n, s_a, s_b, s_a + s_h, s_b + s_w), offsets.storage_offset()
    )
    collected = diagonals.flip(3, 4).reshape(n, height * width, height * width)
    if mode == "distribute":
        collected = collected.transpose(1, 2)
    return collected.reshape(n, height * width, height, width)


class NonLocal2d(nn.Module):
    """mmcv's NonLocal2d in the embedded-Gaussian mode mmseg's NLHead uses: 1x1 projections g,
    theta, phi to C/reduction, softmax(theta·phi / sqrt(C')) over all pixels, then conv_out
    (conv + BN) added to the input."""

    def __init__(self, channels: int, *, reduction: int = 2, use_scale: bool = True) -> None:
        super().__init__()
        inter_channels = max(channels // reduction, 1)
        self.use_scale = use_scale
        self.g = ConvNoNorm(channels, inter_channels, 1)
        self.conv_out = ConvBNReLU(inter_channels, channels, 1, relu=False)
        self.theta = ConvNoNorm(channels, inter_channels, 1)
        self.phi = ConvNoNorm(channels, inter_channels, 1)

    def embeddings(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(theta (N, HW, C'), phi (N, C', HW), g (N, HW, C'))."""
        theta = self.theta(x).flatten(2).transpose(1, 2)
        return theta, self.phi(x).flatten(2), self.g(x).flatten(2).transpose(1, 2)

    def pairwise(self, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        weight = theta @ phi
        if self.use_scale:
            weight = weight / theta.shape[-1] ** 0.5
        return weight.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta, phi, g = self.embeddings(x)
        y = self.pairwise(theta, phi) @ g
        return x + self.conv_out(y.transpose(1, 2).reshape(x.shape[0], -1, *x.shape[2:]))


class DisentangledNonLocal2d(NonLocal2d):
    """DNLNet's block: the pairwise term on mean-subtracted (whitened) embeddings, sharpened by a
    temperature, plus a unary term, a softmax-pooled g from a 1x1 `conv_mask`, added to every pixel."""

    def __init__(self, channels: int, *, reduction: int = 2, use_scale: bool = True, temperature: float = 0.05) -> None:
        super().__init__(channels, reduction=reduction, use_scale=use_scale)
        self.temperature = temperature
        self.conv_mask = nn.Conv2d(channels, 1, 1)

    def pairwise(self, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        weight = theta @ phi
        if self.use_scale:
            weight = weight / theta.shape[-1] ** 0.5
        return (weight / self.temperature).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta, phi, g = self.embeddings(x)
        theta = theta - theta.mean(dim=1, keepdim=True)
        phi = phi - phi.mean(dim=2, keepdim=True)
        y = self.pairwise(theta, phi) @ g
        unary = self.conv_mask(x).flatten(2).softmax(dim=-1) @ g  # (N, 1, C')
        n, _, height, width = x.shape
        return x + self.conv_out(y.transpose(1, 2).reshape(n, -1, height, width) + unary.transpose(1, 2).unsqueeze(-1))


class ContextBlock(nn.Module):
    """mmcv's ContextBlock as GCNet's configs use it (attention pooling, channel-add fusion): a
    softmax over the pixels pools one context vector, a 1x1 bottleneck with LayerNorm transforms
    it, and it is added to every pixel."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        planes = int(channels * ratio)
        self.conv_mask = nn.Conv2d(channels, 1, 1)
        self.channel_add_conv = nn.Sequential(
            nn.Conv2d(channels, planes, 1), nn.LayerNorm([planes, 1, 1]), nn.ReLU(inplace=True), nn.Conv2d(planes, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.conv_mask(x).flatten(2).softmax(dim=-1)  # (N, 1, HW)
        context = (x.flatten(2) @ weights.transpose(1, 2)).unsqueeze(-1)  # (N, C, 1, 1)
        return x + self.channel_add_conv(context)
