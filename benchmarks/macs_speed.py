"""How long does counting MACs take, now that the primary count runs on the meta device?

fvcore and thop count by a real forward pass: for the largest zoo model at 1024×2048 that took
78 s on 2 CPU cores, most of a model's time in a CPU sweep. The primary count is FlopCounterMode
on a meta-device copy (shapes only). Measured here, on the CPU:

- count: `count_macs(..., cross_check=False)` of an already built model, as a sweep calls it.
  The first count in a process also pays torch's one-time imports for meta kernels (torch._dynamo,
  the meta registrations: about 1–2 s); it is reported apart ("first in process"), the target
  applies to the others. Target: under 1 s.
- profile: the wall time of `python -m segbench.cli profile MODEL` in a fresh process (Python,
  torch, the zoo, a meta-device build, the count). Target: under 3 s. Beside it, the floor no
  command that counts on the meta device goes below: a process that only imports torch and
  torch._dynamo (which torch's meta kernels import on first use) and exits.
- with `--cross-check`: fvcore + thop by a real forward pass once, for comparison.

Timings depend on the machine's load: each is repeated, and the best and the spread (max − min)
are printed with the load average. The exit status is 1 when a best time misses its target.
Not a test:

    python benchmarks/macs_speed.py                                   # the largest zoo model, 1024×2048
    python benchmarks/macs_speed.py --model pspnet_r50-d8_4xb2-80k_cityscapes-512x1024 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segbench.build import build_model  # noqa: E402
from segbench.cli import _size  # noqa: E402
from segbench.complexity import count_macs  # noqa: E402
from segbench.manifest import load_zoo, select_models  # noqa: E402

COUNT_TARGET_S = 1.0
PROFILE_TARGET_S = 3.0
LARGEST = "upernet_resnet101os8_cityscapes"


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _line(label: str, times: list[float], target: float | None = None) -> str:
    spread = "1 run"
    if len(times) > 1:
        spread = f"spread {max(times) - min(times):.2f} s, median {statistics.median(times):.2f} s over {len(times)}"
    verdict = "" if target is None else f"  (target < {target:.0f} s: {'met' if min(times) < target else 'MISSED'})"
    return f"{label:<34} best {min(times):6.2f} s  {spread}{verdict}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=LARGEST, help=f"a zoo model (default: {LARGEST}, the largest)")
    parser.add_argument("--input-size", type=_size, help="HxW (default: the manifest's test size)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each measurement (default: 5)")
    parser.add_argument("--cross-check", action="store_true", help="also time fvcore + thop (a real forward pass) once")
    args = parser.parse_args()

    (spec,) = select_models(load_zoo(ROOT / "zoo"), [args.model])
    size = args.input_size or spec.test.size
    print(f"{spec.name} at {size[0]}×{size[1]} (H×W) on {os.cpu_count()} CPU core(s), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip
    model = build_model(spec)

    first, macs = _timed(lambda: count_macs(model, size, cross_check=False))
    counts = [_timed(lambda: count_macs(model, size, cross_check=False))[0] for _ in range(args.repeats)]
    print(f"MACs per forward pass: {macs['per_forward'] / 1e9:.2f} G ({macs['primary']})")
    print(_line("count, first in process", [first]))
    print(_line("count", counts, COUNT_TARGET_S))

    command = [sys.executable, "-m", "segbench.cli", "profile", spec.name]
    command += ["--input-size", f"{size[0]}x{size[1]}"] if args.input_size else []
    profiles = []
    for _ in range(args.repeats):
        elapsed, done = _timed(lambda: subprocess.run(command, cwd=ROOT, capture_output=True, text=True))
        if done.returncode:
            print(f"segbench profile failed: {done.stderr.strip().splitlines()[-1]}")
            return 1
        profiles.append(elapsed)
    print(_line("segbench profile (fresh process)", profiles, PROFILE_TARGET_S))
    floor = [_timed(lambda: subprocess.run([sys.executable, "-c", "import torch, torch._dynamo"], check=True))[0]
             for _ in range(args.repeats)]  # fmt: skip
    print(_line("  of which python + torch alone", floor) + "  (start, import torch and torch._dynamo, exit)")

    if args.cross_check:
        elapsed, checked = _timed(lambda: count_macs(model, size))
        print(_line("count + fvcore/thop cross-check", [elapsed]) + f"  fvcore/primary {checked['fvcore_over_flop_counter']:.4f}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if min(counts) < COUNT_TARGET_S and min(profiles) < PROFILE_TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
