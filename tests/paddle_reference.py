"""The PaddleSeg 2.8.0 reference data copied into tests/data/paddleseg-keys (a clone has no ../shared).

How PaddleSeg's numbers in params.json count, worked out from its README and the numbers:

- `params_total`: every *parameter* of the Paddle model once. Paddle's BatchNorm statistics
  `_mean`/`_variance` are (non-trainable) parameters, so they count; plain buffers do not (EMANet's
  `mu`: state_dict numel - params_total = 32768 = 1x512x64), and a layer registered under two
  names counts once (ANN's APNB shares `f_key` as `f_query`: state_dict numel - params_total =
  132352 = a 512->256 1x1 conv with bias and its BatchNorm, 131072 + 256 + 4x256).
- `params_trainable` = params_total - the BatchNorm statistics (ANN R50: 48659590 - 48597638 =
  61952 = 2 x 30976, the unique BN channels): in segbench, the sum over model.parameters().
- `params_inference`: params_total of only the layers that run in the eval forward (auxiliary
  heads a model skips in eval are left out). In segbench: outside training_only_prefixes(model).
- `params_flops_style` (PaddleSeg's published Params(M)) = params_inference - parameters that
  a container layer owns directly (`params_nonleaf_owned`, e.g. DANet's attention gamma):
  paddle.flops counts leaf layers only. Not checked here.

So segbench's equivalent of params_total is its unique parameters plus every BatchNorm's
running_mean and running_var (num_batches_tracked is segbench's own and is not counted).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

REFERENCE = Path(__file__).parent / "data" / "paddleseg-keys"
PARAMS = json.loads((REFERENCE / "params.json").read_text())


def paddle_reference_shapes(config: str) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of the config with its shape as segbench holds it: the `name d0,d1,...`
    listing passed through the `paddleseg` key adapter (BN statistics renamed, num_batches_tracked
    added, Linear weights transposed)."""
    from segbench.checkpoint import paddleseg

    paddle = {}
    for line in (REFERENCE / f"{config}.keys.txt").read_text().splitlines():
        key, _, dims = line.partition(" ")
        paddle[key] = torch.empty([int(d) for d in dims.split(",") if d], device="meta")
    return {key: tuple(value.shape) for key, value in paddleseg(paddle).items()}


def paddle_param_counts(model: nn.Module) -> tuple[int, int]:
    """(params_total, params_inference) as PaddleSeg counts them (see the module docstring)."""
    from segbench.models.segmentor import training_only_prefixes

    counted = dict(model.named_parameters())  # shared parameters once, under their first name
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            counted[f"{name}.running_mean"], counted[f"{name}.running_var"] = module.running_mean, module.running_var
    training_only = training_only_prefixes(model)
    total = sum(t.numel() for t in counted.values())
    inference = sum(t.numel() for name, t in counted.items() if not name.startswith(training_only))
    return total, inference


def paddle_reference_numel(config: str, prefixes: tuple[str, ...]) -> int:
    """Entries of the config's reference listing whose names start with any of `prefixes`, as
    Paddle counts them (a module's prefix ends in '.')."""
    shapes = paddle_reference_shapes(config)
    counted = (shape for key, shape in shapes.items() if key.startswith(prefixes) and not key.endswith("num_batches_tracked"))
    return sum(math.prod(shape) for shape in counted)


def assert_matches_paddleseg(model: nn.Module, config: str, *, dropped_in_eval: tuple[str, ...] = ()) -> None:
    """The model's state_dict keys and shapes equal PaddleSeg's for `config` after the `paddleseg`
    adapter (then its .pdparams weights load with strict=True), and its parameter counts equal
    params.json's params_total and params_inference. `dropped_in_eval`: prefixes of layers
    PaddleSeg computes in eval only to drop their output (auxiliary heads), which segbench does not
    run: params_inference less their reference entries."""
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    reference = paddle_reference_shapes(config)
    assert sorted(set(reference) - set(ours)) == [], "missing keys"
    assert sorted(set(ours) - set(reference)) == [], "unexpected keys"
    assert {k: v for k, v in ours.items() if reference[k] != v} == {}, "shape mismatches"
    dropped = paddle_reference_numel(config, dropped_in_eval) if dropped_in_eval else 0
    expected = (PARAMS[config]["params_total"], PARAMS[config]["params_inference"] - dropped)
    assert paddle_param_counts(model) == expected
