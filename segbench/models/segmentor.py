"""Encoder-decoder segmentor: backbone -> decode head, plus an optional auxiliary head.

The auxiliary head exists only so that training checkpoints load with strict=True; `forward`
never runs it, so FLOPs, latency and the inference parameter count exclude it.
"""

from __future__ import annotations

import torch
from torch import nn

AUXILIARY_PREFIX = "auxiliary_head."


class EncoderDecoder(nn.Module):
    def __init__(self, backbone: nn.Module, decode_head: nn.Module, auxiliary_head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        if auxiliary_head is not None:
            self.auxiliary_head = auxiliary_head

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits at the decode head's resolution (1/8 of the input for D8 models)."""
        return self.decode_head(self.backbone(image))
