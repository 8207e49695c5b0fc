"""records + manifests -> one pandas DataFrame -> model_zoo.md (jinja2).

The frame is the single source of the page and the plots: a row per model and hardware with a
record, and a row per model without one (reported numbers only). Rendering is deterministic:
the same records and manifests give the same bytes. No torch here.
"""

from __future__ import annotations

import difflib
import math
import re
import statistics
from pathlib import Path
from typing import Any, Collection
from urllib.parse import quote

import jinja2
import pandas as pd
from jinja2.sandbox import SandboxedEnvironment

from segbench import PROJECT_ROOT
from segbench.errors import SegbenchError, one_line
from segbench.formatting import fixed
from segbench.manifest import BUILTIN_WEIGHTS, ModelSpec, load_zoo
from segbench.protocols import DEFAULT as DEFAULT_PROTOCOL, protocol_name
from segbench.published import published_columns
from segbench.records import CROSS_CHECK_TOLERANCE, MEASURED_DATASET, is_demo_accuracy, iter_records, macs_per_image
from segbench.stats import latency_summary
from segbench.validity import validity_of

DEFAULT_TEMPLATE = PROJECT_ROOT / "templates" / "model_zoo.md.j2"
_ENV_FIELDS = ("cpu", "torch_threads", "torch", "cuda", "cudnn", "driver", "segbench", "git_commit", "date", "load_average_1min")
_RECORD_COLUMNS = ("hardware", "device_name", "record", "measured_size", "images", "warmup", "error", "miou_measured",
                   "miou_ms_flip_measured", "miou_demo", "iou", "classes", "eval_images", "eval_split", "eval_demo",
                   "params_m", "gmacs", "gmacs_thop", "latency_median_ms", "latency_p90_ms", "fps", "memory_mb",
                   "train_mem_gb_measured", "train_step_s", "latency_std_ms", "latency_ci_low_ms", "latency_ci_high_ms",
                   "latency_events_ms", "stage_clock", "preprocess_ms", "forward_ms", "postprocess_ms", "memory_reserved_mb",
                   "train_mem_reserved_gb", "energy_j_per_image", "sm_clock_before", "sm_clock_after", "gpu_warnings", "load_1min")  # fmt: skip
_RECORD_COLUMNS += ("validity", "validity_failures")  # validity.verdict: VALID, INVALID or not applicable
_RECORD_COLUMNS += ("params_norm_statistics_m",)  # BatchNorm statistics of the inference graph (PaddleSeg counts them)
_RECORD_COLUMNS += ("shared_from",)  # the model whose measurement a record copied (records.SHARED_SECTIONS)
_RECORD_COLUMNS += ("gmacs_forward", "macs_fvcore_ratio", "macs_thop_ratio", "macs_fvcore_differs_in")  # the counters apart
_RECORD_COLUMNS += ("protocol", "backend", "published_fps", "published_ms", "published_protocol", "published_input", "published_gpu",
                    "published_backend", "published_precision", "published_source", "published_comparable", "published_differs",
                    "published_figures")  # the manifest's published speed set beside the record's (segbench.published)


def _spec_columns(spec: ModelSpec, order: int) -> dict[str, Any]:
    reported = spec.headline_result
    return {
        "order": order,
        "model": spec.name,
        "family": spec.family,
        "collection": spec.collection,
        "backbone": spec.backbone,
        "crop_size": "×".join(map(str, spec.crop_size)) if spec.crop_size else None,
        "batch_size": spec.batch_size,
        "schedule": spec.schedule,
        "ema": spec.ema,
        "test_size": "×".join(map(str, spec.test.size)),
        "test_mode": spec.test.mode if spec.test.mode == "whole" else f"slide {'×'.join(map(str, spec.test.crop))}",
        "miou_reported": reported.miou if reported else None,
        "miou_ms_flip_reported": reported.miou_ms_flip if reported else None,
        "miou_source": reported.source if reported else None,
        "miou_reported_dataset": reported.dataset if reported else None,
        "train_mem_gb": spec.train_memory_gb,
        "params_convention_norm_statistics": spec.params_count_norm_statistics,
        "config": spec.config,
        "weights": None if spec.builtin_weights else spec.weights,  # a link to the file; builtin ones have none
    }


def _page_stages(stages: dict[str, Any]) -> dict[str, list[float] | None]:
    """The page's three stage columns from a record's stages: postprocessing is every stage after forward that ran
    (resize, argmax, copy_out), summed per prediction; records made before protocols have it as one stage."""
    after = [stages[name] for name in ("resize", "argmax", "copy_out") if isinstance(stages.get(name), list)]
    post = [sum(parts) for parts in zip(*after)] if after else stages.get("postprocess")
    return {"preprocess": stages.get("preprocess"), "forward": stages.get("forward"), "postprocess": post}


def _record_columns(path: Path, record: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    env, settings = record["environment"], record["settings"]
    row: dict[str, Any] = {
        "hardware": env["hardware"],
        "device_type": env["device_type"],
        "device_name": env.get("gpu_name") or env["cpu"],
        "record": path.relative_to(results_dir.parent).as_posix(),
        "status": record["status"],
        "measured_size": "×".join(map(str, settings["input_size"])),
        "images": settings["images"],
        "warmup": settings["warmup"],
        "batch": settings.get("batch_size"),
        "dtype": settings.get("dtype"),
        "layout": ("channels_last" if settings.get("channels_last") else "contiguous")
        + (f", {settings['backend']}" if settings.get("backend", "eager") != "eager" else ", torch.compile" if settings.get("compile") else ""),
        "cudnn": f"benchmark={settings.get('cudnn_benchmark')}, deterministic={settings.get('cudnn_deterministic')}",
        "input_kind": settings.get("input"),
        "weights_source": settings["weights"] if settings.get("weights") in ("random-init", BUILTIN_WEIGHTS) else "published",
        "protocol": protocol_name(settings),
        "backend": settings.get("backend") or ("compile" if settings.get("compile") else "eager"),
        **{f"env_{k}": env.get(k) for k in _ENV_FIELDS},
    }
    if record["status"] != "ok":
        row["error"] = f"{record['error']['kind']}: {record['error']['message']}"
        return row
    # A section the record lacks was left out by --measure (settings.measure): blank on the page, not a failure.
    if "params" in record:
        params = record["params"]
        row.update(params_m=params["inference"] / 1e6, params_total_m=params["total"] / 1e6,
                   params_norm_statistics_m=params["norm_statistics"] / 1e6 if params.get("norm_statistics") is not None else None)  # fmt: skip
    if "macs" in record:
        per_image, thop = macs_per_image(record), record["macs"].get("thop")
        row.update(gmacs=per_image / 1e9 if per_image is not None else None, gmacs_thop=thop / 1e9 if thop is not None else None)
        row.update(_counter_columns(record["macs"]))
    if "latency" in record:
        latency = record["latency"]
        stats = latency_summary(latency["samples"])
        stages = latency.get("stages") or {}
        row.update(
            latency_median_ms=stats["median_ms"],
            latency_p90_ms=stats["p90_ms"],
            latency_std_ms=stats["std_ms"],
            latency_ci_low_ms=stats["median_ci95_low_ms"],
            latency_ci_high_ms=stats["median_ci95_high_ms"],
            latency_events_ms=_median_ms(latency.get("cuda_event_samples")),
            stage_clock=stages.get("clock"),
            **{f"{stage}_ms": _median_ms(samples) for stage, samples in _page_stages(stages).items()},
            fps=stats["fps"],
            images=len(latency["samples"]),
            warmup=(latency.get("warmup") or {}).get("iterations", settings["warmup"]),
            load_1min=latency.get("load_average_1min"),
        )
    memory = record.get("memory") or {}
    if memory.get("measured"):
        row.update(memory_mb=memory["peak_allocated_bytes"] / 2**20, memory_reserved_mb=memory["peak_reserved_bytes"] / 2**20)
    training = record.get("training") or {}
    if training.get("measured"):
        row["train_step_s"] = statistics.median(training["step"]["samples"])
        if "memory" in training:
            row["train_mem_gb_measured"] = training["memory"]["peak_allocated_bytes"] / 2**30
            row["train_mem_reserved_gb"] = training["memory"]["peak_reserved_bytes"] / 2**30
    gpu = record.get("gpu_state") or {}
    if gpu.get("measured"):
        row.update(
            energy_j_per_image=gpu.get("energy_per_image_j"),
            sm_clock_before=gpu["before"].get("sm_clock_mhz"),  # optional: NVML may refuse the reading
            sm_clock_after=gpu["after"].get("sm_clock_mhz"),
            gpu_warnings="; ".join(gpu["warnings"]) or None,
        )
    validity = validity_of(record)
    row.update(validity=validity["verdict"], validity_failures="; ".join(validity.get("failures", [])) or None)
    if "shared_from" in record:
        row["shared_from"] = record["shared_from"].removesuffix(".json")
    accuracy, ms_flip = record.get("accuracy"), record.get("accuracy_ms_flip") or {}
    if accuracy:
        demo = is_demo_accuracy(record)
        row.update(
            miou_measured=None if demo else accuracy["miou"],
            miou_ms_flip_measured=None if demo else ms_flip.get("miou"),
            miou_demo=accuracy["miou"] if demo else None,
            iou=accuracy["iou"],
            classes=accuracy["classes"],
            eval_images=accuracy["num_images"],
            eval_split=accuracy["split"],
            eval_demo=demo,
        )
    return row


def _counter_columns(macs: dict[str, Any]) -> dict[str, Any]:
    """fvcore's and thop's counts over the primary (FlopCounterMode) one, and the operator groups fvcore counts
    differently; nothing for records counted before the primary existed, or without a cross-check."""
    primary = macs.get("flop_counter_macs")
    if not primary:
        return {}
    ratios = {f"macs_{counter}_ratio": macs[counter] / primary for counter in ("fvcore", "thop") if counter in macs}
    groups = "; ".join(
        f"{g['operators']}: fvcore {_fixed(g['fvcore'] / 1e9, 3)} G, primary {_fixed(g['flop_counter_macs'] / 1e9, 3)} G"
        for g in macs.get("operators_differing", [])
    )
    return {"gmacs_forward": primary / 1e9, **ratios, "macs_fvcore_differs_in": groups or None}


def _counters_disagree(row: dict[str, Any]) -> bool:
    return any(row[key] is not None and abs(row[key] - 1) > CROSS_CHECK_TOLERANCE for key in ("macs_fvcore_ratio", "macs_thop_ratio"))


def _median_ms(samples: list[float] | None) -> float | None:
    return statistics.median(samples) * 1000 if samples else None


def load_frame(results_dir: str | Path, zoo_dir: str | Path, models: Collection[str] | None = None) -> pd.DataFrame:
    """One row per (model, hardware) record, plus one per model that has no record yet.

    A failure record beside a successful one of the same model and hardware is an older attempt
    and is left out; records of models no longer in the zoo are ignored. `models` limits the
    frame to those names (a sweep's selection); None keeps every zoo entry.
    """
    results_dir = Path(results_dir)
    specs = load_zoo(zoo_dir)
    if models is not None:
        wanted = set(models)
        specs = [s for s in specs if s.name in wanted]
    by_name = {s.name: (i, s) for i, s in enumerate(specs)}
    found = [(p, r) for p, r in iter_records(results_dir) if r["model"] in by_name] if results_dir.is_dir() else []
    succeeded = {(r["model"], p.parent.name) for p, r in found if r["status"] == "ok"}  # per hardware and protocol
    rows = [
        _spec_columns(by_name[r["model"]][1], by_name[r["model"]][0]) | _record_columns(p, r, results_dir)
        for p, r in found
        if r["status"] == "ok" or (r["model"], p.parent.name) not in succeeded
    ]
    have = {r["model"] for r in rows}
    rows += [_spec_columns(s, i) | {"status": "not measured"} for i, s in enumerate(specs) if s.name not in have]
    rows = [row | published_columns(by_name[row["model"]][1].published_speeds, row) for row in rows]
    frame = pd.DataFrame(rows)
    for column in _RECORD_COLUMNS:
        if column not in frame:
            frame[column] = None
    # segbench measures mIoU on Cityscapes only: a Δ needs a reported Cityscapes number, and `miou` (measured,
    # else reported) is on `miou_dataset`, which the plots keep apart and the page names
    measured = frame["miou_measured"].notna()
    frame["miou_diff"] = (frame["miou_measured"] - frame["miou_reported"]).where(frame["miou_reported_dataset"] == MEASURED_DATASET)
    frame["miou"] = frame["miou_measured"].where(measured, frame["miou_reported"])
    frame["miou_dataset"] = frame["miou_reported_dataset"].where(~measured, MEASURED_DATASET).where(frame["miou"].notna())
    frame["miou_is_measured"] = measured
    # PaddleSeg's entries count params as PaddleSeg publishes them (BatchNorm statistics in), where the record has them
    counted = frame["params_convention_norm_statistics"].fillna(False).astype(bool) & frame["params_norm_statistics_m"].notna()
    frame["params_m"] = frame["params_m"].where(~counted, frame["params_m"] + frame["params_norm_statistics_m"])
    frame["params_counts_norm_statistics"] = counted
    return frame.sort_values(["order", "hardware"], na_position="last", kind="stable").reset_index(drop=True)


def _fmt(value: Any, digits: int = 2) -> str:
    """A table cell: fixed decimals, '—' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}"
    return str(value)


def _fixed(value: Any, decimals: int = 2) -> str:
    """A count's cell (params, MACs): fixed() for a number, '—' for missing."""
    return fixed(value, decimals) if isinstance(value, (int, float)) and not math.isnan(value) else "—"


_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\|`[]"} | {"&": "&amp;", "<": "&lt;"})
_PLAIN = re.compile(r"[\w.+:/-]*")  # shown as code as it is: nothing in it that a code span would change


def markdown_text(value: Any) -> str:
    """Text from a manifest or a record as one markdown table cell that shows it as it is: on one line,
    with `|`, backslashes, backticks and brackets escaped, `&` and `<` as entities (no HTML), and a
    leading `#`, `-`, `+` or `>` escaped (no heading, list or quote)."""
    text = " ".join(str(value).splitlines()).translate(_MARKDOWN_SPECIAL)
    return "\\" + text if text.startswith(("#", "-", "+", ">")) else text


def _escaped(value: Any) -> Any:
    """Numbers (and None) as they are for the template's filters; lists item by item; anything else as escaped text."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return [_escaped(v) for v in value] if isinstance(value, list) else markdown_text(value)


_RAW = {"status", "record", "config", "weights"}  # tested by the template, or written by the link filters


def _code(text: str) -> str:
    """An escaped cell as code where that shows it unchanged, else as text."""
    return f"`{text}`" if _PLAIN.fullmatch(text) else text


def _link(url: Any, text: str) -> str:
    """A markdown link for URLs (percent-encoded, so no `)`, `|` or space ends it); a repository-relative
    path (as in mmseg metafiles) is shown as code."""
    if not isinstance(url, str) or not url:
        return "—"
    if url.startswith(("http://", "https://")):
        return f"[{text}]({quote(url, safe=_URL_SAFE)})"
    return _code(markdown_text(url))


def _protocol_note(protocol: Any) -> str:
    """' (ddrnet protocol)' beside the hardware of a record timed under a protocol other than the default, so that a
    model's rows of two protocols on one hardware tell themselves apart; nothing for the default."""
    return f" ({protocol} protocol)" if isinstance(protocol, str) and protocol != DEFAULT_PROTOCOL else ""


def _whole(value: Any) -> str:
    """A count as pandas may hold it (1.0), or a word such as 'auto', for the page."""
    return str(int(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


_URL_SAFE = ":/?#@!$&'*+,;=%~"  # RFC 3986 delimiters kept; space, ( ) | ` < > [ ] \ and non-ASCII percent-encoded


def _settings_by_hardware(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The settings behind one hardware's numbers; a setting that varies lists every value."""

    def values(key: str, text=None) -> str:
        return ", ".join(sorted({(text or (lambda r: str(r[key])))(r) for r in rows if r.get(key) is not None})) or "—"

    return {
        "timed": values("images", lambda r: f"{_whole(r['images'])} after {_whole(r['warmup'])} warm-up"),
        "batch": values("batch", lambda r: str(int(r["batch"]))),
        "dtype": values("dtype"),
        "layout": values("layout"),
        "cudnn": values("cudnn"),
        "input": values("input_kind"),
        "weights": values("weights_source"),
        "protocol": values("protocol"),
        "load": _range([r["load_1min"] for r in rows if r.get("load_1min") is not None]),
    }


def _range(values: list[float]) -> str:
    """'1.20–3.40' (min–max), one number when they agree, '—' for none."""
    if not values:
        return "—"
    low, high = _fmt(min(values)), _fmt(max(values))
    return low if low == high else f"{low}–{high}"


def _summary_order(row: dict[str, Any]) -> tuple:
    """Per hardware, each dataset's models apart (Cityscapes first, then the others by name), best mIoU first."""
    dataset = row["miou_dataset"]
    return (row["hardware"], dataset != MEASURED_DATASET, dataset or "", -(row["miou"] or 0), row["model"])


def render_markdown(frame: pd.DataFrame, template: str | Path | None = None) -> str:
    """The page from a template: the shipped one, or a user's, in jinja2's sandbox, so that a template stays data and
    cannot reach Python (no attributes starting with `_`, no calls that change state)."""
    template = Path(template or DEFAULT_TEMPLATE)
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(template.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["fixed"] = _fixed
    env.filters["link"] = _link
    env.filters["code"] = _code
    env.filters["protocol_note"] = _protocol_note
    env.filters["url"] = lambda path: quote(path, safe="/")
    raw = frame.astype(object).where(frame.notna(), None).to_dict("records")
    records = [{k: v if k in _RAW else _escaped(v) for k, v in r.items()} for r in raw]
    measured = [r for r in records if r["status"] == "ok"]
    hardware: dict[str, dict[str, Any]] = {}
    for r in sorted(measured, key=lambda r: r["env_date"]):
        hardware[r["hardware"]] = r  # the newest record of each hardware describes it
    families = {}
    for r in records:
        if r["status"] != "failed":
            families.setdefault(r["collection"], []).append(r)
    settings = {hw: _settings_by_hardware([r for r in measured if r["hardware"] == hw]) for hw in hardware}
    with_iou = [r for r in measured if r["iou"]]
    per_class = [r for r in with_iou if r["classes"] == with_iou[0]["classes"]]
    try:
        return env.get_template(template.name).render(
            classes=per_class[0]["classes"] if per_class else [],
            per_class=per_class,
            summary=sorted(measured, key=_summary_order),
            disagreements=[r for r in sorted(measured, key=lambda r: r["order"]) if _counters_disagree(r)],
            families=families,
            failures=[r for r in records if r["status"] == "failed"],
            hardware=dict(sorted(hardware.items())),
            settings=settings,
        )
    except jinja2.TemplateError as exc:  # a mistake in a user's template, or the sandbox refusing what would run Python
        at = f" at line {exc.lineno}" if getattr(exc, "lineno", None) else ""
        raise SegbenchError(f"{template}{at}: {type(exc).__name__}: {one_line(exc)}") from None


def stale_diff(rendered: str, path: Path) -> str | None:
    """A unified diff from the file on disk to the freshly rendered text; None when they are equal.

    A missing file diffs against nothing, so the whole page shows as added.
    """
    on_disk = path.read_text(encoding="utf-8") if path.is_file() else ""
    if on_disk == rendered:
        return None
    lines = difflib.unified_diff(
        on_disk.splitlines(keepends=True), rendered.splitlines(keepends=True),
        fromfile=f"{path} (on disk)" if path.is_file() else f"{path} (missing)", tofile=f"{path} (rendered)",
    )  # fmt: skip
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
