"""OCRNet (Yuan et al., ECCV 2020): object-contextual representations, as mmsegmentation builds it.

A cascade of two heads (CascadeDecodeHeads): an FCN head predicts coarse classes, the OCR head
gathers one feature per class region (pixel features weighted by the softmax of that class's
logits over all pixels), lets every pixel attend to the K region features, and classifies the
pixel features fused with that object context. On HRNet both heads read the four levels
resized and concatenated; on a dilated ResNet the FCN head reads stage 3 and OCR stage 4.
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.layers import ConvBNReLU, head_input
from segbench.models.backbones.resnet import ResNet
from segbench.models.fcn import FCNHead
from segbench.models.hrnet import hrnet_backbone, hrnet_fcn_head
from segbench.models.registry import register_architecture
from segbench.models.segmentor import CascadeDecodeHeads, EncoderDecoder


class ObjectAttentionBlock(nn.Module):
    """mmseg's ObjectAttentionBlock (a SelfAttentionBlock, scale 1): queries from the pixels, keys and
    values from the K region features; scaled dot-product attention; out projection; then a 1x1
    bottleneck over [context, pixels]. Projections are 1x1 ConvBNReLU (two for query and key)."""

    def __init__(self, channels: int, ocr_channels: int) -> None:
        super().__init__()
        self.ocr_channels = ocr_channels
        self.key_project = nn.Sequential(ConvBNReLU(channels, ocr_channels, 1), ConvBNReLU(ocr_channels, ocr_channels, 1))
        self.query_project = nn.Sequential(ConvBNReLU(channels, ocr_channels, 1), ConvBNReLU(ocr_channels, ocr_channels, 1))
        self.value_project = ConvBNReLU(channels, ocr_channels, 1)
        self.out_project = ConvBNReLU(ocr_channels, channels, 1)
        self.bottleneck = ConvBNReLU(channels * 2, channels, 1)

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """pixels: N x C x H x W; regions: N x C x K x 1. The permutes and matmuls follow mmseg's
        order, so the logits match its bit for bit."""
        n = pixels.shape[0]
        query = self.query_project(pixels).flatten(2).permute(0, 2, 1).contiguous()  # N x HW x O
        key = self.key_project(regions).flatten(2)  # N x O x K
        value = self.value_project(regions).flatten(2).permute(0, 2, 1).contiguous()  # N x K x O
        similarity = torch.matmul(query, key) * self.ocr_channels**-0.5
        context = torch.matmul(similarity.softmax(dim=-1), value)  # N x HW x O
        context = context.permute(0, 2, 1).contiguous().reshape(n, -1, *pixels.shape[2:])
        return self.bottleneck(torch.cat([self.out_project(context), pixels], dim=1))


class OCRHead(nn.Module):
    """mmseg's OCRHead: a 3x3 ConvBNReLU to `channels`, the spatial gather, the object attention,
    dropout and the classifier. Called with the features and the previous head's logits."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        ocr_channels: int,
        num_classes: int,
        *,
        in_index: int | tuple[int, ...],
        dropout: float = 0.0,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.align_corners = align_corners
        self.bottleneck = ConvBNReLU(in_channels, channels, 3, padding=1)
        self.object_context_block = ObjectAttentionBlock(channels, ocr_channels)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    @staticmethod
    def spatial_gather(pixels: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
        """mmseg's SpatialGatherModule (scale 1): per class, the pixel features averaged with the
        softmax of its logits over all pixels; N x C x K x 1."""
        n, k = class_logits.shape[:2]
        probs = class_logits.reshape(n, k, -1).softmax(dim=2)  # N x K x HW
        pixels = pixels.reshape(n, pixels.shape[1], -1).permute(0, 2, 1)  # N x HW x C
        return torch.matmul(probs, pixels).permute(0, 2, 1).contiguous().unsqueeze(3)

    def forward(self, features: list[torch.Tensor], class_logits: torch.Tensor) -> torch.Tensor:
        pixels = self.bottleneck(head_input(features, self.in_index, self.align_corners))
        context = self.object_context_block(pixels, self.spatial_gather(pixels, class_logits))
        return self.conv_seg(self.dropout(context))


@register_architecture("ocrnet_hrnet")
def ocrnet_hrnet(*, variant: str = "w18", num_classes: int = 19, align_corners: bool = False) -> EncoderDecoder:
    """OCRNet on HRNetV2-`variant` (w18s, w18, w48): mmseg's `ocrnet_hr18s/hr18/hr48` (OCR width 512,
    OCR attention width 256, no dropout); logits at stride 4."""
    backbone = hrnet_backbone(variant)
    fcn = hrnet_fcn_head(backbone, num_classes, align_corners=align_corners)
    ocr = OCRHead(sum(backbone.out_channels), 512, 256, num_classes, in_index=(0, 1, 2, 3), align_corners=align_corners)
    return EncoderDecoder(backbone, CascadeDecodeHeads(fcn, ocr), align_corners=align_corners)


@register_architecture("ocrnet_resnet")
def ocrnet_resnet(*, depth: int = 101, num_classes: int = 19, align_corners: bool = False) -> EncoderDecoder:
    """OCRNet on a dilated ResNetV1c (output stride 8): mmseg's `ocrnet_r101-d8`. The FCN head (256
    wide) reads stage 3, OCR stage 4, both with dropout 0.1; logits at stride 8."""
    backbone = ResNet(depth)
    fcn = FCNHead(backbone.out_channels[2], 256, num_classes, in_index=2, num_convs=1, concat_input=False)
    ocr = OCRHead(backbone.out_channels[3], 512, 256, num_classes, in_index=3, dropout=0.1, align_corners=align_corners)
    return EncoderDecoder(backbone, CascadeDecodeHeads(fcn, ocr), align_corners=align_corners)
