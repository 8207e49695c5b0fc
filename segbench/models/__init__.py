"""segbench's own architectures; importing this package registers them all."""

from segbench.models import deeplabv3, deeplabv3plus, fcn, fpn, lraspp, mobilenet_v2, pspnet, upernet  # noqa: F401  (registration)
from segbench.models.registry import architecture_builder, list_architectures, register_architecture

__all__ = ["architecture_builder", "list_architectures", "register_architecture"]
