"""segbench's own architectures; importing this package registers them all."""

from segbench.models import (  # noqa: F401  (registration)
    ann, apcnet, bisenetv1, bisenetv2, cgnet, ddrnet, deeplabv3, deeplabv3plus, dmnet, emanet, encnet, erfnet, fast_scnn,
    fastfcn, fcn, fpn, icnet, isanet, lraspp, mobilenet_v2, pidnet, pspnet, segformer, stdc, unet, upernet,
)
from segbench.models.registry import architecture_builder, list_architectures, register_architecture

__all__ = ["architecture_builder", "list_architectures", "register_architecture"]
