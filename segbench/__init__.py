"""segbench: benchmark semantic-segmentation models the way model zoos report them."""

__version__ = "0.1.0"
