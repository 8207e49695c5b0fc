"""Paper plots: Pareto fronts, options, embedded fonts, labels that do not overlap, deterministic files."""

import itertools
import shutil

import pytest
from matplotlib.text import Text

from segbench.cli import main
from segbench.plots import AXES, _draw, _select_points, pareto_front
from segbench.report import load_frame
from synthetic_results import write_synthetic_results

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
