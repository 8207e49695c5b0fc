"""Blocks shared by several architectures."""

from segbench.layers.conv import ConvBNReLU, resize

__all__ = ["ConvBNReLU", "resize"]
