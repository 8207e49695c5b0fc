"""Render and plot over 500 records in under 3 seconds, without importing torch; guarded by CPU time relative to a reference."""

import json
import subprocess
import sys
import time
from pathlib import Path

from synthetic_results import write_synthetic_results

ROOT = Path(__file__).resolve().parent.parent
# Issue 6 asks for under 3 s: 2.4-2.6 s of work measured on 2 quiet cores. Wall time swings with other processes (8-22 s
# at load average 8-11), and so does CPU time, less (3.1 s at load 4-5, 3.7-4.6 s at load 10-11). The guard is therefore
# the CPU time of the work over the CPU time of a fixed reference workload (parsing the same records) in the same process,
# before and after: other processes slow both alike. Measured at load 10-11: 6.7-7.1 (3.3-4.0 s CPU, 11-15 s wall); render
# and plot done twice in one process (1.7x the work, imports once) measured 11.6-11.9, so 10 fails a doubling.
BUDGET_RATIO = 10.0


def test_render_and_plot_500_records_fast_and_without_torch(tmp_path):
    zoo, out = write_synthetic_results(tmp_path, models_per_family=17, hardware=("gpu-a", "gpu-b", "gpu-c", "gpu-d", "gpu-e"),
                                       samples=200)  # fmt: skip
    assert len(list((out / "results").glob("*/*.json"))) == 510
    # timed inside the subprocess, after start-up, so that the number is the work itself
    code = f"""
import json, statistics, sys, time
from pathlib import Path
texts = [p.read_text() for p in sorted(Path({str(out)!r}, 'results').glob('*/*.json'))]

def reference_cpu_s():
    started = time.process_time()
    for _ in range(15):
        for text in texts:
            statistics.median(json.loads(text)['latency']['samples'])
    return time.process_time() - started

before = reference_cpu_s()
started, cpu_started = time.perf_counter(), time.process_time()
from segbench.cli import main
assert main(['render', '--zoo', {str(zoo)!r}, '--output', {str(out)!r}]) == 0
assert main(['plot', '--zoo', {str(zoo)!r}, '--output', {str(out)!r}]) == 0
work, cpu = time.perf_counter() - started, time.process_time() - cpu_started
reference = (before + reference_cpu_s()) / 2
print(json.dumps({{'work_s': work, 'cpu_s': cpu, 'reference_s': reference, 'torch': 'torch' in sys.modules}}))
"""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ratio = result["cpu_s"] / result["reference_s"]
    print(f"render+plot over 510 records: {result['cpu_s']:.2f} s CPU ({ratio:.2f}x the reference's {result['reference_s']:.2f} s), "
          f"{result['work_s']:.2f} s wall of work (imports included), {wall:.2f} s wall with interpreter start")
    assert not result["torch"], "torch was imported"
    assert ratio < BUDGET_RATIO
    assert len(list((out / "plots").glob("*.png"))) == 3
