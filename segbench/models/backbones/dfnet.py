"""DFNet1 and DFNet2 (Li et al., CVPR 2019, "Partial Order Pruning"), as the company zoo's encoder
builds them (its `dfnetv1`/`dfnetv2`, in that code's state_dict layout).

Plain ResNet BasicBlocks (segbench's ResNet blocks; a 1x1 projection shortcut wherever the stride
or the width changes) after a two-conv stem (3->32->64, both stride 2). The networks return three
features, from different places (the code's inline comments say otherwise):
DFNet1: stage3 (128 ch, /16), stage4 (256 ch, /32) and stage5 (512 ch, /32), so its finest
feature is at stride 16; DFNet2: stage2_2 (128 ch, /8), stage3_2 (256 ch, /16), stage4_2
(512 ch, /32). No classifier: the ImageNet fc is not part of the segmentation model.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.models.backbones.resnet import BasicBlock, resnet_layer

# version -> the stages: (name, width, blocks, first stride), and which three stage outputs return
_STAGES = {
    1: ((("stage2", 64, 3, 2), ("stage3", 128, 3, 2), ("stage4", 256, 3, 2), ("stage5", 512, 1, 1)), ("stage3", "stage4", "stage5")),
    2: (
        (("stage2_1", 64, 2, 2), ("stage2_2", 128, 1, 1), ("stage3_1", 128, 10, 2), ("stage3_2", 256, 1, 1),
         ("stage4_1", 256, 4, 2), ("stage4_2", 512, 2, 1)),
        ("stage2_2", "stage3_2", "stage4_2"),
    ),
}  # fmt: skip


class DFNet(nn.Module):
    """`version` 1 or 2; `out_channels` lists the widths of the three returned features."""

    def __init__(self, version: int) -> None:
        super().__init__()
        if version not in _STAGES:
            raise ValueError(f"DFNet version must be one of {sorted(_STAGES)}, got {version}")
        stages, self.returned = _STAGES[version]
        self.stage1 = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.stage_names = [name for name, *_ in stages]
        in_channels = 64
        for name, width, blocks, stride in stages:
            self.add_module(name, resnet_layer(BasicBlock, in_channels, width, blocks, stride, 1, False, None))
            in_channels = width
        self.out_channels = [dict((name, width) for name, width, *_ in stages)[name] for name in self.returned]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stage1(x)
        outs = {}
        for name in self.stage_names:
            x = outs[name] = getattr(self, name)(x)
        return [outs[name] for name in self.returned]
