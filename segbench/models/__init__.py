"""segbench's own architectures; importing this package registers them all."""

from segbench.models import (  # noqa: F401  (registration)
    bisenetv1, bisenetv2, cgnet, company_dfnet, ddrnet, deeplabv3, deeplabv3plus, erfnet, fast_scnn, fcn, fpn, icnet, lraspp,
    hrnet_contrast, mla_transformer, mobilenet_v2, pidnet, pp_liteseg, pspnet, segformer, sfnet, stdc, unet, upernet,
)
from segbench.models.registry import architecture_builder, list_architectures, register_architecture

__all__ = ["architecture_builder", "list_architectures", "register_architecture"]
