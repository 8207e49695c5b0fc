"""Encoder-decoder segmentor: backbone -> (neck) -> decode head, plus an optional auxiliary head.

The auxiliary head exists only so that training checkpoints load with strict=True; `forward`
never runs it, so FLOPs, latency and the inference parameter count exclude it. Some decode heads
(DDRNet's, PIDNet's) hold training-only branches of their own: they name them in `training_only`,
return one output per branch in train mode (weighted by their `loss_weights`) and run only the
main one in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn

AUXILIARY_PREFIX = "auxiliary_head."


def training_only_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Parameter-name prefixes of what only training runs: the auxiliary head, the decode
    head's own training branches, and what a model outside EncoderDecoder (PaddleSeg's layout)
    names in its own `training_only`; and of what no forward runs (`never_run`, set by
    mark_unused). The inference parameter count leaves these out."""
    decode_head = getattr(model, "decode_head", None)
    branches = getattr(decode_head, "training_only", ())
    own = getattr(model, "training_only", ())
    never_run = getattr(model, "never_run", ())
    return (AUXILIARY_PREFIX, *(f"decode_head.{name}." for name in branches), *(f"{name}." for name in own), *never_run)


def mark_unused(model: nn.Module, prefixes: tuple[str, ...]) -> None:
    """Name, by parameter-name prefix (`layer.` for a module, the whole name for a parameter), what a
    model keeps only so that its checkpoints load (PaddleSeg builds and saves layers its forward
    never runs) in its `never_run`, so that the inference parameter count leaves them out, and
    freeze them: no training step reaches them either."""
    model.never_run = prefixes
    for name, parameter in model.named_parameters():
        if name.startswith(prefixes):
            parameter.requires_grad_(False)


class EncoderDecoder(nn.Module):
    """mmsegmentation's `EncoderDecoder` module layout: `backbone`, `neck`, `decode_head`, `auxiliary_head`.

    `align_corners` is the resize mode the model was trained with; post-processing (logits back
    to the input size) must use it too, as mmsegmentation's `predict_by_feat` does.
    """

    def __init__(
        self,
        backbone: nn.Module,
        decode_head: nn.Module,
        auxiliary_head: nn.Module | None = None,
        *,
        neck: nn.Module | None = None,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.decode_head = decode_head
        if auxiliary_head is not None:
            self.auxiliary_head = auxiliary_head
        self.align_corners = align_corners

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits at the decode head's resolution (1/8 of the input for D8 models, 1/4 for UPerNet/FPN)."""
        features = self.backbone(image)
        if self.neck is not None:
            features = self.neck(features)
        return self.decode_head(features)


class AuxiliaryHeads(nn.ModuleList):
    """mmsegmentation's list-valued `auxiliary_head` (keys `auxiliary_head.<i>.*`): heads on several
    backbone levels, all trained, none run at inference. Returns each head's logits."""

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [head(features) for head in self]


class CascadeDecodeHeads(nn.ModuleList):
    """mmsegmentation's CascadeEncoderDecoder as a decode head (keys `decode_head.0.*`, `decode_head.1.*`):
    the second head reads the backbone features and the first head's logits (OCRNet: the FCN head's
    coarse classes locate the object regions). Both run at inference, so both count as inference.

    In train mode it returns both heads' logits, weighted by `loss_weights` as mmseg's configs (0.4,
    1.0), and runs the first head twice as mmseg's training step does: once for its own loss, once
    more as the second head's input ("forward test again" in mmseg's cascade segmentor).
    """

    def __init__(self, first: nn.Module, second: nn.Module, loss_weights: tuple[float, float] = (0.4, 1.0)) -> None:
        super().__init__([first, second])
        self.loss_weights = loss_weights

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        first, second = self
        if not self.training:
            return second(features, first(features))
        return first(features), second(features, first(features))
