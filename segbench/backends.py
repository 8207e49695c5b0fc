"""The forward callable that the timing loop times: the model itself, torch.compile'd, or exported to ONNX
and run by ONNX Runtime.

Each backend turns a built model (eval mode, on the timing device) into a callable from a normalized
image tensor on that device to logits on that device, plus the facts a record keeps about it. ONNX
export happens here, before any timing, at the one fixed input shape the model is timed at (slide
mode: the crop, since the forward stage calls the model once per window). `onnx` and `onnxruntime`
are an optional extra (`pip install 'segbench[onnx]'`): importing this module never needs them.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from segbench.errors import SegbenchError, one_line
from segbench.protocols import BACKENDS
from segbench.tempfiles import owned_temp_file, remove_abandoned

Forward = Callable[[torch.Tensor], torch.Tensor]

ONNX_TOLERANCE = 1e-4
"""ONNX Runtime's logits equal eager's when max |onnx - eager| <= ONNX_TOLERANCE * max(1, max |eager|)."""
GPU_TOLERANCE = 1e-2
"""The same on a GPU, where cuDNN (torch's default) and ONNX Runtime's CUDA and TensorRT providers may run convolutions
in TF32 (a 10-bit mantissa, errors near 1e-3): still far below what a graph that computes something else gives."""

_TEMP_NAME = "segbench-export"
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def forward_backend(model: nn.Module, backend: str, example: torch.Tensor, device: torch.device, *, name: str = "model") -> tuple[Forward, dict[str, Any]]:
    """(forward, info): `forward` maps a float32 (1, 3, H, W) tensor on `device` to logits on `device`; `info`
    is what the record keeps (`info["backend"]` and, for ONNX Runtime, exporter, opset, providers used,
    version, export seconds, and the parity error on `example`: an export whose logits differ from eager's
    by more than ONNX_TOLERANCE, GPU_TOLERANCE on a GPU, is refused). `example` is an input of the shape
    every call will have (a normalized image, or noise); `name` is the model's, for errors. The compiled
    model compiles on its first call, so a warm-up must come before timing."""
    if backend == "eager":
        return model, {"backend": "eager"}
    if backend == "compile":
        return torch.compile(model), {"backend": "compile"}
    if backend == "onnxruntime":
        return _onnxruntime_forward(model, example, torch.device(device), name)
    raise SegbenchError(f"--backend: unknown backend {backend!r}; known: {', '.join(BACKENDS)}")


def onnx_parity_error(eager: torch.Tensor, exported: torch.Tensor) -> float:
    """max |exported - eager| in units of max(1, max |eager|); parity holds when it is at most ONNX_TOLERANCE."""
    scale = max(1.0, eager.abs().max().item())
    return (exported.float() - eager.float()).abs().max().item() / scale


def _onnxruntime_forward(model: nn.Module, example: torch.Tensor, device: torch.device, name: str) -> tuple[Forward, dict[str, Any]]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise SegbenchError(f"--backend onnxruntime: {exc.name} is not installed: pip install 'segbench[onnx]'") from None
    providers = _providers(onnxruntime.get_available_providers(), device)
    directory = Path(tempfile.gettempdir())
    remove_abandoned(directory.glob(f".{_TEMP_NAME}.*.onnx"))
    fd, path = owned_temp_file(directory, _TEMP_NAME, ".onnx")
    os.close(fd)
    try:
        started = time.perf_counter()
        exporter = _export(model, example, path, name)
        export_seconds = time.perf_counter() - started
        opset = next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()  # as many threads as eager PyTorch gets
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    finally:
        path.unlink(missing_ok=True)
    forward = _session_forward(session, device)
    with torch.no_grad():
        error = onnx_parity_error(model(example), forward(example))
    tolerance = ONNX_TOLERANCE if device.type == "cpu" else GPU_TOLERANCE
    if not error <= tolerance:
        raise SegbenchError(
            f"model {name!r}: --backend onnxruntime: ONNX Runtime's logits differ from eager's by {error:.3g} "
            f"(max |onnx - eager| over max(1, max |eager|)), more than the tolerance {tolerance:g}: "
            "the exported graph computes something else; time it with --backend eager"
        )
    info = {
        "backend": "onnxruntime",
        "exporter": exporter,
        "opset": opset,
        "providers": session.get_providers(),
        "onnxruntime": onnxruntime.__version__,
        "export_seconds": round(export_seconds, 3),
        "threads": options.intra_op_num_threads,
        "input_shape": list(example.shape),
        "parity_error": error,
        "parity_tolerance": tolerance,
    }
    return forward, info


def _providers(available: list[str], device: torch.device) -> list[Any]:
    """Execution providers best first: TensorRT, then CUDA on a CUDA device (on torch's stream, so the timing
    loop's synchronize covers their work); CPU otherwise. A CUDA device without them is an error: ONNX Runtime
    would run on the host and hide two copies in the forward stage."""
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type != "cuda":
        raise SegbenchError(f"--backend onnxruntime: runs on cpu or cuda, not {device.type}")
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if not gpu:
        raise SegbenchError(
            f"--backend onnxruntime: this onnxruntime offers no CUDA provider ({', '.join(available)}): "
            "pip install onnxruntime-gpu, or time on --device cpu"
        )
    stream = str(torch.cuda.current_stream(device).cuda_stream)
    options = {"device_id": str(device.index or 0), "user_compute_stream": stream}
    return [(p, options) for p in gpu] + ["CPUExecutionProvider"]


def _export(model: nn.Module, example: torch.Tensor, path: Path, name: str) -> str:
    """Writes `model` at `example`'s shape to `path` as ONNX; returns the exporter that did it. torch.export's
    exporter first (the maintained one), the TorchScript exporter where it fails."""
    reasons = []
    for exporter, dynamo in (("torch.onnx dynamo", True), ("torch.onnx torchscript", False)):
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (example,), str(path), dynamo=dynamo, external_data=False, verbose=False, input_names=["image"], output_names=["logits"])
            return exporter
        except Exception as exc:  # noqa: BLE001  (any exporter error is the model's reason, reported below)
            reasons.append(f"{exporter}: {_export_reason(exc)}")
    raise SegbenchError(f"model {name!r}: --backend onnxruntime: ONNX export failed ({'; '.join(reasons)})")


def _export_reason(exc: BaseException) -> str:
    """One line from an exporter's (often pages long) error: the first line of its root cause, which names the
    operator that has no ONNX translation where that is the reason."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = _ANSI_COLOUR.sub("", str(exc)).strip()
    return one_line(f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}", 160)


def _session_forward(session, device: torch.device) -> Forward:
    (image,), (logits,) = session.get_inputs(), session.get_outputs()
    if device.type == "cpu":

        def forward(x: torch.Tensor) -> torch.Tensor:
            (out,) = session.run([logits.name], {image.name: x.detach().contiguous().numpy()})
            return torch.from_numpy(out)  # no copy: the array's memory becomes the tensor's

        return forward

    import numpy as np

    binding = session.io_binding()
    index = device.index or 0

    def forward(x: torch.Tensor) -> torch.Tensor:
        """Input and output stay in device memory (I/O binding): no host copy inside the forward stage."""
        x = x.detach().contiguous()
        out = torch.empty(logits.shape, dtype=torch.float32, device=device)
        binding.bind_input(image.name, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(logits.name, "cuda", index, np.float32, tuple(out.shape), out.data_ptr())
        session.run_with_iobinding(binding)
        return out

    return forward
