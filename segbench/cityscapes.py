"""Cityscapes on disk: the official layout, labelIds -> trainIds, a torch Dataset, a synthetic stand-in.

Layout (as the official cityscapesScripts expect it):
    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
A `_gtFine_labelTrainIds.png` next to the labelIds file (as mmsegmentation's converter writes it)
is read instead when present. The label mapping follows cityscapesScripts' `helpers/labels.py`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from segbench.errors import SegbenchError, located

IGNORE_INDEX = 255

# The 19 evaluated classes in trainId order, each with its labelId in the official table.
CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
TRAIN_ID_TO_LABEL_ID: tuple[int, ...] = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

SYNTHETIC_MARKER = "SEGBENCH_SYNTHETIC"
"""File at the root of a synthetic dataset: numbers measured on it are demo numbers, not Cityscapes mIoU."""

_IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
_TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"


def _lookup_table(pairs) -> np.ndarray:
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for source, target in pairs:
        table[source] = target
    return table


LABEL_ID_TO_TRAIN_ID = _lookup_table((label_id, t) for t, label_id in enumerate(TRAIN_ID_TO_LABEL_ID))
"""256-entry table: the 19 evaluated labelIds to trainIds 0..18, every other value to 255."""

_TRAIN_ID_CLEANUP = _lookup_table((t, t) for t in range(len(CLASSES)))
"""Keeps trainIds 0..18 and sends anything else in a labelTrainIds file to 255."""


def dataset_root(root: str | os.PathLike | None = None) -> Path:
    """`root` if given, else $CITYSCAPES_DATASET (the variable the official scripts read)."""
    if root is None:
        root = os.environ.get("CITYSCAPES_DATASET")
        if not root:
            raise SegbenchError(
                "Cityscapes root: not given and $CITYSCAPES_DATASET is unset; pass the folder that holds "
                "leftImg8bit/ and gtFine/"
            )
    return Path(root)


def _label_path(image_path: Path, image_root: Path, label_root: Path) -> Path:
    """The label of an image: labelTrainIds when present, else labelIds; raises if neither exists."""
    stem = image_path.name[: -len(_IMAGE_SUFFIX)]
    folder = label_root / image_path.parent.relative_to(image_root)
    for suffix in (_TRAIN_IDS_SUFFIX, _LABEL_IDS_SUFFIX):
        candidate = folder / (stem + suffix)
        if candidate.is_file():
            return candidate
    raise SegbenchError(f"{located(image_path)}: no label {folder / (stem + _LABEL_IDS_SUFFIX)}; is gtFine complete?")


def _header(path: Path, field: str) -> tuple[tuple[int, int], str]:
    """(H, W) and PIL mode, read from the file header only."""
    try:
        with Image.open(path) as img:
            return (img.height, img.width), img.mode
    except (OSError, ValueError) as exc:
        raise SegbenchError(f"{located(path, field=field)}: unreadable image ({exc})") from None


def _check_pair(image_path: Path, label_path: Path) -> None:
    image_size, _ = _header(image_path, "leftImg8bit")
    label_size, label_mode = _header(label_path, "gtFine")
    if label_mode not in ("L", "P"):
        raise SegbenchError(f"{located(label_path, field='mode')}: label is {label_mode!r}, expected 8-bit single channel")
    if image_size != label_size:
        raise SegbenchError(
            f"{located(label_path, field='size')}: label is {label_size[0]}x{label_size[1]} (HxW) but "
            f"{image_path.name} is {image_size[0]}x{image_size[1]}"
        )


def cityscapes_pairs(root: str | os.PathLike | None = None, split: str = "val") -> list[tuple[Path, Path]]:
    """Sorted (image, label) paths of a split, each pair checked from its headers (size, mode, readable)."""
    root = dataset_root(root)
    image_root = root / "leftImg8bit" / split
    label_root = root / "gtFine" / split
    for folder in (image_root, label_root):
        if not folder.is_dir():
            raise SegbenchError(f"{located(folder)}: missing; expected the Cityscapes layout under {root}")
    images = sorted(image_root.glob(f"*/*{_IMAGE_SUFFIX}"))
    if not images:
        raise SegbenchError(f"{located(image_root)}: no */*{_IMAGE_SUFFIX} files")
    pairs = [(image, _label_path(image, image_root, label_root)) for image in images]
    for image, label in pairs:
        _check_pair(image, label)
    return pairs


def dataset_fingerprint(root: Path, pairs: list[tuple[Path, Path]]) -> str:
    """sha256 of every pair's paths (relative to `root`), sizes and mtimes, and of the synthetic marker's presence.

    Cheap (no pixel is read), and it changes when a file is added, removed, replaced or rewritten.
    """
    digest = hashlib.sha256(f"synthetic={(root / SYNTHETIC_MARKER).is_file()}\n".encode())
    for path in (p for pair in pairs for p in pair):
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _load(path: Path, mode: str | None) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode) if mode else img)
    except (OSError, ValueError) as exc:
        raise SegbenchError(f"{located(path)}: unreadable image ({exc})") from None


class CityscapesDataset(Dataset):
    """(uint8 RGB image (3, H, W), uint8 trainId label (H, W), name) per image of a split.

    Images stay uint8 so that workers only decode and the device normalizes; the name is
    `<city>/<city>_<seq>_<frame>`, unique within a split.
    """

    def __init__(self, root: str | os.PathLike | None = None, split: str = "val") -> None:
        self.root = dataset_root(root)
        self.split = split
        self.pairs = cityscapes_pairs(self.root, split)
        self.is_synthetic = (self.root / SYNTHETIC_MARKER).is_file()

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        image_path, label_path = self.pairs[index]
        image = _load(image_path, "RGB")
        label = _load(label_path, None)
        table = _TRAIN_ID_CLEANUP if label_path.name.endswith(_TRAIN_IDS_SUFFIX) else LABEL_ID_TO_TRAIN_ID
        name = f"{image_path.parent.name}/{image_path.name[: -len(_IMAGE_SUFFIX)]}"
        return torch.from_numpy(image.transpose(2, 0, 1).copy()), torch.from_numpy(table[label]), name


def write_synthetic_cityscapes(
    root: str | os.PathLike,
    *,
    split: str = "val",
    cities: tuple[str, ...] = ("aachen", "bochum", "cologne"),
    images_per_city: int = 2,
    size: tuple[int, int] = (64, 128),
    seed: int = 0,
) -> Path:
    """Write a small fake dataset in the exact Cityscapes layout, deterministic from `seed`.

    Labels are labelIds: a background class plus rectangles of random ids 0..33, so evaluated,
    ignored (void, parking, guard rail, ...) and absent classes all occur. Each labelId gets a
    random colour and the image is that colour plus noise, so a model can learn something.
    The marker file keeps anything measured here from passing for a Cityscapes result.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    height, width = size
    palette = rng.integers(0, 256, size=(34, 3))
    for c, city in enumerate(cities):
        for i in range(images_per_city):
            label = np.full((height, width), rng.integers(0, 34), dtype=np.uint8)
            for _ in range(6):
                y1, y2 = np.sort(rng.integers(0, height + 1, size=2))
                x1, x2 = np.sort(rng.integers(0, width + 1, size=2))
                label[y1:y2, x1:x2] = rng.integers(0, 34)
            noise = rng.integers(-20, 21, size=(height, width, 3))
            image = np.clip(palette[label] + noise, 0, 255).astype(np.uint8)
            stem = f"{city}_{c:06d}_{i:06d}"
            for kind, suffix, array in (("leftImg8bit", _IMAGE_SUFFIX, image), ("gtFine", _LABEL_IDS_SUFFIX, label)):
                folder = root / kind / split / city
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(folder / (stem + suffix))
    (root / SYNTHETIC_MARKER).write_text("Synthetic data written by segbench; results on it are demo numbers.\n")
    return root
