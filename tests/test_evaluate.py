"""Evaluation loop: one process with workers, and 2 gloo processes giving the identical matrix."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from official_cityscapes import official_class_iou, official_evaluation, official_train_id_matrix
from segbench.cityscapes import CLASSES, CityscapesDataset, write_synthetic_cityscapes
from segbench.errors import SegbenchError
from segbench.evaluate import evaluate
from segbench.inference import InferenceSettings, normalize, predicted_labels
from segbench.metrics import confusion_matrix

SETTINGS = InferenceSettings(align_corners=False)


def _tiny_model() -> nn.Module:
    """Same weights in every process: logits at 1/4 of the input, like a segmentor at 1/8."""
    torch.manual_seed(0)
    return nn.Conv2d(3, 19, 5, stride=4, padding=2)


def _reference_matrix(dataset) -> torch.Tensor:
    model = _tiny_model().eval()
    matrix = torch.zeros(19, 19, dtype=torch.int64)
    for image, label, _ in (dataset[i] for i in range(len(dataset))):
        matrix += confusion_matrix(predicted_labels(model, image[None], SETTINGS)[0], label)
    return matrix


def test_single_process_with_workers(synthetic_cityscapes):
    dataset = CityscapesDataset(synthetic_cityscapes)
    result = evaluate(_tiny_model(), dataset, SETTINGS, batch_size=2, num_workers=2)
    assert torch.equal(result.confusion, _reference_matrix(dataset))
    labelled = sum(int((dataset[i][1] != 255).sum()) for i in range(len(dataset)))
    assert result.confusion.sum() == labelled
    assert result.num_images == 5 and result.is_synthetic and result.split == "val" and result.mode == "whole"
    assert result.world_size == 1 and result.dataset_root == str(synthetic_cityscapes)
    assert 0 < result.forward_time_s < result.wall_time_s and result.wall_to_forward > 1
    assert 0 <= result.metrics.miou <= 1 and math.isclose(result.images_per_s, 5 / result.wall_time_s)
    record = result.as_record()
    assert record["confusion"] == result.confusion.tolist() and record["mode"] == "whole"
    assert record["miou"] == pytest.approx(100 * result.metrics.miou)
    assert json.loads(json.dumps(record, allow_nan=False)) == record  # JSON-safe: NaN became null
    assert record["classes"] == list(CLASSES) and len(record["iou"]) == len(CLASSES)


def test_another_aspect_ratio_is_resized_keeping_it_and_scored_at_label_resolution(tmp_path, monkeypatch):
    # 48x80 (HxW) images, test size 32x64: by hand, f = min(64/80, 32/48) = 2/3, 80 * 2/3 = 53.3 -> 32x53
    root = write_synthetic_cityscapes(tmp_path / "data", cities=("ulm",), images_per_city=3, size=(48, 80))
    dataset = CityscapesDataset(root)
    settings = InferenceSettings(test_size=(32, 64))
    result = evaluate(_tiny_model(), dataset, settings, num_workers=0)

    model = _tiny_model().eval()
    predictions = []
    with torch.no_grad():
        for image, _, name in (dataset[i] for i in range(len(dataset))):
            small = F.interpolate(normalize(image[None], settings.mean, settings.std), (32, 53), mode="bilinear")
            logits = F.interpolate(model(small), (32, 53), mode="bilinear")  # to the network's input, as mmseg
            predictions.append((name, F.interpolate(logits, (48, 80), mode="bilinear").argmax(1)[0]))
    official = official_evaluation(predictions, [label for _, label in dataset.pairs], tmp_path, monkeypatch)
    np.testing.assert_array_equal(result.confusion.numpy(), official_train_id_matrix(official))
    np.testing.assert_allclose(result.metrics.iou, official_class_iou(official), rtol=0, atol=1e-6, equal_nan=True)
    assert result.confusion.sum() == sum(int((dataset[i][1] != 255).sum()) for i in range(len(dataset)))


class _Constant(nn.Module):
    """Predicts one class everywhere, at 1/4 of the input."""

    def __init__(self, predicted: int) -> None:
        super().__init__()
        self.predicted = predicted

    def forward(self, x):
        logits = x.new_zeros(x.shape[0], len(CLASSES), x.shape[2] // 4, x.shape[3] // 4)
        logits[:, self.predicted] = 1.0
        return logits


def test_record_scores_are_percent_and_null_where_a_class_has_none(synthetic_cityscapes):
    dataset = CityscapesDataset(synthetic_cityscapes)
    labels = torch.cat([dataset[i][1].flatten() for i in range(len(dataset))])
    labels = labels[labels != 255]
    present = sorted(set(labels.tolist()))
    absent = sorted(set(range(len(CLASSES))) - set(present))
    predicted = present[0]  # everywhere: its IoU is its share of the labelled pixels, its accuracy 100%
    share = 100 * int((labels == predicted).sum()) / labels.numel()
    result = evaluate(_Constant(predicted), dataset, SETTINGS, num_workers=0)
    record = json.loads(json.dumps(result.as_record(), allow_nan=False))
    assert record["unit"] == "percent" and absent and len(present) > 1
    assert record["iou"][predicted] == pytest.approx(share) and record["accuracy"][predicted] == pytest.approx(100)
    for c in present[1:]:  # labelled, never predicted
        assert record["iou"][c] == 0 and record["accuracy"][c] == 0
    for c in absent:  # in neither labels nor predictions: null, and left out of the means
        assert record["iou"][c] is None and record["accuracy"][c] is None
    assert record["miou"] == pytest.approx(share / len(present)) and record["macc"] == pytest.approx(100 / len(present))
    assert record["aacc"] == pytest.approx(share)


def _rank_main(rank: int, world_size: int, root: str, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        result = evaluate(_tiny_model(), CityscapesDataset(root), SETTINGS, num_workers=0)
        torch.save(None if result is None else (result.confusion, result.num_images), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one(synthetic_cityscapes, tmp_path):
    dataset = CityscapesDataset(synthetic_cityscapes)
    assert len(dataset) % 2 == 1, "an odd count checks that no image is padded in or counted twice"
    out = str(tmp_path / "result")
    mp.spawn(_rank_main, args=(2, str(synthetic_cityscapes), str(tmp_path / "rendezvous"), out), nprocs=2)
    confusion, num_images = torch.load(f"{out}.0", weights_only=True)
    assert torch.load(f"{out}.1", weights_only=True) is None
    assert num_images == 5
    single = evaluate(_tiny_model(), dataset, SETTINGS, num_workers=0)
    assert torch.equal(confusion, single.confusion)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_with_pinned_memory(synthetic_cityscapes):
    dataset = CityscapesDataset(synthetic_cityscapes)
    result = evaluate(_tiny_model(), dataset, SETTINGS, device="cuda", num_workers=2)
    labelled = sum(int((dataset[i][1] != 255).sum()) for i in range(len(dataset)))
    assert result.device == "cuda" and result.confusion.device.type == "cpu"
    assert result.confusion.sum() == labelled and 0 < result.forward_time_s < result.wall_time_s


def test_a_corrupt_label_read_in_a_worker_names_the_file(synthetic_cityscapes, tmp_path):
    root = shutil.copytree(synthetic_cityscapes, tmp_path / "copy")
    label = root / "gtFine/val/bochum/bochum_000001_000001_gtFine_labelIds.png"
    label.write_bytes(label.read_bytes()[:-40])  # header intact (the pair check passes), pixel data cut short
    dataset = CityscapesDataset(root)
    with pytest.raises(SegbenchError) as caught:
        evaluate(_tiny_model(), dataset, SETTINGS, num_workers=2)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{label}: unreadable image")
