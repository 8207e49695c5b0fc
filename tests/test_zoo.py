"""The shipped zoo: every manifest validates, every distinct build runs, and mmseg entries match mmseg."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mmseg_reference import REFERENCE, reference_shapes
from segbench import complexity
from segbench.build import build_model, model_builder
from segbench.cli import main
from segbench.fold import TOLERANCE, fold_batchnorm
from segbench.layers.conv import ConvBNReLU
from segbench.layers.paddle_conv import PaddleConvBN, PaddleConvBNPReLU, PaddleConvBNReLU
from segbench.manifest import load_zoo
from segbench.models.backbones.mit import DropPath
from segbench.training import training_loss, training_outputs, training_precision
from toy_models import randomize_batchnorms

ZOO = Path(__file__).resolve().parent.parent / "zoo"
SPECS = load_zoo(ZOO)


def build_key(spec) -> str:
    return json.dumps(spec.build.as_dict(), sort_keys=True)


# one representative entry per distinct Build, and every entry sharing it
BUILDS: dict[str, list] = {}
for _spec in SPECS:
    BUILDS.setdefault(build_key(_spec), []).append(_spec)


def reference_config(name: str) -> str | None:
    """The mmseg-keys file an entry's model must equal: its own, or that of the same model at 80k iters."""
    for candidate in (name, re.sub(r"-(?:amp-)?\d+k_", "-80k_", name)):
        if (REFERENCE / f"{candidate}.keys.txt").is_file():
            return candidate
    return None


def test_validate_accepts_the_shipped_zoo(capsys):
    assert main(["validate", "--zoo", str(ZOO)]) == 0
    assert f"{len(SPECS)} model(s)" in capsys.readouterr().out
    for spec in SPECS:
        model_builder(spec)


UNREPORTED = {"swin_transformer_mla_base_patch4_window7_160k_autonue"}  # PaddleSeg publishes no mIoU (nor weights) for it


def test_every_entry_reports_an_miou_with_its_source():
    for spec in SPECS:
        assert bool(spec.reported) is (spec.name not in UNREPORTED), spec.name
        for result in spec.reported:
            assert result.miou is not None and 0 < result.miou < 100, spec.name
            assert result.source, spec.name


def test_test_settings_follow_the_training_crop():
    """769x769 models slide as mmseg tests them (on the 1025x2049 resize); SegFormer's 1024x1024
    ones slide at 1024x2048 with stride 768 (its configs' test_cfg); 512x1024 ones run whole."""
    for spec in SPECS:
        if spec.build.architecture == "segformer_mit" and spec.crop_size == (1024, 1024):
            slide = (spec.test.mode, spec.test.size, spec.test.crop, spec.test.stride, spec.test.align_corners)
            assert slide == ("slide", (1024, 2048), (1024, 1024), (768, 768), False), spec.name
        elif spec.crop_size == (769, 769):
            assert spec.test.mode == "slide" and spec.test.align_corners, spec.name
            slide = (spec.test.size, spec.test.crop, spec.test.stride)
            assert slide == ((1025, 2049), (769, 769), (513, 513)), spec.name
            assert spec.build.kwargs["align_corners"] is True, spec.name
        elif spec.build.architecture == "setr_vit":  # 768x768 crops slide on the 1025x2049 resize (its test_cfg)
            slide = (spec.test.mode, spec.test.size, spec.test.crop, spec.test.stride, spec.test.align_corners)
            assert slide == ("slide", (1025, 2049), (768, 768), (512, 512), False), spec.name
        elif spec.build.architecture == "segmenter_vit":  # ADE20K: one crop, slid as its test_cfg says
            crop, stride = ((640, 640), (608, 608)) if spec.build.kwargs["variant"] == "l" else ((512, 512), (480, 480))
            slide = (spec.test.mode, spec.test.size, spec.test.crop, spec.test.stride, spec.test.align_corners)
            assert slide == ("slide", crop, crop, stride, False) and spec.crop_size == crop, spec.name
        else:
            # STDC's and PIDNet's decode heads resize with align_corners=True (their configs), which mmseg's resize to the image follows;
            # so do PaddleSeg's GINet configs
            align_corners = spec.build.architecture in ("stdc", "ginet_resnet_vd") or spec.family == "pidnet"
            assert spec.test.mode == "whole" and spec.test.align_corners is align_corners, spec.name
            assert spec.build.kwargs.get("align_corners", False) is align_corners, spec.name
        if spec.reported and spec.reported[0].dataset == "ADE20K":  # segbench times one crop of the varying-size images
            assert spec.test.size == spec.crop_size, spec.name
        paddleseg_sized = "PaddlePaddle/PaddleSeg" in (spec.config or "")  # its scale and AutoNUE configs resize the test image
        if (spec.crop_size == (512, 1024) and not paddleseg_sized) or spec.family == "company":
            assert spec.test.size == (1024, 2048), spec.name


def test_mmseg_entries_point_at_mmseg_v1_2_2():
    for spec in SPECS:
        if spec.reported and spec.reported[0].source.startswith("mmsegmentation"):
            base = "https://github.com/open-mmlab/mmsegmentation/blob/v1.2.2/configs/"
            assert spec.config == f"{base}{spec.reported[0].source.split('/')[1]}/{spec.name}.py", spec.name
            assert spec.weights.startswith("https://download.openmmlab.com/mmsegmentation/"), spec.name
            assert spec.build.kwargs["num_classes"] == {"Cityscapes": 19, "ADE20K": 150}[spec.reported[0].dataset], spec.name


def test_company_entries_carry_no_internal_urls():
    for path in ZOO.glob("*.yaml"):
        assert "sensetime" not in path.read_text().lower(), path
    assert all(s.weights is None for s in SPECS if s.family == "company")


def test_every_mmseg_key_reference_but_upernet_r18_is_covered():
    covered = {reference_config(s.name) for s in SPECS} - {None}
    references = {p.name.removesuffix(".keys.txt") for p in REFERENCE.glob("*.keys.txt")}
    assert references - covered == {"upernet_r18_4xb2-80k_cityscapes-512x1024"}  # not in mmseg's metafile


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("key", sorted(BUILDS), ids=lambda key: BUILDS[key][0].name)
def test_every_distinct_build_runs_and_matches_mmseg_keys(key):
    specs = BUILDS[key]
    torch.manual_seed(0)
    model = build_model(specs[0])
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 128))
    assert logits.shape[:2] == (1, specs[0].build.kwargs["num_classes"])
    assert torch.isfinite(logits).all()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for config in {reference_config(s.name) for s in specs} - {None}:
        assert ours == reference_shapes(config), config


# the smallest entry of each architecture, for the training-step check
SMALLEST = {}
for _spec in sorted(SPECS, key=lambda s: (s.build.kwargs.get("depth", 0), s.name)):
    SMALLEST.setdefault(_spec.build.architecture, _spec)


@pytest.mark.parametrize("spec", SMALLEST.values(), ids=list(SMALLEST))
def test_every_architecture_builds_and_counts_on_the_meta_device(spec):
    """As `segbench profile` builds and counts a model: nothing in a builder may need real values.
    segbench's meta counter counts what torch's FlopCounterMode counts, op for op and module for module."""
    model = build_model(spec, device="meta")
    ours = complexity._meta_flops(model, (64, 128))  # raises where the model cannot run on meta
    assert sum(ours[""].values()) > 0
    reference = FlopCounterMode(display=False, custom_mapping=complexity._FLOP_FORMULAS)
    with complexity._quiet_counting(), reference:
        model.eval()(torch.empty(1, 3, 64, 128, device="meta"))
    root = type(model).__name__ + "."
    expected = {name.removeprefix(root) if name != "Global" else "": {str(op): n for op, n in ops.items()}
                for name, ops in reference.get_flop_counts().items() if name == "Global" or name.startswith(root)}  # fmt: skip
    assert ours == expected


# blocks whose forward runs their conv, then their norm on its output alone
NORM_OF_BLOCK = {ConvBNReLU: "bn", **{block: "_batch_norm" for block in (PaddleConvBN, PaddleConvBNReLU, PaddleConvBNPReLU)}}


def batchnorms(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("spec", SMALLEST.values(), ids=list(SMALLEST))
def test_folding_batchnorm_keeps_every_architectures_logits(spec):
    """Folded logits equal the unfolded ones within TOLERANCE x their largest magnitude (fp32), with BatchNorm
    statistics and affine parameters away from (0, 1) so that the fold has something to get wrong. Every norm is
    folded or counted as left, and every conv-then-norm block that ran once lost its norm: folding cannot silently do nothing."""
    torch.manual_seed(0)
    model = randomize_batchnorms(build_model(spec)).eval()
    blocks = [m for m in model.modules() if type(m) in NORM_OF_BLOCK]
    runs = Counter()
    hooks = [block.register_forward_hook(lambda module, args, output: runs.update([id(module)])) for block in blocks]
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        reference = model(x)
    for hook in hooks:
        hook.remove()
    norms = batchnorms(model)

    report = fold_batchnorm(model, x)

    with torch.no_grad():
        folded = model(x)
    assert (folded - reference).abs().max() <= TOLERANCE * reference.abs().max()
    assert report["folded"] + report["left"] == norms and batchnorms(model) == report["left"]
    assert report["folded"] > 0 or norms == 0
    unfolded = [b for b in blocks if runs[id(b)] == 1 and not isinstance(getattr(b, NORM_OF_BLOCK[type(b)]), torch.nn.Identity)]
    assert unfolded == []


# Parameters whose training gradient is zero in mmseg's model too: BiSeNetV2's context-embedding
# block batch-normalizes its pooled 1x1 map twice (gap BN, then conv_gap's BN), so the second BN
# removes any shift the first one's bias adds (it still acts at inference, through running stats).
# SETR-MLA's ViT (with_cls_token=False) drops the class token right after the position embedding,
# as mmseg's does: the token is there so checkpoints load.
ZERO_GRADIENT = {"backbone.semantic.stage4_CEBlock.gap.1.bias", "backbone.cls_token"}
# PaddleSeg's GINet starts gamma_vis at zero, so the class nodes (an all-zero fixed embedding through
# fc1, fc2, the word GCN and the graph transfer) reach the pixels only once a step has moved it.
ZERO_GRADIENT |= {f"head.fc{i}.{j}.{p}" for i in (1, 2) for j in (0, 1) for p in ("weight", "bias")}
ZERO_GRADIENT |= {f"head.gloru.graph.{name}" for name in (
    "word_gcn.conv1.weight", "word_gcn.conv1.bias", "word_gcn.conv2.weight",
    *(f"transfer.{conv}.{p}" for conv in ("query_conv", "key_conv", "value_conv_word") for p in ("weight", "bias")),
)}  # fmt: skip


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("spec", SMALLEST.values(), ids=list(SMALLEST))
def test_a_training_step_reaches_every_parameter(spec):
    """Training memory and s/iter assume the step of mmseg: decode and auxiliary heads both trained.
    A parameter without a gradient would mean a head left out (or dead weights in the model).
    Seeded: drop-path (ViT, MiT) may drop a block's branch for the whole batch, and zero its grads."""
    torch.manual_seed(0)
    model = build_model(spec).train()
    for module in model.modules():  # drop-path zeroes whole branches at random: reachability is about structure
        if isinstance(module, DropPath):
            module.eval()
    labels = torch.randint(0, spec.build.kwargs["num_classes"], (2, 64, 128))
    labels[:, :8] = 255
    loss = training_loss(model, torch.randn(2, 3, 64, 128), labels)
    loss.backward()
    assert torch.isfinite(loss)
    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]  # STDC's fusion kernel, never-run layers are fixed
    assert [name for name, p in trained if p.grad is None] == []
    assert [name for name, p in trained if not p.grad.abs().sum() and name not in ZERO_GRADIENT] == []
    with torch.no_grad():
        heads = training_outputs(model.eval(), torch.randn(1, 3, 64, 128))
    auxiliary = getattr(model, "auxiliary_head", None)  # one head, or mmseg's list of them
    assert len(heads) == 1 + (len(auxiliary) if isinstance(auxiliary, torch.nn.ModuleList) else auxiliary is not None)


def test_mixed_precision_entries_train_in_fp16():
    """mmseg's '-amp-' configs report Mem (GB) of an fp16-autocast step; the rest of an fp32 one."""
    fp16 = sorted(s.name for s in SPECS if training_precision(s)[0] == "fp16")
    assert fp16 == sorted(s.name for s in SPECS if "-amp-" in s.name) and len(fp16) == 5
    assert {training_precision(s)[1] for s in SPECS if s.name in fp16} == {"Metadata.Architecture"}
