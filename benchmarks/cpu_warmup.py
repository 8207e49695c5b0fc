"""How many warm-up passes does a model need on the CPU before its timed passes are steady?

For every distinct build in the zoo (or those matching --models), runs `--passes` consecutive
predictions (forward + resize to the input + argmax, as `bench` times them) on one random image
and prints each pass's CPU time relative to the median of the passes after the first two. CPU
time of one thread, not wall time: it is what a quiet machine's wall time would be, and it hardly
moves when other jobs share the cores, so the figures mean something on a busy machine too.

The last line says, over the models whose steady pass takes at least --min-ms, the largest
deviation of pass 1 and of pass 2 from the steady time, beside the largest spread of the steady
passes themselves: a warm-up count is enough when the first timed pass falls within that spread.
Not a test:

    python benchmarks/cpu_warmup.py
    python benchmarks/cpu_warmup.py --models fcn_r50 segformer --size 512x1024 --passes 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segbench.build import build_model  # noqa: E402
from segbench.inference import inference_settings, predicted_labels  # noqa: E402
from segbench.manifest import load_zoo, select_models  # noqa: E402


def pass_times(spec, size: tuple[int, int], passes: int) -> list[float]:
    torch.manual_seed(0)
    model = build_model(spec).eval()
    settings = inference_settings(spec.test, size=size)
    image = torch.randn(1, 3, *size)
    times = []
    with torch.inference_mode():
        for _ in range(passes):
            started = time.thread_time()
            predicted_labels(model, image, settings)
            times.append(time.thread_time() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=str(REPO / "zoo"))
    parser.add_argument("--models", nargs="+", default=["all"], help="names or glob patterns (default: all)")
    parser.add_argument("--size", default="128x256", help="HxW of the image (default: 128x256, the sweep benchmark's)")
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--min-ms", type=float, default=60.0, help="models at least this slow enter the summary")
    args = parser.parse_args(argv)
    if args.passes < 5:
        parser.error("--passes: needs at least 5 (two candidates and three steady passes)")
    size = tuple(int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    seen, rows = set(), []
    for spec in select_models(load_zoo(args.zoo), args.models):
        build = json.dumps(spec.build.as_dict(), sort_keys=True) + spec.test.mode
        if build in seen:
            continue
        seen.add(build)
        times = pass_times(spec, size, args.passes)
        steady = statistics.median(times[2:])
        ratios = [t / steady for t in times]
        rows.append((steady, ratios))
        print(f"{spec.name[:50]:50s} " + " ".join(f"{r:5.2f}" for r in ratios) + f"   steady {steady * 1000:6.0f} ms", flush=True)
    slow = [ratios for steady, ratios in rows if steady * 1000 >= args.min_ms]
    if not slow:
        print(f"no model at or above {args.min_ms:g} ms")
        return 0
    first = max(abs(r[0] - 1) for r in slow)
    second = max(abs(r[1] - 1) for r in slow)
    spread = max(max(r[2:]) - min(r[2:]) for r in slow)
    print(f"{len(slow)} of {len(rows)} distinct models at >= {args.min_ms:g} ms: pass 1 within ±{first:.0%} of the steady time, "
          f"pass 2 within ±{second:.0%}; the steady passes themselves spread up to {spread:.0%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
