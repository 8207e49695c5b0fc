"""PaddleSeg's U-Net-style and light families in PaddleSeg 2.8's layout: state_dicts and parameter
counts equal PaddleSeg's (tests/data/paddleseg-keys), logits come out at the input's resolution as
PaddleSeg's do, and the Paddle behaviours they rely on match hand computations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmseg_reference import logits_on_a_random_image
from paddle_reference import PARAMS, assert_matches_paddleseg
from segbench.layers.paddle_conv import PaddleConv
from segbench.models import architecture_builder
from segbench.models.hardnet import harmonic_link
from segbench.models.pp_humanseg_lite import channel_shuffle

# PaddleSeg config -> (segbench architecture, kwargs): one reference file per family
CONFIGS = {
    "unet_cityscapes_1024x512_160k": ("unet_paddleseg", {"num_classes": 19}),
    "attention_unet_cityscapes_1024x512_80k": ("attention_unet", {"num_classes": 19}),
    "unet_plusplus_cityscapes_1024x512_160k": ("unet_plusplus", {"num_classes": 19}),
    "unet_3plus_cityscapes_1024x512_160k": ("unet_3plus", {"num_classes": 19}),
    "u2net_cityscapes_1024x512_160k": ("u2net", {"num_classes": 19}),
    "u2netp_cityscapes_1024x512_160k": ("u2netp", {"num_classes": 19}),
    "hardnet_cityscapes_1024x1024_160k": ("hardnet", {"num_classes": 19}),
    "enet_cityscapes_1024x512_80k": ("enet", {"num_classes": 19}),
    "espnetv1_cityscapes_1024x512_120k": ("espnetv1", {"num_classes": 19}),
    "espnet_cityscapes_1024x512_120k": ("espnetv2", {"num_classes": 19}),
    "segnet_cityscapes_1024x512_80k": ("segnet", {"num_classes": 19}),
    "portraitnet_eg1800_224x224_46k": ("portraitnet", {"num_classes": 2}),
    "portraitnet_supervisely_224x224_60k": ("portraitnet", {"num_classes": 2}),
    "pp_humanseg_lite_mini_supervisely": ("pp_humanseg_lite", {"num_classes": 2}),
}


def kwargs_of(architecture: str) -> dict:
    return next(kwargs for name, kwargs in CONFIGS.values() if name == architecture)


@pytest.mark.parametrize("config", CONFIGS)
def test_state_dict_and_parameter_counts_equal_paddleseg(config):
    architecture, kwargs = CONFIGS[config]
    assert_matches_paddleseg(architecture_builder(architecture)(**kwargs), config)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("config", CONFIGS)
def test_logits_at_the_input_resolution_as_paddleseg(config):
    """PaddleSeg's eval forward on 1x3x256x512 gives its logits at 256x512 first (U²-Net appends
    its side outputs); ours do the same, checked on a smaller image."""
    architecture, kwargs = CONFIGS[config]
    assert PARAMS[config]["output_shapes"][0] == [1, kwargs["num_classes"], 256, 512]
    _, image, logits = logits_on_a_random_image(architecture, kwargs, (64, 128))
    assert logits.shape == (1, kwargs["num_classes"], 64, 128)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("architecture", sorted({a for a, _ in CONFIGS.values()}))
def test_runs_on_the_meta_device(architecture):
    """MACs are counted on the meta device: no data-dependent control flow in any forward."""
    kwargs = kwargs_of(architecture)
    with torch.device("meta"):
        model = architecture_builder(architecture)(**kwargs).eval()
        logits = model(torch.empty(1, 3, 64, 128))
    assert logits.shape == (1, kwargs["num_classes"], 64, 128)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("architecture", ["pp_humanseg_lite", "espnetv1", "espnetv2"])
def test_layers_paddleseg_never_runs_change_nothing_and_stay_frozen(architecture):
    """The weights left out of params_inference (PaddleSeg saves them, its forward skips them):
    changing them leaves the logits bit-identical, and no training step would update them."""
    model, image, logits = logits_on_a_random_image(architecture, kwargs_of(architecture))
    prefixes = model.never_run
    unused = [(name, p) for name, p in model.named_parameters() if name.startswith(prefixes)]
    assert unused and all(not p.requires_grad for _, p in unused)
    with torch.no_grad():
        for _, p in unused:
            p.add_(1.0)
        assert torch.equal(model(image), logits)


def test_strided_same_padding_pads_bottom_right_as_paddle():
    """Paddle's padding='same' on a 3x3 stride-2 conv over 4x4: out = ceil(4/2) = 2, the one
    padding pixel after (TensorFlow's rule), not PyTorch's padding=1 on both sides. Summing ones,
    each output counts the real pixels its window covers: 9, 6 / 6, 4 (symmetric padding: 4, 6 / 6, 9)."""
    conv = PaddleConv(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, 4, 4))
    assert out[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]
    assert conv(torch.ones(1, 1, 5, 5))[0, 0].tolist() == [[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]]  # odd: 1 each side


def test_espnetv2_same_average_pool_excludes_its_padding():
    """ESPNetV2's pyramid pools 3x3, stride 2, padding='same', Paddle's exclusive mean: on a 4x4
    arange the bottom/right windows average only their real pixels (hand-computed means)."""
    from segbench.models.espnetv2 import same_avg_pool

    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert same_avg_pool(x)[0, 0].tolist() == [[5.0, 6.5], [11.0, 12.5]]


def test_harmonic_dense_links_follow_the_paper():
    """HarDNet: layer k reads layers k - 2^i for every 2^i dividing k; growth 10 x 1.7^(links-1)
    rounded to even. Layer 4 of a block on 48 channels reads 0, 2, 3 (48 + 18 + 10 channels) and
    has 28 (10 x 1.7^2 = 28.9); layer 8 reads 0, 4, 6, 7."""
    assert harmonic_link(4, 48, 10, 1.7) == (28, 76, [0, 2, 3])
    assert harmonic_link(8, 48, 10, 1.7)[2] == [0, 4, 6, 7]
    assert harmonic_link(1, 48, 10, 1.7) == (10, 48, [0])


def test_pp_humanseg_lite_shuffles_channels_of_two_groups():
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    assert channel_shuffle(x).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_unet_classifier_is_saved_twice_but_counted_once():
    """PaddleSeg's UNet binds its classifier as `cls` and `conv`: both keys, one tensor."""
    model = architecture_builder("unet_paddleseg")(num_classes=19)
    state = model.state_dict()
    assert state["cls.weight"].data_ptr() == state["conv.weight"].data_ptr()


@pytest.mark.parametrize(
    "entry, config",
    [("sfnet_resnet18_os8_cityscapes_1024x1024_80k", "sfnet_resnet18_os8_cityscapes_1024x1024_80k"),
     ("hardnet_cityscapes_1024x1024_160k", "hardnet_cityscapes_1024x1024_160k"),
     ("unet_cityscapes_1024x512_160k", "unet_cityscapes_1024x512_160k"),
     ("human_pp_humansegv1_lite_192x192", "pp_humanseg_lite_mini_supervisely")],
)  # fmt: skip
def test_paddleseg_entries_show_params_as_paddleseg_publishes_them(entry, config, tmp_path):
    """PaddleSeg's Params(M) count BatchNorm statistics (its params_inference in the reference, built by Paddle):
    a PaddleSeg entry's page row shows inference parameters + the BN statistics of the inference graph, marked."""
    from segbench.build import build_model
    from segbench.complexity import count_params
    from segbench.formatting import fixed
    from segbench.manifest import load_zoo
    from segbench.records import write_record
    from segbench.report import load_frame, render_markdown

    zoo = Path(__file__).resolve().parent.parent / "zoo"
    (spec,) = [s for s in load_zoo(zoo) if s.name == entry]
    params = count_params(build_model(spec, device="meta"))
    assert params["inference"] + params["norm_statistics"] == PARAMS[config]["params_inference"]
    record = {"schema_version": 1, "status": "ok", "model": entry, "params": params,
              "environment": {"hardware": "cpu-x", "device_type": "cpu", "cpu": "x", "torch": "2.13.0", "date": "2026-11-30"},
              "settings": {"input_size": [64, 64], "images": 1, "warmup": 1, "batch_size": 1, "dtype": "float32",
                           "input": "synthetic", "weights": "random-init", "measure": ["params"]}}  # fmt: skip
    write_record(tmp_path / "results" / "cpu-x" / f"{entry}.json", record)
    frame = load_frame(tmp_path / "results", zoo, models=[entry])
    (row,) = frame.to_dict("records")
    assert row["params_m"] == pytest.approx(PARAMS[config]["params_inference"] / 1e6, rel=1e-12)
    assert row["params_counts_norm_statistics"]
    assert f"| {fixed(PARAMS[config]['params_inference'] / 1e6, 2)}† |" in render_markdown(frame)
