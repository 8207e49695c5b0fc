"""Small models named by import path in test manifests (`Build.callable: toy_models:...`), and BatchNorm statistics as
a trained model has them."""

import torch
from torch import nn


class TinySegmentor(nn.Module):
    """Conv(3->8, 3x3, stride 2) + ReLU + Conv(8->num_classes, 1x1): MACs are easy to count by hand."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.classifier = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        return self.classifier(self.relu(self.stem(x)))


def tiny_segmentor(num_classes: int = 4) -> nn.Module:
    return TinySegmentor(num_classes)


def broken_segmentor() -> nn.Module:
    raise RuntimeError("this builder always fails")


class ShapeError(nn.Module):
    def forward(self, x):
        return x.view(7, -1, 3)  # cannot be viewed at most sizes


def shape_error_segmentor() -> nn.Module:
    return ShapeError()


def crashing_segmentor() -> nn.Module:
    """Ends the interpreter without unwinding, as a segfault or an abort in a CUDA library would."""
    import os

    os._exit(3)


def oom_crashing_segmentor() -> nn.Module:
    """Dies the way an allocator failure outside Python's reach does: a message on stderr, then exit."""
    import os
    import sys

    sys.stderr.write("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    sys.stderr.flush()
    os._exit(1)


def oom_raising_segmentor() -> nn.Module:
    import torch

    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")


BRACKETED_MESSAGE = "[/backbone.layer4] [enforce fail at alloc_cpu.cpp:127]"


def bracketed_error_segmentor() -> nn.Module:
    """Fails with square brackets in its message, as torch's allocator and module paths print them."""
    raise RuntimeError(BRACKETED_MESSAGE)


class DataDependent(TinySegmentor):
    """Scales its logits by a value read from the input (.item()): it cannot run on the meta device."""

    def forward(self, x):
        return super().forward(x) * float(x.mean().item() >= -1e9)


def data_dependent_segmentor() -> nn.Module:
    return DataDependent(4)


def options_segmentor(num_classes: int = 4, **options) -> nn.Module:
    """Accepts any keyword argument, as builders forwarding `**kwargs` to a config do."""
    return TinySegmentor(num_classes)


def randomize_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Statistics and affine parameters away from (0, 1), so that a fold that forgets one of them shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                for tensor, low, high in (
                    (module.weight, 0.5, 1.5), (module.bias, -0.2, 0.2), (module.running_mean, -0.2, 0.2), (module.running_var, 0.5, 2.0)
                ):  # fmt: skip
                    if tensor is not None:
                        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return model
