"""EncNet, APCNet, DMNet, ANN, EMANet, ISANet and FastFCN: mmsegmentation parity (keys, shapes,
parameter counts), output shapes, and their custom operations against naive loops and hand counts.

Logits were compared with mmsegmentation 1.2.2's own modules (same random weights, eval mode) in
a throwaway script outside the repository; see the README's architectures table."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmseg_reference import logits_on_a_random_image, mmseg_config_tests
from segbench.complexity import count_macs, count_params
from segbench.layers import SelfAttentionBlock
from segbench.models import architecture_builder, list_architectures
from segbench.models.ann import PyramidSampling
from segbench.models.apcnet import ACM
from segbench.models.dmnet import dynamic_depthwise_conv
from segbench.models.emanet import EMAModule
from segbench.models.encnet import Encoding
from segbench.models.isanet import ISAHead, interlaced_groups
from segbench.training import training_loss, training_outputs

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {
    "encnet_r50-d8_4xb2-80k_cityscapes-512x1024": ("encnet_resnet", {"depth": 50}),
    "apcnet_r50-d8_4xb2-80k_cityscapes-512x1024": ("apcnet_resnet", {"depth": 50}),
    "dmnet_r50-d8_4xb2-80k_cityscapes-512x1024": ("dmnet_resnet", {"depth": 50}),
    "ann_r50-d8_4xb2-80k_cityscapes-512x1024": ("ann_resnet", {"depth": 50}),
    "emanet_r50-d8_4xb2-80k_cityscapes-512x1024": ("emanet_resnet", {"depth": 50}),
    "isanet_r50-d8_4xb2-80k_cityscapes-512x1024": ("isanet_resnet", {"depth": 50}),
    "fastfcn_r50-d32_jpu_aspp_4xb2-80k_cityscapes-512x1024": ("fastfcn_resnet", {"decode_head": "aspp"}),
    "fastfcn_r50-d32_jpu_psp_4xb2-80k_cityscapes-512x1024": ("fastfcn_resnet", {"decode_head": "psp"}),
    "fastfcn_r50-d32_jpu_enc_4xb2-80k_cityscapes-512x1024": ("fastfcn_resnet", {"decode_head": "enc"}),
}
FAMILY_MODULES = {"encnet", "apcnet", "dmnet", "ann", "emanet", "isanet", "fastfcn"}


test_every_config_has_its_reference_file, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(CONFIGS)


def test_every_builder_has_a_reference_config():
    ours = {n for n in list_architectures() if architecture_builder(n).__module__.rsplit(".", 1)[-1] in FAMILY_MODULES}
    assert ours == {architecture for architecture, _ in CONFIGS.values()}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("architecture", sorted({a for a, _ in CONFIGS.values()}))
def test_output_shape_is_one_eighth_of_the_input(architecture):
    kwargs = {"depth": 18} if architecture != "fastfcn_resnet" else {"decode_head": "enc"}
    _, _, logits = logits_on_a_random_image(architecture, {**kwargs, "num_classes": 5}, size=(72, 104))
    assert tuple(logits.shape) == (1, 5, 9, 13)  # ISANet pads 9x13 to its 8x8 groups and crops back
    assert torch.isfinite(logits).all()


def test_fastfcn_backbone_strides_to_32_with_d8_dilations():
    model = architecture_builder("fastfcn_resnet")()
    assert [block.conv2.dilation[0] for block in model.backbone.layer3] == [1] + [2] * 5
    assert [block.conv2.dilation[0] for block in model.backbone.layer4] == [2, 4, 4]
    assert (model.backbone.layer3[0].conv2.stride, model.backbone.layer4[0].conv2.stride) == ((2, 2), (2, 2))
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, 64, 128))
        neck = model.neck(features)
    assert [tuple(f.shape[-2:]) for f in features[1:]] == [(8, 16), (4, 8), (2, 4)]
    assert [tuple(f.shape[1:]) for f in neck] == [(512, 8, 16), (1024, 4, 8), (2048, 8, 16)]


def test_fastfcn_rejects_an_unknown_head():
    with pytest.raises(ValueError, match="'aspp', 'psp' or 'enc'"):
        architecture_builder("fastfcn_resnet")(decode_head="fcn")


# --- EncNet's SE-loss branch: trained only -----------------------------------------------------


def test_encnet_se_branch_runs_in_training_only_and_learns_class_presence():
    torch.manual_seed(0)
    model = architecture_builder("encnet_resnet")(depth=18, num_classes=4, auxiliary_head=False)
    images = torch.randn(2, 3, 32, 32)
    labels = torch.tensor([0, 2, 255]).repeat(2, 32, 11)[:, :, :32].clone()
    labels[1] = 3
    model.eval()
    with torch.no_grad():
        (eval_logits, _), = training_outputs(model, images)
    assert eval_logits.dim() == 4  # eval mode: the segmentation logits alone, se_layer never called
    model.train()
    features = model.backbone(images)
    seg, se = model.decode_head(features)
    assert tuple(se.shape) == (2, 4)
    # mmseg's target: which classes occur in each image (histc over 0..C-1, so 255 is left out)
    present = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]])
    torch.manual_seed(1)  # the dropout draws of training_loss's forward, replayed below
    loss = training_loss(model, images, labels)
    torch.manual_seed(1)
    seg, se = model.decode_head(model.backbone(images))
    seg_loss = F.cross_entropy(F.interpolate(seg, size=(32, 32), mode="bilinear"), labels, ignore_index=255)
    expected = seg_loss + 0.2 * F.binary_cross_entropy_with_logits(se, present)
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert count_params(model)["inference"] == count_params(model)["total"] - (128 * 4 + 4)  # se_layer left out


# --- the custom operations against naive loops ---------------------------------------------------


def naive_encoding(x, codewords, scale):
    """mmseg's Encoding written per pixel and codeword: a_nk = softmax_k(s_k |x_n - c_k|²), e_k = Σ_n a_nk (x_n - c_k)."""
    b, c, h, w = x.shape
    out = torch.zeros(b, len(codewords), c, dtype=x.dtype)
    for i in range(b):
        for n in range(h * w):
            pixel = x[i, :, n // w, n % w]
            logits = torch.stack([scale[k] * ((pixel - codewords[k]) ** 2).sum() for k in range(len(codewords))])
            weights = torch.softmax(logits, dim=0)
            for k in range(len(codewords)):
                out[i, k] += weights[k] * (pixel - codewords[k])
    return out


def test_encoding_equals_the_naive_loop_in_values_and_gradients():
    torch.manual_seed(0)
    encoding = Encoding(5, 4).double()
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    fast = encoding(x)
    slow = naive_encoding(x, encoding.codewords, encoding.scale)
    assert torch.allclose(fast, slow, atol=1e-10)
    grads = torch.autograd.grad(fast.sin().sum(), [x, encoding.codewords, encoding.scale])
    naive_grads = torch.autograd.grad(slow.sin().sum(), [x, encoding.codewords, encoding.scale])
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(grads, naive_grads))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_dynamic_depthwise_conv_equals_a_per_sample_loop(k):
    """Every sample's channel c convolved with its own filter: zero padding keeps the size, even
    sizes pad one more on the top and left (mmseg's DCM)."""
    torch.manual_seed(0)
    x = torch.randn(3, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    filters = torch.randn(3, 2, k, k, dtype=torch.float64, requires_grad=True)
    fast = dynamic_depthwise_conv(x, filters)
    top = k // 2  # rows (and columns) of zeros before the image
    slow = torch.zeros_like(fast)
    for b in range(3):
        for c in range(2):
            for i in range(5):
                for j in range(6):
                    for u in range(k):
                        for v in range(k):
                            y, z = i + u - top, j + v - top
                            if 0 <= y < 5 and 0 <= z < 6:
                                slow[b, c, i, j] = slow[b, c, i, j] + filters[b, c, u, v] * x[b, c, y, z]
    assert torch.allclose(fast, slow, atol=1e-12)
    grads = torch.autograd.grad(fast.sin().sum(), [x, filters])
    naive_grads = torch.autograd.grad(slow.sin().sum(), [x, filters])
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(grads, naive_grads))


def test_ema_module_equals_a_per_sample_em_loop_and_updates_its_bases_only_in_training():
    torch.manual_seed(0)
    module = EMAModule(4, 3, num_stages=2, momentum=0.1).double()
    feats = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    stored = module.bases.clone()
    final_bases = []
    for i in range(2):
        x = feats[i].flatten(1)  # (C, N)
        bases = stored[0].clone()  # (C, K)
        for _ in range(2):
            attention = torch.softmax(x.t() @ bases, dim=1)  # E step (N, K): over the bases
            bases = x @ (attention / attention.sum(0, keepdim=True))  # M step: L1 over the pixels
            bases = bases / bases.norm(dim=0, keepdim=True)
        final_bases.append(bases)  # rebuilt from the new bases and the last E step's assignment (mmseg)
        expected = (bases @ attention.t()).view(4, 3, 5)
        assert torch.allclose(module.eval()(feats)[i], expected, atol=1e-12)
    assert torch.equal(module.bases, stored)  # eval leaves the bases alone
    module.train()(feats)
    mean = torch.stack(final_bases).mean(0)
    assert torch.allclose(module.bases[0], 0.9 * stored[0] + 0.1 * mean / mean.norm(dim=0, keepdim=True), atol=1e-12)


def test_isa_groups_take_the_same_position_of_every_local_group_after_centred_padding():
    x = torch.randn(2, 3, 5, 7)
    groups, _ = interlaced_groups(x, (2, 3))  # 5x7 padded to 6x9: one row (bottom), one column each side
    padded = torch.zeros(2, 3, 6, 9)
    padded[:, :, 0:5, 1:8] = x
    assert groups.shape == (2 * 2 * 3, 3, 3, 3)
    for b in range(2):
        for i in range(2):
            for j in range(3):
                for gy in range(3):
                    for gx in range(3):
                        assert torch.equal(groups[(b * 2 + i) * 3 + j, :, gy, gx], padded[b, :, gy * 2 + i, gx * 3 + j])


def test_isa_head_puts_every_pixel_back_where_it_was():
    """With both relations the identity, the regrouping and cropping must return the input conv's output."""
    torch.manual_seed(0)
    head = ISAHead(6, 4, 3, isa_channels=2, down_factor=(2, 3)).eval()
    head.global_relation = head.local_relation = nn.Identity()
    seen = {}
    head.out_conv.register_forward_pre_hook(lambda module, args: seen.update(fused=args[0]))
    with torch.no_grad():
        head([torch.randn(1, 6, 5, 7)])
    back, residual = seen["fused"].split(4, dim=1)
    assert torch.equal(back, residual)


def test_self_attention_block_equals_a_per_query_loop():
    torch.manual_seed(0)
    block = SelfAttentionBlock(
        3, 4, 2, 5, share_key_query=False, key_query_num_convs=1, with_out=True, key_downsample=PyramidSampling((1, 2))
    ).double().eval()
    query_feats, key_feats = torch.randn(1, 4, 3, 2, dtype=torch.float64), torch.randn(1, 3, 4, 4, dtype=torch.float64)
    out = block(query_feats, key_feats)
    queries = block.query_project(query_feats)[0].flatten(1)  # (2, 6)
    pooled = [F.adaptive_avg_pool2d(block.key_project(key_feats), s)[0].flatten(1) for s in (1, 2)]
    keys = torch.cat(pooled, dim=1)  # (2, 5): 1 + 4 pyramid positions
    values = torch.cat([F.adaptive_avg_pool2d(block.value_project(key_feats), s)[0].flatten(1) for s in (1, 2)], dim=1)
    context = torch.zeros(2, 6, dtype=torch.float64)
    for n in range(6):
        weights = torch.softmax(torch.stack([queries[:, n] @ keys[:, m] / math.sqrt(2) for m in range(5)]), dim=0)
        context[:, n] = sum(weights[m] * values[:, m] for m in range(5))
    expected = block.out_project(context.view(1, 2, 3, 2))
    assert torch.allclose(out, expected, atol=1e-12)


# --- MACs: the meta-device count sees the custom forms -----------------------------------------


class DynamicConv(nn.Module):
    """The image's channels convolved with fixed per-channel filters through dynamic_depthwise_conv."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.filters = nn.Parameter(torch.ones(1, 3, k, k))

    def forward(self, x):
        return dynamic_depthwise_conv(x, self.filters)


class Attention(nn.Module):
    """ANN's attention form on the image: pyramid-sampled keys and values (1 + 4 positions)."""

    def __init__(self) -> None:
        super().__init__()
        self.block = SelfAttentionBlock(3, 3, 2, 4, share_key_query=True, key_query_num_convs=1, with_out=True,
                                        key_downsample=PyramidSampling((1, 2)))  # fmt: skip

    def forward(self, x):
        return self.block(x, x)


H, W = 4, 6
N = H * W
MAC_CASES = {
    # Encoding: |x - c|² as one (N, C) x (C, K) product, the aggregation as one (K, N) x (N, C) product
    "encoding": (lambda: Encoding(3, 5), 2 * N * 5 * 3),
    "dynamic-conv-3": (lambda: DynamicConv(3), 3 * 9 * N),
    "dynamic-conv-4": (lambda: DynamicConv(4), 3 * 16 * N),
    # EM: per stage an E product and an M product, then the reconstruction: (2·2 + 1)·N·K·C
    "ema": (lambda: EMAModule(3, 5, num_stages=2, momentum=0.1), 5 * N * 5 * 3),
    # 1x1 key (shared with query) and value projections 3->2, out projection 2->4;
    # query·key and attention·value over 5 positions
    "attention": (Attention, 2 * N * 3 * 2 + N * 3 * 2 + N * 2 * 4 + N * 5 * 2 + N * 5 * 2),
    # ACM at scale 2, 3->2 channels: pooled (4 positions) and input 1x1 reductions, global 1x1 on the
    # pooled pixel, 4 affinities per pixel, their product with the 4 regions, residual and fusion 1x1
    "acm": (lambda: ACM(2, 3, 2), 4 * 3 * 2 + N * 3 * 2 + 2 * 2 + N * 2 * 4 + N * 4 * 2 + 2 * N * 2 * 2),
}


@pytest.mark.parametrize("case", MAC_CASES)
def test_meta_count_of_the_custom_forms_equals_the_hand_count(case):
    build, hand = MAC_CASES[case]
    assert count_macs(build(), (H, W), cross_check=False)["per_forward"] == hand
