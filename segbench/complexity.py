"""Parameter and multiply-add counts.

MACs: fvcore is primary (one fused multiply-add = 1); thop is the cross-check. Both run on an
eval-mode deep copy: thop leaves `total_ops` buffers on the modules it visits, a failed fvcore
trace leaves hooks, and neither calls eval() (train-mode BatchNorm would update its stats).
"""

from __future__ import annotations

import copy
import logging
import re
import warnings
from typing import Any

import torch
from torch import nn

from segbench.models.segmentor import AUXILIARY_PREFIX

# Ops whose work dominates a network: fvcore skipping one means its total is wrong, not rough.
_HEAVY_OP = re.compile(r"conv|linear|matmul|addmm|bmm|einsum|attention|aten::mm\b")


def count_params(model: nn.Module) -> dict[str, int]:
    """Parameters of the whole model and of the inference graph (auxiliary heads excluded)."""
    total = inference = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if not name.startswith(AUXILIARY_PREFIX):
            inference += p.numel()
    return {"total": total, "inference": inference}


def _counting_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to("cpu").eval()


def fvcore_macs(model: nn.Module, image: torch.Tensor) -> dict[str, Any]:
    """fvcore's count: total, per operator, and the ops it could not count (with call counts)."""
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(_counting_copy(model), (image,))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = int(analysis.total())
    return {
        "total": total,
        "by_operator": {k: int(v) for k, v in sorted(analysis.by_operator().items())},
        "unsupported_ops": dict(sorted(analysis.unsupported_ops().items())),
    }


def thop_macs(model: nn.Module, image: torch.Tensor) -> int:
    from thop import profile

    with torch.no_grad():
        macs, _ = profile(_counting_copy(model), inputs=(image,), verbose=False)
    return int(macs)


def count_macs(model: nn.Module, input_size: tuple[int, int]) -> dict[str, Any]:
    """MACs of one forward pass at batch 1 and the given (H, W), by fvcore and by thop.

    A skipped conv, linear, matmul, einsum or attention op raises: the total would be silently low.
    """
    image = torch.zeros(1, 3, *input_size)
    fv = fvcore_macs(model, image)
    heavy = sorted(op for op in fv["unsupported_ops"] if _HEAVY_OP.search(op))
    if heavy:
        raise RuntimeError(f"fvcore could not count {', '.join(heavy)}: the MACs total would be wrong")
    th = thop_macs(model, image)
    return {
        "input_size": list(input_size),
        "fvcore": fv["total"],
        "thop": th,
        "thop_over_fvcore": th / fv["total"] if fv["total"] else None,
        "fvcore_by_operator": fv["by_operator"],
        "fvcore_unsupported_ops": fv["unsupported_ops"],
    }
