"""segbench's own architectures; importing this package registers them all."""

from segbench.models import (  # noqa: F401  (registration)
    ann, apcnet, bisenetv1, bisenetv2, ccnet, cgnet, company_dfnet, danet, ddrnet, deeplabv3, deeplabv3plus, dmnet,
    dnl, emanet, encnet, erfnet, fast_scnn, fastfcn, fcn, fpn, gcnet, hrnet, icnet, isanet, lraspp, mobilenet_v2,
    nonlocal_net, ocrnet, pidnet, point_rend, psanet, pspnet, resnest, segformer, segmenter, setr, sfnet, stdc,
    swin_upernet, unet, upernet, vit_upernet,
)
from segbench.models import (  # noqa: F401  (registration: PaddleSeg's U-Net-style and light families)
    attention_unet, enet, espnetv1, espnetv2, hardnet, portraitnet, pp_humanseg_lite, segnet, u2net, unet_3plus, unet_paddle, unet_plusplus,
)
from segbench.models.registry import architecture_builder, list_architectures, register_architecture

__all__ = ["architecture_builder", "list_architectures", "register_architecture"]
