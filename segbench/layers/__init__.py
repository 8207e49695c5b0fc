"""Blocks shared by several architectures."""

from segbench.layers.conv import ConvBNReLU, ConvNoNorm, resize
from segbench.layers.ppm import PyramidPooling
from segbench.layers.separable import DepthwiseSeparableConvBNReLU

__all__ = ["ConvBNReLU", "ConvNoNorm", "DepthwiseSeparableConvBNReLU", "PyramidPooling", "resize"]
