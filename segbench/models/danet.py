"""DANet (Fu et al., CVPR 2019): position and channel self-attention in two parallel branches."""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU
from segbench.layers.attention_ops import Scale
from segbench.models.backbones.resnet import ResNet
from segbench.models.fcn import auxiliary_fcn_head, dilated_head_channels
from segbench.models.registry import register_architecture
from segbench.models.segmentor import EncoderDecoder


class PositionAttention(nn.Module):
    """DANet's PAM (mmseg's SelfAttentionBlock as PAM sets it up): every pixel attends to every
    pixel, queries and keys projected to `key_channels`, unscaled softmax; `gamma` scales the
    result, added to the input."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_project = nn.Conv2d(channels, key_channels, 1)
        self.query_project = nn.Conv2d(channels, key_channels, 1)
        self.value_project = nn.Conv2d(channels, channels, 1)
        self.gamma = Scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = self.query_project(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        key = self.key_project(x).flatten(2)  # (N, C', HW)
        value = self.value_project(x).flatten(2).transpose(1, 2)  # (N, HW, C)
        context = ((query @ key).softmax(dim=-1) @ value).transpose(1, 2).reshape(x.shape)
        return self.gamma(context) + x


class ChannelAttention(nn.Module):
    """DANet's CAM: channel-to-channel attention on the features themselves, softmax over
    (row max - affinity) as mmseg computes it; `gamma` scales the result, added to the input."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = Scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (N, C, HW)
        energy = flat @ flat.transpose(1, 2)
        attention = (energy.max(dim=-1, keepdim=True)[0] - energy).softmax(dim=-1)
        return self.gamma((attention @ flat).reshape(x.shape)) + x


class DAHead(nn.Module):
    """mmseg's DAHead. Inference classifies the sum of both branches; in train mode each branch
    has its own classifier too (training-only, loss weight 1 each, as mmseg's DANet loss)."""

    training_only = ("pam_conv_seg", "cam_conv_seg")
    loss_weights = (1.0, 1.0, 1.0)

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, *, pam_channels: int = 64, in_index: int = -1, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.pam_in_conv = ConvBNReLU(in_channels, channels, 3, padding=1)
        self.pam = PositionAttention(channels, pam_channels)
        self.pam_out_conv = ConvBNReLU(channels, channels, 3, padding=1)
        self.pam_conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.cam_in_conv = ConvBNReLU(in_channels, channels, 3, padding=1)
        self.cam = ChannelAttention()
        self.cam_out_conv = ConvBNReLU(channels, channels, 3, padding=1)
        self.cam_conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = features[self.in_index]
        pam = self.pam_out_conv(self.pam(self.pam_in_conv(x)))
        cam = self.cam_out_conv(self.cam(self.cam_in_conv(x)))
        fused = self.conv_seg(self.dropout(pam + cam))
        if not self.training:
            return fused
        return fused, self.pam_conv_seg(self.dropout(pam)), self.cam_conv_seg(self.dropout(cam))


@register_architecture("danet_resnet")
def danet_resnet(
    *, depth: int = 50, num_classes: int = 19, auxiliary_head: bool = True, align_corners: bool = False
) -> EncoderDecoder:
    """DANet on a dilated ResNet-D8: mmseg's `danet_r{depth}-d8` (PAM key channels 64)."""
    channels, aux_channels = dilated_head_channels(depth)
    backbone = ResNet(depth)
    head = DAHead(backbone.out_channels[3], channels, num_classes, in_index=3)
    aux = auxiliary_fcn_head(backbone, aux_channels, num_classes) if auxiliary_head else None
    return EncoderDecoder(backbone, head, aux, align_corners=align_corners)
