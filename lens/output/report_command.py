"""``lens-fast report RUN_DIR [--html FILE]``: the console table again, and the HTML report.

The tables come from ``RUN_DIR/summary.json`` alone (a run's, or a config run's combined
one), so they print even when the Parquet files are gone; ``--html`` also reads the Parquet
files of every run folder (``lens.output.report``). A sweep's folder (``sweep.json``) prints
the sweep's table and draws its curves against the offered rate (``lens.output.report_sweep``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

__all__ = ["print_tables", "report_command"]


def print_tables(summary: dict[str, Any], console: Any) -> None:
    """Print the run's metadata line and ``render_table`` of every result of a summary."""
    from lens.output.table import render_table

    meta = summary.get("metadata") or {}
    head = f"run started {meta.get('started_at') or '-'}"
    if meta.get("duration_s") is not None:
        head += f" · {meta['duration_s']:g} s"
    if meta.get("command"):
        head += f" · {meta['command']}"
    console.print(head, highlight=False, markup=False)
    if meta.get("interrupted"):
        by = f" by {meta['interrupted_by']}" if meta.get("interrupted_by") else ""
        console.print(f"[yellow]Interrupted{by}: the results hold what was measured until "
                      "then.[/]")
    scenarios = summary.get("scenarios") or []
    for sc in scenarios:
        for result in sc.get("results") or []:
            title = None
            if len(scenarios) > 1:
                parts = [str(result[k]) for k in ("provider", "model", "url") if result.get(k)]
                title = " · ".join([f"scenario {sc.get('name')}", *parts])
            console.print()
            render_table(result, console, title=title)


@click.command(short_help="Print a run's or a sweep's tables again; write its HTML report.")
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Also write the self-contained HTML report (plots) to FILE, "
              "e.g. RUN_DIR/report.html.")
def report_command(run_dir: Path, html_path: Path | None) -> None:
    """Print the tables of a finished run from RUN_DIR (its --output folder) again.

    \b
    lens-fast report lens-results/run-20260101-120000
    lens-fast report lens-results/run-20260101-120000 --html report.html
    lens-fast report lens-results/sweep-20260101-120000 --html sweep.html

    The HTML file opens offline (plotly.js is inside it): CDFs of TTFT and E2E, the ITL
    histogram, latency, throughput, errors and scheduling lag per second, per target. For a
    sweep's folder (sweep.json): the sweep's table, and latency, throughput and error rate
    against the offered rate with the SLO limits, the max rate found and the knee marked.
    """
    from lens.output.report import write_html_report
    from lens.output.report_data import read_summary
    from lens.output.report_sweep import is_sweep, load_sweep, print_sweep
    from lens.output.table import consoles

    sweep = load_sweep(run_dir) if is_sweep(run_dir) else None
    summary = read_summary(run_dir) if sweep is None else {}
    console, _ = consoles(160 if sweep else 120)     # piped or in CI: the full table
    if sweep is not None:
        print_sweep(sweep, console)
    else:
        print_tables(summary, console)
    if html_path is not None:
        t = time.perf_counter()
        out = write_html_report(run_dir, html_path)
        size = out.stat().st_size / 1e6
        console.print(f"\nReport: {out} ({size:.1f} MB, built in {time.perf_counter() - t:.1f} s)",
                      highlight=False, markup=False)
