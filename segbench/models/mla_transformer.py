"""MLATransformer (PaddleSeg's decoder-enhanced Swin, contrib/AutoNUE, 1st place of the AutoNUE 2021
semantic segmentation track) on SwinTransformer base in PaddleSeg 2.8's state_dict layout; its
`.pdparams` weights load through the `paddleseg` key adapter.

The four Swin outputs (128..1024 channels, strides 4..32) go through 3x3 ConvBNReLU (no bias) and
2x bilinear upsamplings (align_corners=True) to 256 channels at stride 4, summed top-down
(p5 -> p4 -> p3 -> p2); each sum goes through a head of two 3x3 ConvBNReLU to 128 channels and is
resized to (4 * its width) x (4 * its width): PaddleSeg's MLAHeads take the width for both sides,
so on a non-square input the map is stretched to a square, kept here; a 3x3 classifier with bias,
logits resized to the input with align_corners=True. The auxiliary head on the stride-16 output
trains only (loss weight 0.4): it is in `training_only`, out of the inference count and MACs.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import resize
from segbench.models.backbones.resnet_vd import ConvBN
from segbench.models.backbones.swin_paddle import SwinTransformerPaddle, swin_paddle
from segbench.models.registry import register_architecture


def _up2(x: torch.Tensor) -> torch.Tensor:
    return resize(x, (x.shape[-2] * 2, x.shape[-1] * 2), True)


class MLAHeads(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        for name in ("head2", "head3", "head4", "head5"):
            self.add_module(name, nn.Sequential(ConvBN(channels * 2, channels, 3, relu=True), ConvBN(channels, channels, 3, relu=True)))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        heads = (self.head2, self.head3, self.head4, self.head5)
        return torch.cat([resize(head(x), (4 * x.shape[-1], 4 * x.shape[-1]), True) for head, x in zip(heads, features)], dim=1)


class MLATransformer(nn.Module):
    """PaddleSeg's MLATransformer layout (`backbone`, `conv0`..`conv33`, `mlahead`, `cls`, `aux_head`)."""

    training_only = ("aux_head",)
    loss_weights = (1.0, 0.4)

    def __init__(self, backbone: SwinTransformerPaddle, num_classes: int, *, mlahead_channels: int = 128, aux_channels: int = 256) -> None:
        super().__init__()
        c0, c1, c2, c3 = backbone.feat_channels
        self.backbone = backbone
        self.mlahead = MLAHeads(mlahead_channels)
        self.cls = nn.Conv2d(4 * mlahead_channels, num_classes, 3, padding=1)
        self.conv0 = ConvBN(c0, c0 * 2, 3, relu=True)
        self.conv1 = ConvBN(c1, c1, 3, relu=True)
        self.conv21 = ConvBN(c2, c2, 3, relu=True)
        self.conv22 = ConvBN(c2, c2 // 2, 3, relu=True)
        self.conv31 = ConvBN(c3, c3, 3, relu=True)
        self.conv32 = ConvBN(c3, c3 // 2, 3, relu=True)
        self.conv33 = ConvBN(c3 // 2, c3 // 4, 3, relu=True)
        self.aux_head = nn.Sequential(ConvBN(c2, aux_channels, 3), nn.Conv2d(aux_channels, num_classes, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        f0, f1, f2, f3 = self.backbone(image)
        size = tuple(f0.shape[-2:])
        p5 = resize(self.conv33(_up2(self.conv32(_up2(self.conv31(f3))))), size, True)
        p4 = resize(self.conv22(_up2(self.conv21(f2))), size, True) + p5
        p3 = resize(self.conv1(f1), size, True) + p4
        p2 = self.conv0(f0) + p3
        logits = resize(self.cls(self.mlahead([p2, p3, p4, p5])), tuple(image.shape[-2:]), True)
        if not self.training:
            return logits
        return logits, resize(self.aux_head(f2), tuple(image.shape[-2:]), True)


@register_architecture("mla_transformer_swin")
def mla_transformer_swin(*, variant: str = "base", num_classes: int = 26, drop_path_rate: float = 0.3) -> MLATransformer:
    """PaddleSeg's MLATransformer on SwinTransformer_{variant}_patch4_window7_224 (the AutoNUE config: base)."""
    return MLATransformer(swin_paddle(variant, drop_path_rate=drop_path_rate), num_classes)
