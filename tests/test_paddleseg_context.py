"""PaddleSeg's ResNet_vd context families (GloRe, GINet, PFPNet, DecoupledSegNet,
GSCNN) in its layout: keys, shapes and
parameter counts equal PaddleSeg 2.8's after the `paddleseg` adapter, logits equal PaddleSeg's own
on small heads it built and saved, auxiliary and unused layers stay out of the inference forward
and its count, output shapes, and the zoo entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from paddle_reference import PARAMS, REFERENCE, assert_matches_paddleseg, paddle_param_counts
from segbench.checkpoint import load_checkpoint
from segbench.complexity import count_macs
from segbench.manifest import load_zoo
from segbench.models import architecture_builder
from segbench.models.backbones.resnet_vd import ConvBN
from segbench.models.decoupled_segnet import SamePaddedConvBN
from segbench.models.ginet import GIHead, JointPyramidUpsampling
from segbench.models.glore import GloReHead
from segbench.models.gscnn import canny
from segbench.models.pfpnet import PFPNHead
from segbench.training import training_outputs

ZOO = Path(__file__).resolve().parent.parent / "zoo"
LOGITS = Path(__file__).parent / "data" / "paddleseg-logits"

# PaddleSeg config -> (segbench architecture, builder arguments)
CONFIGS = {
    "glore_resnet50_os8_cityscapes_1024x512_80k": ("glore_resnet_vd", {"depth": 50}),
    "ginet_resnet50_os8_cityscapes_1024x512_80k": ("ginet_resnet_vd", {"depth": 50, "align_corners": True}),
    "ginet_resnet101_os8_cityscapes_1024x512_80k": ("ginet_resnet_vd", {"depth": 101, "align_corners": True}),
    "pfpn_resnet101_os8_cityscapes_512x1024_40k": ("pfpnet_resnet_vd", {"depth": 101}),
    "decoupledsegnet_resnet50_os8_cityscapes_832x832_80k": ("decoupled_segnet_resnet_vd", {"depth": 50}),
    "gscnn_resnet50_os8_cityscapes_1024x512_80k": ("gscnn_resnet_vd", {"depth": 50}),
}
# zoo configs without a reference file of their own: the same network as one above (training crop only differs)
SAME_NETWORK = {"decoupledsegnet_resnet50_os8_cityscapes_1024x512_80k": ("decoupled_segnet_resnet_vd", {"depth": 50})}

# What PaddleSeg computes in eval only to drop it: the auxiliary heads, and GINet's class-node
# update (its head returns it, GINet discards it). segbench does not run these.
DROPPED_IN_EVAL = {
    "glore_resnet_vd": ("head.auxlayer.",),
    "ginet_resnet_vd": ("auxlayer.", "head.gloru.graph.transfer.value_conv_vis.", "head.gloru.graph.gamma_word"),
    "pfpnet_resnet_vd": (),
    "decoupled_segnet_resnet_vd": ("head.edge_out.", "head.dsn_seg_body."),
    "gscnn_resnet_vd": (),  # its shape stream feeds the logits: everything runs
}


def build(config: str):
    architecture, kwargs = CONFIGS[config]
    torch.manual_seed(0)
    return architecture_builder(architecture)(**kwargs).eval()


def test_every_config_has_its_reference_file():
    assert set(CONFIGS) <= {p.name.removesuffix(".keys.txt") for p in REFERENCE.glob("*.keys.txt")} & set(PARAMS)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_state_dict_and_params_match_paddleseg(config):
    model = build(config)
    assert_matches_paddleseg(model, config, dropped_in_eval=DROPPED_IN_EVAL[CONFIGS[config][0]])
    published = PARAMS[config]["published_params_m"]
    if published is not None:  # GINet's: params_total (R50) and paddle.flops' leaf-layer count (R101), 2 decimals
        assert abs(paddle_param_counts(model)[0] / 1e6 - published) < 0.01


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_logits_come_back_at_the_input_size(config):
    model = build(config)
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 50, 70))
    assert logits.shape == (1, 19, 50, 70) and torch.isfinite(logits).all()


def _forward_without(model, prefix: str) -> torch.Tensor:
    """The eval forward with the module at `prefix` made to fail if anything calls it."""

    def refuse(*args):
        raise AssertionError(f"{prefix} ran at inference")

    parent_name, _, child = prefix.rpartition(".")
    parent = model.get_submodule(parent_name)
    setattr(parent, child, torch.nn.Identity())
    getattr(parent, child).forward = refuse
    with torch.no_grad():
        return model(torch.randn(1, 3, 32, 48))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    "architecture, auxiliary",
    [("glore_resnet_vd", "head.auxlayer"), ("ginet_resnet_vd", "auxlayer")],
)
def test_auxiliary_head_trains_with_weight_0_4_and_never_runs_at_inference(architecture, auxiliary):
    torch.manual_seed(0)
    model = architecture_builder(architecture)(depth=18, num_classes=5).train()
    for module in model.modules():  # the training branches, with deterministic layers
        if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)):
            module.eval()
    images = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        (main, w_main), (aux, w_aux) = training_outputs(model, images)
        stage3 = model.backbone(images)[2]
        expected = torch.nn.functional.interpolate(
            model.get_submodule(auxiliary)(stage3), size=(32, 48), mode="bilinear", align_corners=model.align_corners
        )
    assert (w_main, w_aux) == (1.0, 0.4) and aux.shape == main.shape == (2, 5, 32, 48)
    assert torch.allclose(aux, expected, atol=1e-5)
    model.eval()
    assert _forward_without(model, auxiliary).shape == (1, 5, 32, 48)


@pytest.mark.usefixtures("one_thread")
def test_pfpnets_unused_layers_are_out_of_the_forward_and_its_macs():
    """PaddleSeg's PFPN head holds a 4th fpn_out, a 4th scale head and conv_last that no forward
    uses: replacing them with layers that refuse to run changes nothing, and the MACs equal a
    count of the used layers only."""
    torch.manual_seed(0)
    model = architecture_builder("pfpnet_resnet_vd")(depth=18, num_classes=5).eval()
    macs = count_macs(model, (64, 128), cross_check=False)
    assert macs["primary"] == "flop_counter"
    with torch.no_grad():
        before = model(torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(1)))
    for prefix in ("head.fpn_out.3", "head.scale_heads.3", "head.conv_last"):
        parent_name, _, child = prefix.rpartition(".")
        parent = model.get_submodule(parent_name)
        refusing = torch.nn.Identity()
        refusing.forward = lambda *a, p=prefix: (_ for _ in ()).throw(AssertionError(f"{p} ran"))
        if isinstance(parent, torch.nn.ModuleList):
            parent[int(child)] = refusing
        else:
            setattr(parent, child, refusing)
    with torch.no_grad():
        after = model(torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(before, after)
    assert count_macs(model, (64, 128), cross_check=False)["per_forward"] == macs["per_forward"]


@pytest.mark.usefixtures("one_thread")
def test_decoupled_segnet_trains_body_and_edge_heads_and_runs_neither_at_inference():
    torch.manual_seed(0)
    model = architecture_builder("decoupled_segnet_resnet_vd")(depth=18, num_classes=5).train()
    outputs = training_outputs(model, torch.randn(2, 3, 32, 48))
    assert [(tuple(x.shape), w) for x, w in outputs] == [((2, 5, 32, 48), 1.0), ((2, 5, 32, 48), 1.0), ((2, 1, 32, 48), 25.0)]
    model.eval()
    _forward_without(model, "head.edge_out")
    assert _forward_without(model, "head.dsn_seg_body").shape == (1, 5, 32, 48)


def test_same_padding_at_stride_2_pads_an_even_side_at_the_end_only():
    """Paddle's padding='same' (TF's): a 3x3 stride-2 conv on 4 rows pads 0 above and 1 below, on 5
    rows 1 and 1. All-ones input and kernel: each output counts the real pixels in its window."""
    conv = SamePaddedConvBN(1, 1, 3, stride=2).eval()
    torch.nn.init.ones_(conv._conv.weight)
    with torch.no_grad():
        even = conv(torch.ones(1, 1, 4, 4))[0, 0]
        odd = conv(torch.ones(1, 1, 5, 5))[0, 0]
    scale = 1 / (1 + conv._batch_norm.eps) ** 0.5  # BatchNorm at its initial statistics
    assert torch.allclose(even, scale * torch.tensor([[9.0, 6.0], [6.0, 4.0]]))
    assert torch.allclose(odd, scale * torch.tensor([[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]]))
    assert isinstance(conv, ConvBN) and conv._conv.padding == (0, 0)


@pytest.mark.parametrize("image", ["smooth", "levels", "noise", "chain"])
def test_canny_equals_opencvs(image):
    """GSCNN's Canny edges (cv2.Canny(image, 10, 100), as PaddleSeg computes them at inference) on
    four uint8 RGB images, against OpenCV 5.0's own output saved with them: smooth waves, four grey
    levels per channel (ties between channels and between neighbours), noise, and a step strong in
    its top rows and weak below beside a weak step alone (the hysteresis keeps the first whole and
    drops the second)."""
    data = np.load(LOGITS / "canny.npz", allow_pickle=False)
    pixels = torch.from_numpy(data[f"{image}_image"]).permute(2, 0, 1)[None]
    expected = torch.from_numpy(data[f"{image}_edges"] / 255).float()
    assert torch.equal(canny(pixels)[0, 0], expected)


def test_gscnn_counts_macs_on_the_meta_device():
    torch.manual_seed(0)
    model = architecture_builder("gscnn_resnet_vd")(depth=18, num_classes=5)
    assert count_macs(model, (64, 128), cross_check=False)["primary"] == "flop_counter"


def _paddle_fixture(module: torch.nn.Module, name: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    load_checkpoint(module, LOGITS / f"{name}.pdparams", model_name=name, adapter="paddleseg")
    data = np.load(LOGITS / f"{name}.npz", allow_pickle=False)
    features = [torch.from_numpy(data[f"feature{i}"]) for i in range(len(data.files) - 1)]
    return features, torch.from_numpy(data["logits"])


def _close(ours: torch.Tensor, paddle: torch.Tensor) -> bool:
    """Equal to float32 rounding: random weights give logits far from 1, so relative to the largest."""
    return ours.shape == paddle.shape and bool((ours - paddle).abs().max() <= 1e-5 * paddle.abs().max())


def test_glore_head_logits_equal_paddlesegs_from_its_own_pdparams():
    """A GloReHead (16 input channels, 3 classes) built, randomized and saved by PaddleSeg 2.8 on
    paddle 3.3.1 (tests/data/paddleseg-logits/README.md): its unit's BN eps 1e-4, GCN order, no
    node normalization."""
    head = GloReHead(16, 8, 3).eval()
    (_, feature), expected = _paddle_fixture(head, "glore_head")
    with torch.no_grad():
        assert _close(head(feature), expected)


def test_ginet_jpu_and_head_logits_equal_paddlesegs_from_its_own_pdparams():
    """PaddleSeg's JPU (width 16) and GIHead (3 classes): the separable dilated convs, the
    class-embedding MLP, the graph transfer's softmax axes, gamma_vis."""
    jpu, head = JointPyramidUpsampling([8, 12, 16], width=16).eval(), GIHead(64, 3).eval()
    tail = torch.nn.ModuleDict({"jpu": jpu, "head": head})
    features, expected = _paddle_fixture(tail, "ginet_tail")
    with torch.no_grad():
        assert _close(head(jpu(*features)), expected)


def test_pfpn_head_logits_equal_paddlesegs_from_its_own_pdparams():
    """PaddleSeg's PFPNHead (inplanes 4, 8, 16, 32, 8 channels, 3 classes) on a 1/4 map and three
    1/8 maps, as at output stride 8: the scale heads one level off, the 2x upsamples."""
    head = PFPNHead([4, 8, 16, 32], 8, 3).eval()
    features, expected = _paddle_fixture(head, "pfpn_head")
    with torch.no_grad():
        assert _close(head(features), expected)


ARCHITECTURES = {architecture for architecture, _ in CONFIGS.values()}
ENTRIES = [s for s in load_zoo(ZOO) if s.build.architecture in ARCHITECTURES]


def test_the_zoo_has_every_cityscapes_config_with_paddle_weights():
    configs = {**CONFIGS, **SAME_NETWORK}
    assert sorted(s.name for s in ENTRIES) == sorted(configs)
    for spec in ENTRIES:
        assert configs[spec.name] == (spec.build.architecture, {k: v for k, v in spec.build.kwargs.items() if k != "num_classes"})
        assert spec.weights.endswith(f"/{spec.name}/model.pdparams") and spec.weights_adapter == "paddleseg"
        assert spec.reported[0].source == f"PaddleSeg v2.8.0 configs/{spec.config.split('/')[-2]}/README.md"
        align_corners = spec.build.architecture == "ginet_resnet_vd"  # the GINet configs' align_corners
        assert (spec.test.mode, spec.test.size, spec.test.mean) == ("whole", (1024, 2048), (127.5, 127.5, 127.5))
        assert spec.test.align_corners is align_corners
