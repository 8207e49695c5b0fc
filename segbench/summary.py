"""Tables for the terminal: the summary printed at the end of a sweep."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from segbench.formatting import fixed
from segbench.records import is_demo_accuracy, macs_per_image
from segbench.stats import latency_summary

LOG_WIDTH = 170
"""Logs (CI, files) are not terminals: tables are printed at least this wide instead of 80 columns."""


def _miou(record: dict) -> str:
    accuracy = record.get("accuracy")
    if not accuracy:
        return "—"
    return f"{accuracy['miou']:.2f}" + (" demo" if is_demo_accuracy(record) else "")


def print_summary(outcomes, console: Console) -> None:
    """A row per model measured or failed in this sweep; the skipped ones (record current) counted in one line."""
    measured = [o for o in outcomes if o.status != "skipped" or o.record is None]  # None: another sweep holds it
    if measured:
        print_table(console, _summary_table(measured))
    if skipped := len(outcomes) - len(measured):
        console.print(f"{skipped} model(s) skipped: their records are current (--force re-measures them)")


PASSES = ("warmup", "timed")
"""The phases (record `phase_seconds`) that are the sweep's floor: the warm-up and timed prediction loops."""


def efficiency_line(outcomes, wall_s: float) -> str:
    """How much of the sweep's wall time its timed and warm-up passes took, and what the other phases cost."""
    measured = [o.record for o in outcomes if o.status == "ok" and o.record and "phase_seconds" in o.record]
    phases: dict[str, float] = {}
    for record in measured:
        for name, seconds in record["phase_seconds"].items():
            phases[name] = phases.get(name, 0.0) + seconds
    passes = sum(phases.get(name, 0.0) for name in PASSES)
    shared = sum(1 for o in outcomes if o.status == "ok" and o.record and "shared_from" in o.record)
    others = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in sorted(phases.items(), key=lambda kv: -kv[1]) if name not in PASSES)
    share = f"{100 * passes / wall_s:.0f}%" if wall_s > 0 else "—"
    return (f"sweep efficiency {share}: timed + warm-up passes {passes:.1f} s of {wall_s:.1f} s wall time; "
            f"{len(measured)} model(s) measured, {shared} copied from an identical entry (shared_from)"
            + (f"; other phases: {others}" if others else ""))  # fmt: skip


def _summary_table(outcomes) -> Table:
    table = Table(title="segbench summary")
    for column in ("Model", "Status", "Params (M)", "MACs/image (G)", "Median (ms)", "p90 (ms)", "FPS", "Mem (MB)", "Train mem (GB)", "s/iter", "mIoU", "Note"):
        if column == "Note":  # error messages: wrapped between words
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, justify="left" if column in ("Model", "Status") else "right", no_wrap=True)
    for o in outcomes:
        if o.record is None or o.status == "failed":
            status = "[red]failed[/]" if o.status == "failed" else "[dim]skipped[/]"
            table.add_row(escape(o.spec.name), status, *[""] * 9, escape(o.error or ""))
            continue
        r = o.record
        stats = latency_summary(r["latency"]["samples"]) if "latency" in r else None  # absent: not in --measure
        memory = r.get("memory") or {}
        training = r.get("training") or {}
        train_memory = training.get("memory")
        step = training.get("step")
        table.add_row(
            escape(o.spec.name),
            "[green]ok[/]" if o.status == "ok" else "[dim]skipped[/]",
            fixed(r["params"]["inference"] / 1e6, 2) if "params" in r else "—",
            fixed(macs_per_image(r) / 1e9, 1) if macs_per_image(r) is not None else "—",
            *((f"{stats['median_ms']:.1f}", f"{stats['p90_ms']:.1f}", f"{stats['fps']:.2f}") if stats else ("—",) * 3),
            f"{memory['peak_allocated_bytes'] / 2**20:.0f}" if memory.get("measured") else "—",
            f"{train_memory['peak_allocated_bytes'] / 2**30:.2f}" if train_memory else "—",
            f"{latency_summary(step['samples'])['median_ms'] / 1000:.3f}" if step else "—",
            _miou(r),
            "",
        )
    return table


def print_table(console: Console, table: Table) -> None:
    """Print a table with its no_wrap columns (names, numbers) whole and no word of the others broken.

    On a terminal too narrow for that the lines run past its edge instead: a model name stays one
    piece that can be copied into --models.
    """
    wide = console.options.update_width(10_000)
    for column in table.columns:
        if column.no_wrap:  # else rich counts only the longest word of a cell and squeezes the column below its text
            column.min_width = max(Measurement.get(console, wide, cell).maximum for cell in (column.header, *column.cells))
    least = console.measure(table, options=wide).minimum
    saved = console.width
    console.width = max(saved, least, 0 if console.is_terminal else LOG_WIDTH)
    try:
        console.print(table)
    finally:
        console.width = saved
