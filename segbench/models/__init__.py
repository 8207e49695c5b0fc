"""segbench's own architectures; importing this package registers them all."""

from segbench.models import (  # noqa: F401  (registration)
    ann, apcnet, attention_unet, bisenetv1, bisenetv2, ccnet, cgnet, company_dfnet, danet, ddrnet, decoupled_segnet,
    deeplabv3, deeplabv3plus, dmnet, dnl, emanet, encnet, enet, erfnet, espnetv1, espnetv2, fast_scnn, fastfcn, fcn,
    fpn, gcnet, ginet, glore, gscnn, hardnet, hrnet, hrnet_contrast, icnet, isanet, lraspp, mla_transformer,
    mobilenet_v2, nonlocal_net, ocrnet, pfpnet, pidnet, point_rend, portraitnet, pp_humanseg_lite, pp_liteseg, psanet,
    pspnet, resnest, segformer, segmenter, segnet, setr, sfnet, stdc, swin_upernet, u2net, unet, unet_3plus,
    unet_paddle, unet_plusplus, upernet, vit_upernet,
)
from segbench.models.registry import architecture_builder, list_architectures, register_architecture

__all__ = ["architecture_builder", "list_architectures", "register_architecture"]
