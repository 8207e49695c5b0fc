"""Where a sweep runs when one process is not enough: one worker process per GPU of this machine, or a job array
on a cluster through submitit (SLURM; its local and debug executors run the same code on one machine).

Both hand out distinct models (entries that measure the same network the same way stay together, so they can
share one measurement) and run the ordinary sweep (runner.run_sweep) on each share, writing records atomically
into the one output folder; the per-model locks and the resume of current records work as in a single sweep.
A job that dies (killed, timed out, preempted) becomes a failure record for each of its models that it left
without a record, with the job's state and the end of its log. submitit is imported only when a job array is
asked for.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import math
import multiprocessing
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from segbench.environment import collect_environment
from segbench.errors import SegbenchError
from segbench.manifest import ModelSpec
from segbench.plan import measurement_key
from segbench.records import iter_records, record_path, results_folder, write_record
from segbench.runner import BenchSettings, Outcome, failure_record, is_out_of_memory, resolve_device, run_sweep

LOG_TAIL = 4000
"""Characters of a dead job's stderr kept in its models' failure records."""
EXECUTORS = ("slurm", "local", "debug")
"""--executor: submitit's names. local runs the array as subprocesses here, debug in this process (for trying a setup)."""


def chunks(specs: list[ModelSpec], models_per_task: int = 1) -> list[list[ModelSpec]]:
    """`specs` in shares of `models_per_task` distinct models, in sweep order; entries of one distinct model
    (same build and test) stay in one share."""
    groups: dict[str, list[ModelSpec]] = {}
    for spec in specs:
        groups.setdefault(measurement_key(spec), []).append(spec)
    ordered = list(groups.values())
    return [sum(ordered[i : i + models_per_task], []) for i in range(0, len(ordered), models_per_task)]


def sweep_chunk(specs: list[ModelSpec], settings: BenchSettings, results_dir: Path, force: bool, isolate: bool) -> list[Outcome]:
    """The ordinary sweep of one share, without a terminal of its own: its parent shows the progress."""
    return run_sweep(specs, settings, results_dir, force=force, isolate=isolate, console=Console(quiet=True))


# ---------------------------------------------------------------- one worker per device

_worker_device: torch.device | None = None


def _pin_worker(devices) -> None:
    """Worker initializer: take one device from the queue for the worker's whole life."""
    global _worker_device
    _worker_device = torch.device(devices.get())
    if _worker_device.type == "cuda":
        torch.cuda.set_device(_worker_device)


def _sweep_on_worker(specs, settings: BenchSettings, results_dir: Path, force: bool, isolate: bool) -> list[Outcome]:
    return sweep_chunk(specs, dataclasses.replace(settings, device=_worker_device), results_dir, force, isolate)


def run_on_devices(
    specs: list[ModelSpec], settings: BenchSettings, results_dir: Path, *, devices: list[str], force: bool = False,
    isolate: bool = False, console: Console | None = None,
) -> list[Outcome]:  # fmt: skip
    """One worker process per device (`--gpus 0,1,2,3`: cuda:0..3), each pinned to it for its life and taking the
    next distinct model when it is free; the combined progress here. A worker that dies stops the pool: every model
    not finished by then gets a failure record (rerun: current records are skipped; --isolate contains crashes).
    """
    console = console or Console(stderr=True, soft_wrap=True)
    context = multiprocessing.get_context("spawn")  # a forked process must not inherit torch's threads or CUDA
    queue = context.Queue()
    for device in devices:
        queue.put(device)
    shares = chunks(specs)
    outcomes: list[Outcome] = []
    console.print(f"[bold]segbench[/] {len(specs)} model(s) on {len(devices)} worker(s) ({escape(', '.join(devices))}) → {escape(str(results_dir))}")
    with _progress(console) as progress, concurrent.futures.ProcessPoolExecutor(
        len(devices), mp_context=context, initializer=_pin_worker, initargs=(queue,)
    ) as pool:  # fmt: skip
        overall = progress.add_task("models", total=len(specs))
        running = {pool.submit(_sweep_on_worker, share, settings, results_dir, force, isolate): share for share in shares}
        for future in concurrent.futures.as_completed(running):
            share = running[future]
            try:
                done = future.result()
            except Exception as exc:  # noqa: BLE001  (a worker that died, or a sweep that could not go on: its models fail)
                died = isinstance(exc, concurrent.futures.process.BrokenProcessPool)
                env = collect_environment(torch.device(devices[0]))
                done = [_lost(spec, settings, results_dir, env, kind="worker_died" if died else type(exc).__name__,
                              message=f"worker process died: {exc}" if died else str(exc) or type(exc).__name__,
                              details="".join(traceback.format_exception(exc))) for spec in share]  # fmt: skip
            _report(progress, done)
            outcomes += done
            progress.advance(overall, len(share))
    return outcomes


# ---------------------------------------------------------------- job arrays through submitit


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise SegbenchError("--executor: needs the submitit package; pip install submitit") from None
    return submitit


def slurm_parameters(
    *, partition: str | None, gpus_per_job: int, time_limit_s: float, array_parallelism: int, options: list[str]
) -> dict[str, Any]:
    """submitit's parameters for the job array; each --slurm-option KEY=VALUE becomes `#SBATCH --KEY=VALUE`."""
    extra = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise SegbenchError(f"--slurm-option {option!r}: expected KEY=VALUE, e.g. qos=high or cpus-per-task=16")
        extra[key.strip().lstrip("-").replace("-", "_")] = value
    parameters = {"slurm_partition": partition, "gpus_per_node": gpus_per_job, "timeout_min": math.ceil(time_limit_s / 60),
                  "slurm_array_parallelism": array_parallelism, "slurm_additional_parameters": extra}  # fmt: skip
    return {key: value for key, value in parameters.items() if value is not None}


def make_executor(kind: str, log_folder: Path, parameters: dict[str, Any]):
    """submitit's executor of `kind`: parameters a local or debug executor has no use for are left out."""
    submitit = import_submitit()
    try:
        executor = submitit.AutoExecutor(folder=log_folder, cluster=kind)
        executor.update_parameters(name="segbench", **(parameters if kind == "slurm" else {"timeout_min": parameters["timeout_min"]}))
    except (RuntimeError, ValueError) as exc:  # no srun on this machine; an sbatch option submitit refuses
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SegbenchError(f"--executor {kind}: {first}; submit from a SLURM login node, or try the setup with --executor local") from None
    return executor


def run_task(specs: list[ModelSpec], settings: BenchSettings, device: str, results_dir: Path, force: bool, isolate: bool):
    """One array task, on its node: the device is resolved there, where its GPUs are."""
    return sweep_chunk(specs, dataclasses.replace(settings, device=resolve_device(device, None)), results_dir, force, isolate)


@dataclass
class Submission:
    jobs: list  # submitit jobs, one per share
    chunks: list[list[ModelSpec]]
    device: str
    started: float  # time.time() at submission: records written since then are this submission's


def submit(
    executor, specs: list[ModelSpec], settings: BenchSettings, results_dir: Path, *, device: str, models_per_task: int = 1,
    force: bool = False, isolate: bool = False,
) -> Submission:  # fmt: skip
    """One array task per share of `models_per_task` distinct models."""
    shares = chunks(specs, models_per_task)
    started = time.time()
    n = len(shares)
    jobs = executor.map_array(run_task, shares, [settings] * n, [device] * n, [results_dir] * n, [force] * n, [isolate] * n)
    return Submission(jobs, shares, device, started)


def wait(submission: Submission, settings: BenchSettings, results_dir: Path, *, console: Console | None = None, poll_s: float = 10) -> list[Outcome]:
    """Follow the jobs until every one has ended; the outcomes of their models, a job that died turned into a
    failure record for each model it left without a record."""
    console = console or Console(stderr=True, soft_wrap=True)
    outcomes: list[Outcome] = []
    pending = dict(zip(map(id, submission.jobs), zip(submission.jobs, submission.chunks)))
    total = sum(map(len, submission.chunks))
    with _progress(console) as progress, _jobs_go_on(submission, console):
        overall = progress.add_task(f"models in {len(submission.jobs)} job(s)", total=total)
        while pending:
            for key, (job, share) in list(pending.items()):
                if not _ended(job):
                    continue
                del pending[key]
                done = _job_outcomes(job, share, settings, results_dir, submission)
                _report(progress, done)
                outcomes += done
                progress.advance(overall, len(share))
            if pending:
                progress.update(overall, description=f"models: {_states(job for job, _ in pending.values())}")
                time.sleep(poll_s)
    return outcomes


@contextlib.contextmanager
def _jobs_go_on(submission: Submission, console: Console):
    """On Ctrl-C, say that the submitted jobs go on writing records: stopping to follow them does not cancel them."""
    try:
        yield
    except KeyboardInterrupt:
        ids = " ".join(str(job.job_id) for job in submission.jobs)
        console.print(f"the jobs go on ({ids}): scancel them to stop, or `segbench render` to gather", markup=False, highlight=False)
        raise


def _ended(job) -> bool:
    """Whether the job has ended; a debug executor's job runs here, now, and raises what its task raised."""
    try:
        return job.done()
    except Exception:  # noqa: BLE001  (the job's exception() returns it again)
        return True


def _states(jobs) -> str:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.state] = counts.get(job.state, 0) + 1
    return ", ".join(f"{n} job(s) {state.lower()}" for state, n in sorted(counts.items()))


def _job_outcomes(job, share: list[ModelSpec], settings: BenchSettings, results_dir: Path, submission: Submission) -> list[Outcome]:
    """The job's own outcomes; for a job that died, the records it wrote before it died and failure records for the rest."""
    error = job.exception()
    if error is None:
        return job.result()
    state, log = (job.state.split() or ["UNKNOWN"])[0], job.stderr() or ""  # "CANCELLED by 1234" -> CANCELLED
    written = _written_since(results_dir, submission.started)
    last = next((line for line in reversed(str(error).splitlines()) if line.strip()), type(error).__name__)
    outcomes = []
    for spec in share:
        if spec.name in written:
            record = written[spec.name]
            outcomes.append(Outcome(spec, record["status"], record, record.get("error", {}).get("message")))
            continue
        env = _job_environment(submission.device, results_dir, written, job.job_id)
        kind = "out_of_memory" if state == "OUT_OF_MEMORY" or is_out_of_memory(log) else f"job_{state.lower()}"
        outcomes.append(_lost(spec, settings, results_dir, env, kind=kind, message=f"job {job.job_id} ended {state}: {last}",
                              details=log[-LOG_TAIL:], job_id=str(job.job_id), job_state=state))  # fmt: skip
    return outcomes


def _written_since(results_dir: Path, started: float) -> dict[str, dict]:
    """model -> its record (successful or failed) written at or after `started`."""
    if not results_dir.is_dir():
        return {}
    found = {}
    for path, record in iter_records(results_dir, "*/*.json"):
        if path.stat().st_mtime >= started - 1:
            found.setdefault(record["model"], record)
    return found


def _job_environment(device: str, results_dir: Path, written: dict[str, dict], job_id) -> dict:
    """Where a job that left no record would have measured: the hardware of a record another job of this submission
    wrote, else this machine's when it has the device, else 'unknown' (the job never said)."""
    hardware = next(iter(r["environment"]["hardware"] for r in written.values()), None)
    if hardware is None:
        try:
            hardware = collect_environment(resolve_device(device, None))["hardware"]
        except SegbenchError:
            hardware = "unknown"
    kind = torch.device(device).type
    return {"device": device, "device_type": kind, "cpu": "unknown: the job ended before it reported", "hardware": hardware,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": None, "job_id": str(job_id)}  # fmt: skip


# ---------------------------------------------------------------- shared


def _lost(spec: ModelSpec, settings: BenchSettings, results_dir: Path, env: dict, **error) -> Outcome:
    """A failure record for a model whose process died before it wrote one, written where its record would be."""
    record = failure_record(spec, settings.for_spec(spec), env, **error)
    write_record(record_path(results_dir, results_folder(env["hardware"], record["settings"]), spec.name, failed=True), record)
    return Outcome(spec, "failed", record, record["error"]["message"])


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)  # fmt: skip


def _report(progress: Progress, outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.status == "failed":
            progress.console.print(f"  [red]FAIL[/] {escape(o.spec.name)}: {escape(o.error or '')}")


# ---------------------------------------------------------------- the command line


def check_arguments(args) -> None:
    """Combinations of `segbench bench` options a fan-out cannot honour: one line each, before anything runs."""
    import os

    if args.gpus and args.executor:
        raise SegbenchError("--gpus: runs workers on this machine; with --executor give --gpus-per-job instead")
    if args.gpus and (args.device or args.gpu is not None):
        raise SegbenchError("--gpus: pins one worker to each GPU it names; leave out --device and --gpu")
    if args.executor and args.gpu is not None:
        raise SegbenchError("--executor: the device is chosen on each node; give --device cuda or cpu, not --gpu")
    if args.time_budget:
        raise SegbenchError("--time-budget: applies to one sweep in one process; leave out --gpus and --executor")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SegbenchError("--gpus/--executor: not under torchrun; start segbench once, it starts its own workers")


def placeholder_device(args) -> torch.device:
    """The device the settings name; each worker or node resolves its own. --gpus checks every GPU it names is here."""
    if args.gpus:
        devices = [resolve_device(None, gpu) for gpu in args.gpus]
        return devices[0]
    if args.executor == "slurm":  # the submitting machine need not have the nodes' GPUs
        device = torch.device(args.device or ("cuda" if args.gpus_per_job else "cpu"))
        if device.type not in ("cpu", "cuda"):
            raise SegbenchError(f"--device: expected cpu or cuda[:N], got {args.device!r}")
        return device
    return resolve_device(args.device, None)


def fan_out(args, specs: list[ModelSpec], settings: BenchSettings, results_dir: Path, console: Console) -> list[Outcome] | None:
    """Run the sweep on --gpus workers or as an --executor job array; None when --no-wait left the jobs running."""
    if args.gpus:
        devices = [f"cuda:{gpu}" for gpu in args.gpus]
        return run_on_devices(specs, settings, results_dir, devices=devices, force=args.force, isolate=args.isolate, console=console)
    parameters = slurm_parameters(partition=args.partition, gpus_per_job=args.gpus_per_job, time_limit_s=args.time_limit,
                                  array_parallelism=args.array_parallelism, options=args.slurm_option or [])  # fmt: skip
    logs = Path(args.output) / "jobs"
    executor = make_executor(args.executor, logs, parameters)
    device = str(settings.device) if args.device else settings.device.type
    submission = submit(executor, specs, settings, results_dir, device=device, models_per_task=args.models_per_task,
                        force=args.force, isolate=args.isolate)  # fmt: skip
    ids = " ".join(str(job.job_id) for job in submission.jobs)
    console.print(f"submitted {len(submission.jobs)} job(s) to {args.executor} for {len(specs)} model(s): {ids}; logs in {logs}",
                  markup=False, highlight=False)  # fmt: skip
    if args.no_wait:
        output = f" --output {args.output}" if args.output != "." else ""
        console.print(f"when they have ended: `segbench render{output}` gathers the page; the same `segbench bench` "
                      "command measures what is still missing (current records are skipped)", markup=False, highlight=False)  # fmt: skip
        return None
    return wait(submission, settings, results_dir, console=console)
