"""Blocks shared by several architectures."""

from segbench.layers.conv import ConvBNReLU, resize
from segbench.layers.inverted_residual import InvertedResidual
from segbench.layers.ppm import PyramidPooling
from segbench.layers.separable import DepthwiseSeparableConvBNReLU

__all__ = ["ConvBNReLU", "DepthwiseSeparableConvBNReLU", "InvertedResidual", "PyramidPooling", "resize"]
