"""Accuracy-vs-cost figures for the README and for papers, from the same frame as the page.

A point's mIoU is segbench's measurement where one exists, else the reported number, drawn
hollow and labelled as reported. Each family has one colour and one marker; the Pareto front
(the models no other model beats on both axes) is drawn as a staircase; labels are placed by a
small deterministic search so that they overlap neither each other nor the points. Two
hardware can share a figure: the second gets black marker edges and a dashed front, and a thin
line joins a model's two points. A figure holds one dataset's mIoU (Cityscapes unless asked): numbers
of two datasets never share an axis, and another dataset's files carry its name. No torch here.

Fonts are embedded so that a paper's PDF passes the publishers' checks: PDF with TrueType fonts
(fonttype 42, never Type 3); SVG with glyphs drawn as paths (svg.fonttype 'path'), because an
SVG cannot carry a font file, and text left as text ('none') would be drawn in whatever font the
reader's machine substitutes.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure  # no pyplot: no GUI backend to pick, faster to import, nothing to close
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from segbench.errors import SegbenchError
from segbench.protocols import DEFAULT, get_protocol
from segbench.published import rank_correlation
from segbench.records import MEASURED_DATASET


@dataclass(frozen=True)
class Axis:
    column: str
    label: str
    title: str
    per_hardware: bool  # latency, fps and memory depend on the hardware; params and MACs do not
    lower_is_better: bool
    timed: bool = False  # from the timed samples: an interval per point, and a count of timed images


AXES = {
    "latency": Axis("latency_median_ms", "Latency, median (ms, batch 1)", "latency", True, True, timed=True),
    "fps": Axis("fps", "Throughput (FPS, batch 1)", "FPS", True, False, timed=True),
    "macs": Axis("gmacs", "MACs per image (G, as timed; multiply-add = 1)", "MACs", False, True),
    "params": Axis("params_m", "Params (M, inference graph)", "parameters", False, True),
    "memory": Axis("memory_mb", "Inference memory, peak (MB, batch 1)", "inference memory", True, True),
}
SIZES_LISTED = 3  # a cost axis measured at more input sizes than this says so without listing them
DEFAULT_X = ("latency", "macs", "params")
# width, height (inches), font size (pt): one column of a two-column paper, or the full page width
SIZES = {"column": (3.5, 2.9, 7.0), "page": (7.0, 4.4, 9.0)}
LOG_SCALE_SPAN = 8  # --log auto: a log x axis only when the points span more than this factor
MAX_AUTO_LABELS = 25  # --labels auto: every point up to this many, else the Pareto front only
_MARKERS = "osD^vP*Xh<>p"
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}, "svg": {"Date": None}}


def default_hardware(frame: pd.DataFrame) -> str | None:
    """The hardware with the most successful records (ties: alphabetical), for latency plots."""
    counts = frame.loc[frame["status"] == "ok", "hardware"].value_counts()
    if counts.empty:
        return None
    return sorted(counts.index, key=lambda hw: (-counts[hw], hw))[0]


def pareto_front(xs: list[float], ys: list[float], lower_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats on both axes, in increasing x.

    Cost axes (lower x better) give the upper-left staircase; fps (higher x better) the upper-right.
    """
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]) if lower_is_better else (-xs[i], -ys[i]))
    front, best = [], -math.inf
    for i in order:
        if ys[i] > best:
            front.append(i)
            best = ys[i]
    return sorted(front, key=lambda i: xs[i])


def _short_name(model: str) -> str:
    """mmseg names carry the schedule and dataset after '_4x...'; the plot needs the model part."""
    return model.split("_4x")[0]


def _labels(models: list[str]) -> dict[str, str]:
    """Each model's label: its short name, and where other models of the figure share that short name, the
    parts of the rest of the name that tell them apart ('fcn_r50-d8 40k 769x769'); the full name if none do."""
    groups: dict[str, list[str]] = {}
    for model in models:
        groups.setdefault(_short_name(model), []).append(model)
    labels = {}
    for short, group in groups.items():
        parts = {model: re.split(r"[-_]", model[len(short):].lstrip("_-")) for model in group}
        shared = set.intersection(*map(set, parts.values()))
        for model, rest in parts.items():
            labels[model] = " ".join([short, *(part for part in rest if part not in shared)])
    twice = {label for label, count in Counter(labels.values()).items() if count > 1}
    return {model: model if label in twice else label for model, label in labels.items()}


def _interval(points: pd.DataFrame, axis: Axis) -> tuple[pd.Series, pd.Series]:
    """(left, right) of each point's 95% interval of its median latency on the x axis; NaN for too few samples.

    fps is n / Σ samples, not 1000 / median: it gets the median's interval relative to the median.
    """
    low, high = points["latency_ci_low_ms"].astype(float), points["latency_ci_high_ms"].astype(float)
    if axis.column == "fps":
        median = points["latency_median_ms"].astype(float)
        return points["fps"] * median / high, points["fps"] * median / low
    return low, high


def miou_datasets(frame: pd.DataFrame) -> list[str]:
    """The datasets of the frame's mIoU numbers, Cityscapes first, then by name."""
    return sorted(frame["miou_dataset"].dropna().unique(), key=lambda d: (d != MEASURED_DATASET, d))


def _dataset_file_tag(dataset: str) -> str:
    """'' for Cityscapes (the README's file names), else '.<dataset>' made safe for a file name (it comes from a manifest)."""
    return "" if dataset == MEASURED_DATASET else "." + (re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-") or "dataset")


def _select_points(frame: pd.DataFrame, axis: Axis, hardware: list[str], dataset: str = MEASURED_DATASET) -> pd.DataFrame:
    """Measured rows with a cost on `axis` and an mIoU on `dataset` (case-insensitive), on the given hardware.

    A model timed under several protocols on one hardware is one point: latency, FPS and memory under the default
    protocol where any record has it, else under the protocol most records followed (the title names it)."""
    on_dataset = frame["miou_dataset"].str.lower() == dataset.lower()
    rows = frame[(frame["status"] == "ok") & frame[axis.column].notna() & frame["miou"].notna() & on_dataset]
    rows = rows[rows["hardware"].isin(hardware)]
    if axis.per_hardware and not rows.empty:
        counts = rows["protocol"].value_counts()
        chosen = DEFAULT if DEFAULT in counts else sorted(counts.index, key=lambda p: (-counts[p], p))[0]
        rows = rows[rows["protocol"] == chosen]
    if not axis.per_hardware:  # the same figure on every hardware: one point per model
        rows = rows.drop_duplicates("model")
    return rows


def _place_labels(ax, fig, texts: list[tuple[str, float, float]], obstacles: list[tuple[float, float, float]], fontsize: float) -> None:
    """Put each label at the first candidate offset that overlaps no placed label, no point and stays inside the axes.

    Candidates are rings of 8 directions at growing distance. When no candidate is free of points,
    the one overlapping them least wins; a label that would cover another label or leave the axes
    is left out rather than drawn illegibly (the caller puts the Pareto front first, so those
    keep their names). Deterministic: the same points give the same placement. A label far from
    its point gets a thin leader line.
    """
    renderer = fig.canvas.get_renderer()
    to_px = fig.dpi / 72.0
    frame_box = ax.get_window_extent(renderer)
    points = [(x - r, y - r, x + r, y + r) for x, y, r in obstacles]  # display pixels
    placed: list[tuple[float, float, float, float]] = []
    directions = [(1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0)]
    for text, x, y in texts:
        probe = ax.text(0, 0, text, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        w, h = extent.width, extent.height
        reach = 56 * to_px + w + h  # no candidate box reaches beyond this: test only the points within it
        near = [b for b in points if b[2] > x - reach and b[0] < x + reach and b[3] > y - reach and b[1] < y + reach]
        best = None
        for ring, distance in enumerate((4, 9, 16, 26, 40, 56)):
            for dx, dy in directions:
                # anchor the box at the offset so that it grows away from the point
                left = x + dx * distance * to_px - (w if dx < 0 else w / 2 if dx == 0 else 0)
                bottom = y + dy * distance * to_px - (h if dy < 0 else h / 2 if dy == 0 else 0)
                box = (left, bottom, left + w, bottom + h)
                inside = frame_box.x0 <= box[0] and box[2] <= frame_box.x1 and frame_box.y0 <= box[1] and box[3] <= frame_box.y1
                if not inside or any(_overlap(box, other) for other in placed):
                    continue
                cost = sum(_overlap(box, other) for other in near)
                if best is None or cost < best[0]:
                    best = (cost, ring, box)
                if cost == 0:
                    break
            if best is not None and best[0] == 0:
                break
        if best is None:
            continue
        _, ring, box = best
        placed.append(box)
        anchor = ax.transData.inverted().transform((x, y))
        ax.annotate(text, anchor, xytext=((box[0] - x) / to_px, (box[1] - y) / to_px), textcoords="offset points",
                    ha="left", va="bottom", fontsize=fontsize, zorder=4, annotation_clip=False)  # fmt: skip
        if ring >= 2:  # a plain line, not an arrow patch: patches clip themselves slowly
            end = (min(max(x, box[0]), box[2]), min(max(y, box[1]), box[3]))
            ax.plot(*zip(anchor, ax.transData.inverted().transform(end)), color="0.55", lw=0.5, zorder=2.5)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def plot_figure(
    frame: pd.DataFrame,
    x: str,
    out_dir: Path,
    *,
    hardware: list[str] | None = None,
    size: str = "page",
    formats: tuple[str, ...] = ("png", "pdf"),
    bubble: bool = False,
    labels: str = "auto",
    log: str = "auto",
    error_bars: bool = True,
    dataset: str = MEASURED_DATASET,
) -> list[Path]:
    """Draw `dataset`'s mIoU against one cost axis and save it in each format; returns the files written (none if no points)."""
    axis = AXES[x]
    datasets = miou_datasets(frame)
    dataset = next((d for d in datasets if d.lower() == dataset.lower()), dataset)
    if datasets and dataset not in datasets:
        raise SegbenchError(f"--dataset: no mIoU on {dataset} (have: {', '.join(datasets)})")
    available = sorted(frame.loc[frame["status"] == "ok", "hardware"].dropna().unique())
    if not hardware:
        hardware = [default_hardware(frame)] if axis.per_hardware and available else available
    if unknown := [hw for hw in hardware if hw not in available]:
        raise SegbenchError(f"--hardware: no records for {', '.join(unknown)} (have: {', '.join(available) or 'none'})")
    if len(hardware) > 2 and axis.per_hardware:
        raise SegbenchError(f"--hardware: at most two in one figure, got {len(hardware)}")
    points = _select_points(frame, axis, hardware, dataset)
    if points.empty:
        return []
    width, height, fontsize = SIZES[size]
    rc = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "path", "svg.hashsalt": "segbench", "font.size": fontsize}
    with matplotlib.rc_context(rc):
        fig = _draw(points, axis, hardware if axis.per_hardware else [], (width, height), fontsize, bubble, labels, log, error_bars=error_bars)
        return _save(fig, out_dir, f"miou_vs_{x}" + _dataset_file_tag(dataset), size, formats)


def _save(fig: Figure, out_dir: Path, stem: str, size: str, formats: tuple[str, ...]) -> list[Path]:
    """The figure as <stem>[.<size>].<format> for each format; the page size keeps the README's names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in formats:
        path = out_dir / f"{stem}{'' if size == 'page' else '.' + size}.{ext}"
        fig.savefig(path, dpi=200 if size == "column" else 150, metadata=_METADATA[ext])
        written.append(path)
    return written


def _draw(points: pd.DataFrame, axis: Axis, hardware: list[str], figsize, fontsize: float, bubble: bool, labels: str, log: str,
          error_bars: bool = True):
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)  # measures text for the label placement
    ax = fig.subplots()
    families = sorted(points["collection"].unique())
    style = {family: (f"C{i % 10}", _MARKERS[i % len(_MARKERS)]) for i, family in enumerate(families)}
    base = 34 if figsize[0] > 4 else 20
    max_params = points["params_m"].max()
    points = points.assign(
        _size=(base * 0.4 + base * 6 * points["params_m"] / max_params) if bubble and max_params > 0 else base,
        _hw=[hardware.index(hw) if hardware else 0 for hw in points["hardware"]],
    )
    if len(hardware) == 2:  # the same model on both: a thin line from one to the other
        pairs = points.pivot_table(index="model", columns="_hw", values=[axis.column, "miou"], aggfunc="first").dropna()
        for _, r in pairs.iterrows():
            ax.plot([r[(axis.column, 0)], r[(axis.column, 1)]], [r[("miou", 0)], r[("miou", 1)]], color="0.75", lw=0.6, zorder=1)
    error_bars = error_bars and axis.timed
    for (family, measured, hw), part in points.groupby(["collection", "miou_is_measured", "_hw"], sort=True):
        colour, marker = style[family]
        if error_bars:
            left, right = _interval(part, axis)
            x, known = part[axis.column], left.notna()
            ax.errorbar(x[known], part["miou"][known], xerr=[x[known] - left[known], right[known] - x[known]], fmt="none",
                        ecolor=colour, elinewidth=0.7, capsize=0, zorder=2.5)  # fmt: skip
        ax.scatter(
            part[axis.column], part["miou"], s=part["_size"], marker=marker, zorder=3,
            facecolors=colour if measured else "none", edgecolors="black" if hw == 1 else colour,
            linewidths=0.9 if hw == 1 else 1.2, alpha=0.85 if bubble else 1.0,
        )  # fmt: skip
    invalid = points[points["validity"] == "INVALID"]  # a GPU record that failed its validity checks: crossed in red
    if len(invalid):
        ax.scatter(invalid[axis.column], invalid["miou"], s=invalid["_size"] * 1.5, marker="x", color="red", linewidths=1.2, zorder=4)
    on_front = set()
    for hw, part in points.groupby("_hw", sort=True):
        front = pareto_front(part[axis.column].tolist(), part["miou"].tolist(), axis.lower_is_better)
        rows = part.iloc[front]
        ax.step(rows[axis.column], rows["miou"], where="post" if axis.lower_is_better else "pre",
                color="0.35", lw=0.9, ls="--" if hw == 1 else "-", zorder=2)  # fmt: skip
        on_front |= set(rows["model"])
    span = points[axis.column].max() / max(points[axis.column].min(), 1e-12)
    if log == "on" or (log == "auto" and span > LOG_SCALE_SPAN):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1-2-5 ticks: a decade alone may hold no tick
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.08, y=0.1)
    xlabel = axis.label
    sizes = sorted(points["measured_size"].dropna().unique())
    if axis.column != "params_m" and len(sizes) == 1:
        xlabel += f" at {sizes[0]} (H×W)"
    elif axis.column != "params_m" and sizes:
        listed = ", ".join(sizes) if len(sizes) <= SIZES_LISTED else "mixed"
        xlabel += f" at each model's test size ({listed} H×W)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{points['miou_dataset'].iloc[0]} val mIoU (%)")
    title = f"mIoU vs {axis.title}" + (f" on {' and '.join(hardware)}" if hardware else "")
    if axis.per_hardware and (protocol := points["protocol"].iloc[0]) != DEFAULT:
        title += f", protocol {protocol}"
    if axis.timed:
        images = sorted(points["images"].dropna().astype(int).unique())
        title += f"\n{images[0]}" + (f"–{images[-1]}" if len(images) > 1 else "") + " timed images per model"
        title += "; bars: 95% interval of the median" if error_bars else ""
    ax.set_title(title, fontsize=fontsize)
    ax.grid(True, which="major", alpha=0.3)
    fig.legend(handles=_legend_handles(points, style, hardware, bubble), loc="outside lower center",
               ncols=4 if figsize[0] > 4 else 2, fontsize=fontsize * 0.85, frameon=False)  # fmt: skip
    fig.draw_without_rendering()  # run the layout once, then freeze it so label positions stay where they were computed
    fig.set_layout_engine("none")
    if labels != "none":
        first_hw = points[points["_hw"] == 0]
        chosen = first_hw if labels == "all" or (labels == "auto" and len(first_hw) <= MAX_AUTO_LABELS) else points[points["model"].isin(on_front)]
        chosen = chosen.drop_duplicates("model").assign(_rest=lambda c: ~c["model"].isin(on_front))
        chosen = chosen.sort_values(["_rest", axis.column, "miou"])  # the Pareto front first: it keeps its names
        to_display = ax.transData.transform
        names = _labels(sorted(points["model"].unique()))
        texts = [(names[r["model"]], *to_display((r[axis.column], r["miou"]))) for _, r in chosen.iterrows()]
        obstacles = [(*to_display((r[axis.column], r["miou"])), math.sqrt(r["_size"]) / 2 * fig.dpi / 72 + 1)
                     for _, r in points.iterrows()]  # fmt: skip
        _place_labels(ax, fig, texts, obstacles, fontsize * 0.8)
    return fig


def _legend_handles(points: pd.DataFrame, style: dict, hardware: list[str], bubble: bool) -> list[Line2D]:
    """Families by colour and marker; then what hollow markers, edges and line styles mean."""
    handles = [Line2D([], [], ls="none", marker=m, color=c, markersize=5, label=family) for family, (c, m) in style.items()]
    if not points["miou_is_measured"].all():
        handles.append(Line2D([], [], ls="none", marker="o", mfc="none", color="0.3", markersize=5, label="hollow: mIoU as reported"))
    for i, hw in enumerate(hardware if len(hardware) == 2 else []):
        handles.append(Line2D([], [], color="0.35", ls="--" if i else "-", marker="o", mfc="0.8", mec="black" if i else "0.8",
                              markersize=5, label=f"{hw}" + (" (black edge)" if i else "")))  # fmt: skip
    if len(hardware) != 2:
        handles.append(Line2D([], [], color="0.35", ls="-", label="Pareto front"))
    if bubble:
        handles.append(Line2D([], [], ls="none", marker="o", mfc="none", color="0.3", markersize=8, label="area ∝ params"))
    if (points["validity"] == "INVALID").any():
        handles.append(Line2D([], [], ls="none", marker="x", color="red", markersize=6, label="INVALID record (see the page)"))
    return handles


def plot_all(
    frame: pd.DataFrame, out_dir: Path, hardware: list[str] | None = None, xs: tuple[str, ...] = DEFAULT_X,
    datasets: tuple[str, ...] = (MEASURED_DATASET,), **options,
) -> list[Path]:
    """The default set of figures (mIoU vs latency, MACs, params), one set per dataset; options as plot_figure.

    Drawn one after another in the calling process. A sweep's process runs threads by then (torch's
    intra-op pool, rich's refresh): a process forked from it can deadlock on a lock one of them held,
    and a pool of workers can outlive a killed parent.
    """
    return [path for d in datasets for x in xs for path in plot_figure(frame, x, out_dir, hardware=hardware, dataset=d, **options)]


PUBLISHED_MINIMUM = 3  # models: a rank correlation of fewer says nothing


def published_points(frame: pd.DataFrame, protocol: str | None = None, hardware: str | None = None
                     ) -> tuple[pd.DataFrame, tuple[str, str, str]]:
    """The models measured on `hardware` under `protocol` whose manifest publishes a figure of that protocol at the
    measured input size, from one published (GPU, backend, precision): the most common among them. Each speed is
    divided by the median of its own axis (measured_relative, published_relative), so the two GPUs' absolute speeds
    drop out. Defaults: the protocol, then the hardware, with the most such models (ties: alphabetical)."""
    comparable = frame[(frame["status"] == "ok") & frame["published_comparable"].fillna(False).astype(bool)]
    if protocol is None:
        counts = comparable["protocol"].value_counts()
        protocol = sorted(counts.index, key=lambda p: (-counts[p], p))[0] if len(counts) else DEFAULT
    get_protocol(protocol)  # an unknown name is a one-line error listing the known ones
    rows = comparable[comparable["protocol"] == protocol]
    if hardware is None:
        counts = rows["hardware"].value_counts()
        hardware = sorted(counts.index, key=lambda hw: (-counts[hw], hw))[0] if len(counts) else None
    rows = rows[rows["hardware"] == hardware].drop_duplicates("model")
    groups = rows.groupby(["published_gpu", "published_backend", "published_precision"]).size()
    group = sorted(groups.index, key=lambda g: (-groups[g], g))[0] if len(groups) else None
    if group is not None:
        rows = rows[(rows["published_gpu"] == group[0]) & (rows["published_backend"] == group[1]) & (rows["published_precision"] == group[2])]
    if len(rows) < PUBLISHED_MINIMUM:
        on = f" on {hardware}" if hardware else ""
        raise SegbenchError(
            f"--published: {len(rows)} models measured{on} under protocol {protocol} have a published figure of that protocol at "
            f"their input size; the plot needs at least {PUBLISHED_MINIMUM} (measure more with `bench --protocol {protocol}`, "
            "or pick --protocol / --hardware)"
        )
    points = rows.assign(
        measured_relative=rows["fps"] / rows["fps"].median(), published_relative=rows["published_fps"] / rows["published_fps"].median()
    )
    return points.reset_index(drop=True), group


def published_title(points: pd.DataFrame, protocol: str, hardware: str, group: tuple[str, str, str]) -> str:
    rho = rank_correlation(points["measured_relative"], points["published_relative"])
    return (f"Relative speed under protocol {protocol}\nmeasured on {hardware} vs published on {', '.join(group)}\n"
            f"{len(points)} models, each FPS over its axis' median; Spearman ρ = {rho:.2f}")  # fmt: skip


def plot_published(frame: pd.DataFrame, out_dir: Path, protocol: str | None = None, hardware: str | None = None, *,
                   size: str = "page", formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Measured against published relative speed (log-log, identity line), one point per model, the rank correlation in
    the title; saved as speed_vs_published.<protocol>.<hardware>.<format>."""
    points, group = published_points(frame, protocol, hardware)
    protocol, hardware = points["protocol"].iloc[0], points["hardware"].iloc[0]
    width, height, fontsize = SIZES[size]
    rc = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "path", "svg.hashsalt": "segbench", "font.size": fontsize}
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        xs, ys = points["published_relative"], points["measured_relative"]
        low, high = min(xs.min(), ys.min()) / 1.3, max(xs.max(), ys.max()) * 1.3
        ax.plot([low, high], [low, high], color="0.55", lw=0.8, ls="--", zorder=1, label="identity: ratios as published")
        ax.scatter(xs, ys, s=28 if width > 4 else 16, color="C0", zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal", adjustable="box")  # one decade is as long on both axes
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"Published FPS / median ({group[0]})")
        ax.set_ylabel(f"Measured FPS / median ({hardware})")
        fig.suptitle(published_title(points, protocol, hardware, group), fontsize=fontsize)  # the figure's width: the axes are square
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper left", fontsize=fontsize * 0.85, frameon=False)
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        names = _labels(sorted(points["model"]))
        to_display = ax.transData.transform
        texts = [(names[r["model"]], *to_display((r["published_relative"], r["measured_relative"]))) for _, r in points.iterrows()]
        obstacles = [(*to_display((r["published_relative"], r["measured_relative"])), 4.0) for _, r in points.iterrows()]
        _place_labels(ax, fig, texts, obstacles, fontsize * 0.8)
        return _save(fig, out_dir, f"speed_vs_published.{protocol}.{hardware}", size, formats)
