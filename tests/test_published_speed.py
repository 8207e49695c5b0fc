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


# --------------------------------------------------------------------------- the page

from segbench.cli import main  # noqa: E402
from segbench.export import to_json  # noqa: E402
from segbench.published import differences, rank_correlation  # noqa: E402
from segbench.report import load_frame, render_markdown  # noqa: E402
from synthetic_results import add_published_speeds, write_synthetic_results  # noqa: E402


def test_differences_name_each_field_that_differs_published_first():
    figure = PublishedSpeed(fps=100.0, ms_per_image=None, gpu="GTX 1080Ti", backend="PyTorch", precision="fp32",
                            input_size=(512, 1024), protocol="stdc", source="s")  # fmt: skip
    row = {"protocol": "stdc", "measured_size": "512×1024", "device_name": "NVIDIA GeForce GTX 1080 Ti", "backend": "eager",
           "dtype": "float32"}  # fmt: skip
    assert differences(figure, row) == []
    row |= {"protocol": "mmseg", "measured_size": "1024×2048", "device_name": "NVIDIA H100", "backend": "onnxruntime", "dtype": "float16"}
    assert differences(figure, row) == ["protocol stdc vs mmseg", "input 512×1024 vs 1024×2048", "GPU GTX 1080Ti vs NVIDIA H100",
                                        "backend PyTorch vs onnxruntime", "precision fp32 vs fp16"]  # fmt: skip
    onnx = PublishedSpeed(1.0, None, "V100", "ONNX Runtime", "fp16", (1024, 2048), "mmseg", "s")
    assert differences(onnx, row | {"device_name": "Tesla V100-SXM2-16GB"}) == []


def test_rank_correlation_equals_the_hand_computation():
    import pandas as pd

    # no ties: 1 - 6 Σd² / (n (n² - 1)) with d = (0, -1, 1, -1, 1): 1 - 24 / 120
    assert rank_correlation(pd.Series([10, 20, 30, 40, 50]), pd.Series([1, 3, 2, 5, 4])) == pytest.approx(0.8)
    # ties share their mean rank: ranks (1, 2, 3, 4) and (1.5, 1.5, 3, 4) have covariance 4.5, variances 5 and 4.5
    assert rank_correlation(pd.Series([1, 2, 3, 4]), pd.Series([7, 7, 8, 9])) == pytest.approx(4.5 / (5 * 4.5) ** 0.5)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Six synthetic models measured on gpu-a under paddleseg; published FPS = 3 × measured, except that the slowest and the
    third slowest trade figures."""
    zoo, out = write_synthetic_results(tmp_path_factory.mktemp("pub"), models_per_family=1, hardware=("gpu-a", "gpu-b"))
    measured = {}
    for path in (out / "results" / "gpu-a").glob("*.json"):
        samples = json.loads(path.read_text())["latency"]["samples"]
        measured[path.stem] = len(samples) / sum(samples)
    order = sorted(measured, key=measured.get)
    swap = {order[0]: order[2], order[2]: order[0]}
    figures = add_published_speeds(zoo, out, "gpu-a", "paddleseg", lambda model, fps: round(3 * measured[swap.get(model, model)], 3))
    return zoo, out, figures, measured


def test_the_page_sets_a_published_figure_beside_the_measured_one_and_says_what_differs(published):
    zoo, out, figures, _ = published
    frame = load_frame(out / "results", zoo)
    same = frame[frame["hardware"] == "gpu-a"]
    assert set(same["protocol"]) == {"paddleseg"} and same["published_comparable"].all()
    assert (same["published_fps"] == same["model"].map(figures)).all()
    assert set(same["published_differs"]) == {"GPU V100 vs GPU-A"}  # protocol, input, backend and precision agree
    other = frame[frame["hardware"] == "gpu-b"]
    assert set(other["protocol"]) == {"mmseg"} and not other["published_comparable"].any()
    assert set(other["published_differs"]) == {"protocol paddleseg vs mmseg; GPU V100 vs GPU-B"}
    page = render_markdown(frame)
    assert "## Published speeds beside the measured ones" in page
    row = same.iloc[0]
    line = next(line for line in page.splitlines() if line.startswith(f"| {row['model']} | `gpu-a` | paddleseg |"))
    published_fps = figures[row["model"]]
    assert f"| {row['fps']:.2f} ({row['latency_median_ms']:.1f}) | {published_fps:.2f} ({1000 / published_fps:.1f}) |" in line
    assert "| yes | GPU V100 vs GPU-A |" in line
    exported = {(r["model"], r["hardware"]): r for r in json.loads(to_json(frame))}[(row["model"], "gpu-a")]
    assert exported["protocol"] == "paddleseg" and exported["published_fps"] == published_fps and exported["published_comparable"] is True


# --------------------------------------------------------------------------- plot --published


def test_plot_published_draws_relative_speeds_with_their_rank_correlation(published):
    from segbench.plots import published_points, published_title

    zoo, out, figures, measured = published
    points, group = published_points(load_frame(out / "results", zoo), "paddleseg", "gpu-a")
    assert sorted(points["model"]) == sorted(figures) and group == ("V100", "PyTorch", "fp32")
    # each speed over its own median: ratios between models are kept
    relative = points.set_index("model")
    for column, source in (("measured_relative", measured), ("published_relative", figures)):
        values = sorted(source.values())
        median = (values[2] + values[3]) / 2
        assert relative[column].to_dict() == pytest.approx({m: v / median for m, v in source.items()})
    n = len(figures)  # two models two ranks apart traded places: d = ±2 twice
    rho = 1 - 6 * (2**2 + 2**2) / (n * (n * n - 1))
    assert f"Spearman ρ = {rho:.2f}" in published_title(points, "paddleseg", "gpu-a", group)
    assert main(["plot", "--published", "--zoo", str(zoo), "--output", str(out), "--format", "png", "svg"]) == 0
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["speed_vs_published.paddleseg.gpu-a.png",
                                                                 "speed_vs_published.paddleseg.gpu-a.svg"]  # fmt: skip


def test_plot_published_with_too_few_models_is_one_line(published, capsys):
    zoo, out, figures, _ = published
    two = sorted(figures)[:2]
    assert main(["plot", "--published", "--zoo", str(zoo), "--output", str(out), "--models", *two]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 models" in err and "at least 3" in err, err
    assert main(["plot", "--published", "--zoo", str(zoo), "--output", str(out), "--protocol", "stdc"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stdc" in err, err
