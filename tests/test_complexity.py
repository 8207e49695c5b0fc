"""MACs and params against hand counts, and fvcore against thop."""

import pytest
import torch
from torch import nn

from segbench.complexity import count_macs, count_params
from segbench.models import architecture_builder
from toy_models import TinySegmentor


def test_macs_of_tiny_model_equal_hand_count():
    # stem: 3x3 conv 3->8, stride 2, on 32x64 -> 16x32 output: 8*3*9 MACs per output pixel
    # classifier: 1x1 conv 8->4 on 16x32: 4*8 per pixel; biases and ReLU are not multiply-adds.
    hand = 16 * 32 * (8 * 3 * 9) + 16 * 32 * (4 * 8)
    macs = count_macs(TinySegmentor(4), (32, 64))
    assert macs["fvcore"] == hand
    assert macs["thop"] == hand
    assert macs["input_size"] == [32, 64]


def test_params_of_tiny_model_equal_hand_count():
    assert count_params(TinySegmentor(4)) == {"total": (8 * 3 * 9 + 8) + (4 * 8 + 4)} | {"inference": 8 * 3 * 9 + 8 + 4 * 8 + 4}


def test_auxiliary_head_excluded_from_inference_params_and_macs():
    with_aux = architecture_builder("fcn_resnet")(depth=18, auxiliary_head=True)
    without = architecture_builder("fcn_resnet")(depth=18, auxiliary_head=False)
    params = count_params(with_aux)
    aux = sum(p.numel() for p in with_aux.auxiliary_head.parameters())
    assert params["total"] - params["inference"] == aux > 0
    assert params["inference"] == count_params(without)["total"]
    assert count_macs(with_aux, (64, 128))["fvcore"] == count_macs(without, (64, 128))["fvcore"]


@pytest.mark.parametrize("architecture", ["fcn_resnet", "deeplabv3_resnet"])
def test_fvcore_and_thop_agree_on_real_architectures(architecture):
    model = architecture_builder(architecture)(depth=18)
    macs = count_macs(model, (64, 128))
    assert macs["fvcore"] > 0
    assert abs(macs["thop_over_fvcore"] - 1) < 0.01


def test_counting_leaves_the_model_untouched():
    model = architecture_builder("fcn_resnet")(depth=18).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (64, 128))
    after = model.state_dict()
    assert before.keys() == after.keys()  # no thop total_ops/total_params buffers
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats unchanged
    assert model.training


def test_a_skipped_matmul_is_an_error():
    class Attention(nn.Module):
        def forward(self, x):
            q = x.flatten(2).transpose(1, 2)
            out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
            return out.transpose(1, 2).reshape(x.shape)

    with pytest.raises(RuntimeError, match="scaled_dot_product_attention"):
        count_macs(Attention(), (8, 8))
