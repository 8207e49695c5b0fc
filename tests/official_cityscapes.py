"""cityscapesScripts' pixel-level evaluation of trainId predictions: the reference segbench's scores must equal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segbench.cityscapes import CLASSES, TRAIN_ID_TO_LABEL_ID


def official_evaluation(predictions, ground_truth_files, folder, monkeypatch) -> dict:
    """The official script's result for (name, (H, W) trainId tensor) predictions, each written as a
    labelIds PNG in `folder`, against the label files in the same order; skips without the package."""
    evaluation = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    to_label_id = torch.tensor(TRAIN_ID_TO_LABEL_ID, dtype=torch.uint8)
    prediction_files = []
    for name, prediction in predictions:
        path = folder / f"{name.split('/')[1]}_pred.png"
        Image.fromarray(to_label_id[prediction].numpy()).save(path)
        prediction_files.append(str(path))
    args = evaluation.args
    for field, value in (("evalInstLevelScore", False), ("JSONOutput", False), ("quiet", True)):
        monkeypatch.setattr(args, field, value)
    return evaluation.evaluateImgLists(prediction_files, [str(f) for f in ground_truth_files], args)


def official_train_id_matrix(official: dict) -> np.ndarray:
    """The official confusion matrix (labelIds) cut to the 19 trainIds, rows ground truth."""
    ids = np.array(TRAIN_ID_TO_LABEL_ID)
    return np.array(official["confMatrix"])[np.ix_(ids, ids)]


def official_class_iou(official: dict) -> list[float]:
    """Per-class IoU in trainId order, NaN for a class absent from both prediction and labels."""
    return [official["classScores"][name] for name in CLASSES]
