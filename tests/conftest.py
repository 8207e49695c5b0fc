"""Shared fixtures: a small zoo of toy models for fast end-to-end tests."""

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

TOY_ZOO = """\
Collections:
- Name: Toy
Models:
- Name: toy_a
  In Collection: Toy
  Metadata:
    Architecture: [Tiny, Toy]
    Crop Size: [32, 64]
    Batch Size: 2
    Schedule: 1k iters
    EMA: false
  Results:
    Dataset: Cityscapes
    Metrics: {mIoU: 50.5, mIoU(ms+flip): 51.0}
    Source: made up for tests
  Build:
    callable: toy_models:tiny_segmentor
    kwargs: {num_classes: 4}
  Test:
    size: [32, 64]
- Name: toy_b
  In Collection: Toy
  Results:
    Dataset: Cityscapes
    Metrics: {mIoU: 60.0}
  Build:
    callable: toy_models:tiny_segmentor
    kwargs: {num_classes: 6}
  Test:
    size: [32, 64]
"""


@pytest.fixture
def toy_zoo(tmp_path: Path) -> Path:
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "toy.yaml").write_text(TOY_ZOO)
    return zoo
