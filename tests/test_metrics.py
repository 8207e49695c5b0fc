"""Confusion matrix and scores: a hand-computed case, and cityscapesScripts on the same predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from official_cityscapes import official_class_iou, official_evaluation, official_train_id_matrix
from segbench.cityscapes import CityscapesDataset
from segbench.metrics import confusion_matrix, segmentation_metrics


def test_confusion_matrix_counts_and_ignores():
    target = torch.tensor([[0, 0, 1], [255, 2, 2]])
    prediction = torch.tensor([[0, 1, 1], [2, 2, 0]])
    expected = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    matrix = confusion_matrix(prediction, target, num_classes=3)
    assert matrix.dtype == torch.int64
    assert torch.equal(matrix, expected)


def test_hand_computed_scores():
    # rows: ground truth, columns: prediction. Class 2 is absent everywhere (no score); class 3 is
    # predicted once but absent from the ground truth (IoU 0, counted; accuracy undefined).
    matrix = torch.tensor([[3, 1, 0, 1], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    m = segmentation_metrics(matrix)
    assert m.iou[:2] == pytest.approx((3 / 5, 2 / 3)) and math.isnan(m.iou[2]) and m.iou[3] == 0
    assert m.accuracy[:2] == pytest.approx((3 / 5, 1.0)) and math.isnan(m.accuracy[2]) and math.isnan(m.accuracy[3])
    assert m.miou == pytest.approx((3 / 5 + 2 / 3 + 0) / 3)
    assert m.macc == pytest.approx((3 / 5 + 1) / 2)
    assert m.aacc == pytest.approx(5 / 7)


def test_empty_matrix_has_no_scores():
    m = segmentation_metrics(torch.zeros(19, 19, dtype=torch.int64))
    assert math.isnan(m.miou) and math.isnan(m.macc) and math.isnan(m.aacc)


def _predictions(dataset, seed):
    """Right on ~60% of pixels, otherwise a class among 0..9.

    On the fixture's ground truth this leaves sky and car absent from both (no IoU) and wall,
    pole, ... predicted but absent from the ground truth (IoU 0).
    """
    generator = torch.Generator().manual_seed(seed)
    for _, label, name in (dataset[i] for i in range(len(dataset))):
        noise = torch.randint(0, 10, label.shape, generator=generator)
        keep = (torch.rand(label.shape, generator=generator) < 0.6) & (label != 255)
        yield torch.where(keep, label.long(), noise), label, name


def test_equals_cityscapesscripts(synthetic_cityscapes, tmp_path, monkeypatch):
    dataset = CityscapesDataset(synthetic_cityscapes)
    matrix = torch.zeros(19, 19, dtype=torch.int64)
    predictions = []
    for prediction, label, name in _predictions(dataset, seed=0):
        matrix += confusion_matrix(prediction, label)
        predictions.append((name, prediction))
    official = official_evaluation(predictions, [label for _, label in dataset.pairs], tmp_path, monkeypatch)

    np.testing.assert_array_equal(official_train_id_matrix(official), matrix.numpy())
    ours = segmentation_metrics(matrix)
    theirs = official_class_iou(official)
    assert any(math.isnan(v) for v in theirs), "the case must include a class absent from both"
    np.testing.assert_allclose(ours.iou, theirs, rtol=0, atol=1e-6, equal_nan=True)
    assert ours.miou == pytest.approx(official["averageScoreClasses"], abs=1e-6)
