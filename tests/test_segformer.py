"""SegFormer (MiT-B0..B5 + all-MLP head): mmsegmentation parity, output shapes, the efficient
(spatial-reduction) attention against its formula, drop-path, and its MACs against a hand count."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmseg_reference import mmseg_config_tests
from segbench.build import build_model
from segbench.complexity import count_macs, module_breakdown
from segbench.errors import SegbenchError
from segbench.inference import slide_logits
from segbench.manifest import load_manifest
from segbench.models import architecture_builder
from segbench.models.backbones.mit import EfficientSelfAttention

ZOO = Path(__file__).resolve().parent.parent / "zoo"

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {f"segformer_mit-b{i}_8xb1-160k_cityscapes-1024x1024": ("segformer_mit", {"variant": f"b{i}"}) for i in range(6)}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny inputs run faster on one thread


test_every_config_has_its_reference_file, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(CONFIGS)


def test_every_layer_norm_has_mmseg_eps():
    """MixVisionTransformer's norm_cfg is LN with eps 1e-6 (patch embeds, blocks, SR norms, stage norms)."""
    model = architecture_builder("segformer_mit")(variant="b0")
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 4 + 4 * 2 * 2 + 3 * 2 + 4  # embeds, norm1/norm2, SR norms (stages 1-3), stage norms
    assert {m.eps for m in norms} == {1e-6}


def test_logits_at_a_quarter_of_the_input_whole_and_slide():
    torch.manual_seed(0)
    model = architecture_builder("segformer_mit")(variant="b0", num_classes=5).eval()
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        assert tuple(model(x).shape) == (1, 5, 16, 32)
        slide = slide_logits(model, x, (64, 64), (64, 48), align_corners=False)
    assert tuple(slide.shape) == (1, 5, 64, 128) and torch.isfinite(slide).all()


def _attention_by_formula(module: EfficientSelfAttention, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """mmseg's EfficientMultiheadAttention written out: keys/values from the SR conv + LN, per-head
    softmax(QKᵀ/√d)V, output projection (no residual)."""
    n, length, c = x.shape
    kv = x
    if module.sr is not None:
        kv = F.conv2d(x.transpose(1, 2).reshape(n, c, *hw), module.sr.weight, module.sr.bias, stride=module.sr.stride)
        kv = F.layer_norm(kv.flatten(2).transpose(1, 2), (c,), module.norm.weight, module.norm.bias, 1e-6)
    w_q, w_k, w_v = module.attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = module.attn.in_proj_bias.chunk(3)
    heads = module.attn.num_heads

    def split(t):
        return t.reshape(n, t.shape[1], heads, c // heads).transpose(1, 2)

    q, k, v = split(x @ w_q.T + b_q), split(kv @ w_k.T + b_k), split(kv @ w_v.T + b_v)
    weights = (q @ k.transpose(-1, -2) / math.sqrt(c // heads)).softmax(-1)
    out = (weights @ v).transpose(1, 2).reshape(n, length, c)
    return out @ module.attn.out_proj.weight.T + module.attn.out_proj.bias


@pytest.mark.parametrize("sr_ratio", [1, 2])
def test_efficient_attention_equals_its_formula(sr_ratio):
    torch.manual_seed(0)
    module = EfficientSelfAttention(8, 2, sr_ratio).eval()
    nn.init.normal_(module.attn.in_proj_bias)  # nn.MultiheadAttention starts with zero biases
    x = torch.randn(2, 6 * 4, 8)
    with torch.no_grad():
        torch.testing.assert_close(module(x, (6, 4)), _attention_by_formula(module, x, (6, 4)))


def test_drop_path_is_off_at_inference_and_drops_whole_samples_in_training():
    torch.manual_seed(0)
    plain = architecture_builder("segformer_mit")(variant="b0", drop_path_rate=0.0)
    dropping = architecture_builder("segformer_mit")(variant="b0", drop_path_rate=0.9)
    dropping.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), dropping.eval()(x))
        block = dropping.backbone.layers[3][1][1].train()  # the last block: rate 0.9
        tokens = torch.randn(64, 4, 256)
        out = block(tokens, (2, 2))
    both_dropped = [torch.equal(o, t) for o, t in zip(out, tokens)]  # both residual branches dropped: identity
    assert 0 < sum(both_dropped) < 64


class TokensThroughAttention(nn.Module):
    """1x1 conv to C channels, one efficient attention over the H·W tokens, back to a map."""

    def __init__(self, channels: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, channels, 1)
        self.attention = EfficientSelfAttention(channels, heads, sr_ratio)

    def forward(self, image):
        x = self.embed(image)
        n, c, h, w = x.shape
        tokens = self.attention(x.flatten(2).transpose(1, 2), (h, w))
        return tokens.transpose(1, 2).reshape(n, c, h, w)


def efficient_attention_macs(channels: int, queries: int, sr_ratio: int) -> int:
    """Q and output projections over N queries, K and V projections over M = N/r² reduced tokens,
    the r×r stride-r SR conv (M outputs of C·C·r² each), QKᵀ and AV (N·M·C each, summed over heads)."""
    reduced = queries // sr_ratio**2
    sr_conv = reduced * channels * channels * sr_ratio**2 if sr_ratio > 1 else 0
    return 2 * queries * channels**2 + 2 * reduced * channels**2 + sr_conv + 2 * queries * reduced * channels


@pytest.mark.parametrize("sr_ratio", [1, 2, 4])
def test_efficient_attention_macs_equal_the_hand_count(sr_ratio):
    """segbench's primary count (FlopCounterMode on meta) is the hand count. fvcore and thop also
    count the SR branch's LayerNorm over the M·C reduced tokens, which the hand count (and the
    primary) leave out as elementwise: fvcore 5 per element (its affine-norm estimate), thop 4
    (2 per element, doubled for the affine). Matrix products agree in all three, thop's through
    segbench's nn.MultiheadAttention rule with a key/value sequence shorter than the queries."""
    channels, heads, size = 16, 2, (8, 16)
    queries = size[0] * size[1]
    hand = queries * 3 * channels + efficient_attention_macs(channels, queries, sr_ratio)
    norm_elements = queries // sr_ratio**2 * channels if sr_ratio > 1 else 0
    macs = count_macs(TokensThroughAttention(channels, heads, sr_ratio), size)
    assert macs["flop_counter_macs"] == hand
    assert macs["fvcore_by_operator"].get("layer_norm", 0) == 5 * norm_elements
    assert macs["fvcore"] == hand + 5 * norm_elements
    assert macs["thop"] == hand + 4 * norm_elements
    assert torch.backends.mha.get_fastpath_enabled()  # restored after counting


def test_every_attention_of_mit_b0_is_counted_as_the_hand_count():
    """Per attention module of the real backbone at 64x128: stage i has (H/4/2^i)·(W/4/2^i) tokens."""
    model = architecture_builder("segformer_mit")(variant="b0")
    rows = {row["module"]: row["macs"] for row in module_breakdown(model, (64, 128), depth=6)}
    for stage, (channels, sr_ratio) in enumerate(zip((32, 64, 160, 256), (8, 4, 2, 1))):
        queries = (64 // 4 >> stage) * (128 // 4 >> stage)
        for block in range(2):
            name = f"backbone.layers.{stage}.1.{block}.attn"
            assert rows[name] == efficient_attention_macs(channels, queries, sr_ratio), name


def test_on_mit_b0_the_counters_differ_only_by_norm_and_resize_estimates():
    """Convolutions, projections and attention products are equal in all three counters; fvcore adds
    its estimates for LayerNorm, BatchNorm and the head's bilinear resizes, thop 4 per normalized
    element (LayerNorm and BatchNorm, affine) and nothing for the functional resizes."""
    model = architecture_builder("segformer_mit")(variant="b0").eval()
    normalized = []
    norms = [m for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.BatchNorm2d))]
    hooks = [m.register_forward_hook(lambda m, x, y: normalized.append(y.numel())) for m in norms]
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 128))
    for hook in hooks:
        hook.remove()
    macs = count_macs(model, (64, 128))
    by_operator = macs["fvcore_by_operator"]
    assert by_operator["conv"] + by_operator["linear"] + by_operator["bmm"] == macs["flop_counter_macs"]
    assert set(by_operator) - {"conv", "linear", "bmm"} == {"layer_norm", "batch_norm", "upsample_bilinear2d"}
    assert macs["thop"] == macs["flop_counter_macs"] + 4 * sum(normalized)


def test_an_unknown_variant_is_one_line_naming_the_field(tmp_path):
    manifest = tmp_path / "mine.yaml"
    entry = (ZOO / "segformer.yaml").read_text().split("- Name: segformer_mit-b1")[0].replace("variant: b0", "variant: b9")
    manifest.write_text(entry)
    (spec,) = load_manifest(manifest)
    with pytest.raises(SegbenchError) as error:
        build_model(spec)
    message = str(error.value)
    assert "\n" not in message and "mine.yaml" in message and "Build.kwargs" in message and "'b9'" in message
