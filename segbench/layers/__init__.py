"""Blocks shared by several architectures."""

from segbench.layers.conv import BNReLUConv, ConvBNReLU, ConvNoNorm, head_input, resize
from segbench.layers.inverted_residual import InvertedResidual
from segbench.layers.ppm import DAPPM, PAPPM, PyramidPooling
from segbench.layers.self_attention import SelfAttentionBlock
from segbench.layers.separable import DepthwiseSeparableConvBNReLU

__all__ = [
    "BNReLUConv", "ConvBNReLU", "ConvNoNorm", "DAPPM", "DepthwiseSeparableConvBNReLU", "InvertedResidual", "PAPPM",
    "PyramidPooling", "SelfAttentionBlock", "head_input", "resize",
]  # fmt: skip
