"""Shared fixtures: a synthetic dataset in the exact Cityscapes layout."""

from __future__ import annotations

import pytest

from segbench.cityscapes import write_synthetic_cityscapes


@pytest.fixture(scope="session")
def synthetic_cityscapes(tmp_path_factory):
    """Root of a 3-city, 5-image (one city has 1) val split of 64x128 (HxW) images; read-only."""
    root = tmp_path_factory.mktemp("cityscapes")
    write_synthetic_cityscapes(root, cities=("aachen", "bochum"), images_per_city=2, seed=0)
    write_synthetic_cityscapes(root, cities=("cologne",), images_per_city=1, seed=1)
    return root
