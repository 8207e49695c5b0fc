"""MACs and params against hand counts, and fvcore against thop."""

import pytest
import torch
from torch import nn

from segbench.complexity import count_macs, count_params, module_breakdown
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
    assert 1 <= macs["fvcore_over_flop_counter"] <= 1.01  # fvcore adds small elementwise estimates


def test_counting_leaves_the_model_untouched():
    model = architecture_builder("fcn_resnet")(depth=18).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (64, 128))
    after = model.state_dict()
    assert before.keys() == after.keys()  # no thop total_ops/total_params buffers
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats unchanged
    assert model.training


@pytest.mark.parametrize("heavy", ["bilinear", "tensordot"])
def test_a_skipped_heavy_op_is_an_error(heavy):
    class Uncounted(nn.Module):
        def forward(self, x):
            if heavy == "bilinear":
                return nn.functional.bilinear(x.transpose(1, 3), x.transpose(1, 3), torch.ones(2, 3, 3)).transpose(1, 3)
            return torch.tensordot(x, torch.ones(8, 8), dims=([3], [0]))

    with pytest.raises(RuntimeError, match=f"fvcore could not count aten::{heavy}"):
        count_macs(Uncounted(), (8, 8))


# --- hand counts: attention, einsum/matmul and transposed convolution ------------------------

E, HEADS, CLASSES, SIZE = 16, 2, 3, (4, 6)
L = SIZE[0] * SIZE[1]  # tokens: one per pixel


class Tokens(nn.Module):
    """1x1 conv embedding to E channels, a token mixer on (1, L, E), a 1x1 conv classifier."""

    def __init__(self, mixer: nn.Module) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, E, 1)
        self.mixer = mixer
        self.classifier = nn.Conv2d(E, CLASSES, 1)

    def forward(self, x):
        n, _, h, w = x.shape
        tokens = self.mixer(self.embed(x).flatten(2).transpose(1, 2))
        return self.classifier(tokens.transpose(1, 2).reshape(n, E, h, w))


EMBED_AND_CLASSIFIER = L * 3 * E + L * E * CLASSES
ATTENTION = 2 * L * L * E  # QKᵀ and AV summed over heads: heads · L · L · (d + d), d = E / heads


class MHABlock(nn.Module):
    """nn.MultiheadAttention + a 4x MLP, residuals, no norms (norm costs are estimates, not hand counts)."""

    def __init__(self, need_weights: bool) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(E, HEADS, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(E, 4 * E), nn.GELU(), nn.Linear(4 * E, E))
        self.need_weights = need_weights

    def forward(self, x):
        x = x + self.attention(x, x, x, need_weights=self.need_weights)[0]
        return x + self.mlp(x)


class SDPABlock(nn.Module):
    """qkv Linear, multi-head attention by F.scaled_dot_product_attention or by einsum and @, out Linear."""

    def __init__(self, kernel: str) -> None:
        super().__init__()
        self.qkv = nn.Linear(E, 3 * E)
        self.proj = nn.Linear(E, E)
        self.kernel = kernel

    def forward(self, x):
        n, length, _ = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, HEADS, E // HEADS).permute(2, 0, 3, 1, 4)
        if self.kernel == "sdpa":
            out = nn.functional.scaled_dot_product_attention(q, k, v)
        else:
            out = torch.einsum("bhqd,bhkd->bhqk", q, k).softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, length, E))


@pytest.mark.parametrize("need_weights", [True, False], ids=["bmm-path", "sdpa-path"])
def test_multihead_attention_block_equals_hand_count_in_every_counter(need_weights):
    hand = EMBED_AND_CLASSIFIER + 4 * L * E * E + ATTENTION + 2 * L * E * 4 * E
    macs = count_macs(Tokens(MHABlock(need_weights)), SIZE)
    assert macs["fvcore"] == hand
    assert macs["thop"] == hand  # with segbench's MultiheadAttention rule
    assert macs["flop_counter_flops"] == 2 * hand and macs["flop_counter_macs"] == hand
    assert macs["fvcore_over_flop_counter"] == macs["thop_over_fvcore"] == 1.0
    assert "aten::gelu" in macs["fvcore_unsupported_ops"]  # elementwise: listed, not an error
    assert torch.backends.mha.get_fastpath_enabled()  # restored after counting


@pytest.mark.parametrize("kernel", ["sdpa", "einsum"])
def test_attention_by_sdpa_or_einsum_equals_hand_count(kernel):
    projections = L * E * 3 * E + L * E * E
    macs = count_macs(Tokens(SDPABlock(kernel)), SIZE)
    assert macs["fvcore"] == EMBED_AND_CLASSIFIER + projections + ATTENTION
    assert macs["flop_counter_macs"] == macs["fvcore"]  # on the meta device SDPA is counted
    assert macs["thop"] == EMBED_AND_CLASSIFIER + projections  # thop cannot see functional attention
    assert macs["thop_over_fvcore"] < 1


def test_conv_transpose_decoder_equals_hand_count_in_every_counter():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1))
    h, w = 16, 24
    down = (h // 2) * (w // 2) * 8 * 3 * 9
    up = (h // 2) * (w // 2) * 8 * 4 * 4 * 4  # each input element meets out_channels · k² weights
    macs = count_macs(model, (h, w))
    assert macs["fvcore"] == macs["thop"] == macs["flop_counter_macs"] == down + up


def test_a_model_that_cannot_run_on_meta_keeps_the_other_counts():
    class DataDependent(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * float(x.mean().item() >= 0)

    macs = count_macs(DataDependent(3, 2, 1), (4, 4))
    assert macs["fvcore"] == 16 * 6
    assert "flop_counter_macs" not in macs and macs["flop_counter_error"]


def test_module_breakdown_to_depth():
    rows = module_breakdown(Tokens(MHABlock(True)), SIZE, depth=1)
    assert [r["module"] for r in rows] == ["", "embed", "mixer", "classifier"]
    by_name = {r["module"]: r for r in rows}
    assert by_name[""]["macs"] == sum(by_name[n]["macs"] for n in ("embed", "mixer", "classifier"))
    assert by_name["embed"] == {"module": "embed", "type": "Conv2d", "params": 3 * E + E, "macs": L * 3 * E}
    assert len(module_breakdown(Tokens(MHABlock(True)), SIZE, depth=0)) == 1
