"""Parameter and multiply-add counts.

MACs: fvcore is primary (one fused multiply-add = 1); thop and torch's FlopCounterMode are
cross-checks. fvcore and thop run on an eval-mode deep copy: thop leaves `total_ops` buffers on
the modules it visits, a failed fvcore trace leaves hooks, and neither calls eval() (train-mode
BatchNorm would update its stats). FlopCounterMode runs on a meta-device copy: shapes only, no
arithmetic, so it costs a fraction of a forward pass. MultiheadAttention's fast path is off
while counting, else it is one fused op that every counter misses (notes/flops.md).
"""

from __future__ import annotations

import copy
import logging
import math
import re
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from segbench.models.segmentor import AUXILIARY_PREFIX

# Ops whose work dominates a network: fvcore skipping one means its total is wrong, not rough.
_HEAVY_OP = re.compile(r"conv|linear|matmul|mm$|einsum|attention|dot|mv$")


def count_params(model: nn.Module) -> dict[str, int]:
    """Parameters of the whole model and of the inference graph (auxiliary heads excluded)."""
    total = inference = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if not name.startswith(AUXILIARY_PREFIX):
            inference += p.numel()
    return {"total": total, "inference": inference}


def _counting_copy(model: nn.Module, device: str = "cpu") -> nn.Module:
    return copy.deepcopy(model).to(device).eval()


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
    analysis = FlopCountAnalysis(_counting_copy(model), (image,)).set_op_handle(**_FVCORE_HANDLES)
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
        macs, _ = profile(_counting_copy(model), inputs=(image,), custom_ops=_THOP_RULES, verbose=False)
    return int(macs)


def flop_counter_flops(model: nn.Module, input_size: tuple[int, int]) -> int:
    """torch's FlopCounterMode on the meta device: FLOPs (2 per multiply-add) of one forward."""
    from torch.utils.flop_counter import FlopCounterMode

    meta_model = _counting_copy(model, "meta")
    image = torch.empty(1, 3, *input_size, device="meta")
    counter = FlopCounterMode(display=False)
    with _quiet_counting(), counter:
        meta_model(image)
    return int(counter.get_total_flops())


def count_macs(model: nn.Module, input_size: tuple[int, int]) -> dict[str, Any]:
    """MACs of one forward pass at batch 1 and the given (H, W), by fvcore, thop and FlopCounterMode.

    A skipped conv, linear, matmul, einsum or attention op raises: the total would be silently low.
    Elementwise ops fvcore does not count are listed under fvcore_unsupported_ops. A model that
    cannot run on the meta device gets flop_counter_error instead of a third count.
    """
    image = torch.zeros(1, 3, *input_size)
    unavailable = {}  # a cross-check counter that is not installed: the sweep goes on and the record says so
    try:
        fv = fvcore_macs(model, image)
    except ImportError as exc:
        fv, unavailable["fvcore"] = {"total": None, "by_operator": None, "unsupported_ops": {}}, f"{type(exc).__name__}: {exc}"
    heavy = sorted(op for op in fv["unsupported_ops"] if _HEAVY_OP.search(op))
    if heavy:
        raise RuntimeError(f"fvcore could not count {', '.join(heavy)}: the MACs total would be wrong")
    try:
        th = thop_macs(model, image)
    except ImportError as exc:
        th, unavailable["thop"] = None, f"{type(exc).__name__}: {exc}"
    macs: dict[str, Any] = {
        "input_size": list(input_size),
        "fvcore": fv["total"],
        "thop": th,
        "thop_over_fvcore": th / fv["total"] if th is not None and fv["total"] else None,
        "fvcore_by_operator": fv["by_operator"],
        "fvcore_unsupported_ops": fv["unsupported_ops"],
        **({"unavailable": unavailable} if unavailable else {}),
    }
    try:
        flops = flop_counter_flops(model, input_size)
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        macs["flop_counter_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if fv["total"] is None:
            raise RuntimeError(f"no MAC count: fvcore is not installed and FlopCounterMode failed ({macs['flop_counter_error']})") from exc
        return macs
    macs["flop_counter_flops"] = flops
    macs["flop_counter_macs"] = flops // 2
    macs["fvcore_over_flop_counter"] = fv["total"] / (flops / 2) if flops and fv["total"] is not None else None
    return macs


def module_breakdown(model: nn.Module, input_size: tuple[int, int], depth: int) -> list[dict[str, Any]]:
    """Params and fvcore MACs per module down to `depth` dots ('' is the whole model), in model order."""
    analysis = _fvcore_analysis(model, torch.zeros(1, 3, *input_size))
    with _quiet_counting():
        by_module = analysis.by_module()
    rows = []
    for name, module in model.named_modules():
        if name.count(".") + (1 if name else 0) > depth:
            continue
        rows.append({
            "module": name,
            "type": type(module).__name__,
            "params": sum(p.numel() for p in module.parameters()),
            "macs": int(by_module.get(name, 0)),
        })  # fmt: skip
    return rows
