"""Training memory and step time, as mmsegmentation's model zoo reports "Mem (GB)" and s/iter.

One step: forward at the manifest's crop size and per-GPU batch, cross-entropy (ignore index
255) on the decode head and, with weight 0.4, on each auxiliary head (STDC's detail head on the
labels' boundaries), backward, an SGD step
(lr 0.01, momentum 0.9, as mmsegmentation's configs). Entries that mmsegmentation trained with
mixed precision (its '-amp-' configs) train under fp16 autocast with dynamic loss scaling, as its
AmpOptimWrapper does, and the rest in fp32. Labels are random; the cost of a step does not depend on them. It runs on a deep copy, so the measured model keeps its weights and its
BatchNorm statistics. Only CUDA gives a peak-memory figure; the runner measures on CUDA only.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segbench.layers import resize
from segbench.manifest import ModelSpec
from segbench.models.segmentor import EncoderDecoder
from segbench.timing import cudnn_flags, synchronize

IGNORE_INDEX = 255
AUXILIARY_LOSS_WEIGHT = 0.4
SGD = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005}
CUDNN = {"benchmark": True, "deterministic": False}
"""As mmsegmentation trains (default_runtime's cudnn_benchmark=True): its Mem (GB) and s/iter were taken so."""
WARMUP_STEPS = 3
"""Discarded steps: cuDNN benchmarks its algorithms and the allocator grows its pool in the first ones."""


def per_gpu_batch(spec: ModelSpec) -> tuple[int | None, str]:
    """(batch, where it came from): the 'b2' of an mmseg name like '..._4xb2-80k_...', else the
    manifest's total Batch Size (a single-GPU figure only when the name says nothing)."""
    match = re.search(r"(\d+)xb(\d+)", spec.name)
    if match:
        return int(match[2]), "name"
    return spec.batch_size, "Metadata.Batch Size" if spec.batch_size else "none"


def training_precision(spec: ModelSpec) -> tuple[str, str]:
    """("fp16" or "fp32", where it came from): mmsegmentation tags its mixed-precision entries
    '(FP16)' in Metadata.Architecture and names them '..._4xb2-amp-80k_...'. Their Mem (GB) is
    only comparable with a step trained the same way."""
    if "(FP16)" in spec.architecture_tags:
        return "fp16", "Metadata.Architecture"
    if "-amp-" in spec.name:
        return "fp16", "name"
    return "fp32", "default"


def training_heads(model: EncoderDecoder) -> list[tuple[nn.Module, float]]:
    """(head, loss weight) of every head of an EncoderDecoder that trains: its decode head and each
    auxiliary head (one, or mmseg's list of several)."""
    heads = [(model.decode_head, 1.0)]
    if hasattr(model, "auxiliary_head"):
        auxiliary = model.auxiliary_head
        heads += [(head, AUXILIARY_LOSS_WEIGHT) for head in (auxiliary if isinstance(auxiliary, nn.ModuleList) else [auxiliary])]
    return heads


def training_outputs(model: nn.Module, images: torch.Tensor) -> list[tuple[torch.Tensor, float]]:
    """(logits, loss weight) of every head that trains: an EncoderDecoder's decode head and its
    auxiliary heads on the same backbone features; any other model's forward output (a model in
    PaddleSeg's layout returns one per training head in train mode, weighted by its `loss_weights`).

    EncoderDecoder.forward runs the decode head only (inference), so the heads are called here.
    """
    if not isinstance(model, EncoderDecoder):
        return _own_outputs(model, images)
    features = model.backbone(images)
    if model.neck is not None:
        features = model.neck(features)
    return [(logits, weight) for logits, weight, _ in _head_outputs(model, features)]


def _own_outputs(model: nn.Module, images: torch.Tensor) -> list[tuple[torch.Tensor, float]]:
    """A model outside EncoderDecoder (PaddleSeg's layout) returns its logits, or in train mode a
    tuple with one per training head (its auxiliary heads), weighted by its `loss_weights`."""
    logits = model(images)
    if isinstance(logits, tuple):
        return list(zip(logits, model.loss_weights, strict=True))
    return [(logits, 1.0)]


def _head_outputs(model: EncoderDecoder, features) -> list[tuple[torch.Tensor, float, nn.Module]]:
    """(logits, loss weight, head) of every training head; a head with training-only branches
    returns one output per branch in train mode, each with its `loss_weights` entry."""
    outputs = []
    for head, weight in training_heads(model):
        logits = head(features)
        if isinstance(logits, tuple):
            outputs += [(branch, weight * w, head) for branch, w in zip(logits, head.loss_weights, strict=True)]
        else:
            outputs.append((logits, weight, head))
    return outputs


def head_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; a one-channel boundary head (PIDNet's D branch) takes binary cross-entropy
    against the labelled pixels as a stand-in edge map (the step's cost does not depend on it).
    Per-image class scores (B, C) (EncNet's SE-loss branch) take binary cross-entropy against the
    classes each image holds, as mmseg's EncHead (ignored pixels count for no class)."""
    if logits.dim() == 2:
        classes = logits.shape[1]
        hits = torch.where(labels < classes, labels, classes).flatten(1)
        present = torch.zeros(len(labels), classes + 1, device=logits.device).scatter_(1, hits, 1.0)[:, :classes]
        return F.binary_cross_entropy_with_logits(logits, present.to(logits.dtype))
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], (labels != IGNORE_INDEX).to(logits.dtype))
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


def _nearest(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The labels at the logits' size (nearest), as PaddleSeg's pixel-contrast loss takes them for
    embeddings it keeps at feature resolution."""
    if labels.shape[-2:] == logits.shape[-2:]:
        return labels
    return F.interpolate(labels[:, None].float(), size=tuple(logits.shape[-2:]), mode="nearest")[:, 0].long()


def training_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Weighted loss of every head, logits resized to the labels as mmseg's losses do. A head that
    learns something else than the classes (STDC's detail head: boundaries) says so with a
    `training_labels(labels)` method."""
    if not isinstance(model, EncoderDecoder):
        return sum(weight * head_loss(logits, _nearest(labels, logits)) for logits, weight in _own_outputs(model, images))
    align_corners = getattr(model, "align_corners", False)
    features = model.backbone(images)
    if model.neck is not None:
        features = model.neck(features)
    losses = []
    for logits, weight, head in _head_outputs(model, features):
        target = head.training_labels(labels) if hasattr(head, "training_labels") else labels
        if logits.dim() == 4:
            logits = resize(logits, tuple(target.shape[-2:]), align_corners)
        losses.append(weight * head_loss(logits, target))
    return sum(losses)


def measure_training(
    model: nn.Module, device: torch.device, crop_size: tuple[int, int], batch: int, iterations: int, *, precision: str = "fp32"
) -> dict[str, Any]:
    """Seconds per step (forward, loss, backward, optimizer step; synchronized) and, on CUDA,
    max_memory_allocated/reserved over the steps: weights, gradients, momentum and activations.
    precision="fp16": forward and loss under fp16 autocast, a dynamic GradScaler on the loss."""
    trainee = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.SGD(trainee.parameters(), **SGD)
    amp = precision == "fp16"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)  # disabled: scale() and step() pass through
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *crop_size, generator=generator).to(device)
    with torch.no_grad():
        classes = training_outputs(trainee.eval(), images[:1])[0][0].shape[1]
    trainee.train()
    labels = torch.randint(0, classes, (batch, *crop_size), generator=generator)
    labels[:, : crop_size[0] // 8] = IGNORE_INDEX  # as a void border would
    labels = labels.to(device)
    cuda = device.type == "cuda"
    if cuda:
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    samples = []
    with cudnn_flags(**CUDNN):
        for step in range(WARMUP_STEPS + iterations):
            synchronize(device)
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = training_loss(trainee, images, labels)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            synchronize(device)
            if step >= WARMUP_STEPS:
                samples.append(time.perf_counter() - start)
    result: dict[str, Any] = {"measured": True, "step": {"unit": "s", "samples": samples}}
    if cuda:
        result["memory"] = {
            "peak_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
            "peak_reserved_bytes": int(torch.cuda.max_memory_reserved(device)),
        }
    del trainee, optimizer, scaler
    if cuda:
        torch.cuda.empty_cache()
    return result
