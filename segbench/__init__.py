"""segbench: benchmark semantic-segmentation models the way model zoos report them."""

from pathlib import Path

__version__ = "0.1.0"

# The checkout that holds zoo/, templates/ and results/ next to this package (an editable install).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
