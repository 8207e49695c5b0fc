"""Architecture registry: name -> builder. A manifest's `Build.architecture` looks names up here."""

from __future__ import annotations

import fnmatch
from typing import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str):
    """Decorator registering a builder under `name`; a second builder of the same name is a bug."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"architecture {name!r} registered twice")
        _BUILDERS[name] = builder
        return builder

    return wrap


def architecture_builder(name: str) -> Callable[..., nn.Module]:
    return _BUILDERS[name]


def list_architectures(pattern: str = "*") -> list[str]:
    return sorted(n for n in _BUILDERS if fnmatch.fnmatch(n, pattern))
