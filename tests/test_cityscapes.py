"""Cityscapes layout, label mapping against the official table, pair checks, synthetic writer."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from segbench.cityscapes import (
    CLASSES,
    LABEL_ID_TO_TRAIN_ID,
    SYNTHETIC_MARKER,
    CityscapesDataset,
    cityscapes_pairs,
    write_synthetic_cityscapes,
)
from segbench.errors import SegbenchError


def test_label_table_matches_cityscapesscripts():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    expected = np.full(256, 255, dtype=np.uint8)
    for label in labels.labels:
        if label.id >= 0 and 0 <= label.trainId < 19:
            expected[label.id] = label.trainId
    np.testing.assert_array_equal(LABEL_ID_TO_TRAIN_ID, expected)
    assert CLASSES == tuple(labels.trainId2label[t].name for t in range(19))


def test_dataset_items(synthetic_cityscapes):
    dataset = CityscapesDataset(synthetic_cityscapes, "val")
    assert len(dataset) == 5 and dataset.is_synthetic
    image, label, name = dataset[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 128)
    assert label.dtype == torch.uint8 and label.shape == (64, 128)
    assert name == "aachen/aachen_000000_000000"
    label_ids = np.asarray(Image.open(dataset.pairs[0][1]))
    np.testing.assert_array_equal(label.numpy(), LABEL_ID_TO_TRAIN_ID[label_ids])
    values = set(torch.cat([dataset[i][1].flatten() for i in range(len(dataset))]).unique().tolist())
    assert 255 in values and len(values - {255}) >= 3 and values <= set(range(19)) | {255}


def test_root_from_environment(synthetic_cityscapes, monkeypatch):
    monkeypatch.setenv("CITYSCAPES_DATASET", str(synthetic_cityscapes))
    assert CityscapesDataset().root == synthetic_cityscapes
    monkeypatch.delenv("CITYSCAPES_DATASET")
    with pytest.raises(SegbenchError, match="CITYSCAPES_DATASET"):
        CityscapesDataset()


def test_writer_is_deterministic(tmp_path):
    first = write_synthetic_cityscapes(tmp_path / "a", images_per_city=1, seed=3)
    second = write_synthetic_cityscapes(tmp_path / "b", images_per_city=1, seed=3)
    for (image_a, label_a), (image_b, label_b) in zip(cityscapes_pairs(first), cityscapes_pairs(second)):
        np.testing.assert_array_equal(np.asarray(Image.open(image_a)), np.asarray(Image.open(image_b)))
        np.testing.assert_array_equal(np.asarray(Image.open(label_a)), np.asarray(Image.open(label_b)))
    assert (first / SYNTHETIC_MARKER).is_file()


def test_train_ids_file_is_preferred(tmp_path):
    root = write_synthetic_cityscapes(tmp_path, cities=("ulm",), images_per_city=1)
    (image_path, label_path), = cityscapes_pairs(root)
    train_ids = np.full((64, 128), 255, dtype=np.uint8)
    train_ids[:, :10] = 4
    train_ids[0, 0] = 200  # not a trainId: must become 255
    Image.fromarray(train_ids).save(str(label_path).replace("_labelIds", "_labelTrainIds"))
    label = CityscapesDataset(root)[0][1]
    assert label[0, 0] == 255 and label[1, 0] == 4 and label[0, 10] == 255


def _copy(root, tmp_path):
    return shutil.copytree(root, tmp_path / "copy")


def test_missing_label_names_the_file(synthetic_cityscapes, tmp_path):
    root = _copy(synthetic_cityscapes, tmp_path)
    (root / "gtFine/val/bochum/bochum_000001_000001_gtFine_labelIds.png").unlink()
    with pytest.raises(SegbenchError, match="bochum_000001_000001_leftImg8bit.png.*no label"):
        cityscapes_pairs(root)


def test_size_mismatch_names_the_file(synthetic_cityscapes, tmp_path):
    root = _copy(synthetic_cityscapes, tmp_path)
    path = root / "gtFine/val/aachen/aachen_000000_000001_gtFine_labelIds.png"
    Image.fromarray(np.zeros((32, 128), dtype=np.uint8)).save(path)
    with pytest.raises(SegbenchError, match=r"aachen_000000_000001_gtFine_labelIds.png: field 'size'"):
        cityscapes_pairs(root)


def test_unreadable_file_names_the_file(synthetic_cityscapes, tmp_path):
    root = _copy(synthetic_cityscapes, tmp_path)
    path = root / "leftImg8bit/val/cologne/cologne_000000_000000_leftImg8bit.png"
    path.write_bytes(b"not a png")
    with pytest.raises(SegbenchError, match="cologne_000000_000000_leftImg8bit.png.*unreadable"):
        cityscapes_pairs(root)


def test_missing_split_is_an_error(synthetic_cityscapes):
    with pytest.raises(SegbenchError, match="leftImg8bit/train: missing"):
        cityscapes_pairs(synthetic_cityscapes, "train")
