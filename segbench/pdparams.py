"""PaddlePaddle `.pdparams` files read without Paddle, with the guarantee weights_only gives.

`paddle.save(layer.state_dict())` writes a pickle (protocol 2 or 4) of a dict name -> numpy
array plus a "StructuredToParameterName@@" entry mapping each name to Paddle's internal
parameter name. Unpickling may call any global a file names, so this reader admits only the
globals such a file needs to rebuild numpy arrays (under numpy 1's `numpy.core` and numpy 2's
`numpy._core` module names), `_codecs.encode` (protocol 2 writes bytes through it) and
collections.OrderedDict; any other global is refused before it is looked up, so a crafted file
runs no code. Arrays of objects are refused too: they are not weights.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from segbench.errors import SegbenchError, located, one_line

NAME_MAPPING = "StructuredToParameterName@@"
"""The entry paddle.save adds beside the weights: structured name -> Paddle parameter name."""

_ALLOWED_GLOBALS = {
    *((f"{package}.multiarray", name) for package in ("numpy.core", "numpy._core") for name in ("_reconstruct", "scalar")),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}
_MULTIARRAY = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats


class _RefusedGlobal(Exception):
    """A global outside the allow-list; carries its dotted name for the one-line error."""


class _WeightsOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}")
        if module.endswith(".multiarray"):  # numpy 1 and 2 name one module differently; take the installed one
            return getattr(_MULTIARRAY, name)
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise _RefusedGlobal(f"persistent id {one_line(pid, 60)}")


def read_pdparams(path: Path, file: str, model_name: str) -> dict[str, torch.Tensor]:
    """The weights in a `.pdparams` file as CPU tensors, under Paddle's names (the mapping entry
    dropped); every way the file can be wrong is a one-line SegbenchError naming `file`."""
    try:
        with open(path, "rb") as f:
            content = _WeightsOnlyUnpickler(f).load()
    except _RefusedGlobal as refused:
        raise SegbenchError(
            f"{located(file, model_name)}: refused to read a .pdparams file that calls {refused} (only numpy "
            "arrays and plain containers are admitted); it is not a PaddlePaddle weights file, or it was crafted"
        ) from None
    except Exception as error:  # truncated or junk bytes: pickle, numpy and codecs errors alike
        raise SegbenchError(
            f"{located(file, model_name)}: not a readable .pdparams file ({type(error).__name__}: {one_line(error, 120)})"
        ) from None
    if not isinstance(content, dict):
        raise SegbenchError(f"{located(file, model_name)}: holds no state_dict (a mapping of names to arrays)")
    state_dict = {}
    for name, value in content.items():
        if name == NAME_MAPPING:
            continue
        if not (isinstance(name, str) and isinstance(value, np.ndarray) and value.dtype.kind in _NUMERIC_KINDS):
            raise SegbenchError(
                f"{located(file, model_name)}: entry {one_line(repr(name), 80)} is a {type(value).__name__}, not a numeric "
                "array; a .pdparams weights file maps names to arrays (a file split by paddle.save's big-parameter "
                "protocol is not supported: save it again with protocol 4)"
            )
        state_dict[name] = torch.from_numpy(np.ascontiguousarray(value).copy())
    return state_dict
