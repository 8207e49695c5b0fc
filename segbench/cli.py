"""Command line: `segbench bench|profile|validate|list|render|plot|compare|merge`; `python bench.py` is `segbench bench`.

Output layout under --output DIR (default: the current directory):
    DIR/results/<hardware>/<model>.json   one record per model and hardware
    DIR/model_zoo.md                      the rendered page
    DIR/plots/miou_vs_{latency,macs,params}.{png,pdf}
A user error prints one line (no traceback unless --debug) and exits 1; so does a sweep in
which any model failed. torch is imported only by `bench`, `profile` and `validate`.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path
from typing import NoReturn

from segbench import PROJECT_ROOT
from segbench.errors import SegbenchError, one_line_warnings
from segbench.records import MEASURED_DATASET, MEASUREMENTS, chosen_measurements


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[x×,](\d+)", text.strip())
    if not match or min(int(match[1]), int(match[2])) <= 0:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 512x1024), got {text!r}")
    return int(match[1]), int(match[2])


def _integer_at_least(least: int):
    """An argparse type: an integer of at least `least`."""

    def parse(text: str) -> int:
        value = int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {least}, got {text}")
        return value

    return parse


_positive, _non_negative = _integer_at_least(1), _integer_at_least(0)


def _warmup(text: str) -> int | str:
    """--warmup: a count of discarded passes, or 'auto' (until the latency is steady)."""
    from segbench.protocols import AUTO

    return AUTO if text == AUTO else _non_negative(text)


def _sha256(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise argparse.ArgumentTypeError(f"expected the 64 hex digits of a sha256, got {text!r}")
    return text.lower()


def _measurements(text: str) -> tuple[str, ...]:
    """--measure: a comma list of MEASUREMENTS, sorted."""
    try:
        return chosen_measurements(text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    from segbench.plan import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    out = Path(args.output)
    return out / "results", out / "model_zoo.md", out / "plots"


def _check_writable(folder: Path) -> None:
    """Before anything is built: records that cannot be written should be one line now, not a traceback after a model."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise SegbenchError(f"--output: cannot write records to {folder}: {exc.strerror or exc}; give a writable folder") from None


def cmd_bench(args: argparse.Namespace) -> int:
    import time

    started = time.perf_counter()
    from rich.console import Console
    from rich.markup import escape

    from segbench.build import model_builder
    from segbench.plan import TimeBudget, sweep_order
    from segbench.records import iter_records
    from segbench.protocols import get_protocol
    from segbench.runner import BenchSettings, rank, resolve_device, resolve_evaluation, run_sweep
    from segbench.summary import efficiency_line, print_summary

    console = Console(stderr=True, soft_wrap=True)
    _apply_preset(args)
    if args.compile:
        if args.backend not in (None, "compile"):
            raise SegbenchError(f"--compile: is --backend compile, which conflicts with --backend {args.backend}")
        args.backend = "compile"
    protocol = get_protocol(args.protocol).with_overrides(
        images=args.images, warmup=args.warmup, backend=args.backend, precision=None if args.dtype == "fp32" else args.dtype
    )  # fmt: skip
    if protocol.backend == "onnxruntime" and args.dtype != "fp32":
        raise SegbenchError(f"--dtype {args.dtype}: the ONNX Runtime backend runs the exported fp32 graph; autocast cannot reach it")
    if protocol.backend == "compile" and protocol.warmup == 0:
        raise SegbenchError("--backend compile: needs --warmup 1 or more, since the first call compiles the model and must not be timed")
    specs = _selected_specs(args.zoo, args.models)
    specs = sweep_order(specs, args.order or ("breadth" if args.time_budget and args.models == ["all"] else "manifest"))
    for spec in specs:
        model_builder(spec)  # a wrong architecture name fails here, before any measuring
    if args.checkpoint and len(specs) != 1:
        raise SegbenchError(f"--checkpoint: applies to one model, but --models selects {len(specs)}")
    if args.sha256 and not args.checkpoint:
        raise SegbenchError("--sha256: pins the file of --checkpoint; give --checkpoint too")
    if fanned := bool(args.gpus or args.executor):
        from segbench import executors

        executors.check_arguments(args)
    device = executors.placeholder_device(args) if fanned else _init_distributed(resolve_device(args.device, args.gpu))
    evaluation = resolve_evaluation(
        args.data_root, requested=args.eval, split=args.split, ms_flip=args.ms_flip, workers=args.workers
    )
    if args.measure and "miou" in args.measure and evaluation is None:
        raise SegbenchError("--measure miou: needs a dataset; give --data-root DIR or --eval")
    settings = BenchSettings(
        device=device, protocol=protocol, input_size=args.input_size,
        weights=args.weights, checkpoint=args.checkpoint, evaluation=evaluation, dtype=args.dtype,
        checkpoint_sha256=args.sha256, trust_checkpoints=args.trust_checkpoints,
        channels_last=args.channels_last, train_iters=args.train_iters,
        measure=args.measure or MEASUREMENTS,
    )  # fmt: skip
    results_dir = _paths(args)[0]
    _check_writable(results_dir)
    writer = rank() == 0
    selected = [spec.name for spec in specs]
    budget = args.time_budget and TimeBudget(args.time_budget, [r for _, r in iter_records(results_dir)] if results_dir.is_dir() else [])
    try:
        if fanned:
            outcomes = executors.fan_out(args, specs, settings, results_dir, console)
            if outcomes is None:  # --no-wait: the jobs write the records
                return 0
        else:
            outcomes = run_sweep(specs, settings, results_dir, force=args.force, isolate=args.isolate, console=console, budget=budget)
    except KeyboardInterrupt:
        if writer and not args.no_report:  # the page and plots of what was measured so far
            _render(args, console, selected)
        raise
    finally:
        _finish_distributed()
    if not writer:
        return 0
    print_summary(outcomes, console)
    if not args.no_report:
        _render(args, console, selected)
    if any(o.status != "skipped" for o in outcomes):
        console.print(efficiency_line(outcomes, time.perf_counter() - started), markup=False, highlight=False)
    for line in budget.report() if budget else []:  # what is left undone comes last
        console.print(line, markup=False, highlight=False)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        console.print(f"[red]{len(failed)} of {len(outcomes)} model(s) failed[/]; their records are in {escape(str(results_dir))}")
    return 1 if failed else 0


_BENCH_DEFAULTS = {"models": ["all"], "images": None, "warmup": None, "input_size": None, "device": None, "train_iters": 10,
                   "measure": None, "protocol": "mmseg"}


def _apply_preset(args: argparse.Namespace) -> None:
    """Fill unset bench options from --preset, then from the built-in defaults."""
    from segbench.presets import load_preset

    preset = load_preset(args.preset) if args.preset else {}
    for key, default in _BENCH_DEFAULTS.items():
        if getattr(args, key) is None:
            if key == "device" and (args.gpu is not None or args.gpus):
                continue  # an explicit --gpu or --gpus wins over a preset's device
            setattr(args, key, preset.get(key, default))


def _init_distributed(device):
    """Under torchrun (WORLD_SIZE > 1): join the process group; each rank takes its local GPU."""
    import os

    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def _finish_distributed() -> None:
    """Leave the process group cleanly: a torchrun process that exits inside it can abort at shutdown."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def _writing_into(folder: Path, what: str):
    """A full disk (any OSError) while writing the page, plots or exports: one line naming the folder; records stay."""
    try:
        yield
    except OSError as exc:
        raise SegbenchError(f"{folder}: cannot write {what}: {exc.strerror or exc}") from exc


PLOTS_STAMP = ".plots-drawn-from.json"
"""Beside the page (the plots folder holds figures only): the digest of the frame (and plotting code) the sweep's plots were drawn from, and their files."""


def _render(args: argparse.Namespace, console, models: list[str] | None) -> None:
    """The page and plots of a sweep: its selected models only (the zoo's page is `segbench render`).

    Plots drawn from the same frame by the same code are not drawn again (matplotlib is most of a
    re-run's time when every record is current): PLOTS_STAMP says what they were drawn from."""
    import hashlib
    import json

    from segbench.report import load_frame, render_markdown

    results_dir, page, plots_dir = _paths(args)
    frame = load_frame(results_dir, args.zoo, models)
    text = render_markdown(frame, getattr(args, "template", None))
    code = (Path(__file__).with_name("plots.py")).read_bytes()
    digest = hashlib.sha256(frame.to_json(orient="split", default_handler=str).encode() + code).hexdigest()
    stamp = page.with_name(PLOTS_STAMP)
    try:
        drawn = json.loads(stamp.read_text(encoding="utf-8")) if stamp.is_file() else {}
    except (OSError, ValueError):
        drawn = {}
    files = drawn.get("files") if isinstance(drawn, dict) and drawn.get("digest") == digest else None
    current = isinstance(files, list) and all(isinstance(f, str) and f == Path(f).name and (plots_dir / f).is_file() for f in files)
    with _writing_into(page.parent, "the page and plots"):
        page.parent.mkdir(parents=True, exist_ok=True)
        if not page.is_file() or page.read_text(encoding="utf-8") != text:
            page.write_text(text, encoding="utf-8")
        if current:
            console.print(f"wrote {page}; the {len(files)} plot file(s) in {plots_dir} are current", markup=False)
            return
        from segbench.plots import miou_datasets, plot_all

        stamp.unlink(missing_ok=True)
        written = plot_all(frame, plots_dir, datasets=tuple(miou_datasets(frame)))  # one set of figures per dataset
        stamp.write_text(json.dumps({"digest": digest, "files": sorted(p.name for p in written)}), encoding="utf-8")
    console.print(f"wrote {page} and {len(written)} plot file(s) in {plots_dir}", markup=False)


def cmd_render(args: argparse.Namespace) -> int:
    """Write the page (and any other --format); with --check, write nothing and diff against the files."""
    from rich.console import Console

    from segbench.export import FORMATS, to_csv, to_json, to_latex
    from segbench.report import load_frame, render_markdown, stale_diff

    results_dir, page, _ = _paths(args)
    frame = load_frame(results_dir, args.zoo, _selected_names(args.zoo, args.models))
    writers = {"md": lambda: render_markdown(frame, args.template), "csv": lambda: to_csv(frame),
               "json": lambda: to_json(frame), "latex": lambda: to_latex(frame)}  # fmt: skip
    console = Console(stderr=True, soft_wrap=True)
    stale = []
    for fmt in dict.fromkeys(args.format):
        path, text = page.with_name(FORMATS[fmt]), writers[fmt]()
        if not args.check:
            with _writing_into(path.parent, path.name):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            console.print(f"wrote {path}", markup=False)
        elif (diff := stale_diff(text, path)) is not None:
            sys.stdout.write(diff)
            stale.append(path)
    if stale:
        command = "segbench render" + (f" --output {args.output}" if args.output != "." else "")
        command += f" --format {' '.join(dict.fromkeys(args.format))}" if args.format != ["md"] else ""
        console.print(f"{', '.join(map(str, stale))}: out of date with results/ and zoo/; run `{command}` and commit the result", markup=False)
        return 1
    if args.check:
        console.print(f"{', '.join(str(page.with_name(FORMATS[f])) for f in dict.fromkeys(args.format))}: up to date", markup=False)
    return 0


def _selected_specs(zoo: str, patterns: list[str]) -> list:
    """The zoo entries that --models selects (names, globs, families; space- or comma-separated)."""
    from segbench.manifest import load_zoo, select_models

    return select_models(load_zoo(zoo), [p for arg in patterns for p in arg.split(",") if p])


def _selected_names(zoo: str, patterns: list[str]) -> list[str] | None:
    """The model names that --models selects; None for 'all'."""
    return None if patterns == ["all"] else [s.name for s in _selected_specs(zoo, patterns)]


def cmd_plot(args: argparse.Namespace) -> int:
    from rich.console import Console

    from segbench.plots import plot_all
    from segbench.report import load_frame

    results_dir, _, plots_dir = _paths(args)
    frame = load_frame(results_dir, args.zoo, _selected_names(args.zoo, args.models))
    if args.published:
        return _plot_published(args, frame, plots_dir)
    with _writing_into(plots_dir, "the plots"):
        written = plot_all(
            frame, plots_dir, args.hardware, tuple(dict.fromkeys(args.x)), size=args.size, formats=tuple(dict.fromkeys(args.format)),
            bubble=args.bubble, labels=args.labels, log=args.log, error_bars=not args.no_error_bars, datasets=(args.dataset,),
        )  # fmt: skip
    console = Console(stderr=True, soft_wrap=True)
    if not written:
        console.print(f"no measured records with an mIoU under {results_dir}: nothing to plot", markup=False)
        return 1
    for path in written:
        console.print(f"wrote {path}", markup=False)
    return 0


def _plot_published(args: argparse.Namespace, frame, plots_dir: Path) -> int:
    """`plot --published`: measured against published relative speed, for one protocol and one hardware."""
    from rich.console import Console

    from segbench.plots import plot_published

    if args.hardware and len(args.hardware) > 1:
        raise SegbenchError(f"--hardware: --published draws one hardware, got {len(args.hardware)}")
    with _writing_into(plots_dir, "the plots"):
        written = plot_published(frame, plots_dir, args.protocol, args.hardware[0] if args.hardware else None,
                                 size=args.size, formats=tuple(dict.fromkeys(args.format)))  # fmt: skip
    for path in written:
        Console(stderr=True, soft_wrap=True).print(f"wrote {path}", markup=False)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from segbench.compare import CONFIDENCE, compare_result_sets
    from segbench.summary import print_table

    rows, unpaired = compare_result_sets(args.a, args.b, min_change=args.min_change / 100)
    table = Table(title=escape(f"B / A: {args.b} vs {args.a}"))
    for column in ("Model", "Hardware A → B", "Latency A (ms)", "Latency B (ms)", "B/A", "Verdict", "Mem B/A", "MACs B/A",
                   "Params B/A", "mIoU B−A"):  # fmt: skip
        table.add_column(column, no_wrap=column == "Model", justify="left" if column in ("Model", "Hardware A → B", "Verdict") else "right")
    colour = {"slower": "red", "faster": "green", "within noise": "dim", "too few samples": "yellow", "invalid record": "red"}

    def ratio(value) -> str:
        return "—" if value is None else f"{value:.3f}"

    for r in rows:
        lat = r["latency"]
        hardware = r["hardware_a"] if r["hardware_a"] == r["hardware_b"] else f"{r['hardware_a']} → {r['hardware_b']}"
        if lat is None:
            differ = escape("settings differ: " + "; ".join(r["settings_differ"]))
            table.add_row(escape(r["model"]), escape(hardware), "—", "—", "—", f"[yellow]{differ}[/]", "—", "—", "—", "—")
            continue
        table.add_row(
            escape(r["model"]), escape(hardware),
            f"{lat.median_a_ms:.2f} [{lat.ci_a_ms[0]:.2f}, {lat.ci_a_ms[1]:.2f}]",
            f"{lat.median_b_ms:.2f} [{lat.ci_b_ms[0]:.2f}, {lat.ci_b_ms[1]:.2f}]",
            f"{lat.ratio:.3f}", f"[{colour[lat.verdict]}]{lat.verdict}[/]",
            ratio(r["memory_ratio"]), ratio(r["macs_ratio"]), ratio(r["params_ratio"]),
            "—" if r["miou_diff"] is None else f"{r['miou_diff']:+.2f}",
        )  # fmt: skip
    console = Console(soft_wrap=True)
    print_table(console, table)
    console.print(f"latency: median [{CONFIDENCE:.0%} order-statistic interval]; a change is flagged only when the intervals "
                  f"do not overlap and it is at least {args.min_change:g}%")  # fmt: skip
    if unpaired:
        console.print(f"in one set only (not compared): {', '.join(unpaired)}", markup=False)
    slower = [r["model"] for r in rows if r["latency"] and r["latency"].verdict == "slower"]
    if slower and args.fail_on_regression:
        print(f"segbench: latency regression in {len(slower)} model(s): {', '.join(slower)}", file=sys.stderr)
        return 1
    return 0


def _human(count: float) -> str:
    """1234567 -> '1.23 M': counts from a bias vector to a backbone in one column."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(count) >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count:.0f}"


def cmd_profile(args: argparse.Namespace) -> int:
    """Params and MACs of one model, per forward pass and per image as tested; fvcore and thop with
    --cross-check; per module with --breakdown.

    A quick profile's time is mostly imports: rich is imported for the table only, and the cyclic
    garbage collector is paused for the command, since the meta kernels import torch._dynamo on
    first use and the collections that import sets off cost about 0.5 s of a 3 s command (one
    model's count leaves little garbage; reference counting still frees the rest)."""
    import gc

    collecting = gc.isenabled()
    gc.disable()
    try:
        return _profile(args)
    finally:
        if collecting:
            gc.enable()


def _profile(args: argparse.Namespace) -> int:
    from segbench.build import build_model
    from segbench.complexity import count_macs_as_tested, count_params, module_breakdown
    from segbench.inference import inference_settings
    from segbench.manifest import load_zoo, select_models

    # a model's name: read the manifest that holds it; a glob or a family: the whole zoo
    specs = [s for s in load_zoo(args.zoo, mentioning=args.model) if s.name == args.model]
    specs = specs or select_models(load_zoo(args.zoo), [args.model])
    if len(specs) != 1:
        raise SegbenchError(f"profile: {args.model!r} selects {len(specs)} models; name one")
    spec = specs[0]
    size = args.input_size or spec.test.size
    test = inference_settings(spec.test, size=size)
    model = macs = None
    if not args.cross_check:  # built on the meta device: shapes only, no memory, no initialisation
        try:
            model = build_model(spec, device="meta")
            macs = count_macs_as_tested(model, test, cross_check=False)
        except Exception:  # noqa: BLE001  (a builder or a forward pass that needs real values: build on the CPU)
            model = None
    if model is None:
        model = build_model(spec)
        macs = count_macs_as_tested(model, test, cross_check=args.cross_check)
    params = count_params(model)
    print(f"{spec.name} at {size[0]}×{size[1]} (H×W), batch 1")
    print(f"params: {_human(params['inference'])} inference, {_human(params['total'])} with auxiliary heads")
    forward = "×".join(map(str, macs["forward_size"]))
    counter = ("FlopCounterMode on the meta device, FLOPs/2" if macs["primary"] == "flop_counter"
               else f"fvcore: the model cannot run on the meta device: {macs['flop_counter_error']}")  # fmt: skip
    print(f"MACs per forward pass at {forward}: {_human(macs['per_forward'])} ({counter})")
    per_image = f"{macs['forwards_per_image']} × {_human(macs['per_forward'])} = {_human(macs['per_image'])}"
    print(f"MACs per image as tested ({spec.test.mode}): {per_image}")
    if "fvcore" in macs and macs["primary"] == "flop_counter":
        ratios = [f"fvcore {_human(macs['fvcore'])} (fvcore/primary {macs['fvcore_over_flop_counter'] or 0:.4f})"]
        ratios += [f"thop {_human(macs['thop'])} (thop/fvcore {macs['thop_over_fvcore'] or 0:.4f})"] if "thop" in macs else []
        where = f"fvcore on {macs['cross_check_device']}" + (f", thop on {macs['thop_device']}" if "thop" in macs else "")
        print(f"cross-check ({where}): " + " · ".join(ratios))
    for group in macs.get("operators_differing", []):
        ops = [", ".join(group[key]) or "none" for key in ("fvcore_by_operator", "flop_counter_by_operator")]
        print(f"fvcore differs in {group['operators']}: {_human(group['fvcore'])} vs {_human(group['flop_counter_macs'])} "
              f"(fvcore {ops[0]}; FlopCounterMode {ops[1]})")  # fmt: skip
    for name, reason in macs.get("cross_check_unavailable", {}).items():
        print(f"{name} unavailable: {reason}")
    if macs.get("fvcore_unsupported_ops"):
        print("not counted by fvcore (elementwise): " + ", ".join(f"{op}×{n}" for op, n in macs["fvcore_unsupported_ops"].items()))
    if args.breakdown:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        from segbench.summary import print_table

        rows = module_breakdown(model, macs["forward_size"], args.depth)
        total = rows[0]["macs"] or 1
        table = Table(title=f"params and MACs per module (one forward pass at {forward}), depth {args.depth}")
        for column in ("Module", "Type", "Params", "MACs", "% of MACs"):
            table.add_column(column, justify="left" if column in ("Module", "Type") else "right")
        for row in rows:
            level = row["module"].count(".") + 1 if row["module"] else 0
            name = "  " * level + (row["module"].rsplit(".", 1)[-1] if row["module"] else "(model)")
            table.add_row(escape(name), escape(row["type"]), _human(row["params"]), _human(row["macs"]), f"{100 * row['macs'] / total:.1f}")
        print_table(Console(soft_wrap=True), table)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Records of a GPU window's archive into results/, then the page; exit 1 when any record was refused."""
    from rich.console import Console

    from segbench.merge import merge_archive

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    result = merge_archive(args.archive, _paths(args)[0])
    for line in result.refused:
        console.print(f"refused {line}", markup=False)
    console.print(f"{args.archive}: {len(result.written)} record(s) merged, {len(result.kept)} kept (as new or newer in "
                  f"{_paths(args)[0]}), {len(result.refused)} refused", markup=False)  # fmt: skip
    if result.written and not args.no_report:
        _render(args, console, None)  # the page of every zoo entry, as `segbench render`
    return 1 if result.refused else 0


def cmd_synthetic(args: argparse.Namespace) -> int:
    from segbench.cityscapes import write_synthetic_cityscapes

    root = write_synthetic_cityscapes(
        Path(args.root), split=args.split, images_per_city=args.images_per_city, size=args.size, seed=args.seed
    )
    print(f"wrote a synthetic Cityscapes-layout {args.split} split to {root}: numbers measured on it are demo numbers")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from segbench.build import model_builder
    from segbench.manifest import check_unique, load_manifest

    files = sorted(Path(args.zoo).glob("*.yaml"))
    if not files:
        raise SegbenchError(f"{args.zoo}: no manifests (*.yaml) found")
    errors, seen, count = [], {}, 0
    for path in files:
        try:
            specs = load_manifest(path)
            for spec in specs:
                model_builder(spec)
                check_unique(spec, seen)
            count += len(specs)
        except SegbenchError as exc:
            errors.append(str(exc))
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    print(f"{count} model(s) in {len(files)} manifest(s): {'OK' if not errors else f'{len(errors)} error(s)'}")
    return 1 if errors else 0


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from segbench.summary import print_table

    specs = _selected_specs(args.zoo, args.models)
    table = Table(title=escape(f"{len(specs)} model(s) in {args.zoo}"))
    for column in ("Model", "Family", "Backbone", "Build", "Test (H×W)", "mIoU reported", "Weights"):
        table.add_column(column, no_wrap=column in ("Model", "Family", "Build"), overflow="fold")  # identifiers (--models, manifests): never broken
    for s in specs:
        reported = s.headline_result
        test = "×".join(map(str, s.test.size)) + (f" slide {'×'.join(map(str, s.test.crop))}" if s.test.mode == "slide" else "")
        table.add_row(*map(escape, (
            s.name, s.family, s.backbone, s.build.architecture or s.build.callable, test,
            "—" if not reported or reported.miou is None
            else f"{reported.miou:.2f}" + ("" if reported.dataset == MEASURED_DATASET else f" ({reported.dataset})"),
            "yes" if s.weights else "no",
        )))  # fmt: skip
    print_table(Console(), table)
    return 0


def cmd_protocols(args: argparse.Namespace) -> int:
    """The shipped timing protocols: what each times and how, and the script it follows."""
    from rich.console import Console
    from rich.table import Table

    from segbench.protocols import PROTOCOLS
    from segbench.summary import print_table

    table = Table(title="timing protocols (bench --protocol NAME)")
    for column in ("Protocol", "Timed span", "BN", "cudnn.benchmark", "Warm-up", "Timed", "Loop", "Backend", "Follows"):
        table.add_column(column, no_wrap=column == "Protocol", overflow="fold")
    for p in PROTOCOLS.values():
        table.add_row(
            p.name, " → ".join(p.stages_timed()) + (f" ({p.resize_mode})" if "resize" in p.stages_timed() else ""),
            "folded" if p.fold_bn else "as built", "on" if p.cudnn_benchmark else "off",
            "device default" if p.warmup is None else str(p.warmup),
            f"{p.images} images" if p.images else f"{p.min_seconds:g} s", "synchronized each" if p.sync_each else "back to back",
            f"{p.backend} {p.precision}", p.source,
        )  # fmt: skip
    print_table(Console(), table)
    return 0


def _usage_error(prog: str, message: str) -> NoReturn:
    """A usage error in one line, as segbench's own errors are, with a pointer to the help; exit 2 as argparse does."""
    sys.stderr.write(f"segbench: error: {message} (see '{prog} --help')\n")
    sys.exit(2)


class _Parser(argparse.ArgumentParser):
    """argparse without its usage block on errors; subcommand parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        _usage_error(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="segbench", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, output: bool = True) -> None:
        p.add_argument("--zoo", default=str(PROJECT_ROOT / "zoo"), help="directory of manifests (default: %(default)s)")
        if output:
            p.add_argument("--output", default=".", help="output root: results/, model_zoo.md, plots/ (default: .)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    bench = sub.add_parser("bench", help="measure models and write records, the page and the plots")
    common(bench)
    add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    profile = sub.add_parser("profile", help="params and MACs of one model (per forward and per image), per module with --breakdown")
    common(profile, output=False)
    profile.add_argument("model", help="one zoo model (name or a glob that selects one)")
    profile.add_argument("--cross-check", action="store_true", help="also count with fvcore and thop (a real forward pass on the CPU)")
    profile.add_argument("--breakdown", action="store_true", help="a table of params and MACs per module")
    profile.add_argument("--depth", type=int, default=2, help="module depth of the breakdown (0: the model; default: 2)")
    profile.add_argument("--input-size", type=_size, help="HxW (default: the manifest's test size)")
    profile.set_defaults(func=cmd_profile)

    render = sub.add_parser("render", help="render model_zoo.md from records and manifests")
    common(render)
    render.add_argument("--models", nargs="+", default=["all"], help="names, globs or families to list (default: all)")
    render.add_argument("--template", help="a jinja2 template to use instead of templates/model_zoo.md.j2")
    render.add_argument("--format", nargs="+", choices=["md", "csv", "json", "latex"], default=["md"],
                        help="what to write under --output: model_zoo.md, .csv, .json, .tex (default: md)")  # fmt: skip
    render.add_argument("--check", action="store_true",
                        help="write nothing; print a diff and exit 1 when a file differs from what would be rendered")  # fmt: skip
    render.set_defaults(func=cmd_render)

    plot = sub.add_parser("plot", help="plot mIoU vs latency, FPS, MACs, params or memory (PNG, PDF, SVG)")
    common(plot)
    plot.add_argument("--x", nargs="+", choices=["latency", "fps", "macs", "params", "memory"], default=["latency", "macs", "params"],
                      help="one figure per cost axis, plots/miou_vs_<x>.<format> (default: latency macs params)")  # fmt: skip
    plot.add_argument("--y", choices=["miou"], default="miou", help="accuracy axis: mIoU, measured where a record has one, else reported")
    plot.add_argument("--dataset", default=MEASURED_DATASET,
                      help="whose mIoU to plot; a figure never mixes datasets (default: Cityscapes; e.g. ADE20K, reported numbers)")  # fmt: skip
    plot.add_argument("--hardware", nargs="+", help="one hardware slug, or two to draw in one figure (default: the one with most records)")
    plot.add_argument("--models", nargs="+", default=["all"], help="names, globs or families to plot (default: all)")
    plot.add_argument("--size", choices=["column", "page"], default="page",
                      help="3.5 in (one column: miou_vs_<x>.column.<format>) or 7 in (page) wide (default: page)")  # fmt: skip
    plot.add_argument("--format", nargs="+", choices=["png", "pdf", "svg"], default=["png", "pdf"], help="default: png pdf")
    plot.add_argument("--bubble", action="store_true", help="marker area proportional to params")
    plot.add_argument("--no-error-bars", action="store_true", help="latency and fps: no bar for each median's 95%% interval")
    plot.add_argument("--labels", choices=["auto", "all", "pareto", "none"], default="auto",
                      help="which points get a name; auto: all up to 25 points, else the Pareto front (default: auto)")  # fmt: skip
    plot.add_argument("--log", choices=["auto", "on", "off"], default="auto", help="log x axis; auto: when the points span over 8x")
    plot.add_argument("--published", action="store_true",
                      help="instead: measured vs published relative speed (log-log, Spearman ρ) of the models of one protocol "
                           "on one hardware, plots/speed_vs_published.<protocol>.<hardware>.<format>")  # fmt: skip
    plot.add_argument("--protocol", help="with --published: whose published figures (default: the protocol with most comparable models)")
    plot.set_defaults(func=cmd_plot)

    compare = sub.add_parser("compare", help="ratios B/A per model of two result sets; flags latency changes beyond the noise")
    compare.add_argument("a", help="result set A: an output root, a results/ directory or results/<hardware>")
    compare.add_argument("b", help="result set B, the same kinds")
    compare.add_argument("--min-change", type=float, default=2.0,
                         help="smallest latency change in %% worth flagging, on top of the noise test (default: 2)")  # fmt: skip
    compare.add_argument("--fail-on-regression", action="store_true", help="exit 1 when any model is flagged slower")
    compare.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    compare.set_defaults(func=cmd_compare)

    merge = sub.add_parser("merge", help="merge the records of a GPU window's archive (.tar.gz) into results/ and render the page")
    common(merge)
    merge.add_argument("archive", help="a .tar.gz holding .../results/<hardware>/<model>.json")
    merge.add_argument("--no-report", action="store_true", help="write records only, no page or plots")
    merge.set_defaults(func=cmd_merge)

    synthetic = sub.add_parser("synthetic-data", help="write a small synthetic dataset in the Cityscapes layout")
    synthetic.add_argument("root", help="directory to write leftImg8bit/ and gtFine/ into")
    synthetic.add_argument("--split", default="val")
    synthetic.add_argument("--images-per-city", type=_positive, default=2)
    synthetic.add_argument("--size", type=_size, default=(256, 512), help="HxW (default: 256x512)")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    synthetic.set_defaults(func=cmd_synthetic)

    validate = sub.add_parser("validate", help="check every manifest")
    common(validate, output=False)
    validate.set_defaults(func=cmd_validate)

    listing = sub.add_parser("list", help="list zoo models")
    common(listing, output=False)
    listing.add_argument("--models", nargs="+", default=["all"], help="names, globs or families (default: all)")
    listing.set_defaults(func=cmd_list)

    protocols = sub.add_parser("protocols", help="list the timing protocols that bench --protocol follows")
    protocols.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    protocols.set_defaults(func=cmd_protocols)
    return parser


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="named settings from zoo/presets/ (e.g. quickstart) or a YAML file; flags win")
    p.add_argument("--models", nargs="+", help="'all' (default), names, globs ('deeplabv3_r18*') or families")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--gpu", type=int, help="CUDA device index; an error if that GPU is not there")
    where.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda:0 if available, else cpu)")
    p.add_argument("--protocol", help="timing protocol: what is timed and how, as a paper's script timed it "
                   "(mmseg [default], ddrnet, stdc, hardnet, ppliteseg, paddleseg; README → Timing protocols)")
    p.add_argument("--images", type=_positive, help="timed images per model (default: the protocol's; mmseg: 200)")
    p.add_argument("--warmup", type=_warmup, help="discarded warm-up passes, or 'auto' until the latency is steady "
                   "(default: the protocol's; mmseg: 5 on CUDA, as mmsegmentation; 1 on the CPU)")
    p.add_argument("--backend", choices=["eager", "compile", "onnxruntime"], help="what runs the network (default: the protocol's)")
    p.add_argument("--input-size", type=_size, help="HxW overriding every manifest's test size (recorded)")
    p.add_argument("--weights", action="store_true", help="load each model's published weights (downloaded once, sha256-checked)")
    p.add_argument("--checkpoint", help="a checkpoint file or URL for the one selected model")
    p.add_argument("--sha256", type=_sha256, help="the full sha256 of --checkpoint's file: checked, and pins it on torch < 2.10")
    p.add_argument("--trust-checkpoints", action="store_true", help="on torch < 2.10, read checkpoints without a pinned sha256")
    p.add_argument("--data-root", help="Cityscapes-layout root: also measure mIoU on it")
    p.add_argument("--eval", action="store_true", help="measure mIoU on $CITYSCAPES_DATASET")
    p.add_argument("--split", default="val", help="dataset split for mIoU (default: val)")
    p.add_argument("--ms-flip", action="store_true", help="also measure mIoU(ms+flip): scales 0.5-1.75 and flips")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for mIoU (default: 2)")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32", help="fp16/bf16: forward under torch.autocast (default: fp32)")
    p.add_argument("--channels-last", action="store_true", help="model and input in channels_last memory format")
    p.add_argument("--compile", action="store_true", help="the same as --backend compile: torch.compile, compiled during warm-up")
    p.add_argument("--train-iters", type=_non_negative, help="timed training steps for training memory and s/iter, CUDA only; 0 skips (default: 10)")
    p.add_argument("--measure", type=_measurements, metavar="LIST",
                   help=f"comma list of what to measure: {','.join(MEASUREMENTS)} (default: all; miou needs a dataset)")
    p.add_argument("--isolate", action="store_true", help="measure each model in a fresh process: a crash or OOM cannot touch the next")
    p.add_argument("--force", action="store_true", help="re-measure models whose record is current")
    p.add_argument("--time-budget", type=_duration, help="start a model only when its estimated cost fits in what is left "
                   "of this wall time (90s, 6m, 1.5h); then write the page and exit 0")  # fmt: skip
    p.add_argument("--order", choices=["breadth", "manifest"],
                   help="breadth: one entry per family first (default for --models all under --time-budget); manifest: zoo order")
    p.add_argument("--no-report", action="store_true", help="write records only, no page or plots")
    where = p.add_argument_group("where the sweep runs (default: in this process)")
    where.add_argument("--gpus", type=_gpu_list, help="one worker process per GPU of this machine, e.g. 0,1,2,3")
    where.add_argument("--executor", choices=["slurm", "local", "debug"],
                       help="submit a job array with submitit: slurm; local: subprocesses here; debug: in this process, pdb on an error")
    where.add_argument("--partition", help="--executor slurm: the partition")
    where.add_argument("--gpus-per-job", type=_non_negative, default=1, help="GPUs of each array task (default: 1; 0 with --device cpu)")
    where.add_argument("--time-limit", type=_duration, default=3600.0, help="wall time of each array task (default: 1h)")
    where.add_argument("--array-parallelism", type=_positive, default=64, help="array tasks running at once (default: 64)")
    where.add_argument("--models-per-task", type=_positive, default=1, help="distinct models measured by each array task (default: 1)")
    where.add_argument("--slurm-option", action="append", metavar="KEY=VALUE", help="an extra sbatch option, e.g. qos=high; repeatable")
    where.add_argument("--no-wait", action="store_true", help="--executor: submit, print the job ids and return")


def _gpu_list(text: str) -> list[int]:
    """--gpus: comma list of distinct GPU indices."""
    try:
        gpus = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        gpus = []
    if not gpus or min(gpus) < 0 or len(set(gpus)) != len(gpus):
        raise argparse.ArgumentTypeError(f"expected distinct GPU indices such as 0,1,2,3, got {text!r}")
    return gpus


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # named here rather than by argparse, so that the pointer is to the subcommand's help
        _usage_error(f"segbench {args.command}", f"unrecognized arguments: {' '.join(unknown)}")
    try:
        with one_line_warnings():
            return args.func(args)
    except SegbenchError as exc:
        if args.debug:
            raise
        print(f"segbench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("segbench: interrupted; records written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
