"""How long does a sweep of the whole zoo take on this machine, and what would it take on one H100?

1. The sweep: `python bench.py --models all --device cpu --images 1 --input-size 128x256` into a fresh
   output folder, `--repeats` times. Target on a quiet 2-core machine: under 2 min. Its last line
   is the sweep's efficiency: the timed and warm-up passes' share of the wall time.
2. The re-run: the same command again on the last output, every record current, `--repeats` times.
   Target: under 5 s.
3. An **estimate** (not a measurement) of `--models all --gpu 0` on one H100, by the method of the
   README's GPU-window section, from the per-model costs the sweep recorded (`phase_seconds`):
   per distinct model (records with `shared_from` copy another's measurement and cost nothing),
   the host-side phases as measured here (build, weights, MAC counting less fvcore's and thop's
   forward passes, which run on the GPU there; moving to the device), plus
   the forward passes at the manifests' test sizes at an effective 20 TMAC/s (and a pessimistic
   10): 200 timed + 5 warm-up + 1 memory pass per image as tested (every window), fvcore's and
   thop's cross-check (2 forward passes at the forward size, on the GPU), and 13 training steps of
   3 forward-equivalents each at the crop size and per-GPU batch. MACs at the test sizes are
   counted here on the meta device (no weights, no arithmetic).

Timings depend on the machine's load: each is repeated, and the best and the spread (max − min) are
printed with the 1-minute load average before and after. Exit status 1 when a best time misses its
target. Not a test:

    python benchmarks/zoo_sweep.py --repeats 3
    python benchmarks/zoo_sweep.py --repeats 2 --models sem_fpn 'upernet_r50_4xb2-*-512x1024'   # a part, on a busy machine
    python benchmarks/zoo_sweep.py --estimate-from /tmp/segbench-zoo-sweep/run-1   # the estimate only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SWEEP_TARGET_S, RERUN_TARGET_S = 120.0, 5.0
GPU_RATES = {"20 TMAC/s": 20e12, "10 TMAC/s": 10e12}
HOST_PHASES = ("build", "weights", "macs", "to_device")
PASSES_PER_IMAGE = 200 + 5 + 1  # timed, warm-up, memory (the defaults of `--gpu 0`)
CROSS_CHECK_PASSES = 2  # fvcore's trace and thop's hooks, once per distinct model
TRAINING_STEPS, FORWARDS_PER_STEP = 10 + 3, 3


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def timed_run(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stderr


def spread(label: str, walls: list[float], loads: list[str], target: float) -> bool:
    best = min(walls)
    print(f"{label}: best {best:.1f} s, spread {max(walls) - best:.1f} s over {len(walls)} run(s) "
          f"({', '.join(f'{w:.1f}' for w in walls)} s; load before/after {', '.join(loads)}); target < {target:.0f} s: "
          f"{'met' if best < target else 'MISSED'}")  # fmt: skip
    return best < target


def host_seconds(record: dict) -> float:
    """A record's host-side phases, less the CPU cross-check's forward passes (on a GPU they run there, counted apart)."""
    phases = record["phase_seconds"]
    cross_check = min(phases.get("macs", 0.0), record.get("macs", {}).get("cross_check_seconds", 0.0))
    return sum(phases.get(p, 0.0) for p in HOST_PHASES) - cross_check


def gpu_estimate(output: Path) -> None:
    """The H100 estimate of `--models all --gpu 0` from the records under `output` (see the module docstring)."""
    import torch

    from segbench.build import build_model
    from segbench.complexity import count_macs, count_macs_as_tested
    from segbench.inference import inference_settings
    from segbench.manifest import load_zoo
    from segbench.plan import measurement_key
    from segbench.records import iter_records
    from segbench.training import per_gpu_batch

    records = {r["model"]: r for _, r in iter_records(output / "results") if r["status"] == "ok" and "phase_seconds" in r}
    costs = {name: host_seconds(r) for name, r in records.items() if "shared_from" not in r}
    if not costs:
        sys.exit(f"{output}: no record with phase_seconds: run the sweep first")
    typical = statistics.median(costs.values())
    distinct = {measurement_key(s): s for s in reversed(load_zoo(ROOT / "zoo"))}  # the first entry of each, as a sweep does
    host = sum(costs.get(spec.name, typical) for spec in distinct.values())
    work = 0.0  # MACs of every GPU pass of every distinct model
    for spec in distinct.values():
        with torch.device("meta"):
            model = build_model(spec)
        macs = count_macs_as_tested(model, inference_settings(spec.test, size=spec.test.size), cross_check=False)
        work += PASSES_PER_IMAGE * macs["per_image"] + CROSS_CHECK_PASSES * macs["per_forward"]
        batch, _ = per_gpu_batch(spec)
        if spec.crop_size and batch:
            crop = count_macs(model, spec.crop_size, cross_check=False)["per_forward"]
            work += TRAINING_STEPS * FORWARDS_PER_STEP * batch * crop
    measured = sum(1 for spec in distinct.values() if spec.name in costs)
    print(f"estimate of `--models all --gpu 0` on one H100 (not a measurement): {len(distinct)} distinct models (the "
          f"other entries share), host-side phases {host:.0f} s ({measured} as measured here, the others at their median "
          f"{typical:.1f} s), GPU work {work / 1e12:.0f} TMACs")  # fmt: skip
    for label, rate in GPU_RATES.items():
        passes = work / rate
        total = host + passes
        print(f"  at {label}: {total / 60:.0f} min, of which passes {passes / 60:.0f} min; "
              f"everything else {100 * host / total:.0f}% of the whole")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", type=Path, default=Path("/tmp/segbench-zoo-sweep"), help="output folders go here")
    parser.add_argument("--input-size", default="128x256")
    parser.add_argument("--models", nargs="+", default=["all"], help="a part of the zoo (the targets are for all)")
    parser.add_argument("--estimate-from", type=Path, help="only the H100 estimate, from this sweep's output folder")
    args = parser.parse_args()
    if args.estimate_from:
        gpu_estimate(args.estimate_from)
        return 0

    command = [sys.executable, "bench.py", "--models", *args.models, "--device", "cpu", "--images", "1", "--input-size", args.input_size]
    walls, loads, rerun_walls, rerun_loads = [], [], [], []
    for i in range(args.repeats):
        output = args.root / f"run-{i + 1}"
        shutil.rmtree(output, ignore_errors=True)
        before = load()
        wall, err = timed_run([*command, "--output", str(output)])
        walls.append(wall)
        loads.append(f"{before}/{load()}")
        efficiency = re.search(r"sweep efficiency.*", " ".join(err.split()))
        print(f"sweep {i + 1}: {wall:.1f} s; {efficiency[0] if efficiency else 'no efficiency line'}")
    for i in range(args.repeats):
        before = load()
        wall, err = timed_run([*command, "--output", str(output)])
        rerun_walls.append(wall)
        rerun_loads.append(f"{before}/{load()}")
        if "skipped: their records are current" not in err:
            sys.exit(f"the re-run measured something:\n{err[-2000:]}")
    ok = spread(f"sweep of --models {' '.join(args.models)}", walls, loads, SWEEP_TARGET_S)
    ok = spread("re-run, every record current", rerun_walls, rerun_loads, RERUN_TARGET_S) and ok
    gpu_estimate(output)
    print(json.dumps({"sweep_s": walls, "rerun_s": rerun_walls, "load": loads + rerun_loads}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
