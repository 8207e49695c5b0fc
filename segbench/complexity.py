"""Parameter and multiply-add counts.

MACs: one fused multiply-add = 1. The primary count is torch's FlopCounterMode's on a meta-device
copy: shapes only, no arithmetic, well under a second even for the largest zoo model at
1024×2048; its FLOPs are halved. A dispatch mode of segbench's counts it (FlopCounterMode's
formulas, op for op) so that eval-mode batch norm, which does no multiply-adds, is answered
without its slow Python meta kernel. segbench adds formulas for the matrix products FlopCounterMode
would silently skip (mv, addmv, dot, addbmm, F.bilinear). fvcore (the count mmsegmentation's
get_flops gives) and thop are optional cross-checks: fvcore traces a real forward pass on the
device asked for; thop's module hooks read only shapes, so thop counts on the meta device (on the
device asked for only where the model cannot run on meta). Where fvcore and the primary differ by
more than 1% the count names the operators that differ. A model that cannot run on the meta
device (it reads its input's values: .item(), numpy) is counted by fvcore instead, and the count
says so.

Every counter runs on an eval-mode copy of the module tree: thop leaves `total_ops` buffers on the
modules it visits, a failed fvcore trace leaves hooks, and none calls eval() (train-mode BatchNorm
would update its stats); only the meta count of a model already in eval mode on meta, which
leaves nothing behind, runs on the model itself. The copy shares the tensors already on the counting device rather than
copying them. MultiheadAttention's fast path is off while counting, else it is one fused op that
every counter misses (notes/flops.md).
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import re
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, shape_wrapper
from torch.utils.module_tracker import ModuleTracker

from segbench.inference import InferenceSettings, forward_sizes
from segbench.records import CROSS_CHECK_TOLERANCE
from segbench.models.segmentor import training_only_prefixes

"""fvcore and the primary count may differ this much (fvcore adds estimates for norms, resizes)."""

# Ops whose work dominates a network: fvcore skipping one means its total is wrong, not rough.
_HEAVY_OP = re.compile(r"conv|linear|matmul|mm$|einsum|attention|dot|mv$")


def count_params(model: nn.Module) -> dict[str, int]:
    """Parameters of the whole model and of the inference graph (auxiliary heads and a decode
    head's training-only branches excluded), and the BatchNorm running statistics of the inference
    graph: PaddleSeg's published Params(M) count those too (Paddle keeps them as parameters)."""
    training_only = training_only_prefixes(model)
    total = inference = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if not name.startswith(training_only):
            inference += p.numel()
    norm_statistics = sum(
        m.running_mean.numel() + m.running_var.numel()
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None and not name.startswith(training_only)
    )
    return {"total": total, "inference": inference, "norm_statistics": norm_statistics}


def _counting_copy(model: nn.Module, device: torch.device | str) -> nn.Module:
    """An eval-mode copy of the module tree on `device`. Tensors already there are shared, not
    copied (counting under no_grad in eval mode only reads them); on the meta device nothing is
    allocated. Counters' buffers and hooks land on the copied modules."""
    memo: dict[int, torch.Tensor] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        moved = tensor.detach().to(device)
        memo[id(tensor)] = nn.Parameter(moved, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else moved
    return copy.deepcopy(model, memo).eval()


@contextmanager
def _mha_fastpath_disabled() -> Iterator[None]:
    """nn.MultiheadAttention as its separate projections and matmuls, so counters see them."""
    saved = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(saved)


# --- fvcore handles: a jit node's inputs/outputs to MACs -------------------------------------


def _shape(value) -> list[int]:
    return value.type().sizes()


def _sdpa_macs(inputs, outputs) -> int:
    """QKᵀ and AV of scaled_dot_product_attention: prod(batch dims) · Lq · Lk · (Dq + Dv)."""
    q, k, v = (_shape(x) for x in inputs[:3])
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def _matmul_macs(inputs, outputs) -> int:
    """Any matmul, broadcast batch dims and 1-D operands included: output elements × inner size.

    fvcore's own handle counts prod(left) · right[-1], which misses broadcast batch dims of the
    right operand and fails on a 1-D right operand."""
    return math.prod(_shape(outputs[0])) * _shape(inputs[0])[-1]


def _baddbmm_macs(inputs, outputs) -> int:
    """baddbmm(input, batch1, batch2): the bmm part (nn.MultiheadAttention with a mask uses it)."""
    return math.prod(_shape(outputs[0])) * _shape(inputs[1])[-1]


def _einsum_macs(inputs, outputs) -> int:
    """Two-operand einsum: the product of every index's size (one multiply-add per combination).

    fvcore's handle halves contractions without a summed index (numpy counts those as 1 op,
    then fvcore divides by 2); more than two operands go to numpy's optimal path, as fvcore does."""
    equation = inputs[0].toIValue().replace(" ", "")
    shapes = [_shape(v) for v in inputs[1].node().inputs()]
    operands = equation.split("->")[0].split(",")
    if len(operands) != 2:
        from fvcore.nn.jit_handles import einsum_flop_jit

        return int(einsum_flop_jit(inputs, outputs))
    sizes = {letter: size for term, shape in zip(operands, shapes) for letter, size in zip(term, shape)}
    return math.prod(sizes.values())


_FVCORE_HANDLES = {
    "aten::scaled_dot_product_attention": _sdpa_macs,
    "aten::matmul": _matmul_macs,
    "aten::baddbmm": _baddbmm_macs,
    "aten::einsum": _einsum_macs,
}


def _fvcore_analysis(model: nn.Module, image: torch.Tensor):
    """A FlopCountAnalysis of an eval-mode copy with segbench's handles, quiet, not yet run."""
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(_counting_copy(model, image.device), (image,)).set_op_handle(**_FVCORE_HANDLES)
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")


@contextmanager
def _quiet_counting() -> Iterator[None]:
    with torch.no_grad(), _mha_fastpath_disabled(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def fvcore_macs(model: nn.Module, image: torch.Tensor) -> dict[str, Any]:
    """fvcore's count: total, per operator, and the ops it could not count (with call counts)."""
    analysis = _fvcore_analysis(model, image)
    with _quiet_counting():
        total = int(analysis.total())
    return {
        "total": total,
        "by_operator": {k: int(v) for k, v in sorted(analysis.by_operator().items())},
        "unsupported_ops": dict(sorted(analysis.unsupported_ops().items())),
    }


# --- thop rules: (module, inputs, output) -> MACs added to module.total_ops ------------------


def _thop_conv_transpose(m: nn.Module, x: tuple, y: torch.Tensor) -> None:
    """Each input element meets out_channels/groups · kernel weights (thop's own rule counts per
    output element and is stride² too high)."""
    macs = x[0].numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size)
    m.total_ops += torch.DoubleTensor([macs])


def _thop_multihead_attention(m: nn.MultiheadAttention, x: tuple, y) -> None:
    """Projections of query, key and value, QKᵀ and AV over all heads, and the output projection.

    thop sees none of it: the projections are functional calls inside the module."""
    query = x[0]
    key = x[1] if len(x) > 1 else query
    batch_dim = 0 if m.batch_first else 1
    batch = query.shape[batch_dim] if query.dim() == 3 else 1
    lq = query.shape[1 - batch_dim] if query.dim() == 3 else query.shape[0]
    lk = key.shape[1 - batch_dim] if key.dim() == 3 else key.shape[0]
    e = m.embed_dim
    projections = lq * e * e + lk * m.kdim * e + lk * m.vdim * e + lq * e * e
    attention = 2 * lq * lk * e  # QKᵀ and AV; heads split e, so the sum over heads is e
    m.total_ops += torch.DoubleTensor([batch * (projections + attention)])


_THOP_RULES = {
    nn.ConvTranspose1d: _thop_conv_transpose,
    nn.ConvTranspose2d: _thop_conv_transpose,
    nn.ConvTranspose3d: _thop_conv_transpose,
    nn.MultiheadAttention: _thop_multihead_attention,
}


def thop_macs(model: nn.Module, image: torch.Tensor) -> int:
    from thop import profile

    with _quiet_counting():
        macs, _ = profile(_counting_copy(model, image.device), inputs=(image,), custom_ops=_THOP_RULES, verbose=False)
    return int(macs)


def _thop_on_meta_or(model: nn.Module, image: torch.Tensor) -> tuple[int, str]:
    """thop's count and where it ran: on the meta device (shapes only, no arithmetic), else on
    `image`'s device for a model that reads its input's values."""
    try:
        return thop_macs(model, torch.empty(image.shape, device="meta")), "meta"
    except ImportError:
        raise
    except Exception:  # noqa: BLE001  (any op that needs real values: count by a real forward pass)
        return thop_macs(model, image), str(image.device)


# --- FlopCounterMode formulas (FLOPs: 2 per multiply-add) for ops it would decompose to 0 ---------
# Each receives the operands' shapes, as FlopCounterMode's own formulas do.


def _mv_flops(matrix, vector, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(matrix)


def _addmv_flops(bias, matrix, vector, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(matrix)


def _dot_flops(a, b, *args, out_shape=None, **kwargs) -> int:
    return 2 * a[0]


def _addbmm_flops(bias, batch1, batch2, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(batch1) * batch2[-1]


def _trilinear_flops(i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim=1, out_shape=None) -> int:
    """F.bilinear's kernel: one multiply-add per element of the three operands' broadcast shape
    (each unsqueezed at its expand dims), summed dims included: batch · out · in1 · in2 for F.bilinear."""
    sizes = [1] * (len(i1) + len(expand1))
    for shape, expand in ((i1, expand1), (i2, expand2), (i3, expand3)):
        full = list(shape)
        for dim in sorted(expand):
            full.insert(dim, 1)
        sizes = [max(a, b) for a, b in zip(sizes, full)]
    return 2 * math.prod(sizes)


_FLOP_FORMULAS = {
    torch.ops.aten.mv: _mv_flops,
    torch.ops.aten.addmv: _addmv_flops,
    torch.ops.aten.dot: _dot_flops,
    torch.ops.aten.addbmm: _addbmm_flops,
    torch.ops.aten._trilinear: _trilinear_flops,
}


def _batch_norm_outputs(input, weight, bias, running_mean, running_var, momentum, eps):
    """What eval-mode batch norm returns on the meta device: the normalized input, and the mean and
    1/std it used per channel."""
    return torch.empty_like(input), torch.empty_like(running_mean), torch.empty_like(running_var)


def _resized(input, output_size, *args, **kwargs):
    """What a 2-D resize returns on the meta device: the input's batch and channels at output_size
    (contiguous: the count reads shapes only)."""
    return input.new_empty((*input.shape[:-2], *output_size))


# Ops that do no multiply-adds, whose meta kernel is slow Python (torch's decomposition, run on
# meta): their outputs are made here. Batch norm's was half of a ResNet's count, the resizes a
# third of UPerNet's.
_SHAPE_ONLY = {
    torch.ops.aten._native_batch_norm_legit_no_training.default: _batch_norm_outputs,
    torch.ops.aten.upsample_bilinear2d.default: _resized,
    torch.ops.aten.upsample_nearest2d.default: _resized,
}


class _MetaFlopCounter(TorchDispatchMode):
    """FLOPs per aten op and per module of a forward pass on the meta device: FlopCounterMode's
    dispatch with its formulas, except that the ops in _SHAPE_ONLY are not run.

    As in FlopCounterMode, an op with a CompositeImplicitAutograd decomposition is decomposed (so
    `linear` is counted as the `addmm` it becomes), any other op runs and is counted by its
    formula. Counts are FlopCounterMode's, op for op (tests/test_zoo.py checks every architecture).
    """

    def __init__(self, formulas: dict) -> None:
        super().__init__()
        self.formulas = {**flop_registry, **{op: shape_wrapper(f) for op, f in formulas.items()}}
        self.modules = ModuleTracker()  # entered around the mode; names modules "<root class>.<path>"
        self.flops: dict[str, dict[Any, int]] = defaultdict(lambda: defaultdict(int))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with self:
            out = func.decompose(*args, **kwargs)
        if out is not NotImplemented:
            return out
        out = _SHAPE_ONLY.get(func, func)(*args, **kwargs)
        formula = self.formulas.get(func._overloadpacket)
        if formula is not None:
            flops = formula(*args, **kwargs, out_val=out)
            for parent in set(self.modules.parents):
                self.flops[parent][func._overloadpacket] += flops
        return out


def _is_eval_on_meta(model: nn.Module) -> bool:
    """Whether the model can be counted as it is: in eval mode, on the meta device. The meta count
    leaves nothing on the modules, so no copy is needed (a third of UPerNet-R101's count)."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return not any(m.training for m in model.modules()) and all(t.device.type == "meta" for t in tensors)


def _meta_flops(model: nn.Module, input_size: tuple[int, int]) -> dict[str, dict[str, int]]:
    """FLOPs per aten op of one forward pass on a meta-device copy, per module ('' is the whole
    model, else its named_modules name). Raises where the model cannot run on the meta device."""
    meta_model = model if _is_eval_on_meta(model) else _counting_copy(model, "meta")
    counter = _MetaFlopCounter(_FLOP_FORMULAS)
    with _quiet_counting(), counter.modules, counter:
        meta_model(torch.empty(1, 3, *input_size, device="meta"))
    root = type(meta_model).__name__  # ModuleTracker names modules "<root class>.<path>"
    by_module: dict[str, dict[str, int]] = {}
    for name, ops in counter.flops.items():
        if name == "Global" or name.startswith(root + "."):
            by_module[name.removeprefix(root + ".") if name != "Global" else ""] = {str(op): int(n) for op, n in ops.items()}
    return by_module


# --- fvcore against the primary: which operators differ ------------------------------------

_OTHER_OPERATORS = "elementwise, norms, resizes, pooling"
_OPERATOR_GROUPS = (
    ("convolution", re.compile(r".*conv.*")),
    ("matrix products and attention", re.compile(r".*mm|mv|addmv|dot|linear|matmul|einsum|bilinear|_trilinear|.*attention.*")),
)


def _operator_group(op: str) -> str:
    """The kind of work an op does, for FlopCounterMode's names (aten.mm) and fvcore's (linear)."""
    name = op.split(".")[-1].split("::")[-1]
    return next((group for group, pattern in _OPERATOR_GROUPS if pattern.fullmatch(name)), _OTHER_OPERATORS)


def _operators_differing(primary_by_op: dict[str, int], fvcore_by_op: dict[str, int]) -> list[dict[str, Any]]:
    """Per kind of operator where the two counts differ: each side's total and its operators.

    Grouped, because the two name one piece of work differently: nn.Linear is fvcore's `linear`
    and FlopCounterMode's `aten.addmm`; einsum and @ reach FlopCounterMode as `aten.bmm`."""
    groups = [group for group, _ in _OPERATOR_GROUPS] + [_OTHER_OPERATORS]
    rows = []
    for group in groups:
        ours = {op: n for op, n in primary_by_op.items() if _operator_group(op) == group}
        theirs = {op: n for op, n in fvcore_by_op.items() if _operator_group(op) == group}
        if sum(ours.values()) != sum(theirs.values()):
            rows.append({"operators": group, "flop_counter_macs": sum(ours.values()), "fvcore": sum(theirs.values()),
                         "flop_counter_by_operator": ours, "fvcore_by_operator": theirs})  # fmt: skip
    return sorted(rows, key=lambda r: -abs(r["flop_counter_macs"] - r["fvcore"]))


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _cross_check(model: nn.Module, input_size: tuple[int, int], device: torch.device | str, macs: dict[str, Any]) -> None:
    """fvcore on `device` and thop on meta into `macs`; a counter that is not installed is listed as unavailable."""
    started = time.perf_counter()
    image = torch.zeros(1, 3, *input_size, device=device)
    macs["cross_check_device"] = str(device)
    unavailable = {}
    try:
        fv = fvcore_macs(model, image)
    except ImportError as exc:
        unavailable["fvcore"] = _first_line(exc)
    else:
        macs.update(fvcore=fv["total"], fvcore_by_operator=fv["by_operator"], fvcore_unsupported_ops=fv["unsupported_ops"])
    try:
        macs["thop"], macs["thop_device"] = _thop_on_meta_or(model, image)
    except ImportError as exc:
        unavailable["thop"] = _first_line(exc)
    if unavailable:
        macs["cross_check_unavailable"] = unavailable
    if "fvcore" in macs and "thop" in macs:
        macs["thop_over_fvcore"] = macs["thop"] / macs["fvcore"] if macs["fvcore"] else None
    macs["cross_check_seconds"] = round(time.perf_counter() - started, 4)  # fvcore's forward pass and thop's count: a sweep's overhead


def count_macs(
    model: nn.Module, input_size: tuple[int, int], *, device: torch.device | str = "cpu", cross_check: bool = True
) -> dict[str, Any]:
    """MACs of one forward pass at batch 1 and the given (H, W): `per_forward` by the `primary` counter.

    The primary is FlopCounterMode on the meta device (`flop_counter_*`). With `cross_check`, fvcore
    counts too, by a real forward pass on `device`, and thop on meta (`thop_device`); where fvcore differs by more than 1%,
    `operators_differing` says where. A model that cannot run on the meta device is counted by
    fvcore on `device` (`flop_counter_error` says why); then a conv, linear, matmul, einsum or
    attention op fvcore skips raises, since the total would be silently low.
    """
    size = tuple(input_size)
    macs: dict[str, Any] = {"input_size": list(size)}
    try:
        flops = _meta_flops(model, size)[""]
    except Exception as exc:  # noqa: BLE001  (any op that needs real values: fvcore counts instead)
        macs["flop_counter_error"] = _first_line(exc)
    else:
        total = sum(flops.values())
        macs.update(
            primary="flop_counter", per_forward=total // 2, flop_counter_flops=total, flop_counter_macs=total // 2,
            flop_counter_macs_by_operator={op: n // 2 for op, n in sorted(flops.items())},
        )  # fmt: skip
    if cross_check or "primary" not in macs:
        _cross_check(model, size, device, macs)
    if "primary" not in macs:
        if "fvcore" not in macs:
            raise RuntimeError(f"cannot count MACs: {macs['flop_counter_error']} on the meta device, and fvcore is not installed")
        heavy = sorted(op for op in macs["fvcore_unsupported_ops"] if _HEAVY_OP.search(op))
        if heavy:
            raise RuntimeError(f"fvcore could not count {', '.join(heavy)}: the MACs total would be wrong")
        macs.update(primary="fvcore", per_forward=macs["fvcore"])
    elif "fvcore" in macs:
        primary = macs["flop_counter_macs"]
        macs["fvcore_over_flop_counter"] = macs["fvcore"] / primary if primary else None
        if abs(macs["fvcore"] - primary) > CROSS_CHECK_TOLERANCE * primary:
            macs["operators_differing"] = _operators_differing(macs["flop_counter_macs_by_operator"], macs["fvcore_by_operator"])
    return macs


_SHARED: dict[tuple[str, tuple[int, int], str | None], dict[str, Any]] = {}
"""count_macs results by (architecture, forward size, cross-check device or None), for the process."""


def count_macs_as_tested(
    model: nn.Module,
    test: InferenceSettings,
    *,
    ms_flip: bool = False,
    device: torch.device | str = "cpu",
    cross_check: bool = True,
    shared_as: str | None = None,
) -> dict[str, Any]:
    """MACs of what is timed: count_macs at the size the network sees (`forward_size`: the crop in
    slide mode), `forwards_per_image` (every sliding window) and `per_image`; with `ms_flip`, also
    `ms_flip`: every scale and flip of a multi-scale + flip evaluation, each scale counted at its own size.

    `shared_as` names the architecture (e.g. its build spec): counts are then kept for the process,
    so entries that share an architecture and size are counted, and cross-checked, once.
    """

    def counted(size: tuple[int, int], check: bool) -> dict[str, Any]:
        key = (shared_as, size, str(device) if check else None)
        if shared_as is None or key not in _SHARED:
            result = count_macs(model, size, device=device, cross_check=check)
            if shared_as is None:
                return result
            _SHARED[key] = result
        return copy.deepcopy(_SHARED[key])

    ((forward, forwards),) = forward_sizes(replace(test, multi_scale_flip=False)).items()
    macs = counted(forward, cross_check)
    macs.update(input_size=list(test.test_size), forward_size=list(forward), forwards_per_image=forwards,
                per_image=forwards * macs["per_forward"])  # fmt: skip
    if ms_flip:
        plan = sorted(forward_sizes(replace(test, multi_scale_flip=True)).items())
        passes = [{"size": list(size), "forwards": n, "per_forward": counted(size, False)["per_forward"]} for size, n in plan]
        macs["ms_flip"] = {"forwards": passes, "per_image": sum(p["forwards"] * p["per_forward"] for p in passes)}
    return macs


def module_breakdown(model: nn.Module, input_size: tuple[int, int], depth: int) -> list[dict[str, Any]]:
    """Params and primary MACs per module down to `depth` dots ('' is the whole model), in model order.

    From the meta-device count; by fvcore (on the model's device) where the model cannot run on meta."""
    size = tuple(input_size)
    try:
        by_module = {name: sum(ops.values()) // 2 for name, ops in _meta_flops(model, size).items()}
    except Exception:  # noqa: BLE001  (as in count_macs: fvcore counts instead)
        device = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device
        analysis = _fvcore_analysis(model, torch.zeros(1, 3, *size, device=device))
        with _quiet_counting():
            by_module = analysis.by_module()

    def macs_of(name: str, module: nn.Module) -> int:
        """A container that is never called itself (ModuleList, ModuleDict) does its children's work."""
        if name in by_module or not isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            return int(by_module.get(name, 0))
        return sum(macs_of(f"{name}.{child_name}", child) for child_name, child in module.named_children())

    rows = []
    for name, module in model.named_modules():
        if name.count(".") + (1 if name else 0) > depth:
            continue
        rows.append({
            "module": name,
            "type": type(module).__name__,
            "params": sum(p.numel() for p in module.parameters()),
            "macs": macs_of(name, module),
        })  # fmt: skip
    return rows
