"""How long does counting MACs take, now that the primary count runs on the meta device?

fvcore and thop count by a real forward pass: for the largest zoo model at 1024×2048 that took
78 s on 2 CPU cores, most of a model's time in a CPU sweep. The primary count is FlopCounterMode's
on a meta-device copy (shapes only). Measured here, on the CPU:

- count: `count_macs(..., cross_check=False)` of an already built model, as a sweep calls it.
  The first count in a process also pays torch's one-time imports for meta kernels (torch._dynamo:
  most meta kernels are Python wrapped in torch._disable_dynamo, which imports it on first use,
  about 1.3 s); it is reported apart ("first in process"), the target applies to the others.
  Target: under 1 s.
- profile: the wall time of `python -m segbench.cli profile MODEL` in a fresh process (Python,
  torch, one manifest, a meta-device build, the count, the output), and the CPU time (user + sys)
  it used, which a busy machine inflates less. Target: median under 3 s. Beside it, the floor no
  command that counts on the meta device goes below: a process that only imports torch and
  torch._dynamo and exits; and a process that only imports torch.
- with `--cross-check`: fvcore + thop by a real forward pass once, for comparison.

Timings depend on the machine's load: each is repeated, and the median, the best and the spread
(max − min) are printed with the load average, and whether Python may cache bytecode
(PYTHONDONTWRITEBYTECODE=1 makes every start compile segbench's modules again, about 0.1 s).
The exit status is 1 when a median misses its target. Not a test:

    python benchmarks/macs_speed.py                                   # the largest zoo model, 1024×2048
    python benchmarks/macs_speed.py --model pspnet_r50-d8_4xb2-80k_cityscapes-512x1024 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import resource
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


def _process_times(command: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + sys) seconds of `command` run `repeats` times in a fresh process;
    exits with the command's last line of stderr when it fails."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall, done = _timed(lambda: subprocess.run(command, cwd=ROOT, capture_output=True, text=True))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode:
            sys.exit(f"{' '.join(command[1:])} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        walls.append(wall)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def _line(label: str, times: list[float], target: float | None = None, cpu: list[float] | None = None) -> str:
    spread = "1 run"
    if len(times) > 1:
        spread = f"best {min(times):.2f} s, spread {max(times) - min(times):.2f} s over {len(times)}"
    used = "" if cpu is None else f", CPU {statistics.median(cpu):.2f} s"
    verdict = "" if target is None else f"  (target < {target:.0f} s: {'met' if statistics.median(times) < target else 'MISSED'})"
    return f"{label:<34} median {statistics.median(times):6.2f} s  ({spread}{used}){verdict}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=LARGEST, help=f"a zoo model (default: {LARGEST}, the largest)")
    parser.add_argument("--input-size", type=_size, help="HxW (default: the manifest's test size)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each measurement (default: 5)")
    parser.add_argument("--cross-check", action="store_true", help="also time fvcore + thop (a real forward pass) once")
    args = parser.parse_args()

    (spec,) = select_models(load_zoo(ROOT / "zoo"), [args.model])
    size = args.input_size or spec.test.size
    bytecode = "off (PYTHONDONTWRITEBYTECODE)" if sys.flags.dont_write_bytecode else "on"
    print(f"{spec.name} at {size[0]}×{size[1]} (H×W) on {os.cpu_count()} CPU core(s), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, bytecode cache {bytecode}; load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip
    model = build_model(spec)

    first, macs = _timed(lambda: count_macs(model, size, cross_check=False))
    counts = [_timed(lambda: count_macs(model, size, cross_check=False))[0] for _ in range(args.repeats)]
    print(f"MACs per forward pass: {macs['per_forward'] / 1e9:.2f} G ({macs['primary']})")
    print(_line("count, first in process", [first]))
    print(_line("count", counts, COUNT_TARGET_S))

    command = [sys.executable, "-m", "segbench.cli", "profile", spec.name]
    command += ["--input-size", f"{size[0]}x{size[1]}"] if args.input_size else []
    profiles, profile_cpu = _process_times(command, args.repeats)
    print(_line("segbench profile (fresh process)", profiles, PROFILE_TARGET_S, profile_cpu))
    floor, floor_cpu = _process_times([sys.executable, "-c", "import torch, torch._dynamo"], args.repeats)
    print(_line("  floor: python + torch + dynamo", floor, cpu=floor_cpu) + "  (start, import torch and torch._dynamo, exit)")
    bare, bare_cpu = _process_times([sys.executable, "-c", "import torch"], args.repeats)
    print(_line("  python + torch alone", bare, cpu=bare_cpu))

    if args.cross_check:
        elapsed, checked = _timed(lambda: count_macs(model, size))
        print(_line("count + fvcore/thop cross-check", [elapsed]) + f"  fvcore/primary {checked['fvcore_over_flop_counter']:.4f}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if statistics.median(counts) < COUNT_TARGET_S and statistics.median(profiles) < PROFILE_TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
