"""Published speeds: the manifest field, mmsegmentation 0.x's `inference time (ms/im)`, the zoo's figures, the page's
published column and `plot --published` with its rank correlation."""

import json
from pathlib import Path

import pytest

from segbench.errors import SegbenchError
from segbench.manifest import PublishedSpeed, load_manifest, load_zoo

ROOT = Path(__file__).resolve().parent.parent

ENTRY = """\
Collections:
- Name: Toy
Models:
- Name: toy
  In Collection: Toy
  Metadata:
    Published Speed:
    - {FPS: 50.0, GPU: V100, Backend: PyTorch, Precision: fp32, Input: [512, 1024], Protocol: ddrnet, Source: somebody/repo README.md}
    - {ms/image: 20, GPU: V100, Backend: PyTorch, Precision: fp16, Input: [1024, 2048], Protocol: unspecified, Source: a paper}
  Build:
    callable: toy_models:tiny_segmentor
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(text)
    return path


def test_published_speeds_load_as_given(tmp_path):
    (spec,) = load_manifest(write(tmp_path, ENTRY))
    first, second = spec.published_speeds
    assert first == PublishedSpeed(fps=50.0, ms_per_image=None, gpu="V100", backend="PyTorch", precision="fp32",
                                   input_size=(512, 1024), protocol="ddrnet", source="somebody/repo README.md")  # fmt: skip
    assert first.images_per_second == 50.0 and first.latency_ms == 20.0
    assert second.ms_per_image == 20 and second.images_per_second == 50.0 and second.input_size == (1024, 2048)


@pytest.mark.parametrize(
    "old, new, field, problem",
    [
        ("FPS: 50.0,", "FPS: 50.0, ms/image: 20,", "Metadata.Published Speed[0]", "exactly one of 'FPS' and 'ms/image'"),
        ("FPS: 50.0,", "", "Metadata.Published Speed[0]", "exactly one of 'FPS' and 'ms/image'"),
        ("FPS: 50.0,", "FPS: -3,", "Metadata.Published Speed[0].FPS", "a positive number"),
        ("FPS: 50.0,", "FPS: fast,", "Metadata.Published Speed[0].FPS", "expected an integer or a number"),
        ("ms/image: 20,", "ms/image: 0,", "Metadata.Published Speed[1].ms/image", "a positive number"),
        ("Protocol: ddrnet", "Protocol: ddrnett", "Metadata.Published Speed[0].Protocol", "one of mmseg, ddrnet"),
        ("Precision: fp16", "Precision: half", "Metadata.Published Speed[1].Precision", "one of fp32"),
        ("Input: [512, 1024]", "Input: [512]", "Metadata.Published Speed[0].Input", "[H, W]"),
        (", Source: a paper", "", "Metadata.Published Speed[1].Source", "missing required field"),
        ("GPU: V100, Backend: PyTorch, Precision: fp32", "GPU: '  ', Backend: PyTorch, Precision: fp32",
         "Metadata.Published Speed[0].GPU", "empty"),
        ("GPU: V100, Backend: PyTorch, Precision: fp32", "GPU: V100, Backnd: PyTorch, Precision: fp32",
         "Metadata.Published Speed[0].Backnd", "did you mean 'Backend'"),
        ("    - {ms/image: 20", "    - 7\n    - {ms/image: 20", "Metadata.Published Speed[1]", "expected a mapping"),
        ("    Published Speed:\n", "    Published Speed: {FPS: 5}\n    Architecture:\n", "Metadata.Published Speed", "expected a list"),
    ],
)
def test_a_bad_published_speed_is_one_line_naming_file_model_and_field(tmp_path, old, new, field, problem):
    assert old in ENTRY
    path = write(tmp_path, ENTRY.replace(old, new, 1))
    with pytest.raises(SegbenchError) as info:
        load_manifest(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: model 'toy': field '{field}': "), message
    assert problem in message


MMSEG_0X = """\
Collections:
- Name: ANN
Models:
- Name: ann_r50-d8_512x1024_40k_cityscapes
  In Collection: ANN
  Metadata:
    backbone: R-50-D8
    crop size: (512,1024)
    lr schd: 40000
    inference time (ms/im):
    - value: 269.54
      hardware: V100
      backend: PyTorch
      batch size: 1
      mode: FP32
      resolution: (512,1024)
    Training Memory (GB): 6.0
  Build:
    callable: toy_models:tiny_segmentor
{test}"""
"""An entry as mmsegmentation v0.30.0's configs/ann/ann.yml writes it (its 0.x keys), with a Build section added."""


def test_mmsegmentation_0x_inference_time_becomes_a_published_speed_of_the_test_size(tmp_path):
    text = MMSEG_0X.format(test="  Test: {size: [1025, 2049], mode: slide, crop: [769, 769], stride: [513, 513]}\n")
    (spec,) = load_manifest(write(tmp_path, text.replace("    backbone: R-50-D8\n    crop size: (512,1024)\n    lr schd: 40000\n", "")
                                  .replace("    Training Memory (GB): 6.0\n", "")))  # fmt: skip
    (speed,) = spec.published_speeds
    # 0.x's `resolution` is the training crop; tools/benchmark.py times the test pipeline, so the input is the test size
    assert speed == PublishedSpeed(fps=None, ms_per_image=269.54, gpu="V100", backend="PyTorch", precision="fp32",
                                   input_size=(1025, 2049), protocol="mmseg",
                                   source="mmsegmentation 0.x metafile, inference time (ms/im)")  # fmt: skip
    assert speed.images_per_second == pytest.approx(1000 / 269.54)


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("value: 269.54", "value: -1", "Metadata.inference time (ms/im)[0].value"),
        ("batch size: 1", "batch size: 8", "Metadata.inference time (ms/im)[0].batch size"),
        ("mode: FP32", "mode: weird", "Metadata.inference time (ms/im)[0].mode"),
        ("      hardware: V100\n", "", "Metadata.inference time (ms/im)[0].hardware"),
    ],
)
def test_a_bad_mmsegmentation_0x_inference_time_is_one_line(tmp_path, old, new, field):
    text = MMSEG_0X.format(test="").replace("    backbone: R-50-D8\n    crop size: (512,1024)\n    lr schd: 40000\n", "")
    path = write(tmp_path, text.replace("    Training Memory (GB): 6.0\n", "").replace(old, new))
    with pytest.raises(SegbenchError) as info:
        load_manifest(path)
    assert str(info.value).startswith(f"{path}: model 'ann_r50-d8_512x1024_40k_cityscapes': field '{field}': "), str(info.value)


# A few of the zoo's figures, copied by hand from the sources reference_numbers.csv names.
ZOO_FIGURES = {
    # mmsegmentation v0.30.0 configs/ann/ann.yml: 269.54 ms/im on V100, test pipeline at 1024x2048
    "ann_r50-d8_4xb2-40k_cityscapes-512x1024": ("ms/image", 269.54, "mmseg", (1024, 2048), "V100"),
    # the 769x769 configs test at 1025x2049 (keep-ratio resize to (2049, 1025))
    "ann_r101-d8_4xb2-40k_cityscapes-769x769": ("ms/image", 869.57, "mmseg", (1025, 2049), "V100"),
    # PaddleSeg's model-zoo overview: HarDNet 21.19 ms at 1024x512 (WxH) on a V100 16GB
    "hardnet_cityscapes_1024x1024_160k": ("ms/image", 21.19, "paddleseg", (512, 1024), "V100 16GB"),
    # PP-LiteSeg README: PP-LiteSeg-T2 (STDC1, 768x1536) 143.6 FPS
    "pp_liteseg_stdc1_cityscapes_1024x512_scale0.75_160k": ("FPS", 143.6, "ppliteseg", (768, 1536), None),
    # STDC-Seg README: STDC2-Seg50 188.6 FPS on a GTX 1080Ti
    "stdc2_in1k-pre_4xb12-80k_cityscapes-512x1024": ("FPS", 188.6, "stdc", (512, 1024), "GTX 1080Ti"),
    # PIDNet README: PIDNet-L 31.1 FPS on an RTX 3090
    "pidnet-l_2xb6-120k_1024x1024-cityscapes": ("FPS", 31.1, "ddrnet", (1024, 2048), "RTX 3090"),
}


def test_zoo_published_speeds_hold_the_sources_figures():
    specs = {s.name: s for s in load_zoo(ROOT / "zoo")}
    for name, (unit, value, protocol, size, gpu) in ZOO_FIGURES.items():
        matching = [p for p in specs[name].published_speeds if p.protocol == protocol and p.input_size == size]
        assert len(matching) == 1, (name, specs[name].published_speeds)
        (speed,) = matching
        assert (speed.fps if unit == "FPS" else speed.ms_per_image) == value
        assert gpu is None or speed.gpu == gpu
    with_speed = [s for s in specs.values() if s.published_speeds]
    assert len(with_speed) >= 190  # 178 mmsegmentation configs alone have a V100 figure
    assert not any(p.protocol == "mmseg" and p.input_size != s.test.size for s in with_speed for p in s.published_speeds)
