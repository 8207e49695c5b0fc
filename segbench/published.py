"""Published speeds beside measured ones: which published figure a measurement can be compared with, what differs
when none can, and the rank correlation of measured against published relative speeds. No torch here.

A published FPS was timed on another GPU, often by another script: only its ratios to the other figures of the same
table carry over to the user's GPU, and only when the measurement followed the same protocol at the same input size.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from segbench.manifest import PublishedSpeed

_PRECISION_OF_DTYPE = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def size_text(size: tuple[int, int] | list[int]) -> str:
    return "×".join(map(str, size))


def chosen_figure(speeds: tuple[PublishedSpeed, ...], protocol: str | None, size: str | None) -> PublishedSpeed | None:
    """The figure to set beside a measurement: same protocol and input size, else same protocol, else same input, else
    the first; the manifest's order breaks ties. Without a measurement (protocol None), the first."""
    ranked = sorted(speeds, key=lambda s: (s.protocol != protocol, size_text(s.input_size) != size))
    return ranked[0] if ranked else None


def _same_gpu(published: str, device: str) -> bool:
    """Whether a published GPU name ('V100 16GB', 'GTX 1080Ti') names the measuring device ('Tesla V100-SXM2-16GB'): its
    model number (the first word with a digit) appears in the device's name, ignoring case, spaces and dashes."""
    model = next((word for word in published.split() if re.search(r"\d", word)), None)
    squash = lambda text: re.sub(r"[^a-z0-9]", "", text.lower())  # noqa: E731
    return model is not None and squash(model) in squash(device)


def _same_backend(published: str, backend: str) -> bool:
    """A published backend ('PyTorch', 'ONNX Runtime', 'Paddle Inference', ...) against a record's eager, compile or onnxruntime."""
    name = published.lower().replace(" ", "")
    return "onnxruntime" in name if backend == "onnxruntime" else name == "pytorch"


def differences(figure: PublishedSpeed, row: dict[str, Any]) -> list[str]:
    """What differs between a published figure and a measured row (its protocol, measured_size, device_name, backend
    and dtype columns): 'protocol ddrnet vs mmseg', 'GPU V100 vs Intel Xeon', ... (published first)."""
    measured_precision = _PRECISION_OF_DTYPE.get(row.get("dtype") or "float32", row.get("dtype"))
    checks = [
        ("protocol", figure.protocol, row["protocol"], figure.protocol == row["protocol"]),
        ("input", size_text(figure.input_size), row["measured_size"], size_text(figure.input_size) == row["measured_size"]),
        ("GPU", figure.gpu, row["device_name"], _same_gpu(figure.gpu, row["device_name"] or "")),
        ("backend", figure.backend, row["backend"], _same_backend(figure.backend, row["backend"])),
        ("precision", figure.precision, measured_precision, figure.precision == measured_precision),
    ]
    return [f"{what} {published} vs {measured}" for what, published, measured, same in checks if not same]


def published_columns(speeds: tuple[PublishedSpeed, ...], row: dict[str, Any]) -> dict[str, Any]:
    """The frame's published_* columns of one row: the chosen figure, and for a measured row whether it is comparable
    (same protocol and input size) and what differs from it."""
    measured = row.get("status") == "ok" and row.get("fps") is not None
    figure = chosen_figure(speeds, row.get("protocol") if measured else None, row.get("measured_size"))
    if figure is None:
        return {}
    differs = differences(figure, row) if measured else []
    return {
        "published_fps": figure.images_per_second,
        "published_ms": figure.latency_ms,
        "published_protocol": figure.protocol,
        "published_input": size_text(figure.input_size),
        "published_gpu": figure.gpu,
        "published_backend": figure.backend,
        "published_precision": figure.precision,
        "published_source": figure.source,
        "published_comparable": measured and figure.protocol == row["protocol"] and size_text(figure.input_size) == row["measured_size"],
        "published_differs": "; ".join(differs) or None,
        "published_figures": len(speeds),
    }


def rank_correlation(a: pd.Series, b: pd.Series) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks, ties given their mean rank."""
    return float(a.rank().corr(b.rank()))
