"""A benchmark sweep: for each selected model build, load weights, count, time, measure memory,
optionally evaluate mIoU, measure a training step on CUDA, and write a record.

One model's failure (bad manifest entry, build error, out of memory, shape error) becomes a
failure record and a row in the summary; the sweep goes on. Under torchrun every rank builds
the model and evaluates its shard of the dataset; rank 0 alone profiles and writes records.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from segbench.build import build_model
from segbench.checkpoint import load_checkpoint
from segbench.cityscapes import CityscapesDataset, cityscapes_pairs, dataset_fingerprint, dataset_root
from segbench.complexity import count_macs_as_tested, count_params
from segbench.environment import collect_environment, load_average_1min
from segbench.errors import SegbenchError, located
from segbench.eta import SweepPace, TimeLeftColumn, model_work
from segbench.manifest import BUILTIN_WEIGHTS, ModelSpec
from segbench.plan import measurement_key
from segbench.records import (
    MEASURED_DATASET, MEASUREMENTS, SCHEMA_VERSION, SHARED_SECTIONS, current_record, read_record, record_path, results_folder, reusable_complexity,
    write_record,
)  # fmt: skip
from segbench.evaluate import evaluate
from segbench.gpu_state import gpu_state_section, read_gpu_state
from segbench.inference import inference_settings, normalize
from segbench.layers import resize
from segbench.protocols import AUTO, PROTOCOLS, Protocol
from segbench import timing
from segbench.timing import DTYPES, STEADY, cudnn_flags, peak_memory, prediction_stages
from segbench.training import (
    AUXILIARY_LOSS_WEIGHT, CUDNN, IGNORE_INDEX, SGD, WARMUP_STEPS, measure_training, per_gpu_batch, training_precision,
)  # fmt: skip
from segbench.validity import verdict


OUT_OF_MEMORY_SIGNS = ("out of memory", "alloc_cpu", "std::bad_alloc", "not enough memory", "can't allocate memory")
"""How CUDA, c10's CPU allocator and the C++ runtime word an allocation failure."""


def is_out_of_memory(text: str) -> bool:
    lowered = text.lower()
    return any(sign in lowered for sign in OUT_OF_MEMORY_SIGNS)


@dataclass(frozen=True)
class Evaluation:
    """Where and how to measure mIoU: a Cityscapes-layout root, a split, and optionally ms+flip.

    `fingerprint` stands for the split's files (names, sizes, mtimes): a record measured on other
    files is not current.
    """

    data_root: str
    split: str = "val"
    ms_flip: bool = False
    workers: int = 2
    fingerprint: str = ""

    def as_settings(self) -> dict[str, Any]:
        return {"data_root": self.data_root, "split": self.split, "ms_flip": self.ms_flip, "world_size": world_size(),
                "fingerprint": self.fingerprint}  # fmt: skip


WARMUP = {"cuda": 5, "cpu": 1}
"""Default warm-up passes per device type. On CUDA, mmsegmentation's tools/benchmark.py count. On the
CPU one is enough: at 1 thread and 128×256 (benchmarks/cpu_warmup.py), the second pass of 105 of 106
distinct zoo builds took within 13% of the CPU time of passes 3-8, whose own spread reached 23% on the
busy cores it ran on (the 106th, BiSeNetV1 R-50, 1.02 when measured again on quiet cores); the
first pass costs up to 2× on some models."""


def default_warmup(device: torch.device) -> int:
    return WARMUP.get(device.type, WARMUP["cuda"])


@dataclass(frozen=True)
class BenchSettings:
    device: torch.device
    input_size: tuple[int, int] | None = None  # overrides every manifest's Test.size
    weights: bool = False  # load each manifest's published weights
    checkpoint: str | None = None  # one file or URL for the (single) selected model
    checkpoint_sha256: str | None = None  # its full sha256 (--sha256), instead of the manifest's
    trust_checkpoints: bool = False  # read unpinned checkpoints on a torch older than 2.10
    evaluation: Evaluation | None = None
    dtype: str = "fp32"  # fp16/bf16: the forward pass under torch.autocast
    channels_last: bool = False
    protocol: Protocol = PROTOCOLS["mmseg"]  # what is timed and how, with the user's overrides; "compile" compiles in warm-up

    @property
    def images(self) -> int | None:
        """Timed predictions per model; None when the protocol times for a minimum duration instead."""
        return self.protocol.images

    @property
    def warmup(self) -> int | str:
        """Warm-up passes (a count, or AUTO): the protocol's, else segbench's default for the device it runs on."""
        return default_warmup(self.device) if self.protocol.warmup is None else self.protocol.warmup
    train_iters: int = 10  # timed training steps on CUDA; 0 skips training memory and s/iter
    measure: tuple[str, ...] = MEASUREMENTS  # what to measure, a subset of MEASUREMENTS

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
            "compile": self.protocol.backend == "compile",
            "backend": self.protocol.backend,
            "protocol": self.protocol.as_settings(),
            "mode": spec.test.mode,
            "align_corners": spec.test.align_corners,
            "images": self.images,
            "warmup": self.warmup,
            "cudnn_benchmark": self.protocol.cudnn_benchmark,
            "cudnn_deterministic": not self.protocol.cudnn_benchmark,
            "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "torch_threads": torch.get_num_threads(),
            "evaluation": self.evaluation.as_settings() if self.evaluation else None,
            "training": self.training_settings(spec),
            "measure": sorted(self.measure),
            "builder": builder_source(spec),
        }

    def planned_passes(self) -> int:
        """Warm-up and timed passes this sweep plans per model, for time budgets; a duration protocol's count is not
        known in advance and AUTO counts as STEADY's shortest settling."""
        return (self.images or 0) + (2 * STEADY["window"] if self.warmup == AUTO else self.warmup)

    def training_settings(self, spec: ModelSpec) -> dict[str, Any] | None:
        """How the training step is measured; None where it is not (CPU, --train-iters 0, not in --measure)."""
        if self.device.type != "cuda" or not self.train_iters or "training" not in self.measure:
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
    record: dict[str, Any] | None = None  # None for a model skipped because another sweep is measuring it
    error: str | None = None  # why it failed, or why it was skipped


def builder_source(spec: ModelSpec) -> dict[str, str | None] | None:
    """A callable builder's module and the sha256 of its file, so that editing the model makes its record stale.

    Only that one file: modules it imports in turn are not followed. None for segbench's own architectures.
    """
    if spec.build.callable is None:
        return None
    module = spec.build.callable.split(":")[0]
    try:
        found = importlib.util.find_spec(module)
        source = Path(found.origin).read_bytes() if found and found.has_location else None
    except (ImportError, ValueError, OSError):
        source = None
    return {"module": module, "sha256": hashlib.sha256(source).hexdigest() if source is not None else None}


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
    """mIoU is measured when a data root is given or asked for (then $CITYSCAPES_DATASET); else None.

    The split is checked here, once, before any model is built: a missing root or one without
    image/label pairs is one error, not one failure per model.
    """
    if data_root is None and not requested:
        return None
    root = dataset_root(data_root).resolve()
    pairs = cityscapes_pairs(root, split)
    return Evaluation(str(root), split, ms_flip, workers, dataset_fingerprint(root, pairs))


def shared_measurement_key(spec: ModelSpec, run_settings: dict[str, Any]) -> str:
    """Entries with the same key share one measurement: the same network tested the same way under the same sweep
    settings. The weights are left out: they change mIoU only, and mIoU is never shared."""
    return json.dumps([measurement_key(spec), {k: v for k, v in run_settings.items() if k != "weights"}], sort_keys=True)


def measure(
    spec: ModelSpec, settings: BenchSettings, results_dir: Path, env: dict, progress: Progress, task,
    shared: tuple[str, dict] | None = None,
) -> dict:  # fmt: skip
    """Build and measure one model; returns its record (on rank 0; other ranks only evaluate).

    `shared`: (file name, record) of an entry with the same shared_measurement_key measured on this hardware: its
    params, MACs, latency, memory and training are copied (`shared_from` names it) and the model is built only to
    evaluate mIoU with its own weights."""
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
    evaluates = settings.evaluation is not None and "miou" in settings.measure
    if evaluates and spec.reported and not spec.reported_on(MEASURED_DATASET):  # another label set: no Cityscapes mIoU
        record["miou_skipped"] = f"reports {spec.reported[0].dataset} only; segbench measures mIoU on Cityscapes"
        evaluates = False
    if shared is not None:
        record["shared_from"] = shared[0]
        record.update({section: shared[1][section] for section in SHARED_SECTIONS if section in shared[1]})
        if not evaluates:
            return _finished(record, started)

    progress.update(task, description=f"{spec.name}: building")
    with _phase(record, "build"):
        model = build_model(spec)
    source = settings.weights_source(spec)
    if source:
        progress.update(task, description=f"{spec.name}: loading weights")
        with _phase(record, "weights"):
            load_checkpoint(
                model, source, model_name=spec.name, sha256=settings.checkpoint_sha256 or spec.weights_sha256,
                adapter=spec.weights_adapter, trusted=settings.trust_checkpoints,
            )  # fmt: skip
    test = inference_settings(spec.test, size=size)
    # Built once: construction checks every image/label pair on disk.
    dataset = CityscapesDataset(settings.evaluation.data_root, settings.evaluation.split) if settings.evaluation else None
    if rank() == 0 and shared is None:
        _profile(spec, model, settings, test, dataset, results_dir, record, progress, task)
    if dataset is not None and evaluates:
        modes = [False, True] if settings.evaluation.ms_flip else [False]
        for ms_flip in modes:
            label = "mIoU (ms+flip)" if ms_flip else "mIoU"
            progress.update(task, description=f"{spec.name}: {label} on {len(dataset)} images", total=None)
            with _phase(record, "miou"):
                result = evaluate(
                    model, dataset, inference_settings(spec.test, size=size, multi_scale_flip=ms_flip),
                    device=settings.device, num_workers=settings.evaluation.workers,
                )  # fmt: skip
            if result is not None:
                record["accuracy_ms_flip" if ms_flip else "accuracy"] = result.as_record()
    if rank() == 0 and "training" in settings.measure and shared is None:
        progress.update(task, description=f"{spec.name}: training step", total=None)
        with _phase(record, "training"):
            record["training"] = _training(spec, model, settings, record["settings"]["training"])
    return _finished(record, started)


@contextlib.contextmanager
def _phase(record: dict, name: str) -> Iterator[None]:
    """Adds the seconds the block takes to `record["phase_seconds"][name]`: where a model's measuring time goes,
    so the summary can say which share of a sweep its timed and warm-up passes are (the rest is overhead)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        phases = record.setdefault("phase_seconds", {})
        phases[name] = round(phases.get(name, 0.0) + time.perf_counter() - started, 4)


def _finished(record: dict, started: float) -> dict:
    record["duration_s"] = round(time.perf_counter() - started, 3)
    record["status"] = "ok"
    record["validity"] = verdict(record)
    return record


def _profile(
    spec, model, settings: BenchSettings, test, dataset: CityscapesDataset | None, results_dir: Path, record: dict, progress: Progress, task
) -> None:
    """Params, MACs, latency (warm-up, then timed stages between two GPU-state readings) and inference memory into
    `record`, each only when `settings.measure` names it."""
    wanted = set(settings.measure)
    size = tuple(record["settings"]["input_size"])
    ms_flip = bool(settings.evaluation and settings.evaluation.ms_flip)
    reused = reusable_complexity(results_dir, spec.name, spec.spec_hash(), list(size)) if wanted & {"params", "macs"} else None
    if reused and not ("per_image" in reused["macs"] and (not ms_flip or "ms_flip" in reused["macs"])):
        reused = None  # counted before per-image MACs, or without this run's ms+flip scales
    if "params" in wanted:
        record["params"] = reused["params"] if reused else count_params(model)
    if "macs" in wanted:
        progress.update(task, description=f"{spec.name}: counting MACs at {size[0]}×{size[1]}")
        with _phase(record, "macs"):
            record["macs"] = dict(reused["macs"], reused_from=reused["source"]) if reused else count_macs_as_tested(
                model, test, ms_flip=ms_flip, device=settings.device, shared_as=json.dumps(spec.build.as_dict(), sort_keys=True)
            )  # fmt: skip
    if not wanted & {"latency", "memory"}:
        return

    protocol = settings.protocol
    with _phase(record, "to_device"):
        model.to(settings.device)
        if settings.channels_last:
            model.to(memory_format=torch.channels_last)
        images = timing_images(dataset, settings.images or 1, size)
        network = _timed_network(model, protocol, test, images[0], settings, record)
        stages = prediction_stages(
            network, test, dtype=settings.dtype, channels_last=settings.channels_last, protocol=protocol, device=settings.device
        )  # fmt: skip
    device = settings.device

    with cudnn_flags(benchmark=protocol.cudnn_benchmark, deterministic=not protocol.cudnn_benchmark):
        fixed = settings.warmup != AUTO
        progress.update(task, description=f"{spec.name}: warm-up", total=settings.warmup if fixed else None, completed=0)
        with _phase(record, "warmup"):
            warmup = timing.warm_up(stages, images, device, settings.warmup, sync_each=protocol.sync_each, on_step=lambda: progress.advance(task))
        if "latency" in wanted:
            iterations, calibration = settings.images, None
            if iterations is None:
                progress.update(task, description=f"{spec.name}: calibrating {protocol.min_seconds:g} s of passes", total=None)
                with _phase(record, "calibration"):
                    iterations, calibration = timing.calibrated_iterations(stages, images, device, protocol.min_seconds, sync_each=protocol.sync_each)
            progress.update(task, description=f"{spec.name}: timing", total=iterations, completed=0)
            before, load = read_gpu_state(device), load_average_1min()
            with _phase(record, "timed"):
                latency = timing.time_predictions(
                    stages, images, device, iterations=iterations, sync_each=protocol.sync_each, on_step=lambda: progress.advance(task)
                )  # fmt: skip
            after = read_gpu_state(device)
            record["latency"] = dict(latency, distinct_images=len(images), load_average_1min=load, warmup=warmup)
            if calibration is not None:
                record["latency"]["calibration"] = calibration
            record["gpu_state"] = gpu_state_section(before, after, iterations)
        if "memory" in wanted and protocol.backend == "onnxruntime":
            record["memory"] = {"measured": False, "reason": "ONNX Runtime allocates outside torch: max_memory_allocated cannot see it"}
        elif "memory" in wanted:
            progress.update(task, description=f"{spec.name}: peak memory")
            with _phase(record, "memory"):
                record["memory"] = peak_memory(stages, images[0], device)


FOLD_CHECK_SIZE = (64, 128)
"""The input fold_batchnorm traces and checks on: small, since it costs two forward passes, and every zoo model takes it."""


def _timed_network(model, protocol: Protocol, test, image: torch.Tensor, settings: BenchSettings, record: dict):
    """What the forward stage calls: the model with BatchNorm folded (a copy, so mIoU and training use the model as
    built) when the protocol folds, then run by the protocol's backend. Params and MACs are counted before, on the
    model as built; the record says what was folded and which backend ran."""
    timed = model
    if protocol.fold_bn:
        from segbench.fold import fold_batchnorm

        timed = copy.deepcopy(model)
        small = torch.randn(1, 3, *FOLD_CHECK_SIZE, generator=torch.Generator().manual_seed(0)).to(settings.device)
        folding = fold_batchnorm(timed, small, where=located(record["manifest"], record["model"], "protocol.fold_bn"))
        record["bn_folding"] = dict(folding, params_and_macs="of the model as built: counted before folding")
        if settings.channels_last:  # folded weights are new tensors, in the default layout
            timed.to(memory_format=torch.channels_last)
    from segbench.backends import forward_backend

    network, record["backend"] = forward_backend(
        timed, protocol.backend, _backend_example(test, image, settings.device), settings.device, name=record["model"]
    )  # fmt: skip
    return network


def _backend_example(test, image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A normalized input of the shape the forward stage gives the network: the image, or one window in slide mode."""
    x = normalize(image.to(device), test.mean, test.std)
    return x[..., : test.crop_size[0], : test.crop_size[1]] if test.mode == "slide" else x


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


def measure_or_failure(
    spec: ModelSpec, settings: BenchSettings, results_dir: Path, env: dict, progress: Progress, task,
    shared: tuple[str, dict] | None = None,
) -> dict:  # fmt: skip
    """measure(), or a failure record for any error it raises: one model never ends a sweep."""
    try:
        return measure(spec, settings, results_dir, env, progress, task, shared)
    except Exception as exc:  # noqa: BLE001  (any model error is recorded; the sweep goes on)
        oom = isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or is_out_of_memory(str(exc))
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
    budget=None,
) -> list[Outcome]:
    """Measure each spec (in a fresh process each with `isolate`) and write its record; skip current ones.
    With a `budget` (plan.TimeBudget) a model starts only when its estimated cost fits in the time left.

    An entry with the same shared_measurement_key as one measured (or current) earlier in the sweep copies that
    measurement (measure's `shared`), in this process: it is built only when mIoU is measured."""
    if isolate and world_size() > 1:
        raise SegbenchError("--isolate: not available under torchrun; run one process per GPU instead")
    from segbench.isolate import run_isolated

    writer = rank() == 0
    console = console or Console(stderr=True, soft_wrap=True)
    if not writer:
        console = Console(quiet=True)
    env = collect_environment(settings.device)
    hardware = env["hardware"]
    folder = results_folder(hardware, {"protocol": settings.protocol.as_settings()})
    where = f"{settings.device} ({env.get('gpu_name') or env['cpu']}) → {results_dir}/{folder}/"
    console.print(f"[bold]segbench[/] {len(specs)} model(s), protocol {settings.protocol.name}, on {escape(where)}")
    outcomes: list[Outcome] = []
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeLeftColumn())
    pace = SweepPace(model_work(specs, settings, results_dir))
    sources: dict[str, tuple[str, dict]] = {}  # shared_measurement_key -> (file name, record) of the entry measured
    with Progress(*columns, console=console, transient=False, disable=not writer) as progress:
        overall = progress.add_task("models", total=len(specs))
        for spec in specs:
            run_settings = settings.for_spec(spec)
            path = record_path(results_dir, results_folder(hardware, run_settings), spec.name)
            failed_path = record_path(results_dir, results_folder(hardware, run_settings), spec.name, failed=True)
            key = shared_measurement_key(spec, run_settings)
            with _claimed(path, spec, run_settings, force=force, writer=writer) as skip:
                if skip:
                    outcomes.append(Outcome(spec, "skipped", read_record(path) if skip == RECORD_CURRENT else None, skip))
                    if outcomes[-1].record is not None:
                        sources.setdefault(key, (outcomes[-1].record.get("shared_from", path.name), outcomes[-1].record))
                    progress.console.print(f"  [dim]skip[/] {escape(spec.name)}: {skip}")
                    progress.update(overall, advance=1, finish_at=pace.finished(outcomes[-1]))
                    continue
                iterations = settings.planned_passes()
                shared = sources.get(key)
                budgeted = budget is not None and shared is None  # a copy costs nothing worth budgeting
                if budgeted and not budget.admit(spec.name, hardware, run_settings["input_size"], iterations):
                    progress.advance(overall)
                    continue
                task = progress.add_task(spec.name, total=None)
                if isolate and shared is None:
                    record = run_isolated(spec, settings, results_dir, env, progress, task)
                else:
                    record = measure_or_failure(spec, settings, results_dir, env, progress, task, shared)
                progress.remove_task(task)
                if budgeted:
                    budget.finished(record, run_settings["input_size"], iterations)
                if writer:
                    try:
                        write_record(failed_path if record["status"] == "failed" else path, record)
                    except SegbenchError as exc:  # a full disk or an unwritable folder: no later record could be written either
                        outcomes.append(Outcome(spec, "failed", record, str(exc)))
                        progress.console.print(f"  [red]FAIL[/] {escape(str(exc))}")
                        break
                if record["status"] == "failed":
                    outcomes.append(Outcome(spec, "failed", record, record["error"]["message"]))
                    progress.console.print(f"  [red]FAIL[/] {escape(spec.name)}: {escape(record['error']['message'])}")
                    if settings.device.type == "cuda":
                        torch.cuda.empty_cache()
                else:
                    if writer:
                        failed_path.unlink(missing_ok=True)
                    if shared is None:
                        sources.setdefault(key, (path.name, record))
                    outcomes.append(Outcome(spec, "ok", record))
                    for warning in record.get("gpu_state", {}).get("warnings", []):
                        progress.console.print(f"  [yellow]warning[/] {escape(spec.name)}: {escape(warning)}")
            progress.update(overall, advance=1, finish_at=pace.finished(outcomes[-1]))
    return outcomes


RECORD_CURRENT = "record is current (use --force to re-run)"
MEASURED_ELSEWHERE = "another sweep is measuring it"


@contextlib.contextmanager
def _claimed(path: Path, spec: ModelSpec, run_settings: dict, *, force: bool, writer: bool) -> Iterator[str | None]:
    """Why this sweep skips a model (RECORD_CURRENT, MEASURED_ELSEWHERE), or None while it holds the model's lock."""
    with contextlib.ExitStack() as held:
        skip = None if force else _current_record(path, spec, run_settings)
        if skip is None and writer and not held.enter_context(measuring_lock(path.with_name(f".{spec.name}.lock"))):
            skip = MEASURED_ELSEWHERE
        if skip is None and not force:
            skip = _current_record(path, spec, run_settings)  # the other sweep may have just written it
        yield _agreed(skip)


def _current_record(path: Path, spec: ModelSpec, run_settings: dict) -> str | None:
    """RECORD_CURRENT when `path` holds a successful record of this spec under these settings, else None."""
    return RECORD_CURRENT if current_record(path, spec.spec_hash(), run_settings) is not None else None


def _agreed(decision: str | None) -> str | None:
    """Rank 0's decision on every rank under torchrun: only rank 0 takes the locks and reads records first."""
    if world_size() == 1:
        return decision
    shared = [decision]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


@contextlib.contextmanager
def measuring_lock(path: Path) -> Iterator[bool]:
    """Holds an exclusive lock on `path` while a model is measured; yields False, holding nothing, when another
    process has it. So two sweeps writing to one results folder never measure one model twice.

    flock: the kernel drops the lock when its holder dies, so a killed sweep leaves no stale lock (the
    empty file stays). Where fcntl does not exist (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:
        yield True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # closing the file releases the lock
