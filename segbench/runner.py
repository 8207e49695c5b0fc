"""A benchmark sweep: for each selected model build, load weights, count, time, measure memory,
optionally evaluate mIoU, measure a training step on CUDA, and write a record.

One model's failure (bad manifest entry, build error, out of memory, shape error) becomes a
failure record and a row in the summary; the sweep goes on. Under torchrun every rank builds
the model and evaluates its shard of the dataset; rank 0 alone profiles and writes records.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from segbench.build import build_model
from segbench.checkpoint import load_checkpoint
from segbench.cityscapes import CityscapesDataset, dataset_root
from segbench.complexity import count_macs, count_params
from segbench.environment import collect_environment
from segbench.errors import SegbenchError
from segbench.manifest import BUILTIN_WEIGHTS, ModelSpec
from segbench.records import SCHEMA_VERSION, is_current, read_record, record_path, reusable_complexity, write_record
from segbench.evaluate import evaluate
from segbench.gpu_state import gpu_state_section, read_gpu_state
from segbench.inference import inference_settings
from segbench.layers import resize
from segbench.timing import DTYPES, cudnn_flags, peak_memory, prediction_stages, time_predictions
from segbench.training import (
    AUXILIARY_LOSS_WEIGHT, CUDNN, IGNORE_INDEX, SGD, WARMUP_STEPS, measure_training, per_gpu_batch, training_precision,
)  # fmt: skip


@dataclass(frozen=True)
class Evaluation:
    """Where and how to measure mIoU: a Cityscapes-layout root, a split, and optionally ms+flip."""

    data_root: str
    split: str = "val"
    ms_flip: bool = False
    workers: int = 2

    def as_settings(self) -> dict[str, Any]:
        return {"data_root": self.data_root, "split": self.split, "ms_flip": self.ms_flip, "world_size": world_size()}


@dataclass(frozen=True)
class BenchSettings:
    device: torch.device
    images: int = 200
    warmup: int = 5
    input_size: tuple[int, int] | None = None  # overrides every manifest's Test.size
    weights: bool = False  # load each manifest's published weights
    checkpoint: str | None = None  # one file or URL for the (single) selected model
    evaluation: Evaluation | None = None
    dtype: str = "fp32"  # fp16/bf16: the forward pass under torch.autocast
    channels_last: bool = False
    compile: bool = False  # torch.compile the model before timing (compiled during warm-up)
    train_iters: int = 10  # timed training steps on CUDA; 0 skips training memory and s/iter

    def weights_source(self, spec: ModelSpec) -> str | None:
        """The checkpoint to load, if any: a builder with builtin weights has nothing to download."""
        return self.checkpoint or (spec.weights if self.weights and not spec.builtin_weights else None)

    def for_spec(self, spec: ModelSpec) -> dict[str, Any]:
        """The settings a record stores: everything that changes a measured number."""
        size = self.input_size or spec.test.size
        return {
            "device_type": self.device.type,
            "batch_size": 1,
            "input_size": list(size),
            "input_size_from": "override" if self.input_size else "manifest",
            "input": "dataset" if self.evaluation else "synthetic",
            "weights": self.weights_source(spec) or (BUILTIN_WEIGHTS if spec.builtin_weights else "random-init"),
            "dtype": str(DTYPES[self.dtype]).removeprefix("torch."),
            "autocast": self.dtype != "fp32",
            "channels_last": self.channels_last,
            "compile": self.compile,
            "mode": spec.test.mode,
            "align_corners": spec.test.align_corners,
            "images": self.images,
            "warmup": self.warmup,
            "cudnn_benchmark": False,
            "cudnn_deterministic": True,
            "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "torch_threads": torch.get_num_threads(),
            "evaluation": self.evaluation.as_settings() if self.evaluation else None,
            "training": self.training_settings(spec),
        }

    def training_settings(self, spec: ModelSpec) -> dict[str, Any] | None:
        """How the training step is measured; None where it is not (CPU, --train-iters 0)."""
        if self.device.type != "cuda" or not self.train_iters:
            return None
        batch, batch_from = per_gpu_batch(spec)
        precision, precision_from = training_precision(spec)
        return {
            "crop_size": list(spec.crop_size) if spec.crop_size else None,
            "batch_size": batch,
            "batch_size_from": batch_from,
            "iterations": self.train_iters,
            "warmup": WARMUP_STEPS,
            "optimizer": dict(SGD, type="SGD"),
            "loss": {"type": "cross_entropy", "ignore_index": IGNORE_INDEX, "auxiliary_weight": AUXILIARY_LOSS_WEIGHT},
            "precision": precision,
            "precision_from": precision_from,
            "cudnn_benchmark": CUDNN["benchmark"],
            "cudnn_deterministic": CUDNN["deterministic"],
        }


@dataclass
class Outcome:
    spec: ModelSpec
    status: str  # "ok", "skipped" or "failed"
    record: dict[str, Any] | None = None
    error: str | None = None


def resolve_device(device: str | None, gpu: int | None) -> torch.device:
    """--gpu N / --device X to a torch.device; asking for a GPU that is not there is an error."""
    if gpu is not None:
        if device not in (None, "cuda", f"cuda:{gpu}"):
            raise SegbenchError(f"--gpu {gpu} conflicts with --device {device}")
        device = f"cuda:{gpu}"
    if device is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise SegbenchError(f"--device: expected cpu or cuda[:N], got {device!r}")
    if resolved.type == "cuda":
        index = resolved.index or 0
        count = torch.cuda.device_count()
        if index >= count:
            have = f"only {count} CUDA device(s)" if count else "no CUDA device"
            raise SegbenchError(f"CUDA device {index} requested but this machine has {have}; use --device cpu to run on the CPU")
        resolved = torch.device("cuda", index)
    return resolved


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def resolve_evaluation(
    data_root: str | None, *, requested: bool, split: str, ms_flip: bool, workers: int
) -> Evaluation | None:
    """mIoU is measured when a data root is given or asked for (then $CITYSCAPES_DATASET); else None."""
    if data_root is None and not requested:
        return None
    return Evaluation(str(dataset_root(data_root).resolve()), split, ms_flip, workers)


def measure(spec: ModelSpec, settings: BenchSettings, results_dir: Path, env: dict, progress: Progress, task) -> dict:
    """Build and measure one model; returns its record (on rank 0; other ranks only evaluate)."""
    run_settings = settings.for_spec(spec)
    size = tuple(run_settings["input_size"])
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": spec.name,
        "family": spec.family,
        "collection": spec.collection,
        "manifest": spec.file,
        "spec_hash": spec.spec_hash(),
        "spec": {"build": spec.build.as_dict(), "test": spec.test.as_dict(), "weights": spec.weights},
        "settings": run_settings,
        "environment": env,
    }
    started = time.perf_counter()

    progress.update(task, description=f"{spec.name}: building")
    model = build_model(spec)
    source = settings.weights_source(spec)
    if source:
        progress.update(task, description=f"{spec.name}: loading weights")
        load_checkpoint(model, source, model_name=spec.name, sha256=spec.weights_sha256, adapter=spec.weights_adapter)
    test = inference_settings(spec.test, size=size)
    # Built once: construction checks every image/label pair on disk.
    dataset = CityscapesDataset(settings.evaluation.data_root, settings.evaluation.split) if settings.evaluation else None
    if rank() == 0:
        _profile(spec, model, settings, test, dataset, results_dir, record, progress, task)
    if dataset is not None:
        modes = [False, True] if settings.evaluation.ms_flip else [False]
        for ms_flip in modes:
            label = "mIoU (ms+flip)" if ms_flip else "mIoU"
            progress.update(task, description=f"{spec.name}: {label} on {len(dataset)} images", total=None)
            result = evaluate(
                model, dataset, inference_settings(spec.test, size=size, multi_scale_flip=ms_flip),
                device=settings.device, num_workers=settings.evaluation.workers,
            )  # fmt: skip
            if result is not None:
                record["accuracy_ms_flip" if ms_flip else "accuracy"] = result.as_record()
    if rank() == 0:
        progress.update(task, description=f"{spec.name}: training step", total=None)
        record["training"] = _training(spec, model, settings, record["settings"]["training"])
    record["duration_s"] = round(time.perf_counter() - started, 3)
    record["status"] = "ok"
    return record


def _profile(
    spec, model, settings: BenchSettings, test, dataset: CityscapesDataset | None, results_dir: Path, record: dict, progress: Progress, task
) -> None:
    """Params, MACs, latency (warm-up, then timed stages between two GPU-state readings) and inference memory into `record`."""
    size = tuple(record["settings"]["input_size"])
    reused = reusable_complexity(results_dir, spec.name, spec.spec_hash(), list(size))
    if reused:
        record["params"], record["macs"] = reused["params"], dict(reused["macs"], reused_from=reused["source"])
    else:
        record["params"] = count_params(model)
        progress.update(task, description=f"{spec.name}: counting MACs at {size[0]}×{size[1]}")
        record["macs"] = count_macs(model, size)

    model.to(settings.device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    network = torch.compile(model) if settings.compile else model
    stages = prediction_stages(network, test, dtype=settings.dtype, channels_last=settings.channels_last)
    images = timing_images(dataset, settings.images, size)
    device = settings.device

    with cudnn_flags(benchmark=False, deterministic=True):
        progress.update(task, description=f"{spec.name}: warm-up", total=settings.warmup, completed=0)
        time_predictions(stages, images, device, iterations=settings.warmup, on_step=lambda: progress.advance(task))
        progress.update(task, description=f"{spec.name}: timing", total=settings.images, completed=0)
        before = read_gpu_state(device)
        latency = time_predictions(stages, images, device, iterations=settings.images, on_step=lambda: progress.advance(task))
        after = read_gpu_state(device)
        record["latency"] = dict(latency, distinct_images=len(images))
        record["gpu_state"] = gpu_state_section(before, after, settings.images)
        progress.update(task, description=f"{spec.name}: peak memory")
        record["memory"] = peak_memory(stages, images[0].to(device))


def timing_images(dataset: CityscapesDataset | None, count: int, size: tuple[int, int]) -> list[torch.Tensor]:
    """uint8 RGB (1, 3, H, W) images on the CPU at the test size: the first `count` of the
    dataset's split when one is given (resized as the test pipeline would, outside the timing),
    else one fixed random image. Each is copied to the device before its clock starts."""
    if dataset is None:
        generator = torch.Generator().manual_seed(0)
        return [torch.randint(0, 256, (1, 3, *size), generator=generator, dtype=torch.uint8)]
    return [
        resize(dataset[i][0][None].float(), size, False).round().clamp(0, 255).to(torch.uint8)
        for i in range(min(count, len(dataset)))
    ]


def _training(spec: ModelSpec, model, settings: BenchSettings, training: dict[str, Any] | None) -> dict[str, Any]:
    """Training memory and s/iter at the manifest's crop size and per-GPU batch; why not, where not."""
    if training is None:
        why = "--train-iters 0" if settings.train_iters == 0 else f"CUDA only, this run is on {settings.device.type}"
        return {"measured": False, "reason": f"training memory and step time not measured: {why}"}
    if training["crop_size"] is None or not training["batch_size"]:
        missing = "Metadata.Crop Size" if training["crop_size"] is None else "Metadata.Batch Size"
        return {"measured": False, "reason": f"{spec.file}: model {spec.name!r}: field {missing!r}: needed for training memory"}
    model.to("cpu")  # the inference copy would otherwise count towards the training peak
    torch.cuda.empty_cache()
    try:
        return measure_training(
            model, settings.device, tuple(training["crop_size"]), training["batch_size"], training["iterations"],
            precision=training["precision"],
        )  # fmt: skip
    except torch.cuda.OutOfMemoryError as exc:
        torch.cuda.empty_cache()
        return {"measured": False, "out_of_memory": True, "reason": f"out of memory: {str(exc).splitlines()[0]}"}


def measure_or_failure(spec: ModelSpec, settings: BenchSettings, results_dir: Path, env: dict, progress: Progress, task) -> dict:
    """measure(), or a failure record for any error it raises: one model never ends a sweep."""
    try:
        return measure(spec, settings, results_dir, env, progress, task)
    except Exception as exc:  # noqa: BLE001  (any model error is recorded; the sweep goes on)
        oom = isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()
        return failure_record(
            spec, settings.for_spec(spec), env,
            kind="out_of_memory" if oom else type(exc).__name__,
            message=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            details="".join(traceback.format_exception(exc)),
        )  # fmt: skip


def failure_record(spec: ModelSpec, run_settings: dict, env: dict, *, kind: str, message: str, details: str, **extra) -> dict:
    """A failed attempt's record: what failed (kind, one-line message, traceback or stderr) and under which settings."""
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "failed",
        "model": spec.name,
        "family": spec.family,
        "collection": spec.collection,
        "manifest": spec.file,
        "spec_hash": spec.spec_hash(),
        "settings": run_settings,
        "environment": env,
        "error": {"kind": kind, "message": message, "traceback": details, **extra},
    }


def run_sweep(
    specs: list[ModelSpec],
    settings: BenchSettings,
    results_dir: Path,
    *,
    force: bool = False,
    isolate: bool = False,
    console: Console | None = None,
) -> list[Outcome]:
    """Measure each spec (in a fresh process each with `isolate`) and write its record; skip current ones."""
    if isolate and world_size() > 1:
        raise SegbenchError("--isolate: not available under torchrun; run one process per GPU instead")
    from segbench.isolate import run_isolated

    writer = rank() == 0
    console = console or Console(stderr=True, soft_wrap=True)
    if not writer:
        console = Console(quiet=True)
    env = collect_environment(settings.device)
    hardware = env["hardware"]
    console.print(f"[bold]segbench[/] {len(specs)} model(s) on {settings.device} ({env.get('gpu_name') or env['cpu']}) → {results_dir}/{hardware}/")
    outcomes: list[Outcome] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False, disable=not writer) as progress:
        overall = progress.add_task("models", total=len(specs))
        for spec in specs:
            path = record_path(results_dir, hardware, spec.name)
            failed_path = record_path(results_dir, hardware, spec.name, failed=True)
            run_settings = settings.for_spec(spec)
            if not force and path.exists() and is_current(read_record(path), spec.spec_hash(), run_settings):
                outcomes.append(Outcome(spec, "skipped", read_record(path)))
                progress.console.print(f"  [dim]skip[/] {spec.name}: record is current (use --force to re-run)")
                progress.advance(overall)
                continue
            task = progress.add_task(spec.name, total=None)
            if isolate:
                record = run_isolated(spec, settings, results_dir, env, progress, task)
            else:
                record = measure_or_failure(spec, settings, results_dir, env, progress, task)
            progress.remove_task(task)
            if record["status"] == "failed":
                if writer:
                    write_record(failed_path, record)
                outcomes.append(Outcome(spec, "failed", record, record["error"]["message"]))
                progress.console.print(f"  [red]FAIL[/] {spec.name}: {record['error']['message']}")
                if settings.device.type == "cuda":
                    torch.cuda.empty_cache()
            else:
                if writer:
                    write_record(path, record)
                    failed_path.unlink(missing_ok=True)
                outcomes.append(Outcome(spec, "ok", record))
                for warning in record.get("gpu_state", {}).get("warnings", []):
                    progress.console.print(f"  [yellow]warning[/] {spec.name}: {warning}")
            progress.advance(overall)
    return outcomes
