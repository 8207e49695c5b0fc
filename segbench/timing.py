"""Latency and peak memory of one prediction, timed stage by stage under a timing protocol.

Stages (segbench.protocols.STAGES): copy_in (the uint8 image to the device), preprocess (normalize),
forward (the network; sliding windows included in slide mode), resize (logits to the input size),
argmax, copy_out (the last stage's output to the host). A protocol runs the stages up to the end
of its timed span and times the span; the default, mmsegmentation's benchmark, times forward +
resize + argmax: batch 1, cudnn.benchmark off and deterministic on, the device synchronized
before and after each prediction, wall clock (perf_counter). On CUDA the same span is also timed
with CUDA events, and the stages come from events so that no synchronization is added inside the
timed span. Protocols that time a loop (the DDRNet and STDC scripts) prepare one input, run the
timed stages back to back and synchronize only after the loop. Memory is measured in a pass of
its own so that the allocator's peak is not mixed with timing.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from segbench.inference import InferenceSettings, normalize, slide_logits
from segbench.layers import resize
from segbench.protocols import AUTO, PROTOCOLS, Protocol

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
"""--dtype choices; fp16 and bf16 run the forward pass under torch.autocast."""

Stage = Callable[[torch.Tensor], torch.Tensor]

STEADY = {"window": 5, "tolerance": 0.02, "max_iterations": 200, "max_seconds": 120.0}
"""--warmup auto: warm up until the median of the last `window` passes is within `tolerance` of the median of the
`window` before them, or a cap is reached (the record then says the latency never settled)."""

CALIBRATION_SECONDS = 1.0
"""A duration protocol first doubles a run of passes until it takes this long, then times the count that fills its
minimum duration, as the DDRNet and STDC scripts calibrate (they start from 100 passes; segbench from one, since a
CPU pass can take seconds)."""


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
    """The stages one prediction runs, in order (name -> callable), and the span of them that is timed."""

    steps: dict[str, Stage]
    timed: tuple[str, ...]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.run(image, list(self.steps))

    def run(self, x: torch.Tensor, names: list[str]) -> torch.Tensor:
        for name in names:
            x = self.steps[name](x)
        return x


def prediction_stages(
    model: nn.Module | Callable,
    test: InferenceSettings,
    *,
    dtype: str = "fp32",
    channels_last: bool = False,
    protocol: Protocol = PROTOCOLS["mmseg"],
    device: torch.device | str = "cpu",
) -> PredictionStages:
    """The stages the protocol runs, under the given precision and memory format.

    `model` may be any callable from normalized images to logits (a torch.compile'd module, an
    ONNX Runtime session). In slide mode the per-window resize is part of the forward stage (it is
    how the windows are merged); the resize stage then has nothing left to do.
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

    def to_input_size(logits: torch.Tensor) -> torch.Tensor:
        size = test.test_size or tuple(logits.shape[-2:])
        if protocol.resize_mode == "nearest" and tuple(logits.shape[-2:]) != tuple(size):
            return F.interpolate(logits, size=size, mode="nearest")
        return resize(logits, size, test.align_corners)

    every = {
        "copy_in": lambda image: image.to(device),
        "preprocess": preprocess,
        "forward": forward,
        "resize": to_input_size,
        "argmax": lambda logits: logits.argmax(dim=1),
        "copy_out": lambda x: x.cpu(),
    }
    return PredictionStages({name: every[name] for name in protocol.stages_run()}, protocol.stages_timed())


def time_predictions(
    stages: PredictionStages,
    images: list[torch.Tensor],
    device: torch.device,
    *,
    iterations: int,
    sync_each: bool = True,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Seconds per prediction over `iterations` runs, cycling through `images` (uint8 on the host).

    Returns `samples` (the timed span of each prediction), on CUDA with `sync_each`
    `cuda_event_samples` (the same span by CUDA events), and `stages`: per-stage seconds by the
    clock named in `clock`. Without `sync_each` the stages before the span run once, on the first
    image, and the timed stages run back to back with one synchronization after the loop; a
    sample is then the span by CUDA events on CUDA (wall clock cannot split an unsynchronized
    loop) and `loop` holds the loop's wall-clock mean, the figure such scripts print.
    A warm-up is a call whose result is discarded.
    """
    cuda = device.type == "cuda"
    names = list(stages.steps)
    first, last = names.index(stages.timed[0]), names.index(stages.timed[-1])
    ran = names if sync_each else names[first:]
    walls: list[float] = []
    marks: list[list] = []  # per prediction: the CUDA events (CUDA) or perf_counter stamps (CPU) around each stage run
    with torch.inference_mode():
        prepared = None if sync_each else stages.run(images[0], names[:first])
        synchronize(device)
        loop_started = time.perf_counter()
        for i in range(iterations):
            x = images[i % len(images)] if sync_each else prepared
            stamps = []
            for name in ran:
                if sync_each and name == names[first]:
                    synchronize(device)
                    span_started = time.perf_counter()
                stamps.append(_mark(cuda))
                x = stages.steps[name](x)
            stamps.append(_mark(cuda))
            if sync_each:
                synchronize(device)
                walls.append(time.perf_counter() - span_started)
            marks.append(stamps)
            if on_step is not None:
                on_step()
        synchronize(device)
        loop_seconds = time.perf_counter() - loop_started
    split = {name: [_elapsed(m[k], m[k + 1]) for m in marks] for k, name in enumerate(ran)}
    spans = [sum(split[name][i] for name in names[first : last + 1]) for i in range(iterations)]
    result: dict[str, Any] = {"unit": "s", "samples": walls if sync_each else spans}
    if cuda and sync_each:
        result["cuda_event_samples"] = spans
    if not sync_each:
        result["loop"] = {"iterations": iterations, "seconds": loop_seconds, "mean_s": loop_seconds / max(iterations, 1)}
    result["stages"] = {"clock": "cuda_event" if cuda else "perf_counter", **split}
    result["timed"] = list(stages.timed)
    return result


def _mark(cuda: bool):
    if not cuda:
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def _elapsed(start, end) -> float:
    return end - start if isinstance(start, float) else start.elapsed_time(end) / 1000


def is_steady(trace: list[float], window: int = STEADY["window"], tolerance: float = STEADY["tolerance"]) -> bool:
    """Whether the median of the last `window` samples is within `tolerance` (relative) of the median of the `window`
    before them."""
    if len(trace) < 2 * window:
        return False
    last, before = statistics.median(trace[-window:]), statistics.median(trace[-2 * window : -window])
    return abs(last - before) <= tolerance * before


def warm_up(
    stages: PredictionStages, images: list[torch.Tensor], device: torch.device, warmup: int | str, *, sync_each: bool = True,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Discarded passes before timing: a fixed count, or with AUTO until is_steady (or STEADY's caps).

    Returns what the record keeps: the passes' seconds (`trace`), their count, and for AUTO the rule and whether the
    latency settled, so autotuning, lazy initialisation or a cold device are seen, not hidden."""
    if warmup != AUTO:
        trace = time_predictions(stages, images, device, iterations=warmup, sync_each=sync_each, on_step=on_step)["samples"]
        return {"iterations": len(trace), "trace": trace}
    trace: list[float] = []
    started = time.perf_counter()
    while not is_steady(trace) and len(trace) < STEADY["max_iterations"] and time.perf_counter() - started < STEADY["max_seconds"]:
        trace += time_predictions(stages, images, device, iterations=1, sync_each=sync_each, on_step=on_step)["samples"]
    return {"iterations": len(trace), "trace": trace, "auto": dict(STEADY), "steady": is_steady(trace)}


def calibrated_iterations(
    stages: PredictionStages, images: list[torch.Tensor], device: torch.device, min_seconds: float, *, sync_each: bool = True
) -> tuple[int, dict[str, Any]]:
    """How many passes fill `min_seconds`, from a run doubled until it takes CALIBRATION_SECONDS (or min_seconds if less)."""
    count = 1
    while True:
        seconds = sum(time_predictions(stages, images, device, iterations=count, sync_each=sync_each)["samples"])
        if seconds >= min(CALIBRATION_SECONDS, min_seconds) or count >= 4096:
            break
        count *= 2
    per_pass = seconds / count
    return max(1, math.ceil(min_seconds / per_pass)), {"iterations": count, "seconds": seconds}


def peak_memory(stages: PredictionStages, image: torch.Tensor, device: torch.device) -> dict:
    """CUDA: bytes held by the model before, and max allocated/reserved during, one prediction of a host image."""
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
