"""Accuracy-vs-cost figures (mIoU vs latency, MACs, params) from the same frame as the page.

A point's mIoU is segbench's measurement where one exists, else the reported number, drawn
hollow and labelled as reported. No torch here.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

# x column, axis label, file stem
PLOTS = {
    "latency": ("latency_median_ms", "Latency, median (ms, batch 1)", "miou_vs_latency"),
    "macs": ("gmacs", "MACs (G, fvcore: multiply-add = 1)", "miou_vs_macs"),
    "params": ("params_m", "Params (M, inference graph)", "miou_vs_params"),
}
LOG_SCALE_SPAN = 8  # a log x axis only when the points span more than this factor
_MARKERS = "osD^vP*Xh<>p"


def _points(frame: pd.DataFrame, x: str, hardware: str | None) -> pd.DataFrame:
    rows = frame[(frame["status"] == "ok") & frame[x].notna() & frame["miou"].notna()]
    if hardware is not None:
        rows = rows[rows["hardware"] == hardware]
    return rows


def default_hardware(frame: pd.DataFrame) -> str | None:
    """The hardware with the most successful records (ties: alphabetical), for latency plots."""
    counts = frame.loc[frame["status"] == "ok", "hardware"].value_counts()
    if counts.empty:
        return None
    return sorted(counts.index, key=lambda hw: (-counts[hw], hw))[0]


def plot_one(frame: pd.DataFrame, kind: str, out_dir: Path, hardware: str | None = None) -> list[Path]:
    """Draw one figure and save it as PNG and PDF; returns the files written (none if no points)."""
    x, xlabel, stem = PLOTS[kind]
    hardware = hardware or default_hardware(frame)
    # MACs and params do not depend on hardware: one point per model.
    points = _points(frame, x, hardware if kind == "latency" else None).drop_duplicates("model")
    if points.empty:
        return []
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    families = sorted(points["family"].unique())
    for i, family in enumerate(families):
        rows = points[points["family"] == family]
        colour = f"C{i % 10}"
        for measured, label_suffix in ((True, "measured"), (False, "reported")):
            part = rows[rows["miou_is_measured"] == measured]
            if part.empty:
                continue
            ax.scatter(
                part[x], part["miou"], s=42, marker=_MARKERS[i % len(_MARKERS)],
                facecolors=colour if measured else "none", edgecolors=colour, linewidths=1.4,
                label=f"{family} (mIoU {label_suffix})", zorder=3,
            )  # fmt: skip
        for _, r in rows.iterrows():
            ax.annotate(r["model"].split("_4x")[0], (r[x], r["miou"]), xytext=(4, 3), textcoords="offset points", fontsize=7)
    if points[x].max() > LOG_SCALE_SPAN * points[x].min():
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.margins(x=0.12, y=0.08)
    sizes = sorted(points["measured_size"].dropna().unique())
    if kind != "params" and len(sizes) == 1:
        xlabel += f", input {sizes[0]} (H×W)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Cityscapes val mIoU (%)")
    title = "mIoU vs " + {"latency": "latency", "macs": "MACs", "params": "parameters"}[kind]
    if kind == "latency":
        title += f" on {hardware}"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for ext, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        path = out_dir / f"{stem}.{ext}"
        fig.savefig(path, dpi=150, metadata=metadata)
        written.append(path)
    plt.close(fig)
    return written


def plot_all(frame: pd.DataFrame, out_dir: Path, hardware: str | None = None) -> list[Path]:
    return [path for kind in PLOTS for path in plot_one(frame, kind, out_dir, hardware)]
