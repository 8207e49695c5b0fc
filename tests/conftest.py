"""Make the tests import the segbench of this checkout.

The venv may hold an editable install of another worktree; the `pytest` script does not put
the repository root on sys.path, so without this the tests would silently test that one.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
