"""The attention-style context heads (NonLocal, DNL, GCNet, CCNet, DANet, PSANet): mmseg parity,
output shapes, and their attention ops against naive loop oracles written here, pixel by pixel."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmseg_reference import logits_on_a_random_image, mmseg_config_tests
from segbench.complexity import count_macs, count_params
from segbench.inference import slide_logits
from segbench.layers.attention_ops import (
    ContextBlock, CrissCrossAttention, DisentangledNonLocal2d, NonLocal2d, criss_cross_attention, psa_mask,
)  # fmt: skip
from segbench.models import architecture_builder, list_architectures

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {
    "nonlocal_r50-d8_4xb2-80k_cityscapes-512x1024": ("nonlocal_resnet", {"depth": 50}),
    "dnl_r50-d8_4xb2-80k_cityscapes-512x1024": ("dnl_resnet", {"depth": 50}),
    "gcnet_r50-d8_4xb2-80k_cityscapes-512x1024": ("gcnet_resnet", {"depth": 50}),
    "ccnet_r50-d8_4xb2-80k_cityscapes-512x1024": ("ccnet_resnet", {"depth": 50}),
    "danet_r50-d8_4xb2-80k_cityscapes-512x1024": ("danet_resnet", {"depth": 50}),
    "psanet_r50-d8_4xb2-80k_cityscapes-512x1024": ("psanet_resnet", {"depth": 50}),
}
FAMILY_MODULES = {"nonlocal_net", "dnl", "gcnet", "ccnet", "danet", "psanet"}


def test_every_builder_of_these_families_is_covered():
    ours = {n for n in list_architectures() if architecture_builder(n).__module__.rsplit(".", 1)[-1] in FAMILY_MODULES}
    assert ours == {architecture for architecture, _ in CONFIGS.values()}


test_every_config_has_its_reference_file, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(CONFIGS)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("architecture", sorted({a for a, _ in CONFIGS.values()}))
def test_output_shape_whole_and_slide(architecture):
    """Whole at 64x128 (logits at 1/8); slide as the 769x769 configs do, scaled down: 33x33
    windows (odd features, PSANet's align_corners branch) with align_corners=True."""
    model, image, logits = logits_on_a_random_image(architecture, {"depth": 18, "num_classes": 5})
    assert tuple(logits.shape) == (1, 5, 8, 16)
    model = architecture_builder(architecture)(depth=18, num_classes=5, align_corners=True).eval()
    with torch.no_grad():
        slid = slide_logits(model, image[:, :, :49, :65], (33, 33), (16, 16), model.align_corners)
    assert tuple(slid.shape) == (1, 5, 49, 65)
    assert torch.isfinite(logits).all() and torch.isfinite(slid).all()


def test_danet_branch_classifiers_train_but_never_run_at_inference():
    model = architecture_builder("danet_resnet")(depth=18)
    calls = []
    for name in ("pam_conv_seg", "cam_conv_seg"):
        getattr(model.decode_head, name).register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 19, 4, 4)
    assert calls == []
    branch_params = sum(p.numel() for n in ("pam_conv_seg", "cam_conv_seg") for p in getattr(model.decode_head, n).parameters())
    params = count_params(model)
    assert params["total"] - params["inference"] == branch_params + sum(p.numel() for p in model.auxiliary_head.parameters())
    with torch.no_grad():
        assert len(model.train().decode_head([torch.randn(2, 8, 4, 4)] * 3 + [torch.randn(2, 512, 4, 4)])) == 3


# --- the ops against loop oracles --------------------------------------------------------------


def naive_psa_mask(mask: torch.Tensor, mask_size: tuple[int, int], mode: str) -> torch.Tensor:
    """mmcv's psamask_{collect,distribute}_forward CPU loop, element by element."""
    n, _, height, width = mask.shape
    mask_h, mask_w = mask_size
    half_h, half_w = (mask_h - 1) // 2, (mask_w - 1) // 2
    out = mask.new_zeros(n, height * width, height, width)
    for b in range(n):
        for h in range(height):
            for w in range(width):
                for a in range(max(0, half_h - h), min(mask_h, height + half_h - h)):
                    for c in range(max(0, half_w - w), min(mask_w, width + half_w - w)):
                        i, j = a + h - half_h, c + w - half_w
                        if mode == "collect":
                            out[b, i * width + j, h, w] = mask[b, a * mask_w + c, h, w]
                        else:
                            out[b, h * width + w, i, j] = mask[b, a * mask_w + c, h, w]
    return out


# (H, W, mask) : a mask larger than the image, one smaller, one exactly 2H-1 x 2W-1, even sides, 1x1
PSA_CASES = [(4, 5, (7, 9)), (5, 6, (3, 5)), (3, 4, (9, 9)), (4, 4, (7, 7)), (4, 6, (4, 6)), (3, 3, (1, 1))]


@pytest.mark.parametrize("mode", ["collect", "distribute"])
@pytest.mark.parametrize(("height", "width", "mask_size"), PSA_CASES)
def test_psa_mask_equals_the_loop_oracle_forward_and_backward(mode, height, width, mask_size):
    torch.manual_seed(0)
    mask = torch.randn(2, mask_size[0] * mask_size[1], height, width, dtype=torch.float64, requires_grad=True)
    ours, reference = psa_mask(mask, mask_size, mode), naive_psa_mask(mask, mask_size, mode)
    assert torch.equal(ours, reference)
    upstream = torch.randn_like(ours)
    (grad_ours,) = torch.autograd.grad(ours, mask, upstream)
    (grad_reference,) = torch.autograd.grad(reference, mask, upstream)
    assert torch.equal(grad_ours, grad_reference)


def test_psa_mask_rejects_a_mask_of_the_wrong_size():
    with pytest.raises(ValueError, match="channels"):
        psa_mask(torch.zeros(1, 8, 3, 3), (3, 3), "collect")
    with pytest.raises(ValueError, match="mode"):
        psa_mask(torch.zeros(1, 9, 3, 3), (3, 3), "both")


def naive_criss_cross(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Per pixel: a softmax over its column (itself left out) and its row (itself in) of q·k, then
    the weighted sum of those pixels' values."""
    batch, _, height, width = query.shape
    pixels = []
    for b in range(batch):
        for h in range(height):
            for w in range(width):
                positions = [(i, w) for i in range(height) if i != h] + [(h, j) for j in range(width)]
                energy = torch.stack([query[b, :, h, w] @ key[b, :, i, j] for i, j in positions])
                weights = torch.exp(energy - energy.max())
                weights = weights / weights.sum()
                pixels.append(sum(weight * value[b, :, i, j] for weight, (i, j) in zip(weights, positions)))
    return torch.stack(pixels).reshape(batch, height, width, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize(("height", "width"), [(4, 5), (3, 3), (1, 4)])
def test_criss_cross_attention_equals_the_loop_oracle_forward_and_backward(height, width):
    torch.manual_seed(0)
    q, k = (torch.randn(2, 3, height, width, dtype=torch.float64, requires_grad=True) for _ in range(2))
    v = torch.randn(2, 5, height, width, dtype=torch.float64, requires_grad=True)
    ours, reference = criss_cross_attention(q, k, v), naive_criss_cross(q, k, v)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, (q, k, v), upstream), torch.autograd.grad(reference, (q, k, v), upstream)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_criss_cross_module_projects_scales_and_adds_the_input():
    torch.manual_seed(0)
    module = CrissCrossAttention(16).double()
    nn.init.constant_(module.gamma.scale, 0.7)
    x = torch.randn(1, 16, 3, 4, dtype=torch.float64)
    expected = 0.7 * naive_criss_cross(module.query_conv(x), module.key_conv(x), module.value_conv(x)) + x
    torch.testing.assert_close(module(x), expected, rtol=1e-12, atol=1e-12)


def naive_non_local(theta, phi, g, scale, *, unary=None):
    """y[p] = Σ_q softmax_q(θ_p·φ_q · scale) g_q (+ Σ_q softmax_q(unary) g_q), over flattened pixels (C, HW) inputs."""
    pixels = theta.shape[1]
    out = []
    for p in range(pixels):
        energy = torch.stack([theta[:, p] @ phi[:, q] * scale for q in range(pixels)])
        weights = torch.exp(energy - energy.max())
        out.append(sum(w * g[:, q] for q, w in enumerate(weights / weights.sum())))
    y = torch.stack(out, dim=1)
    if unary is not None:
        weights = torch.exp(unary - unary.max())
        y = y + sum(w * g[:, q] for q, w in enumerate(weights / weights.sum()))[:, None]
    return y


def test_non_local_block_equals_the_loop_oracle():
    torch.manual_seed(0)
    block = NonLocal2d(8, reduction=2).double().eval()
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    theta, phi, g = (getattr(block, n)(x)[0].flatten(1) for n in ("theta", "phi", "g"))
    y = naive_non_local(theta, phi, g, 1 / math.sqrt(4)).reshape(1, 4, 3, 4)
    torch.testing.assert_close(block(x), x + block.conv_out(y), rtol=1e-12, atol=1e-12)


def test_disentangled_non_local_block_equals_the_loop_oracle():
    """Whitened embeddings (each channel's mean over the pixels removed), temperature 0.05, and the unary term."""
    torch.manual_seed(0)
    block = DisentangledNonLocal2d(8, reduction=2, temperature=0.05).double().eval()
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    theta, phi, g = (getattr(block, n)(x)[0].flatten(1) for n in ("theta", "phi", "g"))
    theta = theta - theta.sum(dim=1, keepdim=True) / 12
    phi = phi - phi.sum(dim=1, keepdim=True) / 12
    y = naive_non_local(theta, phi, g, 1 / (math.sqrt(4) * 0.05), unary=block.conv_mask(x)[0, 0].flatten())
    torch.testing.assert_close(block(x), x + block.conv_out(y.reshape(1, 4, 3, 4)), rtol=1e-10, atol=1e-12)


def test_context_block_equals_the_loop_oracle():
    torch.manual_seed(0)
    block = ContextBlock(8, ratio=1 / 4).double().eval()
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    logits = block.conv_mask(x)[0, 0].flatten()
    weights = torch.exp(logits - logits.max())
    weights = weights / weights.sum()
    context = sum(w * x[0, :, p // 4, p % 4] for p, w in enumerate(weights)).reshape(1, 8, 1, 1)
    torch.testing.assert_close(block(x), x + block.channel_add_conv(context), rtol=1e-12, atol=1e-12)
    assert [type(m) for m in block.channel_add_conv] == [nn.Conv2d, nn.LayerNorm, nn.ReLU, nn.Conv2d]


# --- MACs of the ops, by hand -------------------------------------------------------------------


class _OnImage(nn.Module):
    """A bias-free 1x1 conv lifting the image to `channels`, then the block: count_macs takes an image."""

    def __init__(self, channels: int, block: nn.Module) -> None:
        super().__init__()
        self.lift = nn.Conv2d(3, channels, 1, bias=False)
        self.block = block

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.block(self.lift(image))


def test_criss_cross_macs_are_counted_as_by_hand():
    """Per pixel: q·k with its H column and W row pixels (C/8 each) and the weighted sum of H+W
    values (C each); plus the 1x1 projections."""
    c, h, w = 16, 5, 7
    macs = count_macs(_OnImage(c, CrissCrossAttention(c)), (h, w), cross_check=False)["per_forward"]
    projections = h * w * (3 * c + 2 * c * (c // 8) + c * c)
    assert macs == projections + h * w * (h + w) * (c // 8 + c)


class _PSAAttention(nn.Module):
    def __init__(self, mask_size: tuple[int, int], mode: str) -> None:
        super().__init__()
        self.mask_size, self.mode = mask_size, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        attention = psa_mask(x[:, :1].expand(n, self.mask_size[0] * self.mask_size[1], h, w), self.mask_size, self.mode)
        return torch.bmm(x.flatten(2), attention.reshape(n, h * w, h * w))


@pytest.mark.parametrize("mode", ["collect", "distribute"])
def test_psa_mask_is_no_multiply_add_and_its_aggregation_is_counted(mode):
    """The PSA mask only moves weights (0 MACs, on the meta device too); the aggregation that
    follows is a C x HW x HW matrix product."""
    c, h, w = 4, 6, 5
    macs = count_macs(_OnImage(c, _PSAAttention((7, 7), mode)), (h, w), cross_check=False)["per_forward"]
    assert macs == h * w * 3 * c + c * (h * w) ** 2
