"""Eager PyTorch against ONNX Runtime on this machine's CPU, for a few zoo models at one input size.

Each model is built with random weights, exported as `--backend onnxruntime` exports it
(segbench.backends.forward_backend) and timed by segbench's own loop (timing.time_predictions:
forward, resize to the input, argmax) with `--warmup` discarded calls and `--images` timed ones,
eager first, then ONNX Runtime. Torch and ONNX Runtime get the same thread count (`--threads`).
Prints the medians and the 1-minute load average before and after each model. Not a test:

    python benchmarks/onnx_latency.py
    python benchmarks/onnx_latency.py --models stdc1_4xb12-80k_cityscapes-512x1024 --size 256x512
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segbench.backends import forward_backend  # noqa: E402
from segbench.build import build_model  # noqa: E402
from segbench.inference import InferenceSettings  # noqa: E402
from segbench.manifest import load_zoo  # noqa: E402
from segbench.timing import prediction_stages, time_predictions  # noqa: E402

MODELS = (
    "ddrnet_23-slim_in1k-pre_2xb6-120k_cityscapes-1024x1024",
    "stdc1_4xb12-80k_cityscapes-512x1024",
    "bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024",
)


def medians_ms(forward, size: tuple[int, int], warmup: int, images: int) -> tuple[float, float]:
    """(median prediction, median forward stage) in ms over `images` timed calls after `warmup` discarded ones."""
    stages = prediction_stages(forward, InferenceSettings(mode="whole", test_size=size))
    image = [torch.randint(0, 256, (1, 3, *size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)]
    cpu = torch.device("cpu")
    time_predictions(stages, image, cpu, iterations=warmup)
    timed = time_predictions(stages, image, cpu, iterations=images)
    return 1000 * statistics.median(timed["samples"]), 1000 * statistics.median(timed["stages"]["forward"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--size", default="512x1024", help="HxW")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--images", type=int, default=10)
    args = parser.parse_args()
    size = tuple(int(side) for side in args.size.split("x"))
    torch.set_num_threads(args.threads)  # forward_backend gives ONNX Runtime as many
    specs = {spec.name: spec for spec in load_zoo(ROOT / "zoo")}
    print(f"{args.size} (HxW), {args.threads} threads, median of {args.images} after {args.warmup} warm-ups; ms")
    print("model | eager prediction | eager forward | onnxruntime prediction | onnxruntime forward | export s | load before/after")
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(specs[name]).eval()
        before = os.getloadavg()[0]
        eager = medians_ms(model, size, args.warmup, args.images)
        forward, info = forward_backend(model, "onnxruntime", torch.zeros(1, 3, *size), torch.device("cpu"), name=name)
        onnx = medians_ms(forward, size, args.warmup, args.images)
        after = os.getloadavg()[0]
        print(f"{name} | {eager[0]:.1f} | {eager[1]:.1f} | {onnx[0]:.1f} | {onnx[1]:.1f} | {info['export_seconds']:.1f} | {before:.2f}/{after:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
