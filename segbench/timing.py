"""Latency and peak memory of one prediction, timed in three stages as PaddleSeg reports them.

Stages: preprocessing (uint8 image → normalized float on the device), forward (the network;
sliding windows included in slide mode), postprocessing (logits resized to the input, argmax).
The headline sample is forward + postprocessing, as mmsegmentation's benchmark times it:
batch 1, cudnn.benchmark off and deterministic on, the device synchronized before and after,
wall clock (perf_counter); data loading excluded (the image is copied to the device before the
clock starts). On CUDA the same span is also timed with CUDA events, and the stages come from
events so that no synchronization is added inside the timed span. Memory is measured in a pass
of its own so that the allocator's peak is not mixed with timing.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from segbench.inference import InferenceSettings, normalize, slide_logits
from segbench.layers import resize

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
"""--dtype choices; fp16 and bf16 run the forward pass under torch.autocast."""

Stage = Callable[[torch.Tensor], torch.Tensor]


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


@dataclass(frozen=True)
class PredictionStages:
    preprocess: Stage  # uint8 (1, 3, H, W) on the device -> normalized float
    forward: Stage  # normalized image -> logits
    postprocess: Stage  # logits -> (1, H, W) labels at the input size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.postprocess(self.forward(self.preprocess(image)))


def prediction_stages(
    model: nn.Module | Callable, test: InferenceSettings, *, dtype: str = "fp32", channels_last: bool = False
) -> PredictionStages:
    """The three stages of one prediction under the given precision and memory format.

    `model` may be a torch.compile'd module. In slide mode the per-window resize is part of the
    forward stage (it is how the windows are merged); postprocessing is then the argmax alone.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")

    def preprocess(image: torch.Tensor) -> torch.Tensor:
        x = normalize(image, test.mean, test.std)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def forward(x: torch.Tensor) -> torch.Tensor:
        precision = nullcontext() if dtype == "fp32" else torch.autocast(x.device.type, dtype=DTYPES[dtype])
        with precision:
            if test.mode == "slide":
                return slide_logits(model, x, test.crop_size, test.stride, test.align_corners)
            return model(x)

    def postprocess(logits: torch.Tensor) -> torch.Tensor:
        return resize(logits, test.test_size or tuple(logits.shape[-2:]), test.align_corners).argmax(dim=1)

    return PredictionStages(preprocess, forward, postprocess)


def time_predictions(
    stages: PredictionStages,
    images: list[torch.Tensor],
    device: torch.device,
    *,
    iterations: int,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Seconds per prediction over `iterations` runs, cycling through `images` (uint8, any device).

    Returns `samples` (wall clock, forward + postprocessing), on CUDA `cuda_event_samples` (the
    same span by CUDA events), and `stages`: per-stage seconds by the clock named in `clock`.
    A warm-up is a call whose result is discarded.
    """
    cuda = device.type == "cuda"
    samples: list[float] = []
    event_samples: list[float] = []
    split: dict[str, list[float]] = {"preprocess": [], "forward": [], "postprocess": []}
    with torch.inference_mode():
        for i in range(iterations):
            image = images[i % len(images)].to(device)
            events = [torch.cuda.Event(enable_timing=True) for _ in range(4)] if cuda else []
            synchronize(device)
            t0 = time.perf_counter()
            if cuda:
                events[0].record()
            x = stages.preprocess(image)
            synchronize(device)
            t1 = time.perf_counter()
            if cuda:
                events[1].record()
            logits = stages.forward(x)
            if cuda:
                events[2].record()
            t2 = time.perf_counter()  # meaningful on CPU only: CUDA work is still queued here
            stages.postprocess(logits)
            if cuda:
                events[3].record()
            synchronize(device)
            t3 = time.perf_counter()
            samples.append(t3 - t1)
            if cuda:
                pre, fwd, post = (a.elapsed_time(b) / 1000 for a, b in zip(events, events[1:]))
                event_samples.append(fwd + post)
            else:
                pre, fwd, post = t1 - t0, t2 - t1, t3 - t2
            split["preprocess"].append(pre)
            split["forward"].append(fwd)
            split["postprocess"].append(post)
            if on_step is not None:
                on_step()
    result: dict[str, Any] = {"unit": "s", "samples": samples}
    if cuda:
        result["cuda_event_samples"] = event_samples
    result["stages"] = {"clock": "cuda_event" if cuda else "perf_counter", **split}
    return result


def peak_memory(stages: PredictionStages, image: torch.Tensor) -> dict:
    """CUDA: bytes held by the model and inputs before, and max allocated/reserved during, one prediction."""
    device = image.device
    if device.type != "cuda":
        return {"measured": False, "reason": f"not measured on {device.type}: max_memory_allocated is CUDA-only"}
    with torch.inference_mode():
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        stages(image)
        synchronize(device)
        return {
            "measured": True,
            "static_bytes": int(before),
            "peak_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
            "peak_reserved_bytes": int(torch.cuda.max_memory_reserved(device)),
        }
