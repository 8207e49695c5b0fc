"""PointRend and ResNeSt: mmsegmentation parity (keys, shapes, parameter counts), output shapes, the
point ops against naive loops, the subdivision inference against a naive oracle, and its MACs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmseg_reference import logits_on_a_random_image, mmseg_config_tests
from segbench.complexity import count_macs
from segbench.layers.points import most_uncertain_points, point_sample, training_points
from segbench.models import architecture_builder
from segbench.models.backbones.resnest import SplitAttentionConv
from segbench.models.fpn import SemanticFPNHead
from segbench.models.point_rend import PointHead, PointRendHeads

# mmsegmentation config -> (segbench architecture, builder arguments)
CONFIGS = {
    "pointrend_r50_4xb2-80k_cityscapes-512x1024": ("pointrend_resnet", {"depth": 50}),
    "pointrend_r101_4xb2-80k_cityscapes-512x1024": ("pointrend_resnet", {"depth": 101}),
    "resnest_s101-d8_fcn_4xb2-80k_cityscapes-512x1024": ("fcn_resnest", {}),
    "resnest_s101-d8_pspnet_4xb2-80k_cityscapes512x1024": ("pspnet_resnest", {}),
    "resnest_s101-d8_deeplabv3_4xb2-80k_cityscapes-512x1024": ("deeplabv3_resnest", {}),
    "resnest_s101-d8_deeplabv3plus_4xb2-80k_cityscapes-512x1024": ("deeplabv3plus_resnest", {}),
}


test_every_config_has_its_reference_file, test_state_dict_and_params_match_mmsegmentation = mmseg_config_tests(CONFIGS)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("architecture", "kwargs", "shape"),
    [
        ("pointrend_resnet", {"depth": 18}, (19, 64, 128)),  # stride 4, then two 2x subdivision steps
        ("pointrend_resnet", {"depth": 18, "subdivision_steps": 1}, (19, 32, 64)),
    ],
)
def test_output_shapes(architecture, kwargs, shape):
    _, _, logits = logits_on_a_random_image(architecture, kwargs)
    assert logits.shape == (1, *shape) and torch.isfinite(logits).all()


# --- the point ops against naive loops ---------------------------------------------------------


def naive_point_sample(features: torch.Tensor, points: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Bilinear interpolation point by point: the four neighbouring pixels, zero outside the map."""
    batch, _, height, width = features.shape
    out = []
    for n in range(batch):
        columns = []
        for x, y in points[n]:
            px = x * (width - 1) if align_corners else x * width - 0.5
            py = y * (height - 1) if align_corners else y * height - 0.5
            x0, y0 = math.floor(px.item()), math.floor(py.item())
            value = features.new_zeros(features.shape[1])
            for row, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
                for col, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
                    if 0 <= row < height and 0 <= col < width:
                        value = value + wx * wy * features[n, :, row, col]
            columns.append(value)
        out.append(torch.stack(columns, dim=1))
    return torch.stack(out)


def naive_most_uncertain(logits: torch.Tensor, num_points: int) -> tuple[list[list[int]], list[list[tuple[float, float]]]]:
    """Per image: every pixel's second-best minus best logit, the pixels sorted by it, the first P kept."""
    batch, _, height, width = logits.shape
    indices, points = [], []
    for n in range(batch):
        scores = []
        for row in range(height):
            for col in range(width):
                best, second = sorted(logits[n, :, row, col].tolist(), reverse=True)[:2]
                scores.append((second - best, row * width + col))
        chosen = [k for _, k in sorted(scores, key=lambda s: -s[0])[:num_points]]
        indices.append(chosen)
        points.append([((k % width + 0.5) / width, (k // width + 0.5) / height) for k in chosen])
    return indices, points


@pytest.mark.parametrize("align_corners", [False, True])
def test_point_sample_and_its_gradients_equal_a_naive_loop(align_corners):
    torch.manual_seed(0)
    features = torch.randn(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    points = (torch.rand(2, 15, 2, dtype=torch.float64) * 1.2 - 0.1).requires_grad_()  # some outside [0, 1]
    upstream = torch.randn(2, 3, 15, dtype=torch.float64)
    ours = point_sample(features, points, align_corners=align_corners)
    theirs = naive_point_sample(features, points, align_corners)
    torch.testing.assert_close(ours, theirs)
    our_grads = torch.autograd.grad((ours * upstream).sum(), (features, points))
    their_grads = torch.autograd.grad((theirs * upstream).sum(), (features, points))
    torch.testing.assert_close(our_grads, their_grads)


def test_the_most_uncertain_points_equal_a_naive_ranking():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 9, 11)
    indices, points = most_uncertain_points(logits, 25)
    naive_indices, naive_points = naive_most_uncertain(logits, 25)
    assert indices.tolist() == naive_indices
    torch.testing.assert_close(points, torch.tensor(naive_points))
    assert most_uncertain_points(logits, 10_000)[0].shape == (2, 99)  # never more points than pixels


def test_training_points_take_the_most_uncertain_candidates():
    """mmseg's get_points_train: 3x oversampled random candidates, the 75% most uncertain kept, 25% fresh."""
    torch.manual_seed(0)
    coarse = torch.randn(1, 5, 6, 8)
    torch.manual_seed(1)
    points = training_points(coarse, 16)
    torch.manual_seed(1)
    candidates = torch.rand(1, 48, 2)
    sampled = naive_point_sample(coarse, candidates, False)[0].T  # (48, classes)
    scores = torch.tensor([second - best for *_, second, best in (sorted(v.tolist()) for v in sampled)])
    expected = candidates[0, scores.argsort(descending=True)[:12]]
    torch.testing.assert_close(points[0, :12], expected)
    assert points.shape == (1, 16, 2) and ((points >= 0) & (points <= 1)).all()


def naive_subdivision(heads: PointRendHeads, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """mmseg's subdivision inference spelled out point by point with the point head's weights."""
    point_head = heads[1]
    refined = coarse
    for _ in range(heads.subdivision_steps):
        refined = F.interpolate(refined, scale_factor=2, mode="bilinear", align_corners=False).clone()
        width = refined.shape[-1]
        (indices,), (points,) = naive_most_uncertain(refined, heads.subdivision_num_points)
        points = torch.tensor([points])
        fine_at, coarse_at = naive_point_sample(fine, points, False)[0], naive_point_sample(coarse, points, False)[0]
        for p, k in enumerate(indices):
            x = fine_at[:, p]
            for fc in point_head.fcs:
                x = torch.relu(fc.conv.weight[:, :, 0] @ torch.cat([x, coarse_at[:, p]]) + fc.conv.bias)
            logits = point_head.fc_seg.weight[:, :, 0] @ torch.cat([x, coarse_at[:, p]]) + point_head.fc_seg.bias
            refined[0, :, k // width, k % width] = logits
    return refined


def test_subdivision_inference_equals_a_naive_oracle():
    torch.manual_seed(0)
    heads = PointRendHeads(SemanticFPNHead(8, 8, 5), PointHead(8, 16, 5), subdivision_num_points=30).eval()
    fine, coarse = torch.randn(1, 8, 6, 10), torch.randn(1, 5, 6, 10)
    with torch.no_grad():
        refined = heads.refine([fine], coarse)
        expected = naive_subdivision(heads, fine, coarse)
    assert refined.shape == (1, 5, 24, 40)
    torch.testing.assert_close(refined, expected)


def test_macs_include_the_subdivision_steps():
    """At 64x128 the FPN head predicts 16x32; step 1 refines all 32x64 = 2048 pixels, step 2 the
    8196 most uncertain of 64x128 = 8192, i.e. all. Per point the MLP takes (256 + 19) inputs
    to 256 outputs three times and (256 + 19) to 19 once."""
    model = architecture_builder("pointrend_resnet")(depth=18)  # the point head does not depend on the backbone
    mlp_per_point = 3 * (256 + 19) * 256 + (256 + 19) * 19
    refined = count_macs(model, (64, 128), cross_check=False)["per_forward"]
    model.decode_head.subdivision_steps = 0  # the FPN head's coarse logits as they are
    coarse = count_macs(model, (64, 128), cross_check=False)["per_forward"]
    assert refined - coarse == (32 * 64 + 64 * 128) * mlp_per_point


def test_split_attention_weighs_each_channel_by_a_softmax_over_the_branches():
    """With fc2's weights zero, branch r of channel c gets softmax over r of fc2's biases b[r, c]:
    for radix 2, sigmoid(b[0, c] - b[1, c]) and its complement."""
    torch.manual_seed(0)
    conv = SplitAttentionConv(8).eval()
    with torch.no_grad():
        conv.fc2.weight.zero_()
        conv.fc2.bias.copy_(torch.randn(16))
        x = torch.randn(2, 8, 5, 6)
        branches = torch.relu(conv.bn0(conv.conv(x))).view(2, 2, 8, 5, 6)
        first = torch.sigmoid(conv.fc2.bias[:8] - conv.fc2.bias[8:]).view(1, 8, 1, 1)
        torch.testing.assert_close(conv(x), first * branches[:, 0] + (1 - first) * branches[:, 1])
