"""The company zoo's DFNet backbones, df_seg and sf_seg: parameter counts equal the hand counts of
the reference notes (../shared/reference/company/NOTES.md), the features come from where the
company's code takes them, its quirks (the padded PPM bottleneck, 1x1 blocks in sf_seg's head),
and the zoo rows of the seed table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from segbench.complexity import count_macs, count_params
from segbench.manifest import load_zoo
from segbench.models import architecture_builder
from segbench.models.backbones.dfnet import DFNet
from segbench.models.company_dfnet import PaddedBottleneckPPM

ZOO = Path(__file__).resolve().parent.parent / "zoo"

# (architecture, version) -> (trainable parameters, BN running statistics), by hand in the notes
HAND_COUNTS = {
    ("df_seg", 1): (9_370_931, 11_328),
    ("df_seg", 2): (18_825_011, 20_032),
    ("sf_seg", 1): (8_587_059, 12_096),
    ("sf_seg", 2): (18_041_139, 20_800),
}
BACKBONE_COUNTS = {1: (8_020_128, 9_536), 2: (17_474_208, 18_240)}


def statistics(model: nn.Module) -> int:
    return sum(2 * m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("key", sorted(HAND_COUNTS), ids=lambda key: f"{key[0]}_v{key[1]}")
def test_params_equal_the_hand_counts(key):
    architecture, version = key
    model = architecture_builder(architecture)(version=version, num_classes=19)
    assert (sum(p.numel() for p in model.parameters()), statistics(model)) == HAND_COUNTS[key]
    trainable, bn_statistics = HAND_COUNTS[key]  # no auxiliary head: all of it is inference
    assert count_params(model) == {"total": trainable, "inference": trainable, "norm_statistics": bn_statistics}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("version", [1, 2])
def test_dfnet_counts_and_the_strides_of_its_three_features(version):
    backbone = DFNet(version)
    assert (sum(p.numel() for p in backbone.parameters()), statistics(backbone)) == BACKBONE_COUNTS[version]
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 128))
    strides = {1: (16, 32, 32), 2: (8, 16, 32)}[version]  # DFNet1's finest feature is at stride 16
    assert [f.shape[1:] for f in features] == [(c, 64 // s, 128 // s) for c, s in zip((128, 256, 512), strides)]


def test_ppm_bottleneck_pads_a_frame_of_batchnorm_constants():
    """The company's 1x1 bottleneck conv has padding=1: the output is 2 px larger each way, and
    its frame is ReLU(BN(0)) = ReLU(bias - mean * weight / sqrt(var + eps)) per channel."""
    torch.manual_seed(0)
    ppm = PaddedBottleneckPPM(8, 4).eval()
    bn = ppm.bottleneck[1]
    bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.data.normal_(), bn.bias.data.normal_()
    with torch.no_grad():
        out = ppm(torch.randn(1, 8, 6, 9))
        frame = torch.relu(bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps))
    assert out.shape == (1, 4, 8, 11)
    for border in (out[0, :, 0, :], out[0, :, -1, :], out[0, :, :, 0], out[0, :, :, -1]):
        assert torch.allclose(border, frame[:, None].expand_as(border), atol=1e-6)


def test_sf_seg_uses_1x1_blocks_where_sfnet_has_3x3():
    head = architecture_builder("sf_seg")(version=1).decoder.head
    assert head.fpn_out[0][0].conv.kernel_size == (1, 1) and head.conv_last[0].conv.kernel_size == (1, 1)
    assert not head.fpn_out_align[0].grid_align_corners


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("architecture", ["df_seg", "sf_seg"])
def test_logits_at_the_input_size_and_macs_on_the_meta_device(architecture):
    model = architecture_builder(architecture)(version=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 50, 70)).shape == (1, 19, 50, 70)
    assert count_macs(model, (64, 128), cross_check=False)["primary"] == "flop_counter"


# The seed table's DF/SF rows: name -> (reported mIoU, EMA)
SEED_ROWS = {
    "company_df_seg_v1_lightseg": (70.62, False), "company_df_seg_v1": (71.8, False),
    "company_df_seg_v1_mseg_pretrain": (72.8, False), "company_df_seg_v1_ema": (71.6, True),
    "company_df_seg_v2_lightseg": (75.44, False), "company_df_seg_v2": (74.6, False), "company_df_seg_v2_ema": (76.2, True),
    "company_sf_seg_v1_lightseg": (72.11, False), "company_sf_seg_v1": (72.5, False), "company_sf_seg_v1_ema": (72.96, True),
    "company_sf_seg_v2_lightseg": (76.5, False), "company_sf_seg_v2": (76.5, False), "company_sf_seg_v2_ema": (77.4, True),
}  # fmt: skip


def test_the_seed_rows_are_reported_entries_on_these_architectures():
    entries = {s.name: s for s in load_zoo(ZOO) if s.build.architecture in ("df_seg", "sf_seg")}
    assert sorted(entries) == sorted(SEED_ROWS)
    for name, (miou, ema) in SEED_ROWS.items():
        spec = entries[name]
        assert (spec.reported[0].miou, spec.ema, spec.weights, spec.batch_size) == (miou, ema, None, 16), name
        assert spec.build.architecture == name.split("_v")[0].removeprefix("company_"), name
        assert spec.build.kwargs["version"] == int(name.split("_v")[1][0]), name
        assert (spec.test.mode, spec.test.size) == ("whole", (1024, 2048)), name
