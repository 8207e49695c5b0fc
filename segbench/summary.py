"""Tables for the terminal: the summary printed at the end of a sweep."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from segbench.records import is_demo_accuracy, macs_per_image
from segbench.stats import latency_summary


def _miou(record: dict) -> str:
    accuracy = record.get("accuracy")
    if not accuracy:
        return "—"
    return f"{accuracy['miou']:.2f}" + (" demo" if is_demo_accuracy(record) else "")


def print_summary(outcomes, console: Console) -> None:
    table = Table(title="segbench summary")
    for column in ("Model", "Status", "Params (M)", "MACs/image (G)", "Median (ms)", "p90 (ms)", "FPS", "Mem (MB)", "Train mem (GB)", "s/iter", "mIoU", "Note"):
        if column == "Model":
            table.add_column(column, overflow="fold", min_width=20)
        else:
            table.add_column(column, justify="left" if column in ("Status", "Note") else "right", no_wrap=True)
    for o in outcomes:
        if o.status == "failed":
            table.add_row(o.spec.name, "[red]failed[/]", *[""] * 9, o.error or "")
            continue
        r = o.record
        stats = latency_summary(r["latency"]["samples"])
        memory = r["memory"]
        training = r.get("training") or {}
        train_memory = training.get("memory")
        step = training.get("step")
        table.add_row(
            o.spec.name,
            "[green]ok[/]" if o.status == "ok" else "[dim]skipped[/]",
            f"{r['params']['inference'] / 1e6:.2f}",
            f"{macs_per_image(r) / 1e9:.1f}" if macs_per_image(r) is not None else "—",
            f"{stats['median_ms']:.1f}",
            f"{stats['p90_ms']:.1f}",
            f"{stats['fps']:.2f}",
            f"{memory['peak_allocated_bytes'] / 2**20:.0f}" if memory.get("measured") else "—",
            f"{train_memory['peak_allocated_bytes'] / 2**30:.2f}" if train_memory else "—",
            f"{latency_summary(step['samples'])['median_ms'] / 1000:.3f}" if step else "—",
            _miou(r),
            "record current" if o.status == "skipped" else "",
        )
    # Logs (CI, files) are not terminals: print at a width that fits the table instead of 80 columns.
    print_table(console, table)


def print_table(console: Console, table: Table) -> None:
    """Logs (CI, files) are not terminals: print at a width that fits the table, not 80 columns."""
    if not console.is_terminal:
        console.width = max(console.width, 170)
    console.print(table)
