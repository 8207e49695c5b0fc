"""SETR, UPerNet on ViT/DeiT and Segmenter: mmsegmentation parity (keys, shapes, params: built on
the meta device, ViT-L is big), output shapes, the position embedding at other input sizes, and
the MACs of their attention forms (nn.MultiheadAttention's matmuls, Segmenter's patch-class
product) against hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmseg_reference import logits_on_a_random_image, mmseg_config_tests
from segbench.complexity import count_macs, module_breakdown
from segbench.inference import slide_logits
from segbench.models import architecture_builder
from segbench.models.backbones.vit import TransformerEncoderLayer, VisionTransformer, resize_pos_embed
from segbench.models.segmenter import MaskTransformerHead

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {
    "setr_vit-l_naive_8xb1-80k_cityscapes-768x768": ("setr_vit", {"decoder": "naive"}),
    "setr_vit-l_pup_8xb1-80k_cityscapes-768x768": ("setr_vit", {"decoder": "pup"}),
    "setr_vit-l_mla_8xb1-80k_cityscapes-768x768": ("setr_vit", {"decoder": "mla"}),
    "vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512": ("upernet_vit", {"variant": "vit-b16", "mln": True}),
    "vit_deit-s16_upernet_8xb2-80k_ade20k-512x512": ("upernet_vit", {"variant": "deit-s16"}),
    "vit_deit-b16_upernet_8xb2-80k_ade20k-512x512": ("upernet_vit", {"variant": "deit-b16"}),
    "segmenter_vit-t_mask_8xb1-160k_ade20k-512x512": ("segmenter_vit", {"variant": "t"}),
    "segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512": ("segmenter_vit", {"variant": "s", "decoder": "linear"}),
    "segmenter_vit-s_mask_8xb1-160k_ade20k-512x512": ("segmenter_vit", {"variant": "s"}),
    "segmenter_vit-b_mask_8xb1-160k_ade20k-512x512": ("segmenter_vit", {"variant": "b"}),
    "segmenter_vit-l_mask_8xb1-160k_ade20k-512x512": ("segmenter_vit", {"variant": "l"}),
}

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny inputs run faster on one thread


def on_meta(architecture: str, **kwargs) -> nn.Module:
    """The model with its tensors on the meta device: shapes without memory or init time."""
    with torch.device("meta"):
        return architecture_builder(architecture)(**kwargs).eval()


test_every_config_has_its_reference_file, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(CONFIGS, build=on_meta)


def test_layer_norm_eps_as_mmseg_configures_it():
    """Backbone (and SETR's head/neck norms) LN eps 1e-6 as the configs set; Segmenter's mask
    decoder keeps mmseg's default LN (eps 1e-5)."""
    model = on_meta("segmenter_vit", variant="t")
    eps = {name: m.eps for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    assert {e for n, e in eps.items() if n.startswith("backbone.")} == {1e-6}
    assert {e for n, e in eps.items() if n.startswith("decode_head.")} == {1e-5}
    assert len(eps) == 12 * 2 + 1 + 2 * 2 + 2
    setr = on_meta("setr_vit", decoder="mla")
    assert {m.eps for m in setr.modules() if isinstance(m, nn.LayerNorm)} == {1e-6}


@pytest.mark.parametrize("decoder, stride", [("naive", 4), ("pup", 1), ("mla", 4)])
def test_setr_logits_stride_per_decoder(decoder, stride):
    """Naive and MLA upsample the stride-16 tokens ×4, PUP ×2 four times (on the meta device)."""
    model = on_meta("setr_vit", decoder=decoder)
    logits = model(torch.empty(1, 3, 64, 128, device="meta"))
    assert tuple(logits.shape) == (1, 19, 64 // stride, 128 // stride)


@pytest.mark.parametrize(
    "kwargs, stride",
    [({"variant": "deit-s16"}, 16), ({"variant": "deit-s16", "mln": True, "final_norm": True}, 4)],
)
def test_upernet_vit_logits_whole(kwargs, stride):
    """Without the neck every UPerNet level is the stride-16 token map; MLN makes strides 4..32."""
    _, _, logits = logits_on_a_random_image("upernet_vit", {**kwargs, "num_classes": 5})
    assert tuple(logits.shape) == (1, 5, 64 // stride, 128 // stride) and torch.isfinite(logits).all()


@pytest.mark.parametrize("decoder", ["mask", "linear"])
def test_segmenter_logits_whole_and_slide(decoder):
    """Stride-16 logits, also where the input is no multiple of 16 (mmseg pads bottom/right)."""
    model, image, logits = logits_on_a_random_image("segmenter_vit", {"variant": "t", "decoder": decoder, "num_classes": 5})
    assert tuple(logits.shape) == (1, 5, 4, 8)
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 3, 40, 72)).shape) == (1, 5, 3, 5)
        slide = slide_logits(model, image, (64, 64), (64, 48), align_corners=False)
    assert tuple(slide.shape) == (1, 5, 64, 128) and torch.isfinite(slide).all()


def test_position_embedding_is_resized_bilinearly_to_a_non_square_grid():
    """4x4 table to a 2x4 grid, bilinear, align_corners false: rows 2i and 2i+1 averaged (the
    sampling point (i + 0.5)·2 − 0.5 falls between them), columns kept; the class entry kept."""
    table = torch.randn(1, 1 + 16, 3)
    resized = resize_pos_embed(table, (2, 4), (4, 4), "bilinear")
    grid = table[0, 1:].reshape(4, 4, 3)
    expected = torch.cat([table[0, :1], ((grid[0::2] + grid[1::2]) / 2).reshape(8, 3)])
    torch.testing.assert_close(resized[0], expected)


def test_a_non_square_input_uses_the_embedding_interpolated_to_its_grid():
    """A model trained at 64x64 (4x4 grid) run on 32x64 (2x4) equals the same weights in a model
    built for 32x64 whose table is the 4x4 one resized by hand (rows averaged, bilinear)."""
    torch.manual_seed(0)
    trained = VisionTransformer(16, 2, 2, img_size=64, interpolate_mode="bilinear").eval()
    nn.init.normal_(trained.pos_embed)
    grid = trained.pos_embed[0, 1:].reshape(4, 4, 16)
    exact = {k: v.clone() for k, v in trained.state_dict().items()}
    exact["pos_embed"] = torch.cat([trained.pos_embed[0, :1], ((grid[0::2] + grid[1::2]) / 2).reshape(8, 16)])[None]
    rebuilt = VisionTransformer(16, 2, 2, img_size=64, interpolate_mode="bilinear").eval()
    rebuilt.grid = (2, 4)  # as if trained on 32x64: no interpolation at that size
    rebuilt.pos_embed = nn.Parameter(exact["pos_embed"])
    rebuilt.load_state_dict(exact)
    image = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(trained(image)[0], rebuilt(image)[0])


def test_drop_path_is_off_at_inference():
    torch.manual_seed(0)
    plain = architecture_builder("segmenter_vit")(variant="t", drop_path_rate=0.0, num_classes=5)
    dropping = architecture_builder("segmenter_vit")(variant="t", drop_path_rate=0.9, num_classes=5)
    dropping.load_state_dict(plain.state_dict())
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain.eval()(image), dropping.eval()(image))


def test_setr_auxiliary_heads_are_training_only():
    """Inference MACs of SETR-PUP are those of the model without its three auxiliary heads."""
    size = (64, 128)
    with_aux = count_macs(on_meta("setr_vit", decoder="pup"), size, cross_check=False)
    without = count_macs(on_meta("setr_vit", decoder="pup", auxiliary_head=False), size, cross_check=False)
    assert with_aux["per_forward"] == without["per_forward"] > 0


class TokensThroughLayer(nn.Module):
    """1x1 conv to C channels, one ViT encoder layer over the H·W tokens, back to a map."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, channels, 1)
        self.layer = TransformerEncoderLayer(channels, heads)

    def forward(self, image):
        x = self.embed(image)
        n, c, h, w = x.shape
        return self.layer(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(n, c, h, w)


def encoder_layer_macs(channels: int, tokens: int) -> int:
    """Q, K, V and output projections (4·N·C²), QKᵀ and AV (N·N·C each, summed over heads), the
    FFN's two linears at ratio 4 (8·N·C²)."""
    return 4 * tokens * channels**2 + 2 * tokens**2 * channels + 8 * tokens * channels**2


def test_encoder_layer_macs_equal_the_hand_count_in_every_counter():
    """The primary count is the hand count. fvcore adds its estimate for the two LayerNorms (5 per
    normalized element), thop 4 per element; both count the attention's matrix products (thop
    through segbench's nn.MultiheadAttention rule)."""
    channels, size = 16, (4, 6)
    tokens = size[0] * size[1]
    hand = tokens * 3 * channels + encoder_layer_macs(channels, tokens)
    norm_elements = 2 * tokens * channels
    macs = count_macs(TokensThroughLayer(channels, 2), size)
    assert macs["flop_counter_macs"] == hand
    assert macs["fvcore"] == hand + 5 * norm_elements
    assert macs["thop"] == hand + 4 * norm_elements


class MaskHeadOnAMap(nn.Module):
    def __init__(self, channels: int, heads: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, channels, 1)
        self.head = MaskTransformerHead(channels, classes, num_heads=heads)

    def forward(self, image):
        return self.head([self.embed(image)])


def test_mask_decoder_macs_count_the_patch_class_product():
    """dec_proj and patch_proj over N patches, classes_proj over K classes, two encoder layers over
    N + K tokens, and the N·K·C patch-class product (a functional matmul). thop sees no
    functional matmul: it misses that product; fvcore and thop add their LayerNorm estimates
    (2 per layer, the decoder norm over N + K tokens, the mask norm over N·K scores)."""
    channels, heads, classes, size = 16, 2, 5, (4, 6)
    patches = size[0] * size[1]
    tokens = patches + classes
    product = patches * classes * channels
    hand = patches * 3 * channels + 2 * patches * channels**2 + classes * channels**2
    hand += 2 * encoder_layer_macs(channels, tokens) + product
    norm_elements = 2 * 2 * tokens * channels + tokens * channels + patches * classes
    macs = count_macs(MaskHeadOnAMap(channels, heads, classes), size)
    assert macs["flop_counter_macs"] == hand
    assert macs["fvcore"] == hand + 5 * norm_elements
    assert macs["thop"] == hand - product + 4 * norm_elements


def test_every_attention_of_segmenter_t_is_counted_as_the_hand_count():
    """At 64x128 the backbone attends over 1 + 4·8 tokens (class token included), the decoder
    over 4·8 patches + 150 classes; each attention module's MACs: projections + QKᵀ + AV."""
    model = architecture_builder("segmenter_vit")(variant="t")
    rows = {row["module"]: row["macs"] for row in module_breakdown(model, (64, 128), depth=4)}

    def attention(tokens: int) -> int:
        return 4 * tokens * 192**2 + 2 * tokens**2 * 192

    for i in range(12):
        assert rows[f"backbone.layers.{i}.attn"] == attention(1 + 32)
    for i in range(2):
        assert rows[f"decode_head.layers.{i}.attn"] == attention(32 + 150)
