"""Paper plots: Pareto fronts, options, embedded fonts, labels that do not overlap, deterministic files."""

import itertools
import json
import shutil

import pytest
from matplotlib.collections import LineCollection
from matplotlib.text import Text

from segbench.cli import main
from segbench.plots import AXES, _draw, _select_points, pareto_front
from segbench.report import load_frame
from synthetic_results import ADE20K_REPORTED, add_ade20k_entries, write_synthetic_results

HW = ("gpu-a", "gpu-b")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_results(tmp_path_factory.mktemp("syn"), models_per_family=2, hardware=HW)


def test_pareto_front_for_cost_and_for_throughput():
    xs, ys = [1, 2, 3, 4, 2.5], [70, 72, 71, 75, 72]
    assert pareto_front(xs, ys, lower_is_better=True) == [0, 1, 3]  # 2.5 ties 2 on mIoU at a higher cost
    assert pareto_front(xs, ys, lower_is_better=False) == [3]  # fps: the fastest is also the best here
    assert pareto_front([10, 20, 30, 25], [75, 73, 70, 70], lower_is_better=False) == [0, 1, 2]
    assert pareto_front([1, 1], [70, 71]) == [1]


def plot(zoo, out, *extra):
    return main(["plot", "--zoo", str(zoo), "--output", str(out), *extra])


def test_options_write_every_format_with_fonts_embedded(synthetic):
    zoo, out = synthetic
    assert plot(zoo, out, "--x", "latency", "fps", "memory", "--format", "png", "pdf", "svg", "--size", "column",
                "--hardware", *HW, "--bubble") == 0  # fmt: skip
    files = sorted(p.name for p in (out / "plots").iterdir())
    assert files == sorted(f"miou_vs_{x}.column.{e}" for x in ("latency", "fps", "memory") for e in ("png", "pdf", "svg"))
    pdf = (out / "plots" / "miou_vs_fps.column.pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType embedded, no Type 3
    svg = (out / "plots" / "miou_vs_fps.column.svg").read_text()
    assert "<text" not in svg and '<path id="DejaVuSans-' in svg  # glyphs are paths, not text


def test_sizes_do_not_overwrite_each_other(synthetic, tmp_path):
    zoo, source = synthetic
    out = tmp_path / "out"
    shutil.copytree(source / "results", out / "results")
    assert plot(zoo, out, "--x", "macs", "--format", "png") == 0
    page = (out / "plots" / "miou_vs_macs.png").read_bytes()
    assert plot(zoo, out, "--x", "macs", "--format", "png", "--size", "column") == 0
    assert (out / "plots" / "miou_vs_macs.png").read_bytes() == page  # the page figure keeps its name and bytes
    column = out / "plots" / "miou_vs_macs.column.png"
    assert column.read_bytes() != page and column.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_files_are_byte_identical_across_runs(synthetic, tmp_path):
    zoo, out = synthetic
    copies = []
    for run in ("one", "two"):
        assert main(["plot", "--zoo", str(zoo), "--output", str(out), "--format", "png", "pdf", "svg"]) == 0
        copies.append({p.name: p.read_bytes() for p in (out / "plots").iterdir()})
    assert copies[0] == copies[1]


@pytest.mark.parametrize("x,size,hardware", [("latency", "column", HW), ("macs", "page", HW[:1]), ("fps", "column", HW[1:])])
def test_labels_overlap_neither_each_other_nor_leave_the_figure(synthetic, x, size, hardware):
    zoo, out = synthetic
    frame = load_frame(out / "results", zoo)
    axis = AXES[x]
    points = _select_points(frame, axis, list(hardware))
    fig = _draw(points, axis, list(hardware) if axis.per_hardware else [], {"column": (3.5, 2.9), "page": (7, 4.4)}[size],
                7.0, False, "all", "auto")  # fmt: skip
    fig.canvas.draw()  # positions the annotations
    boxes = [Text.get_window_extent(t) for t in fig.axes[0].texts]  # the text alone, not its leader line
    assert len(boxes) >= len(points.drop_duplicates("model")) / 2  # a label with no free place is left out
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    figure = fig.bbox
    assert all(figure.x0 <= b.x0 and b.x1 <= figure.x1 and figure.y0 <= b.y0 and b.y1 <= figure.y1 for b in boxes)


def test_filters_and_errors(synthetic, capsys):
    zoo, out = synthetic
    assert plot(zoo, out, "--x", "params", "--models", "fcn", "--format", "svg") == 0
    assert plot(zoo, out, "--hardware", "gpu-z") == 1
    assert "--hardware: no records for gpu-z (have: gpu-a, gpu-b)" in capsys.readouterr().err
    assert plot(zoo, out, "--models", "nosuchmodel") == 1
    assert "no model matches 'nosuchmodel'" in capsys.readouterr().err


def draw(frame, x, hardware=HW[:1], **options):
    axis = AXES[x]
    points = _select_points(frame, axis, list(hardware))
    options = {"error_bars": True, "labels": "all"} | options
    fig = _draw(points, axis, list(hardware) if axis.per_hardware else [], (7, 4.4), 9.0, False, options["labels"], "auto",
                error_bars=options["error_bars"])  # fmt: skip
    return fig, fig.axes[0]


def bar_extents(ax) -> dict[float, tuple[float, float]]:
    """The horizontal error bars of a figure, by the mIoU (y) they are drawn at: (left, right)."""
    bars = {}
    for collection in ax.collections:
        if isinstance(collection, LineCollection):
            for segment in collection.get_segments():
                (x0, y0), (x1, y1) = segment
                if y0 == y1:
                    bars[y0] = (min(x0, x1), max(x0, x1))
    return bars


def test_latency_and_fps_points_carry_the_95_percent_interval_of_their_median(synthetic):
    zoo, out = synthetic
    frame = load_frame(out / "results", zoo)
    record = json.loads(next((out / "results" / HW[0]).glob("fcn_r50*.json")).read_text())
    ms = sorted(s * 1000 for s in record["latency"]["samples"])
    assert len(ms) == 50  # 95% interval of the median of 50: the 18th and 33rd smallest (published binomial tables)
    miou = frame.loc[(frame["model"] == record["model"]) & (frame["hardware"] == HW[0]), "miou"].item()
    fig, ax = draw(frame, "latency")
    assert bar_extents(ax)[miou] == pytest.approx((ms[17], ms[32]))
    assert len(bar_extents(ax)) == len(_select_points(frame, AXES["latency"], [HW[0]]))
    assert "50 timed images per model" in ax.get_title() and "95%" in ax.get_title()
    # fps = n / sum: the same relative interval around it
    fps = len(ms) / sum(record["latency"]["samples"])
    median = (ms[24] + ms[25]) / 2
    fig, ax = draw(frame, "fps")
    assert bar_extents(ax)[miou] == pytest.approx((fps * median / ms[32], fps * median / ms[17]))
    fig, ax = draw(frame, "latency", error_bars=False)
    assert bar_extents(ax) == {} and "95%" not in ax.get_title()
    fig, ax = draw(frame, "macs")
    assert bar_extents(ax) == {} and "timed images" not in ax.get_title()


def test_no_error_bars_option(synthetic, tmp_path):
    zoo, source = synthetic
    out = tmp_path / "out"
    shutil.copytree(source / "results", out / "results")
    assert plot(zoo, out, "--x", "latency", "--format", "png") == 0
    with_bars = (out / "plots" / "miou_vs_latency.png").read_bytes()
    assert plot(zoo, out, "--x", "latency", "--format", "png", "--no-error-bars") == 0
    assert (out / "plots" / "miou_vs_latency.png").read_bytes() != with_bars


def test_labels_that_would_be_ambiguous_carry_the_part_that_differs(synthetic):
    zoo, out = synthetic
    frame = load_frame(out / "results", zoo)
    renamed = {"fcn_r18-v0_4xb2-80k_cityscapes-512x1024": "fcn_r50-d8_4xb2-40k_cityscapes-512x1024",
               "fcn_r50-v1_4xb2-80k_cityscapes-512x1024": "fcn_r50-d8_4xb2-80k_cityscapes-512x1024",
               "pspnet_r18-v0_4xb2-80k_cityscapes-512x1024": "fcn_r50-d8_4xb2-40k_cityscapes-769x769"}  # fmt: skip
    assert set(renamed) <= set(frame["model"])
    fig, ax = draw(frame.replace({"model": renamed}), "params", labels="all")
    labels = {t.get_text() for t in ax.texts}
    assert {"fcn_r50-d8 40k 512x1024", "fcn_r50-d8 80k 512x1024", "fcn_r50-d8 40k 769x769"} <= labels
    assert "deeplabv3_r18-v0" in labels  # a name that is not ambiguous stays short


def test_the_cost_axis_says_at_which_input_size(synthetic):
    zoo, out = synthetic
    frame = load_frame(out / "results", zoo)
    fig, ax = draw(frame, "macs")
    assert ax.get_xlabel().endswith("at 1024×2048 (H×W)")
    fig, ax = draw(frame, "params")
    assert "×" not in ax.get_xlabel()  # params do not depend on the input
    mixed = frame.copy()
    mixed.loc[mixed["model"].str.startswith("fcn"), "measured_size"] = "512×1024"
    fig, ax = draw(mixed, "latency")
    assert ax.get_xlabel().endswith("at each model's test size (1024×2048, 512×1024 H×W)")


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    """Cityscapes entries with measured mIoU, and ADE20K entries with reported ADE20K mIoU, on one hardware."""
    zoo, out = write_synthetic_results(tmp_path_factory.mktemp("two"), models_per_family=1, hardware=HW[:1])
    add_ade20k_entries(zoo, out, HW[0])
    return zoo, out


@pytest.mark.parametrize("x", ["macs", "latency"])
def test_a_plot_of_miou_never_mixes_datasets(two_datasets, x):
    zoo, out = two_datasets
    frame = load_frame(out / "results", zoo)
    axis = AXES[x]
    cityscapes = _select_points(frame, axis, [HW[0]], "Cityscapes")
    ade20k = _select_points(frame, axis, [HW[0]], "ade20k")  # as typed on the command line
    assert set(ade20k["model"]) == set(ADE20K_REPORTED) and ade20k["miou"].tolist() == [ADE20K_REPORTED[m] for m in ade20k["model"]]
    assert len(cityscapes) == 6 and not set(cityscapes["model"]) & set(ADE20K_REPORTED)
    for dataset, points in (("Cityscapes", cityscapes), ("ADE20K", ade20k)):
        fig = _draw(points, axis, [HW[0]] if axis.per_hardware else [], (7, 4.4), 9.0, False, "all", "auto")
        ax = fig.axes[0]
        assert ax.get_ylabel() == f"{dataset} val mIoU (%)"
        drawn = sorted(y for c in ax.collections if not isinstance(c, LineCollection) for _, y in c.get_offsets())
        assert drawn == sorted(points["miou"])


def test_plot_takes_a_dataset_and_keeps_each_datasets_files_apart(two_datasets, tmp_path, capsys):
    zoo, source = two_datasets
    out = tmp_path / "out"
    shutil.copytree(source / "results", out / "results")
    assert plot(zoo, out, "--x", "macs", "--format", "svg") == 0  # Cityscapes by default
    assert plot(zoo, out, "--x", "macs", "--format", "svg", "--dataset", "ade20k") == 0
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["miou_vs_macs.ade20k.svg", "miou_vs_macs.svg"]
    assert plot(zoo, out, "--dataset", "pascal") == 1
    err = capsys.readouterr().err
    assert "--dataset: no mIoU on pascal (have: Cityscapes, ADE20K)" in err and "Traceback" not in err


def test_a_model_timed_under_two_protocols_is_one_point_of_the_default_protocol(tmp_path):
    from segbench.records import record_path, results_folder, write_record

    zoo, out = write_synthetic_results(tmp_path, models_per_family=2, hardware=HW[:1])
    (path, *_) = sorted((out / "results" / HW[0]).glob("*.json"))
    record = json.loads(path.read_text())
    record["settings"]["protocol"] = {"name": "ddrnet"}
    record["latency"]["samples"] = [s / 3 for s in record["latency"]["samples"]]
    write_record(record_path(out / "results", results_folder(HW[0], record["settings"]), record["model"]), record)
    frame = load_frame(out / "results", zoo)
    assert sorted(frame.loc[frame["model"] == record["model"], "protocol"]) == ["ddrnet", "mmseg"]
    points = _select_points(frame, AXES["latency"], [HW[0]])
    assert len(points) == points["model"].nunique() and set(points["protocol"]) == {"mmseg"}
    only_ddrnet = _select_points(frame[frame["protocol"] != "mmseg"], AXES["latency"], [HW[0]])
    assert list(only_ddrnet["model"]) == [record["model"]]
    fig = _draw(only_ddrnet, AXES["latency"], [HW[0]], (7, 4.4), 7.0, False, "all", "auto")
    assert "protocol ddrnet" in fig.axes[0].get_title()
