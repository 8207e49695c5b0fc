"""How counts are written for people (page, terminal summary, LaTeX): one rule everywhere. No torch here."""

from __future__ import annotations

import math


def fixed(value: float, decimals: int = 2, significant: int = 3) -> str:
    """`decimals` fixed decimals, more where a small value needs them to keep `significant` digits:
    260 params are '0.000260' M, not '0.00'; 48.98 M stays '48.98'."""
    if value:
        decimals = max(decimals, significant - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"
