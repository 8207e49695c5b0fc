"""HRNet (FCN head) and OCRNet (on HRNet and ResNet-101): mmsegmentation parity, output shapes, the
cascade (the OCR head reads the FCN head's logits at inference too), and the MACs of OCR's
object-context attention against a hand count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mmseg_reference import logits_on_a_random_image, mmseg_config_tests
from segbench.build import build_model
from segbench.complexity import count_macs
from segbench.errors import SegbenchError
from segbench.manifest import load_manifest
from segbench.models import architecture_builder
from segbench.models.ocrnet import OCRHead
from segbench.models.segmentor import CascadeDecodeHeads
from segbench.training import training_outputs

ZOO = Path(__file__).resolve().parent.parent / "zoo"

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {
    "fcn_hr18s_4xb2-80k_cityscapes-512x1024": ("fcn_hrnet", {"variant": "w18s"}),
    "fcn_hr18_4xb2-80k_cityscapes-512x1024": ("fcn_hrnet", {"variant": "w18"}),
    "fcn_hr48_4xb2-80k_cityscapes-512x1024": ("fcn_hrnet", {"variant": "w48"}),
    "ocrnet_hr18s_4xb2-80k_cityscapes-512x1024": ("ocrnet_hrnet", {"variant": "w18s"}),
    "ocrnet_hr18_4xb2-80k_cityscapes-512x1024": ("ocrnet_hrnet", {"variant": "w18"}),
    "ocrnet_hr48_4xb2-80k_cityscapes-512x1024": ("ocrnet_hrnet", {"variant": "w48"}),
    "ocrnet_r101-d8_8xb2-80k_cityscapes-512x1024": ("ocrnet_resnet", {"depth": 101}),
}

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny inputs run faster on one thread


test_every_config_has_its_reference_file, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(CONFIGS)


# builder arguments -> expected logits (classes, H, W) for a 1x3x64x128 input
OUTPUT_SHAPES = [
    ("fcn_hrnet", {"variant": "w18s"}, (19, 16, 32)),
    ("fcn_hrnet", {"variant": "w18", "num_classes": 5}, (5, 16, 32)),
    ("ocrnet_hrnet", {"variant": "w18s"}, (19, 16, 32)),
    ("ocrnet_resnet", {"depth": 18}, (19, 8, 16)),
]


@pytest.mark.parametrize(("architecture", "kwargs", "expected"), OUTPUT_SHAPES)
def test_output_shape(architecture, kwargs, expected):
    _, _, logits = logits_on_a_random_image(architecture, kwargs)
    assert tuple(logits.shape) == (1, *expected)
    assert torch.isfinite(logits).all()


def test_hrnet_outputs_four_levels_at_strides_4_to_32_even_for_odd_sizes():
    """mmseg upsamples a lower branch by 2^k and then resizes to the higher one: with 70x100 the
    levels are 18x25, 9x13, 5x7, 3x4 and the fused outputs keep exactly those sizes."""
    backbone = architecture_builder("fcn_hrnet")(variant="w18s").backbone.eval()
    with torch.no_grad():
        levels = backbone(torch.randn(1, 3, 70, 100))
    assert [tuple(x.shape[1:]) for x in levels] == [(18, 18, 25), (36, 9, 13), (72, 5, 7), (144, 3, 4)]


def test_the_ocr_head_reads_the_fcn_heads_logits_and_both_train():
    """The cascade at inference: the FCN head's logits feed OCR's spatial gather, so the first head
    is inference, not auxiliary, and the model's logits are OCR's. Training returns both heads'
    logits with mmseg's loss weights 0.4 and 1.0."""
    model, image, logits = logits_on_a_random_image("ocrnet_hrnet", {"variant": "w18s"})
    assert isinstance(model.decode_head, CascadeDecodeHeads) and not hasattr(model, "auxiliary_head")
    seen = {}
    model.decode_head[0].register_forward_hook(lambda m, args, out: seen.setdefault("fcn", out))
    model.decode_head[1].register_forward_hook(lambda m, args, out: seen.update(gathered_from=args[1], ocr=out))
    with torch.no_grad():
        model(image)
        assert seen["gathered_from"] is seen["fcn"] and torch.equal(seen["ocr"], logits)
        heads = training_outputs(model.train(), image)
    assert [weight for _, weight in heads] == [0.4, 1.0]
    assert [tuple(out.shape) for out, _ in heads] == [(1, 19, 16, 32)] * 2


def ocr_by_formula(head: OCRHead, feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """OCR written out from the paper and mmseg's code: object regions as softmax(probs over pixels)
    weighted sums of the pixel features; each pixel attends to the K regions (scaled dot product
    of the 2-conv projections); the context is projected back and fused with the pixel features."""
    block = head.object_context_block
    n, c, h, w = feats.shape
    regions = torch.einsum("nkp,ncp->nkc", probs.flatten(2).softmax(-1), feats.flatten(2))  # K region features
    regions = regions.transpose(1, 2)[..., None]  # as a K x 1 map
    query = block.query_project(feats).flatten(2)
    key = block.key_project(regions).flatten(2)
    value = block.value_project(regions).flatten(2)
    weights = torch.einsum("ncp,nck->npk", query, key).mul(query.shape[1] ** -0.5).softmax(-1)
    context = torch.einsum("npk,nck->ncp", weights, value).reshape(n, -1, h, w)
    return block.bottleneck(torch.cat([block.out_project(context), feats], 1))


def test_object_context_equals_its_formula():
    torch.manual_seed(0)
    head = OCRHead(8, 12, 6, 5, in_index=0).eval()
    for module in head.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.running_mean), nn.init.uniform_(module.running_var, 0.5, 2)
    feats, probs = torch.randn(2, 12, 4, 6), torch.randn(2, 5, 4, 6)
    with torch.no_grad():
        ours = head.object_context_block(feats, head.spatial_gather(feats, probs))
        torch.testing.assert_close(ours, ocr_by_formula(head, feats, probs))


class OCROnAMap(nn.Module):
    """A 1x1 conv to C channels and one to K class logits, then one OCR head on them."""

    def __init__(self, channels: int, ocr_channels: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, channels, 1, bias=False)
        self.classify = nn.Conv2d(channels, classes, 1, bias=False)
        self.ocr = OCRHead(channels, channels, ocr_channels, classes, in_index=0)

    def forward(self, image):
        x = self.embed(image)
        return self.ocr([x], self.classify(x))


def test_object_context_macs_equal_the_hand_count():
    """Over P pixels, C channels, K classes, O OCR channels: the spatial gather's product (K·P·C), the
    attention's two products (P·K·O each), the 1x1 projections (query 2 convs over P pixels, key
    2 and value 1 over K regions, out over P), the bottlenecks (3x3 C->C, 1x1 2C->C) and the
    classifier. The primary and fvcore count every product; thop misses the three matmuls (they
    are no module) and adds 4 per BatchNorm output element instead."""
    c, o, k, size = 8, 4, 3, (6, 10)
    p = size[0] * size[1]
    products = k * p * c + 2 * p * k * o
    convs = p * 3 * c + p * c * k  # embed, classify
    convs += p * c * c * 9  # the OCR head's 3x3 bottleneck
    convs += p * (c * o + o * o) + k * (c * o + o * o) + k * c * o + p * o * c  # query, key, value, out projections
    convs += p * 2 * c * c + p * c * k  # object-context bottleneck, classifier (weights only: biases are not MACs)
    macs = count_macs(OCROnAMap(c, o, k), size)
    assert macs["flop_counter_macs"] == convs + products
    by_operator = macs["flop_counter_macs_by_operator"]
    assert by_operator["aten.bmm"] == products
    normalized = p * c + p * (o + o) + k * (o + o) + k * o + p * c + p * c  # every BN's output elements
    assert macs["fvcore_by_operator"]["matmul"] == products
    assert macs["thop"] == convs + 4 * normalized


def test_an_unknown_variant_is_one_line_naming_the_field(tmp_path):
    manifest = tmp_path / "mine.yaml"
    entry = (ZOO / "hrnet.yaml").read_text().split("- Name: fcn_hr18_4xb2-40k")[0].replace("variant: w18s", "variant: w32")
    manifest.write_text(entry)
    (spec,) = load_manifest(manifest)
    with pytest.raises(SegbenchError) as error:
        build_model(spec)
    message = str(error.value)
    assert "\n" not in message and "mine.yaml" in message and "Build.kwargs" in message and "'w32'" in message
