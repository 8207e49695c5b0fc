"""Does segbench's latency equal what a minimal hand-written loop measures on the same model and input?

A harness adds its own cost (stage bookkeeping, CUDA events, Python calls) and can time the wrong
span. This compares segbench's timing (`time_predictions`, the median of its forward +
postprocessing samples) with a loop one would write by hand from mmsegmentation's benchmark:
synchronize, perf_counter, forward, bilinear resize to the input, argmax, synchronize. Both see
the same model, the same already-normalized input and the same cudnn flags; they alternate
within each repeat so that a drift in clocks hits both. Reported: the ratio segbench/hand per
repeat and overall, and the run-to-run spread of each. Targets (GPU): ratio 1.00 ± 0.02, repeats
within 1% of each other; the exit status is 1 when a GPU run misses one. On a CPU the ratio is
reported only. Not a test: run it on the machine whose numbers you publish.

    python benchmarks/latency_fidelity.py --device cuda --input-size 1024x2048
    python benchmarks/latency_fidelity.py --device cpu --input-size 256x512 --images 20
    python benchmarks/latency_fidelity.py --overhead --images 3000 --repeats 15 --warmup 300
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segbench.build import build_model  # noqa: E402
from segbench.cli import _size  # noqa: E402
from segbench.inference import InferenceSettings, inference_settings  # noqa: E402
from segbench.manifest import load_zoo, select_models  # noqa: E402
from segbench.timing import cudnn_flags, prediction_stages, synchronize, time_predictions  # noqa: E402

RATIO_TOLERANCE = 0.02
SPREAD_TOLERANCE = 0.01


def hand_loop(model, x: torch.Tensor, align_corners: bool, iterations: int) -> list[float]:
    """mmsegmentation's benchmark loop, written out: no harness in between."""
    samples = []
    size = tuple(x.shape[-2:])
    with torch.inference_mode():
        for _ in range(iterations):
            synchronize(x.device)
            start = time.perf_counter()
            logits = model(x)
            F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners).argmax(dim=1)
            synchronize(x.device)
            samples.append(time.perf_counter() - start)
    return samples


def compare(model, test: InferenceSettings, device: torch.device, *, images: int, warmup: int, repeats: int) -> dict:
    """Medians (s) of segbench and of the hand loop per repeat, their ratios and spreads."""
    model = model.to(device).eval()
    stages = prediction_stages(model, test, device=device)
    image = torch.randint(0, 256, (1, 3, *test.test_size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.inference_mode():
        x = stages.run(image, ["copy_in", "preprocess"])
    ours, hand = [], []
    with cudnn_flags(benchmark=False, deterministic=True):
        time_predictions(stages, [image], device, iterations=warmup)
        hand_loop(model, x, test.align_corners, warmup)
        for repeat in range(repeats):
            order = ("ours", "hand") if repeat % 2 == 0 else ("hand", "ours")
            for who in order:
                if who == "ours":
                    ours.append(statistics.median(time_predictions(stages, [image], device, iterations=images)["samples"]))
                else:
                    hand.append(statistics.median(hand_loop(model, x, test.align_corners, images)))
    ratios = [a / b for a, b in zip(ours, hand)]
    return {
        "segbench_median_s": ours,
        "hand_median_s": hand,
        "ratios": ratios,
        "ratio": statistics.median(ours) / statistics.median(hand),
        "segbench_spread": (max(ours) - min(ours)) / statistics.median(ours),
        "hand_spread": (max(hand) - min(hand)) / statistics.median(hand),
    }


def overhead(device: torch.device, *, images: int, warmup: int, repeats: int) -> int:
    """segbench's additive cost per image (stage calls, clocks, events, bookkeeping), measured on a
    network that costs almost nothing: a model's time, and the machine's noise in it, drop out.
    The logits are half the input's size, so both loops resize them as a real network's are."""
    model = torch.nn.Conv2d(3, 4, 1, stride=2).eval()
    result = compare(model, InferenceSettings(test_size=(8, 16)), device, images=images, warmup=warmup, repeats=repeats)
    ours, hand = statistics.median(result["segbench_median_s"]), statistics.median(result["hand_median_s"])
    print(f"harness overhead on {device}, {images} images × {repeats} repeats, {torch.get_num_threads()} threads: "
          f"segbench {ours * 1e6:.1f} µs, hand {hand * 1e6:.1f} µs per image; segbench − hand = {(ours - hand) * 1e6:+.1f} µs")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="fcn_r18-d8_4xb2-80k_cityscapes-512x1024")
    parser.add_argument("--zoo", default=str(ROOT / "zoo"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--input-size", type=_size, help="HxW (default: the manifest's test size)")
    parser.add_argument("--images", type=int, default=200, help="timed images per run (default: 200)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each loop, alternating (default: 5)")
    parser.add_argument("--overhead", action="store_true",
                        help="time both loops on a strided 1x1 conv at 8x16 instead: their difference is segbench's own cost per image")  # fmt: skip
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.overhead:
        return overhead(device, images=args.images, warmup=args.warmup, repeats=args.repeats)

    (spec,) = select_models(load_zoo(args.zoo), [args.model])
    size = args.input_size or spec.test.size
    result = compare(build_model(spec), inference_settings(spec.test, size=size), device,
                     images=args.images, warmup=args.warmup, repeats=args.repeats)  # fmt: skip
    print(f"{spec.name} at {size[0]}×{size[1]} (H×W) on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"{args.images} images × {args.repeats} repeats, torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    for i, (a, b, r) in enumerate(zip(result["segbench_median_s"], result["hand_median_s"], result["ratios"])):
        print(f"  repeat {i}: segbench {a * 1e3:9.3f} ms   hand {b * 1e3:9.3f} ms   ratio {r:.4f}")
    ok_ratio = abs(result["ratio"] - 1) <= RATIO_TOLERANCE
    ok_spread = max(result["segbench_spread"], result["hand_spread"]) <= SPREAD_TOLERANCE
    print(f"ratio segbench/hand (median of medians): {result['ratio']:.4f} (target 1.00 ± {RATIO_TOLERANCE}: {'ok' if ok_ratio else 'MISSED'})")
    print(f"run-to-run spread (max-min)/median: segbench {100 * result['segbench_spread']:.2f}%, hand {100 * result['hand_spread']:.2f}% "
          f"(target ≤ {100 * SPREAD_TOLERANCE:.0f}%: {'ok' if ok_spread else 'MISSED'})")  # fmt: skip
    if device.type != "cuda":
        print("The targets are for GPUs; on a CPU this run reports the ratio only (exit status 0).")
        return 0
    return 0 if ok_ratio and ok_spread else 1


if __name__ == "__main__":
    sys.exit(main())
