"""The page's data in other shapes: CSV and JSON for scripts, a booktabs LaTeX table for papers.

Each is a pure function of the frame that report.load_frame builds, so an export always agrees
with model_zoo.md, and the same records give the same bytes. No torch here.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd

from segbench.formatting import fixed

# frame column -> exported name; units are in the names (ms, mb, gb, m = millions, g = billions)
COLUMNS = {
    "model": "model",
    "collection": "family",
    "backbone": "backbone",
    "crop_size": "crop_size_hxw",
    "schedule": "schedule",
    "batch_size": "train_batch_size",
    "ema": "ema",
    "test_size": "test_size_hxw",
    "test_mode": "test_mode",
    "measured_size": "measured_size_hxw",
    "miou_reported": "miou_reported",
    "miou_reported_dataset": "miou_reported_dataset",
    "miou_measured": "miou_measured",
    "miou_diff": "miou_diff",
    "miou_demo": "miou_demo",
    "miou_ms_flip_reported": "miou_ms_flip_reported",
    "miou_ms_flip_measured": "miou_ms_flip_measured",
    "params_m": "params_m",
    "params_counts_norm_statistics": "params_include_bn_statistics",
    "gmacs": "macs_g",
    "latency_median_ms": "latency_median_ms",
    "latency_p90_ms": "latency_p90_ms",
    "latency_std_ms": "latency_std_ms",
    "latency_ci_low_ms": "latency_median_ci95_low_ms",
    "latency_ci_high_ms": "latency_median_ci95_high_ms",
    "latency_events_ms": "latency_cuda_events_median_ms",
    "preprocess_ms": "preprocess_median_ms",
    "forward_ms": "forward_median_ms",
    "postprocess_ms": "postprocess_median_ms",
    "fps": "fps",
    "protocol": "protocol",
    "published_fps": "published_fps",  # the manifest's figure closest to the record (segbench.published.chosen_figure)
    "published_ms": "published_ms_per_image",
    "published_protocol": "published_protocol",
    "published_input": "published_input_hxw",
    "published_gpu": "published_gpu",
    "published_backend": "published_backend",
    "published_precision": "published_precision",
    "published_comparable": "published_comparable",
    "published_differs": "published_differs",
    "published_source": "published_source",
    "memory_mb": "inference_mem_mb",
    "memory_reserved_mb": "inference_mem_reserved_mb",
    "train_mem_gb": "train_mem_gb_reported",
    "train_mem_gb_measured": "train_mem_gb_measured",
    "train_mem_reserved_gb": "train_mem_reserved_gb_measured",
    "train_step_s": "train_step_s",
    "energy_j_per_image": "energy_j_per_image",
    "load_1min": "load_average_1min",
    "hardware": "hardware",
    "device_name": "device",
    "config": "config",
    "weights": "weights",
    "record": "record",
}
FORMATS = {"md": "model_zoo.md", "csv": "model_zoo.csv", "json": "model_zoo.json", "latex": "model_zoo.tex"}
_DIGITS = 4  # enough for every figure on the page; fewer bytes of float noise in diffs


_INTEGER = {"batch_size"}  # pandas makes a column with gaps float; counts go out as integers
_EXACT = {"params_m", "gmacs"}  # integer counts / 1e6 or 1e9: kept whole (rounding made 260 params 0.0003 M)


def _clean(value: Any, integer: bool = False, exact: bool = False) -> Any:
    """JSON-safe cell: NaN to None, numpy scalars to Python, floats rounded (except exact counts)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return int(value) if integer else value if exact else round(value, _DIGITS)
    return value


def table_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of the family tables (measured and not yet measured; failures left out), export names."""
    rows = frame[frame["status"] != "failed"]
    return [{name: _clean(r[column], column in _INTEGER, column in _EXACT) for column, name in COLUMNS.items()}
            for r in rows.to_dict("records")]  # fmt: skip


def to_csv(frame: pd.DataFrame) -> str:
    out = io.StringIO()
    pd.DataFrame(table_rows(frame), columns=list(COLUMNS.values())).to_csv(out, index=False, lineterminator="\n")
    return out.getvalue()


def to_json(frame: pd.DataFrame) -> str:
    """The CSV's rows, plus per-class IoU (%) as {class: IoU} where a record has one."""
    rows = table_rows(frame)
    kept = frame[frame["status"] != "failed"].to_dict("records")
    for row, source in zip(rows, kept):
        classes, iou = source.get("classes"), source.get("iou")
        row["iou"] = dict(zip(classes, map(_clean, iou))) if isinstance(classes, list) and isinstance(iou, list) else None
    return json.dumps(rows, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                                                 "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}  # fmt: skip


def latex_escape(text: str) -> str:
    """Text as LaTeX prints it: specials escaped, and on one line (a blank line would end the table row)."""
    return "".join(_LATEX_SPECIAL.get(c, " " if c.isspace() or not c.isprintable() else c) for c in str(text))


def _num(value: Any, digits: int) -> str:
    return "--" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _count(value: Any, decimals: int) -> str:
    return "--" if value is None or (isinstance(value, float) and math.isnan(value)) else fixed(value, decimals)


def to_latex(frame: pd.DataFrame) -> str:
    """A booktabs table of every measured model: mIoU, params, MACs, latency, FPS, inference memory.

    Needs `\\usepackage{booktabs}`. A hardware column appears only when the rows span several.
    An mIoU not measured by segbench is the reported one, marked with a dagger.
    """
    rows = frame[frame["status"] == "ok"].to_dict("records")
    hardware = sorted({r["hardware"] for r in rows})
    headers = ["Model", "Backbone", r"mIoU (\%)", "Params (M)", "MACs/image (G)", "Latency (ms)", "FPS", "Mem (MB)"]
    headers += ["Hardware"] if len(hardware) > 1 else []
    lines = [
        "% Generated by `segbench render --format latex` from results/ and zoo/. Needs \\usepackage{booktabs}.",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{ll" + "r" * 6 + ("l" if len(hardware) > 1 else "") + "}",
        r"\toprule",
        " & ".join(headers) + r" \\",
        r"\midrule",
    ]
    for r in rows:
        miou = _num(r["miou"], 2) + ("" if r["miou_is_measured"] or r["miou"] is None else r"$^\dagger$")
        cells = [latex_escape(r["model"]), latex_escape(r["backbone"] or "--"), miou, _count(r["params_m"], 2),
                 _count(r["gmacs"], 1), _num(r["latency_median_ms"], 1), _num(r["fps"], 2), _num(r["memory_mb"], 0)]  # fmt: skip
        cells += [latex_escape(r["hardware"])] if len(hardware) > 1 else []
        lines.append(" & ".join(cells) + r" \\")
    sizes = sorted({r["measured_size"] for r in rows if r["measured_size"]})
    where = ", ".join(sorted({r["device_name"] for r in rows})) or "no hardware"
    caption = (
        f"Measured on {latex_escape(where)} at batch 1, input {latex_escape(', '.join(sizes) or '--')} (H×W): "
        "median latency, MACs per image as timed (one multiply-add = 1), inference peak memory. "
        r"mIoU on Cityscapes val; $^\dagger$ as reported by the authors."
    ).replace("×", r"$\times$")
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + caption + "}", r"\label{tab:model-zoo}", r"\end{table}"]
    return "\n".join(lines) + "\n"
