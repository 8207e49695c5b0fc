"""One command for a short GPU window: everything it measures comes back in one archive.

    python benchmarks/gpu_window.py OUT --budget 10m [--archive-dir DIR] [--wheels DIR] [-- BENCH OPTIONS]

In order, each step logged under OUT/logs/ and timed:
0. install: `pip install --no-deps -e .` (the machine's CUDA torch stays), then each missing
   dependency, from `--wheels DIR` without an index when given; fvcore, thop and submitit may
   stay missing (the sweep records that the cross-check counters were unavailable);
1. the device and driver, torch, CUDA and cuDNN versions and the GPU's clocks;
2. the GPU tests (`pytest -m gpu`);
3. benchmarks/latency_fidelity.py once at the test size;
4. the sweep: `segbench bench --models all --isolate --time-budget <what is left> --order breadth
   --output OUT` (plus BENCH OPTIONS), which resumes where an earlier window stopped;
5. OUT/summary.md and one archive `segbench-window-<UTC time>.tar.gz` in --archive-dir (default
   OUT) holding the records this window wrote, the logs, the summary and the page. Merge it at
   home with `segbench merge ARCHIVE`.
The sweep gets the budget left after steps 0-3, less `--reserve` for packing. Exit status 0 when
every step succeeded (a model that did not fit in the budget is no failure).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segbench.plan import format_duration, parse_duration  # noqa: E402  (pure Python: no torch, no dependency)

# import name -> distribution, in the order pip should install them
DEPENDENCIES = {"numpy": "numpy", "yaml": "pyyaml", "PIL": "pillow", "rich": "rich", "jinja2": "jinja2", "pandas": "pandas",
                "matplotlib": "matplotlib", "pynvml": "nvidia-ml-py", "fvcore": "fvcore", "thop": "thop", "submitit": "submitit"}  # fmt: skip
OPTIONAL = {"fvcore", "thop", "submitit"}

ENVIRONMENT = """
import platform, torch
from segbench.environment import collect_environment
from segbench.runner import resolve_device
device = resolve_device({device!r}, None)
env = collect_environment(device)
for key in ("hardware", "gpu_name", "driver", "cpu", "torch", "cuda", "cudnn", "python", "git_commit"):
    print(f"{{key}}: {{env.get(key)}}")
if device.type == "cuda":
    from segbench.gpu_state import read_gpu_state
    torch.zeros(1, device=device)
    state = read_gpu_state(device) or {{}}
    for key in ("sm_clock_mhz", "max_sm_clock_mhz", "memory_clock_mhz", "temperature_c", "power_w", "throttle_reasons"):
        print(f"{{key}}: {{state.get(key)}}")
"""


class Window:
    def __init__(self, out: Path, budget_s: float) -> None:
        self.out, self.budget_s, self.started = out, budget_s, time.monotonic()
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.steps: list[tuple[str, str, int, float]] = []  # name, command, exit status, seconds

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def run(self, name: str, command: list[str], shown: str | None = None) -> tuple[int, str]:
        """Run one step, its output to the terminal and to logs/<n>-<name>.log; (exit status, output)."""
        log = self.logs / f"{len(self.steps)}-{name}.log"
        shown = shown or shlex.join(command)
        print(f"== {name}: {shown}", flush=True)
        began = time.monotonic()
        with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process, \
                open(log, "w", encoding="utf-8") as f:  # fmt: skip
            output = []
            for line in process.stdout:
                sys.stdout.write(line)
                f.write(line)
                output.append(line)
        self.steps.append((name, shown, process.returncode, time.monotonic() - began))
        return process.returncode, "".join(output)


def missing(names) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def install(window: Window, wheels: str | None) -> list[str]:
    """segbench without its dependencies, then each missing one; returns the optional ones still missing."""
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    source = ["--no-index", "--find-links", wheels] if wheels else []
    window.run("install-segbench", [*pip, *source, "--no-deps", "--no-build-isolation", "-e", "."])  # offline: the installed setuptools builds it
    for name in missing(DEPENDENCIES):
        window.run(f"install-{DEPENDENCIES[name]}", [*pip, *source, DEPENDENCIES[name]])
    importlib.invalidate_caches()
    return missing(DEPENDENCIES)


def snapshot(results: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in results.glob("*/*.json")} if results.is_dir() else {}


def write_summary(window: Window, device: str, environment: str, new: list[Path], still_missing: list[str], sweep_tail: str) -> Path:
    from segbench.validity import validity_of

    lines = [f"# GPU window on {device}", "", f"Budget {format_duration(window.budget_s)}; used "
             f"{format_duration(time.monotonic() - window.started)}.", "", "## Environment", "", "```", environment.strip(), "```", "",
             "## Steps", "", "| step | exit status | seconds | command |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {name} | {code} | {seconds:.1f} | `{command}` |" for name, command, code, seconds in window.steps]
    if still_missing:
        lines += ["", f"Not installed: {', '.join(still_missing)} (fvcore/thop: the records say the cross-check counters were unavailable)."]
    lines += ["", f"## Records written ({len(new)})", ""]
    for path in new:
        record = json.loads(path.read_text(encoding="utf-8"))
        validity = validity_of(record) or {"verdict": "failed"}
        lines.append(f"- `{path.relative_to(window.out).as_posix()}`: {record.get('status')}, {validity['verdict']}"
                     + (f" ({'; '.join(validity['failures'])})" if validity.get("failures") else ""))  # fmt: skip
    lines += ["", "## End of the sweep's output", "", "```", sweep_tail.rstrip(), "```", ""]
    path = window.out / "summary.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def pack(window: Window, new: list[Path], archive_dir: Path) -> Path:
    """One .tar.gz: the new records at results/<hardware>/<model>.json, the logs, the summary and the page."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    top = f"segbench-window-{stamp}"
    archive_dir.mkdir(parents=True, exist_ok=True)
    archive = archive_dir / f"{top}.tar.gz"
    files = [*new, *sorted(window.logs.glob("*.log")), window.out / "summary.md", window.out / "model_zoo.md"]
    with tarfile.open(archive, "w:gz") as tar:
        for path in files:
            if path.is_file():
                tar.add(path, arcname=f"{top}/{path.relative_to(window.out).as_posix()}", recursive=False)
    return archive


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bench_options = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="output folder of the sweep (results/, the page, logs/, summary.md)")
    parser.add_argument("--budget", type=parse_duration, required=True, help="the window's wall time: 90s, 10m, 1h")
    parser.add_argument("--archive-dir", help="where the archive goes (default: the output folder)")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--wheels", help="a folder of wheels to install missing dependencies from, without a package index")
    parser.add_argument("--no-install", action="store_true", help="segbench and its dependencies are installed already")
    parser.add_argument("--skip-gpu-tests", action="store_true", help="do not run pytest -m gpu")
    parser.add_argument("--fidelity-args", default="", help="extra options of benchmarks/latency_fidelity.py")
    parser.add_argument("--reserve", type=parse_duration, default=20.0, help="time kept back for packing (default: 20s)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    window = Window(out, args.budget)

    still_missing = [] if args.no_install else install(window, args.wheels)
    _, environment = window.run("environment", [sys.executable, "-c", ENVIRONMENT.format(device=args.device)],
                                shown=f"{sys.executable} -c <gpu_window.ENVIRONMENT for {args.device}>")
    if not args.skip_gpu_tests:
        window.run("gpu-tests", [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"])
    window.run("latency-fidelity", [sys.executable, "benchmarks/latency_fidelity.py", "--device", args.device,
                                    *shlex.split(args.fidelity_args)])  # fmt: skip
    before = snapshot(out / "results")
    sweep_tail = ""
    left = window.left() - args.reserve
    if left > 0:
        _, output = window.run("sweep", [sys.executable, "-m", "segbench.cli", "bench", "--models", "all", "--isolate",
                                         "--time-budget", f"{left:.0f}s", "--order", "breadth", "--output", str(out),
                                         "--device", args.device, *bench_options])  # fmt: skip
        sweep_tail = "\n".join(output.splitlines()[-12:])
    else:
        print(f"== sweep: no time left ({format_duration(window.left())} of the budget, {format_duration(args.reserve)} kept for packing)")
    new = sorted(p for p, stamp in snapshot(out / "results").items() if before.get(p) != stamp)
    summary = write_summary(window, args.device, environment, new, [m for m in still_missing if m in OPTIONAL], sweep_tail)
    archive = pack(window, new, Path(args.archive_dir).resolve() if args.archive_dir else out)
    failed = [name for name, _, code, _ in window.steps if code != 0 and not name.startswith("install-")]
    print(f"== {len(new)} record(s), {summary.name} and {len(list(window.logs.glob('*.log')))} log(s) in {archive}")
    if failed:
        print(f"== steps that failed: {', '.join(failed)} (see {window.logs})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
