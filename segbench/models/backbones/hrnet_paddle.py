"""PaddleSeg 2.8's HRNet (HRNet_W18 .. HRNet_W64) in its state_dict layout, for the PaddleSeg models
whose `.pdparams` weights load through the `paddleseg` adapter (HRNetW48Contrast).

Layout and choices of PaddleSeg's hrnet.py: a stem of two stride-2 3x3 ConvBNReLU, a stage of
bottlenecks (`la1`), then transitions (`tr1`..`tr3`) and stages (`st2`..`st4`) of high-resolution
modules (`branches_func` of basic blocks, `fuse_func` summing every branch into every other: 1x1
ConvBN + bilinear upsampling from coarser ones, chains of stride-2 3x3 ConvBN from finer ones).
Convs use Paddle's padding='same', which at stride 2 pads the larger half after (TF-style); every
resize is bilinear with align_corners=False. The output is one map: the four branches upsampled to
the finest and concatenated (sum of the widths channels). No SE, no polarized attention (the
configs here leave has_se and use_psa off).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import resize
from segbench.models.backbones.resnet_vd import ConvBN

_WIDTHS = (18, 30, 32, 40, 44, 48, 60, 64)
_MODULES = (1, 4, 3)  # high-resolution modules in stages 2, 3, 4


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, relu: bool = False) -> ConvBN:
    """PaddleSeg's layers.ConvBN(ReLU) with padding='same' and no conv bias."""
    return ConvBN(in_channels, out_channels, kernel_size, stride=stride, relu=relu, same_padding=True)


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, width: int, *, downsample: bool) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_channels, width, 1, relu=True)
        self.conv2 = conv_bn(width, width, 3, relu=True)
        self.conv3 = conv_bn(width, width * 4, 1)
        if downsample:
            self.conv_down = conv_bn(in_channels, width * 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv_down(x) if hasattr(self, "conv_down") else x
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + residual)


class BasicBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(channels, channels, 3, relu=True)
        self.conv2 = conv_bn(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + x)


class HighResolutionModule(nn.Module):
    """`branches_func`: 4 basic blocks per branch; `fuse_func`: output i = ReLU(sum over j of branch
    j brought to branch i's width and size)."""

    def __init__(self, channels: list[int], name: str, *, blocks: int = 4) -> None:
        super().__init__()
        self.branches_func = nn.Module()
        self.branch_names = [[f"bb_{name}_branch_layer_{i + 1}_{j + 1}" for j in range(blocks)] for i in range(len(channels))]
        for i, names in enumerate(self.branch_names):
            for block in names:
                self.branches_func.add_module(block, BasicBlock(channels[i]))
        self.fuse_func = nn.Module()
        self.fuse_names: dict[tuple[int, int], list[str]] = {}
        for i in range(len(channels)):
            for j in range(len(channels)):
                if j > i:
                    self.fuse_names[i, j] = [f"residual_{name}_layer_{i + 1}_{j + 1}"]
                    self.fuse_func.add_module(self.fuse_names[i, j][0], conv_bn(channels[j], channels[i], 1))
                elif j < i:
                    self.fuse_names[i, j] = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        key = f"residual_{name}_layer_{i + 1}_{j + 1}_{k + 1}"
                        out = channels[i] if last else channels[j]
                        self.fuse_func.add_module(key, conv_bn(channels[j], out, 3, stride=2, relu=not last))
                        self.fuse_names[i, j].append(key)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = list(xs)
        for i, names in enumerate(self.branch_names):
            for block in names:
                xs[i] = getattr(self.branches_func, block)(xs[i])
        outs = []
        for i, x in enumerate(xs):
            total = x
            for j, y in enumerate(xs):
                if j == i:
                    continue
                for key in self.fuse_names[i, j]:
                    y = getattr(self.fuse_func, key)(y)
                total = total + (resize(y, tuple(x.shape[-2:]), False) if j > i else y)
            outs.append(F.relu(total))
        return outs


class HRNetPaddle(nn.Module):
    """Returns [the four branches at stride 4 concatenated]; `feat_channels` its width (PaddleSeg's)."""

    def __init__(self, width: int = 48) -> None:
        super().__init__()
        if width not in _WIDTHS:
            raise ValueError(f"HRNet width must be one of {sorted(_WIDTHS)}, got {width}")
        channels = [width * 2**i for i in range(4)]
        self.feat_channels = [sum(channels)]
        self.conv_layer1_1 = conv_bn(3, 64, 3, stride=2, relu=True)
        self.conv_layer1_2 = conv_bn(64, 64, 3, stride=2, relu=True)
        self.la1 = nn.Module()
        for i in range(4):
            self.la1.add_module(f"bb_layer2_{i + 1}", Bottleneck(64 if i == 0 else 256, 64, downsample=i == 0))
        previous = [256]
        self.stages = []
        for stage, modules in zip((2, 3, 4), _MODULES):
            current = channels[:stage]
            transition = nn.Module()
            for i, c in enumerate(current):
                if i >= len(previous):
                    transition.add_module(f"transition_tr{stage - 1}_layer_{i + 1}", conv_bn(previous[-1], c, 3, stride=2, relu=True))
                elif previous[i] != c:
                    transition.add_module(f"transition_tr{stage - 1}_layer_{i + 1}", conv_bn(previous[i], c, 3, relu=True))
            self.add_module(f"tr{stage - 1}", transition)
            body = nn.Module()
            for m in range(modules):
                body.add_module(f"stage_st{stage}_{m + 1}", HighResolutionModule(current, f"st{stage}_{m + 1}"))
            self.add_module(f"st{stage}", body)
            self.stages.append((stage, modules))
            previous = current

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.conv_layer1_2(self.conv_layer1_1(x))
        for block in self.la1.children():
            x = block(x)
        xs = [x]
        for stage, modules in self.stages:
            transition = getattr(self, f"tr{stage - 1}")
            xs = [
                getattr(transition, f"transition_tr{stage - 1}_layer_{i + 1}")(xs[min(i, len(xs) - 1)])
                if hasattr(transition, f"transition_tr{stage - 1}_layer_{i + 1}") else xs[i]
                for i in range(stage)
            ]  # fmt: skip
            body = getattr(self, f"st{stage}")
            for m in range(modules):
                xs = getattr(body, f"stage_st{stage}_{m + 1}")(xs)
        size = tuple(xs[0].shape[-2:])
        return [torch.cat([xs[0], *(resize(y, size, False) for y in xs[1:])], dim=1)]
