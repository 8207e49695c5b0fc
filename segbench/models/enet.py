"""ENet (Paszke et al., 2016) in PaddleSeg 2.8's state_dict layout.

Initial block: a 3x3 stride-2 conv (13 channels) concatenated with a 3x3 stride-2 max-pool of the
image, BN, PReLU. Encoder bottlenecks use PReLU (one slope each, Paddle's `_weight`), the decoder's
ReLU; convs are bias-free. A bottleneck is 1x1 reduce (channels / 4), a 3x3 (dilated, or 5x1 then
1x5 "asymmetric") conv, 1x1 expand, each with BN and activation, dropout, added to its input.
Downsampling bottlenecks reduce with a 2x2 stride-2 conv, and their main branch is a 2x2 max-pool
zero-padded to the new width whose indices the upsampling bottlenecks unpool with (after a 1x1
conv-BN), beside a 2x2 transposed conv in the extension. A 3x3 stride-2 transposed conv to the
classes, sized to the input, gives full-resolution logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers.paddle_conv import PaddlePReLU
from segbench.models.registry import register_architecture


def activation(relu: bool) -> nn.Module:
    return nn.ReLU() if relu else PaddlePReLU()


def conv_bn_act(in_channels: int, out_channels: int, kernel_size, relu: bool | None, **conv_kwargs) -> nn.Sequential:
    """Bias-free conv, BN and (unless relu is None) the activation."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, bias=False, **conv_kwargs), nn.BatchNorm2d(out_channels)]
    return nn.Sequential(*layers, *([] if relu is None else [activation(relu)]))


class InitialBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, relu: bool) -> None:
        super().__init__()
        self.main_branch = nn.Conv2d(in_channels, out_channels - 3, 3, stride=2, padding=1, bias=False)
        self.ext_branch = nn.MaxPool2d(3, stride=2, padding=1)
        self.batch_norm = nn.BatchNorm2d(out_channels)
        self.out_activation = activation(relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_activation(self.batch_norm(torch.cat([self.main_branch(x), self.ext_branch(x)], dim=1)))


class RegularBottleneck(nn.Module):
    def __init__(
        self, channels: int, *, kernel_size: int = 3, padding: int = 1, dilation: int = 1, asymmetric: bool = False,
        dropout: float, relu: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        inner = channels // 4
        self.ext_conv1 = conv_bn_act(channels, inner, 1, relu)
        if asymmetric:
            self.ext_conv2 = nn.Sequential(
                *conv_bn_act(inner, inner, (kernel_size, 1), relu, padding=(padding, 0), dilation=dilation),
                *conv_bn_act(inner, inner, (1, kernel_size), relu, padding=(0, padding), dilation=dilation),
            )
        else:
            self.ext_conv2 = conv_bn_act(inner, inner, kernel_size, relu, padding=padding, dilation=dilation)
        self.ext_conv3 = conv_bn_act(inner, channels, 1, relu)
        self.ext_regul = nn.Dropout2d(dropout)
        self.out_activation = activation(relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_activation(x + self.ext_regul(self.ext_conv3(self.ext_conv2(self.ext_conv1(x)))))


class DownsamplingBottleneck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, *, dropout: float, relu: bool) -> None:
        super().__init__()
        inner = in_channels // 4
        self.ext_conv1 = conv_bn_act(in_channels, inner, 2, relu, stride=2)
        self.ext_conv2 = conv_bn_act(inner, inner, 3, relu, padding=1)
        self.ext_conv3 = conv_bn_act(inner, out_channels, 1, relu)
        self.ext_regul = nn.Dropout2d(dropout)
        self.out_activation = activation(relu)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        main, indices = F.max_pool2d(x, 2, 2, return_indices=True)
        ext = self.ext_regul(self.ext_conv3(self.ext_conv2(self.ext_conv1(x))))
        main = F.pad(main, (0, 0, 0, 0, 0, ext.shape[1] - main.shape[1]))
        return self.out_activation(main + ext), indices


class UpsamplingBottleneck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, *, dropout: float, relu: bool) -> None:
        super().__init__()
        inner = in_channels // 4
        self.main_conv1 = conv_bn_act(in_channels, out_channels, 1, None)
        self.ext_conv1 = conv_bn_act(in_channels, inner, 1, relu)
        self.ext_tconv1 = nn.ConvTranspose2d(inner, inner, 2, stride=2, bias=False)
        self.ext_tconv1_bnorm = nn.BatchNorm2d(inner)
        self.ext_tconv1_activation = activation(relu)
        self.ext_conv2 = conv_bn_act(inner, out_channels, 1, None)
        self.ext_regul = nn.Dropout2d(dropout)
        self.out_activation = activation(relu)

    def forward(self, x: torch.Tensor, indices: torch.Tensor, size: torch.Size) -> torch.Tensor:
        main = F.max_unpool2d(self.main_conv1(x), indices, 2, output_size=size)
        ext = self.ext_tconv1(self.ext_conv1(x), output_size=size)
        ext = self.ext_regul(self.ext_conv2(self.ext_tconv1_activation(self.ext_tconv1_bnorm(ext))))
        return self.out_activation(main + ext)


class ENet(nn.Module):
    """Logits at the input's resolution. Module names and order as PaddleSeg's (its state_dict)."""

    def __init__(self, num_classes: int, *, in_channels: int = 3, encoder_relu: bool = False, decoder_relu: bool = True) -> None:
        super().__init__()
        enc = {"relu": encoder_relu}
        self.initial_block = InitialBlock(in_channels, 16, encoder_relu)
        self.downsample1_0 = DownsamplingBottleneck(16, 64, dropout=0.01, **enc)
        for i in range(1, 5):
            setattr(self, f"regular1_{i}", RegularBottleneck(64, dropout=0.01, **enc))
        self.downsample2_0 = DownsamplingBottleneck(64, 128, dropout=0.1, **enc)
        self.middle_names = []  # stages 2 (numbered from 1, after its downsampling) and 3 (from 0): the same 8 bottlenecks
        for stage, first in ((2, 1), (3, 0)):
            kinds = ["regular", "dilated", "asymmetric", "dilated", "regular", "dilated", "asymmetric", "dilated"]
            dilations = iter((2, 4, 8, 16))
            for i, kind in enumerate(kinds, start=first):
                if kind == "regular":
                    block = RegularBottleneck(128, dropout=0.1, **enc)
                elif kind == "asymmetric":
                    block = RegularBottleneck(128, kernel_size=5, padding=2, asymmetric=True, dropout=0.1, **enc)
                else:
                    d = next(dilations)
                    block = RegularBottleneck(128, dilation=d, padding=d, dropout=0.1, **enc)
                setattr(self, f"{kind}{stage}_{i}", block)
                self.middle_names.append(f"{kind}{stage}_{i}")
        dec = {"relu": decoder_relu}
        self.upsample4_0 = UpsamplingBottleneck(128, 64, dropout=0.1, **dec)
        self.regular4_1 = RegularBottleneck(64, dropout=0.1, **dec)
        self.regular4_2 = RegularBottleneck(64, dropout=0.1, **dec)
        self.upsample5_0 = UpsamplingBottleneck(64, 16, dropout=0.1, **dec)
        self.regular5_1 = RegularBottleneck(16, dropout=0.1, **dec)
        self.transposed_conv = nn.ConvTranspose2d(16, num_classes, 3, stride=2, padding=1, bias=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.initial_block(image)
        stage1_size = x.shape[-2:]
        x, indices1 = self.downsample1_0(x)
        for i in range(1, 5):
            x = getattr(self, f"regular1_{i}")(x)
        stage2_size = x.shape[-2:]
        x, indices2 = self.downsample2_0(x)
        for name in self.middle_names:
            x = getattr(self, name)(x)
        x = self.regular4_2(self.regular4_1(self.upsample4_0(x, indices2, stage2_size)))
        x = self.regular5_1(self.upsample5_0(x, indices1, stage1_size))
        return self.transposed_conv(x, output_size=image.shape[-2:])


@register_architecture("enet")
def enet(*, num_classes: int = 19) -> ENet:
    """PaddleSeg's `enet_cityscapes_1024x512_80k` (PReLU encoder, ReLU decoder)."""
    return ENet(num_classes)
