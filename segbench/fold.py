"""BatchNorm folded into the conv or linear layer that feeds it, as DDRNet's, PIDNet's and HarDNet's speed scripts
time their networks (protocols with fold_bn).

In eval mode a BatchNorm is a per-channel affine map, y = x * s + t with s = gamma / sqrt(var + eps) and
t = beta - mean * s. When its input is the output of a conv (or linear layer) and nothing else reads that output,
the map can move into the conv's weights: W' = W * s over the output channels, b' = b * s + t, and the BatchNorm
becomes nn.Identity. Whether "nothing else reads it" holds cannot be seen from the module tree (a residual add, an
in-place ReLU or a second head may read the conv's output), so one forward is traced: every torch call is watched
(a TorchFunctionMode), each conv output is tagged, and a pair is folded only when the BatchNorm is the one call that
reads the output and each weight of the pair is read by its own module alone, once. The folded model is then run
again on the same input and must give the same output within TOLERANCE, or every change is undone.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from segbench.errors import SegbenchError, one_line

TOLERANCE = 1e-4
"""Largest allowed |folded - unfolded| output difference, as a fraction of the unfolded output's largest magnitude
(fp32; TF32 is off while checking, so only the order of float operations differs)."""

FOLDABLE_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED_CONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
FEEDERS = CONVS + TRANSPOSED_CONVS + (nn.Linear,)
_PRODUCER = "_segbench_fold_producer"  # attribute set on a feeder's output tensor during the trace: the feeder's name


@dataclass
class _Trace:
    """What one forward showed: how often each module ran and each watched tensor was read, what fed each norm."""

    runs: Counter  # module name -> forward calls
    output_reads: Counter  # feeder name -> torch calls that read its output (or the model returning it)
    weight_reads: Counter  # id(parameter or buffer) -> torch calls that read it
    norm_input: dict[str, str | None]  # norm name -> the feeder whose output it normalized, if any
    output_dims: dict[str, int]  # feeder name -> dimensions of its output
    output: Any  # the model's output


class _ReadCounter(TorchFunctionMode):
    """Counts, for every torch call that returns a tensor, the tagged feeder outputs and watched weights it reads."""

    def __init__(self, trace: _Trace, watched: set[int]) -> None:
        super().__init__()
        self.trace, self.watched = trace, watched

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if any(isinstance(leaf, torch.Tensor) for leaf in tree_flatten(result)[0]):  # .shape, .dim() read no values
            self.count_reads((args, kwargs))
        return result

    def count_reads(self, values: Any) -> None:
        for leaf in tree_flatten(values)[0]:
            if isinstance(leaf, torch.Tensor):
                producer = getattr(leaf, _PRODUCER, None)
                if producer is not None:
                    self.trace.output_reads[producer] += 1
                if id(leaf) in self.watched:
                    self.trace.weight_reads[id(leaf)] += 1


@contextlib.contextmanager
def _exact_fp32() -> Iterator[None]:
    """TF32 off (CUDA's default for convolutions), so the check compares fp32 with fp32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _pair_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The weights a fold reads or rewrites: a feeder's weight and bias, a norm's affine parameters and statistics."""
    names = ("weight", "bias", "running_mean", "running_var")
    return [t for t in (getattr(module, name, None) for name in names) if isinstance(t, torch.Tensor)]


def _trace(model: nn.Module, example_input: Any, names: dict[int, str]) -> _Trace:
    """Run the model once on `example_input`, watching which tensors each feeder, norm and torch call reads."""
    trace = _Trace(Counter(), Counter(), Counter(), {}, {}, None)

    def feeder_ran(module, args, output):
        name = names[id(module)]
        trace.runs[name] += 1
        if isinstance(output, torch.Tensor):  # a subclass's forward may return something else: then nothing is tagged
            trace.output_dims[name] = output.dim()
            setattr(output, _PRODUCER, name)

    def norm_runs(module, args):
        name = names[id(module)]
        trace.runs[name] += 1
        trace.norm_input[name] = getattr(args[0], _PRODUCER, None) if args and isinstance(args[0], torch.Tensor) else None

    hooks, watched = [], set()
    for module in model.modules():
        if isinstance(module, FEEDERS):
            hooks.append(module.register_forward_hook(feeder_ran))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            hooks.append(module.register_forward_pre_hook(norm_runs))
        else:
            continue
        watched.update(id(t) for t in _pair_tensors(module))
    counter = _ReadCounter(trace, watched)
    try:
        with torch.no_grad(), counter:
            trace.output = model(example_input)
    finally:
        for hook in hooks:
            hook.remove()
    counter.count_reads(trace.output)  # a feeder output the model returns is read by the caller
    return trace


def _why_not_foldable(norm: nn.Module, name: str, trace: _Trace, modules: dict[str, nn.Module]) -> str | None:
    """Why this norm cannot be folded into what feeds it, or None when it can."""
    if type(norm) not in FOLDABLE_NORMS:
        return f"{type(norm).__name__} is left as it is"
    if norm.training:
        return "in training mode"
    if norm.running_mean is None or norm.running_var is None:
        return "normalizes with batch statistics (track_running_stats=False)"
    if trace.runs[name] != 1:
        return "did not run as a module in the traced forward" if not trace.runs[name] else "runs more than once"
    feeder_name = trace.norm_input.get(name)
    if feeder_name is None:
        return "its input is not a conv's or linear layer's output"
    feeder = modules[feeder_name]
    if trace.runs[feeder_name] != 1 or trace.output_reads[feeder_name] != 1:
        return "the output of the conv or linear layer that feeds it is read elsewhere too"
    if any(trace.weight_reads[id(t)] != 1 for t in _pair_tensors(feeder) + _pair_tensors(norm)):
        return "its own or its conv's weights are read elsewhere too"
    if isinstance(feeder, nn.Linear) and trace.output_dims[feeder_name] != 2:
        return "it follows a linear layer whose output is not (N, C)"
    return None


@torch.no_grad()
def _fold_into(feeder: nn.Module, norm: nn.Module) -> None:
    """Rewrite the feeder's weight and bias so that it also applies the norm's eval-mode affine map."""
    dtype = torch.promote_types(feeder.weight.dtype, torch.float32)
    variance = norm.running_var.to(dtype)
    gamma = norm.weight.to(dtype) if norm.weight is not None else torch.ones_like(variance)
    beta = norm.bias.to(dtype) if norm.bias is not None else torch.zeros_like(variance)
    scale = gamma / torch.sqrt(variance + norm.eps)
    shift = beta - norm.running_mean.to(dtype) * scale
    weight = feeder.weight.to(dtype)
    if isinstance(feeder, TRANSPOSED_CONVS):  # weight (in, out / groups, *kernel): output channels on axis 1, per group
        groups = feeder.groups
        grouped = weight.reshape(groups, weight.shape[0] // groups, weight.shape[1], *weight.shape[2:])
        per_group = scale.reshape(groups, 1, weight.shape[1], *([1] * (weight.dim() - 2)))
        weight = (grouped * per_group).reshape(weight.shape)
    else:  # conv (out, in / groups, *kernel), linear (out, in)
        weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    bias = (feeder.bias.to(dtype) if feeder.bias is not None else torch.zeros_like(scale)) * scale + shift
    feeder.weight.copy_(weight)
    if feeder.bias is None:
        feeder.bias = nn.Parameter(bias.to(feeder.weight.dtype), requires_grad=feeder.weight.requires_grad)
    else:
        feeder.bias.copy_(bias)


def _places(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """For each submodule (by id), every (parent, attribute) under which it is registered."""
    places: dict[int, list[tuple[nn.Module, str]]] = {}
    for parent in model.modules():
        for key, child in parent._modules.items():
            places.setdefault(id(child), []).append((parent, key))
    return places


def _max_difference(reference: Any, folded: Any) -> tuple[float, float]:
    """Largest |folded - reference| over the floating-point outputs, and the reference's largest magnitude."""
    expected, actual = tree_flatten(reference)[0], tree_flatten(folded)[0]
    if len(expected) != len(actual):
        return float("inf"), 0.0
    difference = scale = 0.0
    for want, got in zip(expected, actual):
        if isinstance(want, torch.Tensor) and want.is_floating_point():
            if not isinstance(got, torch.Tensor) or got.shape != want.shape:
                return float("inf"), scale
            if want.numel():  # a NaN counts as an infinite difference (max() of floats would drop it)
                gap = (got.double() - want.double()).abs().nan_to_num(nan=float("inf"))
                difference = max(difference, gap.max().item())
                scale = max(scale, want.double().abs().max().item())
    return difference, scale


def fold_batchnorm(model: nn.Module, example_input: Any, *, tolerance: float = TOLERANCE, where: str = "model") -> dict[str, Any]:
    """Fold every eval-mode BatchNorm that only a conv's or linear layer's output feeds into that layer, IN PLACE
    (the model must be in eval mode, on the device and in the dtype it will be timed in; fold before casting to fp16).

    `example_input` is what `model(...)` takes; a small one keeps the trace cheap, since the traced forward holds
    nothing beyond an ordinary one. The folded model's output on it must equal the unfolded one's within
    `tolerance` x its largest magnitude; otherwise every change is undone and a SegbenchError names `where`.
    Returns a record section: {"folded", "left", "left_reasons": {reason: count}, "max_abs_diff", "allowed_abs_diff"}.
    """
    names: dict[int, str] = {}
    for name, module in model.named_modules():
        names.setdefault(id(module), name)
    modules = dict(model.named_modules())
    with _exact_fp32():
        trace = _trace(model, example_input, names)
        pairs, left_reasons = [], Counter()
        for name, norm in modules.items():
            if isinstance(norm, nn.modules.batchnorm._BatchNorm) and names[id(norm)] == name:
                reason = _why_not_foldable(norm, name, trace, modules)
                if reason is None:
                    pairs.append((modules[trace.norm_input[name]], norm))
                else:
                    left_reasons[reason] += 1
        undo, places = [], _places(model)
        try:
            for feeder, norm in pairs:
                bias = None if feeder.bias is None else feeder.bias.detach().clone()
                undo.append((feeder, feeder.weight.detach().clone(), bias, places[id(norm)], norm))
                _fold_into(feeder, norm)
                for parent, key in places[id(norm)]:
                    setattr(parent, key, nn.Identity())
            with torch.no_grad():
                folded = model(example_input)
            difference, scale = _max_difference(trace.output, folded)
            failure = None if difference <= tolerance * scale else (
                f"the folded model's output differs from the unfolded one's by {difference:.3g} "
                f"(allowed {tolerance:g} x its largest magnitude {scale:.3g})"
            )  # fmt: skip
        except Exception as error:
            failure, difference, scale = f"the folded model fails to run ({type(error).__name__}: {error})", float("inf"), 0.0
        if failure is not None:
            _undo(undo)
            raise SegbenchError(
                f"{where}: BatchNorm folding: {one_line(failure, 300)}; the model was left unfolded: "
                "time it with a protocol that does not fold (e.g. --protocol mmseg)"
            )
    return {
        "folded": len(pairs),
        "left": sum(left_reasons.values()),
        "left_reasons": dict(sorted(left_reasons.items())),
        "max_abs_diff": difference,
        "allowed_abs_diff": tolerance * scale,
    }


@torch.no_grad()
def _undo(undo: list) -> None:
    """Put back the feeders' weights and biases and the norms, in reverse order of folding."""
    for feeder, weight, bias, places, norm in reversed(undo):
        feeder.weight.copy_(weight)
        if bias is None:
            feeder.bias = None
        else:
            feeder.bias.copy_(bias)
        for parent, key in places:
            setattr(parent, key, norm)
