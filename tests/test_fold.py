"""BatchNorm folding: the folded weights by hand, every kind of layer that can feed a BatchNorm, and the pairs that
must stay unfolded because something else reads the conv's output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segbench.errors import SegbenchError
from segbench.fold import TOLERANCE, fold_batchnorm
from toy_models import randomize_batchnorms


def assert_close_to_scale(folded: torch.Tensor, reference: torch.Tensor) -> None:
    """Within TOLERANCE x the reference's largest magnitude (fp32 rounding of a reordered product)."""
    assert (folded - reference).abs().max() <= TOLERANCE * reference.abs().max()


def test_a_hand_computed_fold_of_one_conv():
    conv = nn.Conv2d(1, 2, 1, bias=False)
    bn = nn.BatchNorm2d(2, eps=1.0)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
        bn.weight.copy_(torch.tensor([3.0, 0.5]))
        bn.bias.copy_(torch.tensor([1.0, -2.0]))
        bn.running_mean.copy_(torch.tensor([0.5, 4.0]))
        bn.running_var.copy_(torch.tensor([3.0, 0.0]))  # sqrt(var + eps) = 2 and 1: scale = gamma / that = 1.5, 0.5
    model = nn.Sequential(conv, bn).eval()

    report = fold_batchnorm(model, torch.randn(1, 1, 3, 3))

    assert report["folded"] == 1 and report["left"] == 0 and report["left_reasons"] == {}
    assert isinstance(model[1], nn.Identity) and model[0] is conv
    assert conv.weight.flatten().tolist() == [3.0, -0.5]  # 2 * 1.5, -1 * 0.5
    assert conv.bias.tolist() == [0.25, -4.0]  # beta - mean * scale: 1 - 0.5 * 1.5, -2 - 4 * 0.5
    assert torch.equal(model(torch.ones(1, 1, 1, 1)).flatten(), torch.tensor([3.25, -4.5]))


FEEDERS = {
    "conv1d": (nn.Conv1d(4, 6, 3, padding=2, dilation=2), nn.BatchNorm1d(6), (2, 4, 9)),
    "conv2d_grouped_dilated": (nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), nn.BatchNorm2d(6), (2, 4, 7, 9)),
    "depthwise": (nn.Conv2d(6, 6, 3, stride=2, groups=6, bias=False), nn.BatchNorm2d(6, affine=False), (2, 6, 7, 9)),
    "conv3d": (nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4), (2, 2, 3, 4, 5)),
    "transposed_grouped": (nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2, bias=False), nn.BatchNorm2d(6), (2, 4, 3, 5)),
    "transposed1d": (nn.ConvTranspose1d(3, 5, 3, stride=2), nn.BatchNorm1d(5), (2, 3, 6)),
    "linear": (nn.Linear(5, 4), nn.BatchNorm1d(4), (3, 5)),
}


@pytest.mark.parametrize("feeder, norm, shape", FEEDERS.values(), ids=list(FEEDERS))
def test_every_kind_of_feeder_folds_to_the_same_output(feeder, norm, shape):
    torch.manual_seed(0)
    model = randomize_batchnorms(nn.Sequential(feeder, norm, nn.ReLU())).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        reference = model(x)
    report = fold_batchnorm(model, x)
    assert report["folded"] == 1 and isinstance(model[1], nn.Identity)
    with torch.no_grad():
        assert_close_to_scale(model(x), reference)
    assert report["max_abs_diff"] <= report["allowed_abs_diff"]


class ConvNorm(nn.Module):
    """A 1x1 conv into a BatchNorm; the subclasses below read the conv's output or the norm in ways folding must see."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)


class Residual(nn.Module):
    """y = bn(conv(x)) + conv(x): the conv's output is read twice, folding would change the residual."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class InPlaceBeforeNorm(nn.Module):
    """conv -> in-place ReLU -> bn: the norm's input is the conv's output tensor, but changed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.relu = nn.ReLU(inplace=True)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.relu(self.conv(x)))


class PreActivation(nn.Module):
    """bn -> conv (mmcv's order norm, act, conv): nothing feeds the norm."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(torch.relu(self.bn(x)))


class SharedConv(nn.Module):
    """One conv run on two inputs, each through its own norm: folding either would change the other."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn_a, self.bn_b = nn.BatchNorm2d(3), nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn_a(self.conv(x)) + self.bn_b(self.conv(x.flip(-1)))


class ReturnsFeature(ConvNorm):
    """The conv's output leaves the model beside the normalized one."""

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y), y


def _no_stats() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3, track_running_stats=False))


READ_ELSEWHERE = "the output of the conv or linear layer that feeds it is read elsewhere too"
UNFOLDABLE = {
    "residual": (Residual, READ_ELSEWHERE),
    "in_place_relu_between": (InPlaceBeforeNorm, READ_ELSEWHERE),
    "pre_activation": (PreActivation, "its input is not a conv's or linear layer's output"),
    "shared_conv": (SharedConv, READ_ELSEWHERE),
    "returned_feature": (ReturnsFeature, READ_ELSEWHERE),
    "batch_statistics": (_no_stats, "normalizes with batch statistics (track_running_stats=False)"),
    "sync_batchnorm": (lambda: nn.Sequential(nn.Conv2d(3, 3, 1), nn.SyncBatchNorm(3)), "SyncBatchNorm is left as it is"),
    "linear_over_tokens": (
        lambda: nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(2)), "it follows a linear layer whose output is not (N, C)"
    ),
}


@pytest.mark.parametrize("make, reason", UNFOLDABLE.values(), ids=list(UNFOLDABLE))
def test_a_norm_whose_input_is_not_only_a_conv_output_stays(make, reason):
    torch.manual_seed(0)
    model = randomize_batchnorms(make()).eval()
    x = torch.randn(2, 2, 3) if reason.startswith("it follows a linear") else torch.randn(2, 3, 4, 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = fold_batchnorm(model, x)
    norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert report["folded"] == 0 and report["left"] == norms and report["left_reasons"] == {reason: norms}
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())


def test_a_norm_in_training_mode_stays():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).eval()
    model[1].train()
    report = fold_batchnorm(model, torch.randn(2, 3, 4, 4))
    assert report["left_reasons"] == {"in training mode": 1} and isinstance(model[1], nn.BatchNorm2d)


class WithUnusedNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
        self.unused = nn.BatchNorm2d(3)  # as an auxiliary head's norms in eval

    def forward(self, x):
        return self.body(x)


def test_a_norm_that_never_runs_stays_and_the_rest_fold():
    model = WithUnusedNorm().eval()
    report = fold_batchnorm(model, torch.randn(1, 3, 2, 2))
    assert (report["folded"], report["left_reasons"]) == (1, {"did not run as a module in the traced forward": 1})


class ReadsValuesAsAList(ConvNorm):
    """Reads the conv's output through .tolist(), which returns no tensor: the trace cannot see that read."""

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) * torch.tensor(y.tolist()).mean()


def test_a_fold_that_changes_the_output_is_undone_and_named():
    torch.manual_seed(0)
    model = randomize_batchnorms(ReadsValuesAsAList()).eval()
    norm, bias = model.bn, model.conv.bias
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 4, 4)
    message = r"^zoo/x.yaml: model 'x': BatchNorm folding: the folded model's output differs .*left unfolded"
    with pytest.raises(SegbenchError, match=message):
        fold_batchnorm(model, x, where="zoo/x.yaml: model 'x'")
    assert model.bn is norm and model.conv.bias is bias
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())


class ReadsTheNormsWidth(ConvNorm):
    """Asks its norm for num_features at run time: without the norm the folded model cannot run."""

    def forward(self, x):
        return self.bn(self.conv(x))[:, : self.bn.num_features - 1]


def test_a_folded_model_that_fails_to_run_is_restored():
    model = randomize_batchnorms(ReadsTheNormsWidth()).eval()
    norm = model.bn
    with pytest.raises(SegbenchError, match=r"BatchNorm folding: the folded model fails to run \(AttributeError: .*left unfolded"):
        fold_batchnorm(model, torch.randn(1, 3, 2, 2))
    assert model.bn is norm and model.conv.bias is not None
    assert model(torch.randn(1, 3, 2, 2)).shape == (1, 2, 2, 2)


class HalfNaN(nn.Module):
    """One output channel is NaN: equality cannot be checked there, so the fold cannot be verified."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        return self.bn(self.conv(x)) * torch.tensor([1.0, float("nan")]).view(1, 2, 1, 1)


def test_an_output_with_nan_is_not_taken_as_equal():
    model = randomize_batchnorms(HalfNaN()).eval()
    with pytest.raises(SegbenchError, match="differs from the unfolded one's by inf"):
        fold_batchnorm(model, torch.randn(1, 3, 2, 2))
    assert isinstance(model.bn, nn.BatchNorm2d)
