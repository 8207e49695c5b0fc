"""ModelSpec -> nn.Module: segbench's own architectures, or any `package.module:callable`."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from contextlib import nullcontext
from types import ModuleType
from typing import Any, Callable

import torch
from torch import nn

from segbench.errors import SegbenchError, located, one_line
from segbench.manifest import ModelSpec
from segbench.models import architecture_builder, list_architectures


def _import_builder_module(module_name: str, where: str) -> ModuleType:
    """Import a Build.callable module with the current directory on sys.path, first, as `python -m segbench.cli` has it.

    The installed `segbench` script starts with its own directory there instead and would miss a module beside the user.
    Any exception the module raises on import (a SyntaxError, a missing dependency, sys.exit) is one line.
    """
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            raise SegbenchError(
                f"{where}: cannot import module {module_name!r}: not found in the current directory ({cwd}) or on the "
                "import path; add the directory that holds it to PYTHONPATH"
            ) from exc
        raise SegbenchError(f"{where}: cannot import module {module_name!r}: ModuleNotFoundError: {exc}") from exc
    except (Exception, SystemExit) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise SegbenchError(f"{where}: cannot import module {module_name!r}: {type(exc).__name__} on import: {detail}") from exc


def _resolve_callable(spec: ModelSpec) -> Callable[..., Any]:
    module_name, attr = spec.build.callable.split(":")
    where = located(spec.file, spec.name, "Build.callable")
    target = _import_builder_module(module_name, where)
    for part in attr.split("."):
        if not hasattr(target, part):
            raise SegbenchError(f"{where}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise SegbenchError(f"{where}: {spec.build.callable!r} is not callable")
    return target


def model_builder(spec: ModelSpec) -> Callable[..., Any]:
    """The builder a spec names, with its keyword arguments checked against the builder's signature."""
    if spec.build.architecture is not None:
        try:
            builder = architecture_builder(spec.build.architecture)
        except KeyError:
            known = ", ".join(list_architectures())
            raise SegbenchError(
                f"{located(spec.file, spec.name, 'Build.architecture')}: unknown architecture "
                f"{spec.build.architecture!r} (known: {known})"
            ) from None
    else:
        builder = _resolve_callable(spec)
    if spec.weights_adapter is not None:
        from segbench.checkpoint import list_key_adapters

        if spec.weights_adapter not in list_key_adapters():
            raise SegbenchError(
                f"{located(spec.file, spec.name, 'Weights Adapter')}: unknown key adapter {spec.weights_adapter!r} "
                f"(known: {', '.join(list_key_adapters())})"
            )
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return builder  # builtins and C extensions: nothing to check
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        for key in spec.build.kwargs:
            if key not in params:
                raise SegbenchError(
                    f"{located(spec.file, spec.name, 'Build.kwargs.' + one_line(key, 80))}: not an argument of the builder "
                    f"(accepts: {', '.join(params) or 'nothing'})"
                )
    return builder


def build_model(spec: ModelSpec, *, device: str | None = None) -> nn.Module:
    """Construct the model in eval mode on the CPU, with weights drawn from a fixed seed; with
    device="meta", shapes only (for counting: no memory, no initialisation to compute)."""
    builder = model_builder(spec)
    try:
        # Seeded, so random-init weights are the same in every run and on every torchrun rank.
        with torch.random.fork_rng(devices=[]), torch.device(device) if device else nullcontext():
            torch.manual_seed(0)
            model = builder(**spec.build.kwargs)
    except (TypeError, ValueError) as exc:
        raise SegbenchError(f"{located(spec.file, spec.name, 'Build.kwargs')}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise SegbenchError(
            f"{located(spec.file, spec.name, 'Build')}: the builder returned {type(model).__name__}, not an nn.Module"
        )
    return model.eval()
