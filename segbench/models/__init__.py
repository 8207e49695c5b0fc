"""segbench's own architectures; importing this package registers them all."""

from segbench.models import (  # noqa: F401  (registration)
    bisenetv1, bisenetv2, cgnet, ddrnet, deeplabv3, deeplabv3plus, erfnet, fast_scnn, fcn, fpn, icnet, lraspp,
    mobilenet_v2, pidnet, pspnet, segformer, stdc, unet, upernet,
)
from segbench.models import (  # noqa: F401  (registration: PaddleSeg's U-Net-style and light families)
    attention_unet, enet, espnetv1, espnetv2, hardnet, portraitnet, pp_humanseg_lite, segnet, u2net, unet_3plus, unet_paddle, unet_plusplus,
)
from segbench.models.registry import architecture_builder, list_architectures, register_architecture

__all__ = ["architecture_builder", "list_architectures", "register_architecture"]
