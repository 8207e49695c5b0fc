"""Blocks shared by several architectures."""

from segbench.layers.conv import BNReLUConv, ConvBNReLU, ConvNoNorm, resize
from segbench.layers.ppm import DAPPM, PAPPM, PyramidPooling
from segbench.layers.separable import DepthwiseSeparableConvBNReLU

__all__ = ["BNReLUConv", "ConvBNReLU", "ConvNoNorm", "DAPPM", "DepthwiseSeparableConvBNReLU", "PAPPM", "PyramidPooling", "resize"]
