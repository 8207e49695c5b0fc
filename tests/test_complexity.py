"""MACs and params against hand counts; the meta-device count against fvcore and thop; MACs per image as tested."""

import json
import math
import sys
from collections import Counter

import pytest
import torch
from torch import nn

from segbench import complexity
from segbench.complexity import count_macs, count_macs_as_tested, count_params, module_breakdown
from segbench.inference import InferenceSettings, class_scores, forward_sizes
from segbench.models import architecture_builder
from toy_models import TinySegmentor


def test_macs_of_tiny_model_equal_hand_count():
    # stem: 3x3 conv 3->8, stride 2, on 32x64 -> 16x32 output: 8*3*9 MACs per output pixel
    # classifier: 1x1 conv 8->4 on 16x32: 4*8 per pixel; biases and ReLU are not multiply-adds.
    hand = 16 * 32 * (8 * 3 * 9) + 16 * 32 * (4 * 8)
    macs = count_macs(TinySegmentor(4), (32, 64))
    assert macs["per_forward"] == macs["fvcore"] == hand
    assert macs["thop"] == hand
    assert macs["input_size"] == [32, 64]


def test_params_of_tiny_model_equal_hand_count():
    hand = (8 * 3 * 9 + 8) + (4 * 8 + 4)
    assert count_params(TinySegmentor(4)) == {"total": hand, "inference": hand, "norm_statistics": 0}  # no BatchNorm


def test_norm_statistics_are_the_inference_graphs_batchnorm_running_stats():
    model = architecture_builder("fcn_resnet")(depth=18, auxiliary_head=True)
    inference = [m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and not name.startswith("auxiliary_head")]
    assert count_params(model)["norm_statistics"] == 2 * sum(m.num_features for m in inference) > 0


def test_auxiliary_head_excluded_from_inference_params_and_macs():
    with_aux = architecture_builder("fcn_resnet")(depth=18, auxiliary_head=True)
    without = architecture_builder("fcn_resnet")(depth=18, auxiliary_head=False)
    params = count_params(with_aux)
    aux = sum(p.numel() for p in with_aux.auxiliary_head.parameters())
    assert params["total"] - params["inference"] == aux > 0
    assert params["inference"] == count_params(without)["total"]
    assert count_macs(with_aux, (64, 128))["per_forward"] == count_macs(without, (64, 128))["per_forward"]


@pytest.mark.parametrize("architecture", ["fcn_resnet", "deeplabv3_resnet"])
def test_fvcore_and_thop_agree_on_real_architectures(architecture):
    model = architecture_builder(architecture)(depth=18)
    macs = count_macs(model, (64, 128))
    assert macs["fvcore"] > 0
    assert abs(macs["thop_over_fvcore"] - 1) < 0.01
    assert 1 <= macs["fvcore_over_flop_counter"] <= 1.01  # fvcore adds small elementwise estimates
    assert macs["primary"] == "flop_counter" and "operators_differing" not in macs


def test_counting_leaves_the_model_untouched():
    model = architecture_builder("fcn_resnet")(depth=18).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (64, 128))
    after = model.state_dict()
    assert before.keys() == after.keys()  # no thop total_ops/total_params buffers
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats unchanged
    assert model.training


def test_an_eval_model_on_meta_is_counted_in_place_and_left_as_it_was():
    """`segbench profile` counts its meta-built model without a copy: nothing may stay behind."""
    global_hooks = (torch.nn.modules.module._global_forward_pre_hooks, torch.nn.modules.module._global_forward_hooks)
    hooks_before = [len(h) for h in global_hooks]
    on_cpu = architecture_builder("fcn_resnet")(depth=18).eval()
    on_meta = complexity._counting_copy(on_cpu, "meta")
    keys = on_meta.state_dict().keys()
    in_place, on_a_copy = (count_macs(m, (64, 128), cross_check=False)["per_forward"] for m in (on_meta, on_cpu))
    assert in_place == on_a_copy
    assert on_meta.state_dict().keys() == keys and not on_meta.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in on_meta.modules())
    assert [len(h) for h in global_hooks] == hooks_before


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


def test_a_module_list_in_the_breakdown_does_its_childrens_work():
    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList([nn.Conv2d(3, 4, 1), nn.Conv2d(3, 2, 1)])

        def forward(self, x):
            return torch.cat([conv(x) for conv in self.convs], 1)

    h, w = 6, 8
    rows = {r["module"]: r["macs"] for r in module_breakdown(Branches(), (h, w), depth=2)}
    assert rows == {"": h * w * 3 * 6, "convs": h * w * 3 * 6, "convs.0": h * w * 3 * 4, "convs.1": h * w * 3 * 2}


def test_module_breakdown_to_depth():
    rows = module_breakdown(Tokens(MHABlock(True)), SIZE, depth=1)
    assert [r["module"] for r in rows] == ["", "embed", "mixer", "classifier"]
    by_name = {r["module"]: r for r in rows}
    assert by_name[""]["macs"] == sum(by_name[n]["macs"] for n in ("embed", "mixer", "classifier"))
    assert by_name["embed"] == {"module": "embed", "type": "Conv2d", "params": 3 * E + E, "macs": L * 3 * E}
    assert len(module_breakdown(Tokens(MHABlock(True)), SIZE, depth=0)) == 1


# --- the primary count: FlopCounterMode on a meta-device copy --------------------------------


def test_primary_is_the_meta_count_and_equals_the_hand_count():
    hand = 16 * 32 * (8 * 3 * 9) + 16 * 32 * (4 * 8)  # as in test_macs_of_tiny_model_equal_hand_count
    macs = count_macs(TinySegmentor(4), (32, 64), cross_check=False)
    assert macs["primary"] == "flop_counter" and macs["per_forward"] == macs["flop_counter_macs"] == hand
    assert macs["flop_counter_macs_by_operator"] == {"aten.convolution": hand}
    assert "fvcore" not in macs and "thop" not in macs  # no cross-check asked: no real forward pass


def test_without_a_cross_check_no_real_forward_runs(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a real forward pass")

    monkeypatch.setattr(complexity, "fvcore_macs", forbidden)
    monkeypatch.setattr(complexity, "thop_macs", forbidden)
    model = architecture_builder("deeplabv3_resnet")(depth=18)
    assert count_macs(model, (64, 128), cross_check=False)["per_forward"] > 0


class Operands(nn.Module):
    """Applies `op` to parameters of the given shapes (the image is ignored): one op, counted alone."""

    def __init__(self, op, *shapes) -> None:
        super().__init__()
        self.op = op
        self.operands = nn.ParameterList(nn.Parameter(torch.ones(shape)) for shape in shapes)

    def forward(self, x):
        return self.op(*self.operands)


F = nn.functional
HAND_COUNTED_OPS = {
    "sdpa": (F.scaled_dot_product_attention, [(2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6)], 2 * 3 * 5 * 7 * (4 + 6)),
    "matmul-broadcast": (torch.matmul, [(2, 1, 4, 5), (3, 5, 6)], 2 * 3 * 4 * 5 * 6),
    "matmul-1d-right": (torch.matmul, [(3, 4, 5), (5,)], 3 * 4 * 5),
    "matmul-1d-left": (torch.matmul, [(5,), (3, 5, 4)], 3 * 5 * 4),
    "einsum": (lambda a, b: torch.einsum("bhqd,bhkd->bhqk", a, b), [(2, 3, 5, 4), (2, 3, 7, 4)], 2 * 3 * 5 * 7 * 4),
    "mv": (torch.mv, [(4, 5), (5,)], 4 * 5),
    "addmv": (torch.addmv, [(4,), (4, 5), (5,)], 4 * 5),
    "dot": (torch.dot, [(5,), (5,)], 5),
    "baddbmm": (torch.baddbmm, [(2, 4, 6), (2, 4, 5), (2, 5, 6)], 2 * 4 * 5 * 6),
    "addbmm": (torch.addbmm, [(4, 6), (2, 4, 5), (2, 5, 6)], 2 * 4 * 5 * 6),
    "bilinear": (F.bilinear, [(4, 3), (4, 5), (6, 3, 5)], 4 * 6 * 3 * 5),  # out[b,o] = Σ_ij x1[b,i] W[o,i,j] x2[b,j]
    "tensordot": (lambda a, b: torch.tensordot(a, b, dims=([2], [0])), [(4, 5, 6), (6, 7)], 4 * 5 * 6 * 7),
}


@pytest.mark.parametrize("op", HAND_COUNTED_OPS)
def test_meta_count_of_matrix_products_equals_the_hand_count(op):
    fn, shapes, hand = HAND_COUNTED_OPS[op]
    assert count_macs(Operands(fn, *shapes), (1, 1), cross_check=False)["per_forward"] == hand


def test_a_model_that_cannot_run_on_meta_falls_back_to_fvcore_and_says_so():
    class ItemStatistics(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * float(x.mean().item() >= 0)

    class NumpyStatistics(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * float(x.numpy().mean() >= 0)

    for model in (ItemStatistics(3, 2, 1), NumpyStatistics(3, 2, 1)):
        macs = count_macs(model, (4, 4), cross_check=False)  # falls back even without a cross-check
        assert macs["primary"] == "fvcore" and macs["per_forward"] == macs["fvcore"] == 16 * 6
        assert macs["flop_counter_error"] and "flop_counter_macs" not in macs


@pytest.mark.parametrize(
    "architecture, kwargs",
    [("pspnet_resnet", {"depth": 18}), ("segformer_mit", {"variant": "b0"}), ("bisenetv2", {}), ("icnet_resnet", {"depth": 18})],
)
def test_thop_counts_on_meta_what_it_counts_by_a_real_forward_pass(architecture, kwargs, monkeypatch):
    """thop in the cross-check runs on the meta device (no arithmetic); the independent reference is
    thop on the CPU. Adaptive pools, resizes, attention and cascades among the architectures."""
    model = architecture_builder(architecture)(**kwargs).eval()
    by_real_forward = complexity.thop_macs(model, torch.zeros(1, 3, 64, 128))
    devices = []
    real_thop = complexity.thop_macs
    monkeypatch.setattr(complexity, "thop_macs", lambda m, image: devices.append(image.device.type) or real_thop(m, image))
    macs = count_macs(model, (64, 128))
    assert macs["thop"] == by_real_forward > 0
    assert macs["thop_device"] == "meta" and devices == ["meta"]


def test_thop_falls_back_to_a_real_forward_pass_where_the_model_reads_values():
    class ItemStatistics(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.conv(x) * float(x.mean().item() >= 0)

    macs = count_macs(ItemStatistics(), (4, 4))
    assert macs["thop"] == 16 * 6 and macs["thop_device"] == "cpu"


def test_a_heavy_op_fvcore_skips_is_an_error_only_where_fvcore_is_the_primary():
    class DataDependentTensordot(nn.Module):
        def forward(self, x):
            return torch.tensordot(x, torch.ones(8, 8), dims=([3], [0])) * float(x.mean().item() >= 0)

    with pytest.raises(RuntimeError, match="fvcore could not count aten::tensordot"):
        count_macs(DataDependentTensordot(), (8, 8))


def test_where_fvcore_differs_the_record_names_the_operators():
    class Tensordot(nn.Module):
        def forward(self, x):
            return torch.tensordot(x, torch.ones(8, 8), dims=([3], [0]))

    macs = count_macs(Tensordot(), (8, 8))  # fvcore skips tensordot, the meta count sees its mm
    hand = 3 * 8 * 8 * 8
    assert macs["per_forward"] == hand and macs["fvcore"] == 0 and "aten::tensordot" in macs["fvcore_unsupported_ops"]
    (group,) = macs["operators_differing"]
    assert group == {"operators": "matrix products and attention", "flop_counter_macs": hand, "fvcore": 0,
                     "flop_counter_by_operator": {"aten.mm": hand}, "fvcore_by_operator": {}}  # fmt: skip


def test_norm_estimates_of_fvcore_are_named_when_they_pass_one_percent():
    model = nn.Sequential(nn.Conv2d(3, 1, 1, bias=False), nn.BatchNorm2d(1)).eval()
    macs = count_macs(model, (8, 8))
    conv = 8 * 8 * 3
    assert macs["per_forward"] == conv and macs["fvcore"] > 1.01 * conv  # fvcore adds its batch-norm estimate
    (group,) = macs["operators_differing"]
    assert group["flop_counter_macs"] == 0 and set(group["fvcore_by_operator"]) == {"batch_norm"}
    assert group["fvcore"] == macs["fvcore"] - conv


def test_an_uninstalled_cross_check_is_recorded_as_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "thop", None)  # `from thop import ...` raises ImportError
    macs = count_macs(TinySegmentor(4), (32, 64))
    assert macs["per_forward"] == macs["fvcore"] and "thop" not in macs
    assert set(macs["cross_check_unavailable"]) == {"thop"}
    monkeypatch.setitem(sys.modules, "fvcore.nn", None)
    macs = count_macs(TinySegmentor(4), (32, 64))
    assert macs["primary"] == "flop_counter" and set(macs["cross_check_unavailable"]) == {"fvcore", "thop"}
    assert macs["cross_check_device"] == "cpu"


def test_breakdown_adds_up_to_the_primary_count():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1)).eval()
    rows = module_breakdown(model, (10, 12), depth=1)
    primary = count_macs(model, (10, 12), cross_check=False)["per_forward"]
    assert rows[0]["macs"] == primary == 8 * 10 * (4 * 3 * 9 + 2 * 4)
    assert [r["macs"] for r in rows[1:]] == [8 * 10 * 4 * 3 * 9, 0, 8 * 10 * 2 * 4]


# --- MACs of what was timed: every window, every scale and flip ------------------------------


def _tiny_hand(h: int, w: int) -> int:
    """TinySegmentor(4) at (h, w): stride-2 3x3 conv to ceil(h/2)×ceil(w/2), then a 1x1 conv."""
    return math.ceil(h / 2) * math.ceil(w / 2) * (8 * 3 * 9 + 4 * 8)


def test_slide_mode_counts_every_window():
    # rows: 20 long, crop 8, stride 6 -> (20-8+5)//6+1 = 3; cols: 30 long -> (30-8+5)//6+1 = 5: 15 windows of 8x8
    test = InferenceSettings(mode="slide", crop_size=(8, 8), stride=(6, 6), test_size=(20, 30))
    assert forward_sizes(test) == {(8, 8): 15}
    macs = count_macs_as_tested(TinySegmentor(4), test, cross_check=False)
    assert macs["input_size"] == [20, 30] and macs["forward_size"] == [8, 8] and macs["forwards_per_image"] == 15
    assert macs["per_forward"] == _tiny_hand(8, 8) and macs["per_image"] == 15 * _tiny_hand(8, 8)


def test_ms_flip_counts_every_scale_and_flip_at_its_own_size():
    test = InferenceSettings(test_size=(20, 30), multi_scale_flip=True)
    macs = count_macs_as_tested(TinySegmentor(4), test, ms_flip=True, cross_check=False)
    sizes = []
    for s in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75):  # mmseg: the scale truncated, then the image fitted in it, ratio kept, half up
        scale_h, scale_w = int(20 * s), int(30 * s)
        factor = min(max(scale_h, scale_w) / 30, min(scale_h, scale_w) / 20)
        sizes.append((int(20 * factor + 0.5), int(30 * factor + 0.5)))
    assert sizes[1] == (15, 22)  # 0.75: the scale 15x22 (truncated), 20x30 fitted into it by 22/30
    assert macs["ms_flip"]["per_image"] == sum(2 * _tiny_hand(*size) for size in sizes)
    assert macs["per_image"] == macs["per_forward"] == _tiny_hand(20, 30)  # the timed test is single-scale


@pytest.mark.parametrize("mode", ["whole", "slide"])
@pytest.mark.parametrize("ms_flip", [False, True])
def test_forward_sizes_are_the_forwards_a_prediction_makes(mode, ms_flip):
    class Recording(nn.Conv2d):
        def forward(self, x):
            self.seen.append(tuple(x.shape[-2:]))
            return super().forward(x)

    model = Recording(3, 2, 1)
    model.seen = []
    slide = {"crop_size": (12, 12), "stride": (8, 8)} if mode == "slide" else {}
    test = InferenceSettings(mode=mode, test_size=(24, 40), multi_scale_flip=ms_flip, **slide)
    class_scores(model, torch.zeros(1, 3, 30, 50, dtype=torch.uint8), test)
    assert forward_sizes(test) == dict(Counter(model.seen))


def test_each_architecture_and_size_is_cross_checked_once(monkeypatch):
    monkeypatch.setattr(complexity, "_SHARED", {})
    calls = []
    real = complexity.fvcore_macs
    monkeypatch.setattr(complexity, "fvcore_macs", lambda *args: calls.append(1) or real(*args))
    test = InferenceSettings(test_size=(16, 24))
    first = count_macs_as_tested(TinySegmentor(4), test, shared_as="tiny-4")
    again = count_macs_as_tested(TinySegmentor(4), test, shared_as="tiny-4")
    other_size = count_macs_as_tested(TinySegmentor(4), InferenceSettings(test_size=(8, 8)), shared_as="tiny-4")
    assert len(calls) == 2 and first == again and first["fvcore"] == first["per_forward"] == _tiny_hand(16, 24)
    assert other_size["per_forward"] == _tiny_hand(8, 8)


TWINS = """\
Collections:
- Name: Twins
Models:
- Name: twin_{i}
  In Collection: Twins
  Build:
    callable: toy_models:tiny_segmentor
    kwargs: {{num_classes: 3}}
  Test:
    size: [32, 64]
    mode: slide
    crop: [16, 32]
    stride: [12, 24]
"""


def test_a_sweep_records_macs_per_image_and_counts_a_shared_architecture_once(tmp_path, synthetic_cityscapes, monkeypatch):
    from segbench.cli import main
    from segbench.report import load_frame, render_markdown

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "twins.yaml").write_text(TWINS.format(i="a") + TWINS.format(i="b").split("Models:\n", 1)[1])
    monkeypatch.setattr(complexity, "_SHARED", {})
    calls = []
    real = complexity.fvcore_macs
    monkeypatch.setattr(complexity, "fvcore_macs", lambda *args: calls.append(1) or real(*args))
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(zoo), "--output", str(out), "--device", "cpu", "--images", "1", "--warmup", "0",
                 "--data-root", str(synthetic_cityscapes), "--ms-flip", "--no-report"]) == 0  # fmt: skip
    assert len(calls) == 1  # one architecture at one forward size: fvcore ran once for both entries
    # rows: (32-16+11)//12+1 = 3 windows, cols: (64-32+23)//24+1 = 3 windows, each 16x32
    per_forward = 8 * 16 * (8 * 3 * 9 + 3 * 8)
    scales = [(int(32 * s + 0.5), int(64 * s + 0.5)) for s in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
    windows = [(max(h - 16 + 11, 0) // 12 + 1) * (max(w - 32 + 23, 0) // 24 + 1) for h, w in scales]
    crops = [(min(h, 16), min(w, 32)) for h, w in scales]
    for name in ("twin_a", "twin_b"):
        macs = json.loads(next((out / "results").glob(f"*/{name}.json")).read_text())["macs"]
        assert macs["forward_size"] == [16, 32] and macs["forwards_per_image"] == 9
        assert macs["per_forward"] == per_forward and macs["per_image"] == 9 * per_forward
        assert macs["fvcore"] == per_forward and macs["cross_check_device"] == "cpu"
        assert macs["ms_flip"]["per_image"] == sum(
            2 * n * math.ceil(h / 2) * math.ceil(w / 2) * (8 * 3 * 9 + 3 * 8) for n, (h, w) in zip(windows, crops)
        )
    frame = load_frame(out / "results", zoo)
    assert list(frame["gmacs"]) == [9 * per_forward / 1e9] * 2  # the page's MACs are per image, as timed
    assert "| MACs/image (G) |" in render_markdown(frame)


def test_a_record_counted_before_per_image_macs_is_not_reused(toy_zoo, tmp_path):
    from segbench.cli import main

    args = ["bench", "--zoo", str(toy_zoo), "--output", str(tmp_path), "--models", "toy_a", "--device", "cpu",
            "--images", "1", "--warmup", "0", "--no-report"]  # fmt: skip
    assert main(args) == 0
    (path,) = (tmp_path / "results").glob("*/toy_a.json")
    record = json.loads(path.read_text())
    old = {k: v for k, v in record["macs"].items() if k in ("input_size", "fvcore", "thop")}
    (tmp_path / "results" / "other-hardware").mkdir()
    (tmp_path / "results" / "other-hardware" / "toy_a.json").write_text(json.dumps(record | {"macs": old}))
    path.unlink()
    assert main(args) == 0
    macs = json.loads(path.read_text())["macs"]
    assert "reused_from" not in macs and macs["per_image"] == _tiny_hand(32, 64)
