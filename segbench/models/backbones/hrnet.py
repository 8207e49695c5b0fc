"""HRNetV2 (Wang et al., TPAMI 2020) with mmsegmentation's state_dict layout (its `HRNet` backbone).

A stem of two stride-2 3x3 convs (`conv1`/`bn1`, `conv2`/`bn2`), stage 1 a ResNet bottleneck layer
(`layer1`), then stages 2-4 of HR modules over 2, 3, 4 parallel branches at strides 4, 8, 16, 32
with widths w, 2w, 4w, 8w. Before each stage a transition layer adapts the widths and opens the new,
lower branch from the lowest one. Each HR module runs BasicBlocks per branch, then fuses: every
output branch sums all branches, higher ones brought down by stride-2 3x3 convs, lower ones by a
1x1 conv + BN and a bilinear upsample. Returns the four branch outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import resize
from segbench.models.backbones.resnet import BasicBlock, Bottleneck, resnet_layer

HRNET_VARIANTS = {
    "w18s": (18, (2, 2, 2, 2), (1, 1, 3, 2)),
    "w18": (18, (4, 4, 4, 4), (1, 1, 4, 3)),
    "w48": (48, (4, 4, 4, 4), (1, 1, 4, 3)),
}
"""Variant -> (width, blocks per branch in stages 1-4, HR modules in stages 1-4), as mmseg's
fcn_hr18 base config and its hr18s (W18-Small) and hr48 overrides build them."""


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, relu: bool = False) -> nn.Sequential:
    """mmseg's plain `Sequential(conv, BN[, ReLU])` of HRNet (keys `.0.weight`, `.1.*`), not a ConvModule."""
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class HRModule(nn.Module):
    """Parallel BasicBlock branches, then the exchange: output i = ReLU(sum over branches j of
    branch j brought to branch i's resolution and width)."""

    def __init__(self, widths: list[int], num_blocks: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(resnet_layer(BasicBlock, w, w, num_blocks) for w in widths)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse(widths, j, i) for j in range(len(widths))) for i in range(len(widths))
        )
        self.relu = nn.ReLU()

    @staticmethod
    def _fuse(widths: list[int], source: int, target: int) -> nn.Module | None:
        """Branch `source` to `target`'s width and stride: None for itself; from a lower branch a
        1x1 conv + BN (the upsample is in forward); from a higher one i-j stride-2 3x3 convs, the
        last to the target width without ReLU, the others keeping the source width with ReLU."""
        if source == target:
            return None
        if source > target:
            return _conv_bn(widths[source], widths[target], 1)
        steps = target - source
        return nn.Sequential(
            *(_conv_bn(widths[source], widths[source], 3, stride=2, relu=True) for _ in range(steps - 1)),
            _conv_bn(widths[source], widths[target], 3, stride=2),
        )

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        outs = []
        for i, fuse_layer in enumerate(self.fuse_layers):
            terms = []
            for j, (fuse, x) in enumerate(zip(fuse_layer, xs)):
                if j == i:
                    terms.append(x)
                elif j > i:
                    # mmseg's Upsample (scale 2^(j-i), to int(size * scale)), then a resize to branch i's
                    # size: the two differ where the input size is not a multiple of 32
                    scale = 2 ** (j - i)
                    y = fuse(x)
                    y = F.interpolate(y, size=[int(t * scale) for t in y.shape[-2:]], mode="bilinear", align_corners=False)
                    terms.append(resize(y, tuple(xs[i].shape[-2:]), align_corners=False))
                else:
                    terms.append(fuse(x))
            y = terms[0]
            for term in terms[1:]:  # summed in branch order, as mmseg does
                y = y + term
            outs.append(self.relu(y))
        return outs


class HRNet(nn.Module):
    """HRNetV2 backbone: `variant` one of HRNET_VARIANTS. `out_channels` are the branch widths."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        width, blocks, modules = HRNET_VARIANTS[variant]
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = resnet_layer(Bottleneck, 64, 64, blocks[0])
        previous = [64 * Bottleneck.expansion]
        for stage in (2, 3, 4):
            widths = [width * 2**i for i in range(stage)]
            self.add_module(f"transition{stage - 1}", self._transition(previous, widths))
            hr_modules = (HRModule(widths, blocks[stage - 1]) for _ in range(modules[stage - 1]))
            self.add_module(f"stage{stage}", nn.Sequential(*hr_modules))
            previous = widths
        self.out_channels = previous

    @staticmethod
    def _transition(previous: list[int], widths: list[int]) -> nn.ModuleList:
        """Per branch of the next stage: a 3x3 conv where an existing branch changes width (None
        where it keeps it); for the new branch a stride-2 3x3 conv from the lowest branch."""
        layers: list[nn.Module | None] = []
        for i, w in enumerate(widths):
            if i < len(previous):
                layers.append(_conv_bn(previous[i], w, 3, relu=True) if previous[i] != w else None)
            else:
                layers.append(nn.Sequential(_conv_bn(previous[-1], w, 3, stride=2, relu=True)))
        return nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        stages = ((self.transition1, self.stage2), (self.transition2, self.stage3), (self.transition3, self.stage4))
        for transition, stage in stages:
            # mmseg feeds every transition that exists from the lowest branch (only new branches, and
            # stage 1's single output, have one here)
            ys = stage([ys[i] if t is None else t(ys[-1]) for i, t in enumerate(transition)])
        return ys
