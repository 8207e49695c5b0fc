"""segbench's own architectures; importing this package registers them all."""

from segbench.models import deeplabv3, fcn  # noqa: F401  (registration side effect)
from segbench.models.registry import architecture_builder, list_architectures, register_architecture

__all__ = ["architecture_builder", "list_architectures", "register_architecture"]
