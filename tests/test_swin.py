"""Swin-T/S/B + UPerNet: mmsegmentation parity (keys, shapes, params), output shapes at sizes that need
padding, the window machinery against its definition (relative position index, shift mask, window
attention written out), drop-path, and the MACs of window attention with padding and shift against
a hand count."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmseg_reference import logits_on_a_random_image, mmseg_config_tests
from segbench.complexity import count_macs, module_breakdown
from segbench.inference import slide_logits
from segbench.models import architecture_builder
from segbench.models.backbones.swin import PatchMerging, ShiftedWindowAttention, relative_position_index, shifted_window_mask

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {
    "swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512": ("upernet_swin", {"variant": "tiny"}),
    "swin-small-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512": ("upernet_swin", {"variant": "small"}),
    "swin-base-patch4-window12-in1k-384x384-pre_upernet_8xb2-160k_ade20k-512x512": (
        "upernet_swin", {"variant": "base", "window_size": 12},
    ),
}  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny inputs run faster on one thread


test_every_config_has_its_reference_file, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(CONFIGS)


def test_every_layer_norm_has_mmcv_default_eps():
    """Swin's norm_cfg is plain LN (eps 1e-5): patch embed, norm1/norm2 per block, patch merging, norm0..3."""
    model = architecture_builder("upernet_swin")(variant="tiny")
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 1 + 2 * (2 + 2 + 6 + 2) + 3 + 4
    assert {m.eps for m in norms} == {1e-5}


@pytest.mark.parametrize("size", [(64, 128), (50, 70)])
def test_logits_at_a_quarter_of_the_input_where_windows_need_padding(size):
    """At 50x70 the patch embed pads to 52x72 (13x18 tokens), every stage pads its map to a multiple
    of 7, and patch merging pads odd maps (13x18 -> 7x9 -> 4x5 -> 2x3)."""
    model, image, logits = logits_on_a_random_image("upernet_swin", {"variant": "tiny", "num_classes": 5}, size)
    assert tuple(logits.shape) == (1, 5, math.ceil(size[0] / 4), math.ceil(size[1] / 4))
    assert torch.isfinite(logits).all()
    with torch.no_grad():
        features = model.backbone(image)
        slide = slide_logits(model, image, (48, 48), (32, 32), align_corners=False)
    strides = [(math.ceil(size[0] / 4), math.ceil(size[1] / 4))]
    for _ in range(3):
        strides.append(tuple(math.ceil(s / 2) for s in strides[-1]))
    assert [tuple(f.shape[1:]) for f in features] == [(96 * 2**i, *hw) for i, hw in enumerate(strides)]
    assert tuple(slide.shape) == (1, 5, *size) and torch.isfinite(slide).all()


def test_relative_position_index_by_its_definition():
    """Entry (i, j) indexes the (2w-1)x(2w-1) table at the offset of token i from token j, row-major."""
    window = 3
    index = relative_position_index(window)
    cells = [(y, x) for y in range(window) for x in range(window)]
    expected = [[(yi - yj + window - 1) * (2 * window - 1) + (xi - xj + window - 1) for yj, xj in cells] for yi, xi in cells]
    assert index.tolist() == expected
    assert index.min() == 0 and index.max() == (2 * window - 1) ** 2 - 1


def test_shift_mask_separates_the_regions_the_roll_brought_together():
    """A 4x4 map, window 2, shift 1: rolled by -1, the last window holds tokens from the four corners
    of the original map, so every pair there is masked except a token with itself."""
    mask = shifted_window_mask((4, 4), 2, 1, torch.device("cpu"))
    assert mask.shape == (4, 4, 4)
    assert torch.equal(mask[0], torch.zeros(4, 4))  # top-left window: all from the interior region
    assert torch.equal(mask[3], torch.full((4, 4), -100.0).fill_diagonal_(0))
    assert torch.equal(mask[1], torch.tensor([[0, -100, 0, -100], [-100, 0, -100, 0]] * 2, dtype=torch.float))


def test_patch_merging_gathers_each_2x2_neighbourhood_channel_major_with_corner_padding():
    """mmseg samples with nn.Unfold: feature c·4 + dy·2 + dx of output (i, j) is input (c, 2i+dy, 2j+dx), the
    map zero-padded at the bottom/right to even size (the original Swin concatenates position-major instead)."""
    merging = PatchMerging(2, 4)
    gathered = []
    merging.norm.register_forward_pre_hook(lambda module, args: gathered.append(args[0][0]))
    image = torch.arange(1.0, 1 + 2 * 3 * 5).view(2, 3, 5)  # C, H, W
    _, hw = merging(image.flatten(1).T[None], (3, 5))
    assert hw == (2, 3)
    padded = F.pad(image, (0, 1, 0, 1))
    for i in range(2):
        for j in range(3):
            expected = [padded[c, 2 * i + dy, 2 * j + dx] for c in range(2) for dy in range(2) for dx in range(2)]
            assert gathered[0][i * 3 + j].tolist() == torch.stack(expected).tolist()


def _shifted_attention_by_formula(module: ShiftedWindowAttention, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Token by token: a token attends to the tokens of its window in the padded map rolled by -shift,
    with bias B[dy, dx] for their offset, and (shifted) -100 for keys of another region, the regions
    being [0, L-window), [L-window, L-shift), [L-shift, L) of the rolled map along each axis."""
    h, w = hw
    window, shift, attn = module.window, module.shift, module.w_msa
    c = x.shape[-1]
    heads = attn.num_heads
    hp, wp = h + -h % window, w + -w % window
    padded = torch.zeros(hp, wp, c)
    padded[:h, :w] = x[0].view(h, w, c)
    q, k, v = F.linear(padded, attn.qkv.weight, attn.qkv.bias).split(c, dim=-1)
    table = attn.relative_position_bias_table

    def region(p: int, length: int) -> int:
        return (p >= length - window) + (p >= length - shift) if shift else 0

    out = torch.zeros(h, w, c)
    for y in range(h):
        for x_ in range(w):
            ry, rx = (y - shift) % hp, (x_ - shift) % wp  # position in the rolled map
            wy, wx = ry // window * window, rx // window * window
            keys = [((wy + i + shift) % hp, (wx + j + shift) % wp, i, j) for i in range(window) for j in range(window)]
            for head in range(heads):
                part = slice(head * c // heads, (head + 1) * c // heads)
                logits = []
                for ky, kx, i, j in keys:
                    bias = table[(ry - wy - i + window - 1) * (2 * window - 1) + (rx - wx - j + window - 1), head]
                    same = (region(ry, hp), region(rx, wp)) == (region(wy + i, hp), region(wx + j, wp))
                    logits.append(q[y, x_, part] @ k[ky, kx, part] * attn.scale + bias + (0 if same else -100))
                weights = torch.stack(logits).softmax(0)
                out[y, x_, part] = sum(wgt * v[ky, kx, part] for wgt, (ky, kx, _, _) in zip(weights, keys))
    return F.linear(out.view(1, h * w, c), attn.proj.weight, attn.proj.bias)


@pytest.mark.parametrize("shift", [0, 2])
def test_window_attention_with_padding_and_shift_equals_its_formula(shift):
    torch.manual_seed(0)
    module = ShiftedWindowAttention(8, 2, 4, shift).eval()
    nn.init.normal_(module.w_msa.relative_position_bias_table)
    x = torch.randn(1, 5 * 6, 8)
    with torch.no_grad():
        torch.testing.assert_close(module(x, (5, 6)), _shifted_attention_by_formula(module, x, (5, 6)), rtol=1e-4, atol=1e-5)


def test_drop_path_is_off_at_inference_and_on_in_training():
    torch.manual_seed(0)
    plain = architecture_builder("upernet_swin")(variant="tiny", drop_path_rate=0.0, auxiliary_head=False)
    dropping = architecture_builder("upernet_swin")(variant="tiny", drop_path_rate=0.9, auxiliary_head=False)
    dropping.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), dropping.eval()(x))
        block = dropping.backbone.stages[3].blocks[1].train()  # the last block: rate 0.9
        tokens = torch.randn(64, 1, 768)
        out = block(tokens, (1, 1))
    both_dropped = [torch.equal(o, t) for o, t in zip(out, tokens)]  # both residual branches dropped: identity
    assert 0 < sum(both_dropped) < 64


class TokensThroughWindowAttention(nn.Module):
    """1x1 conv to C channels, one (shifted) window attention over the H·W tokens, back to a map."""

    def __init__(self, channels: int, heads: int, window: int, shift: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, channels, 1)
        self.attention = ShiftedWindowAttention(channels, heads, window, shift)

    def forward(self, image):
        x = self.embed(image)
        n, c, h, w = x.shape
        tokens = self.attention(x.flatten(2).transpose(1, 2), (h, w))
        return tokens.transpose(1, 2).reshape(n, c, h, w)


def window_attention_macs(channels: int, hw: tuple[int, int], window: int) -> tuple[int, int]:
    """(projections, attention products) of window attention on an H×W map padded to multiples of
    the window: qkv (3C²) and output (C²) projections on every padded token, and per window QKᵀ and
    AV of window²·window²·C each (summed over heads). The shift changes none of it."""
    padded = math.ceil(hw[0] / window) * window * math.ceil(hw[1] / window) * window
    windows = padded // window**2
    return padded * 4 * channels**2, windows * 2 * window**4 * channels


@pytest.mark.parametrize("shift", [0, 2])
def test_window_attention_macs_with_padding_equal_the_hand_count(shift):
    """A 5x6 map in 4x4 windows pads to 8x8 (4 windows). The primary count (FlopCounterMode on meta)
    and fvcore equal the hand count, padded tokens included; thop counts only nn.Linear/nn.Conv2d
    modules, so it misses the QKᵀ and AV products (written as `@`, as mmseg writes them)."""
    channels, size = 8, (5, 6)
    projections, products = window_attention_macs(channels, size, 4)
    hand = size[0] * size[1] * 3 * channels + projections + products
    macs = count_macs(TokensThroughWindowAttention(channels, 2, 4, shift), size)
    assert macs["flop_counter_macs"] == hand
    assert macs["fvcore"] == hand
    assert macs["thop"] == hand - products


def test_every_window_attention_of_swin_tiny_is_counted_as_the_hand_count():
    """Per attention module of the real backbone at 64x128: stage i has a (16/2^i)x(32/2^i) map,
    padded to multiples of 7."""
    model = architecture_builder("upernet_swin")(variant="tiny")
    rows = {row["module"]: row["macs"] for row in module_breakdown(model, (64, 128), depth=6)}
    for stage, channels in enumerate((96, 192, 384, 768)):
        hw = (16 >> stage, 32 >> stage)
        for block in range(2):
            name = f"backbone.stages.{stage}.blocks.{block}.attn"
            assert rows[name] == sum(window_attention_macs(channels, hw, 7)), name
