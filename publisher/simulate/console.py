"""The simulator's progress bar and closing summary (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from publisher.simulate.runner import (
    SimulationPlan,
    SimulationResult,
    count_deliveries,
    run_simulation,
)


async def run_with_progress(plan: SimulationPlan) -> SimulationResult:
    total = count_deliveries(plan)
    columns = (
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task_id = progress.add_task("deliveries", total=total)
        return await run_simulation(plan, on_response=lambda: progress.advance(task_id))


def print_summary(plan: SimulationPlan, result: SimulationResult) -> None:
    table = Table(title=f"{plan.orders} orders -> {plan.url}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("deliveries sent", str(result.sent)),
        ("accepted (2xx)", str(result.accepted)),
        ("rejected (other status)", str(result.rejected)),
        ("transport errors", str(result.failed)),
        ("events reported by the ingress", str(result.events)),
        ("duration", f"{result.seconds:.2f} s"),
        ("rate achieved / asked", f"{result.rate:.1f} / {plan.rate:.1f} per s"),
        ("latency p50", f"{result.percentile(50) * 1000:.1f} ms"),
        ("latency p90", f"{result.percentile(90) * 1000:.1f} ms"),
        ("latency p99", f"{result.percentile(99) * 1000:.1f} ms"),
        ("latency max", f"{max(result.latencies, default=0) * 1000:.1f} ms"),
    ]
    if result.statuses:
        rows.append(
            ("statuses", ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items())))
        )
    if result.stopped_early:
        rows.append(("stopped early", f"after --max-seconds {plan.max_seconds:g}"))
    for row in rows:
        table.add_row(*row)
    Console().print(table)
