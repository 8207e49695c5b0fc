"""Latency and peak memory of one prediction (forward + resize to the input + argmax).

Follows mmsegmentation's benchmark: batch 1, cudnn.benchmark off and deterministic on, warm-up
iterations discarded, the device synchronized before and after every timed iteration, data
loading excluded (the input tensor lives on the device before timing starts). Memory is
measured in a pass of its own so that the allocator's peak is not mixed with timing.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

Predict = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def cudnn_flags(*, benchmark: bool = False, deterministic: bool = True) -> Iterator[None]:
    """Set cudnn.benchmark/deterministic for the block and restore the caller's values after."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, deterministic
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work; a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_predictions(
    predict: Predict,
    image: torch.Tensor,
    *,
    warmup: int,
    iterations: int,
    on_step: Callable[[], None] | None = None,
) -> list[float]:
    """Seconds per prediction for `iterations` timed runs after `warmup` discarded ones."""
    device = image.device
    samples: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + iterations):
            synchronize(device)
            start = time.perf_counter()
            predict(image)
            synchronize(device)
            elapsed = time.perf_counter() - start
            if i >= warmup:
                samples.append(elapsed)
            if on_step is not None:
                on_step()
    return samples


def peak_memory(predict: Predict, image: torch.Tensor) -> dict:
    """CUDA: bytes held by the model and inputs before, and max_memory_allocated during, one prediction."""
    device = image.device
    if device.type != "cuda":
        return {"measured": False, "reason": f"not measured on {device.type}: max_memory_allocated is CUDA-only"}
    with torch.inference_mode():
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        predict(image)
        synchronize(device)
        return {
            "measured": True,
            "static_bytes": int(before),
            "peak_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
            "peak_reserved_bytes": int(torch.cuda.max_memory_reserved(device)),
        }
