"""Blocks shared by several architectures."""

from segbench.layers.conv import ConvAct, ConvBNReLU, resize
from segbench.layers.ppm import PyramidPooling
from segbench.layers.separable import DepthwiseSeparableConvBNReLU

__all__ = ["ConvAct", "ConvBNReLU", "DepthwiseSeparableConvBNReLU", "PyramidPooling", "resize"]
