"""Render one summary result as a console table (rich).

Works on a terminal and when piped (rich drops colour and keeps the layout), and on a run
without one successful request (every statistic shows ``-``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["COLUMNS", "ROWS", "consoles", "format_usd", "format_value", "render_table"]

#: The latency table's rows: (label, metric key of the summary's ``metrics``). The HTML
#: report (``lens.output.report``) draws the same table.
ROWS = (
    ("TTFT (ms)", "ttft"),
    ("TTFT from sched (ms)", "ttft_sched"),
    ("ITL (ms)", "itl"),
    ("TPOT (ms)", "tpot"),
    ("E2E (ms)", "e2e"),
    ("E2E from sched (ms)", "e2e_sched"),
    ("Output tok/s per req", "output_tokens_per_s"),
)
#: The latency table's columns: (heading, statistic key of one metric), min … max.
COLUMNS = (("min", "min"), ("mean", "mean"), ("p50", "p50"), ("p90", "p90"),
            ("p95", "p95"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max"))
#: Below this console width only these columns are shown (the summary has them all).
NARROW = 100
_NARROW_COLUMNS = (("mean", "mean"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"),
                   ("max", "max"))
DASH = "-"


def consoles(width: int = 120) -> tuple[Console, Console]:
    """The command's consoles: stdout for tables (``width`` columns when piped or in CI, so
    the full table rather than a narrow one) and stderr for messages and progress."""
    out = Console(stderr=False)
    if not out.is_terminal:
        out = Console(stderr=False, width=width)
    return out, Console(stderr=True)


def format_value(v: float | int | None) -> str:
    """Format a statistic: 1 decimal from 100 up, 2 from 1 up, 3 below; ``-`` for none."""
    if v is None:
        return DASH
    v = float(v)
    a = abs(v)
    return f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 1 or v == 0 else f"{v:.3f}"


def format_usd(v: float | None) -> str:
    """Format dollars: cents from $1 up, else three significant figures ($0.000123)."""
    if v is None:
        return DASH
    if v == 0 or abs(v) >= 1:
        return f"${v:,.2f}"
    decimals = min(9, 2 - math.floor(math.log10(abs(v))))
    return f"${v:.{decimals}f}"


def _rate(v: float | int | None, unit: str) -> str:
    return DASH if not v else f"{format_value(v)} {unit}"


def render_table(result: Mapping[str, Any], console: Console, *, title: str | None = None
                 ) -> None:
    """Print a result of the summary (``summary["scenarios"][i]["results"][j]``).

    First the latency table (one row per metric, columns min … max), then counts,
    throughput, cost, errors by kind and client health, with a red ``CLIENT SATURATED`` line
    when the client may have limited the run.
    """
    if title is None:
        parts = [str(result[k]) for k in ("provider", "model", "url") if result.get(k)]
        title = " · ".join(parts) or None
    metrics = result.get("metrics", {})
    columns = COLUMNS if console.width >= NARROW else _NARROW_COLUMNS
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("metric", overflow="fold", min_width=9)
    table.add_column("n", justify="right", overflow="fold")
    for head, _ in columns:
        # fold, never truncate: a narrow terminal wraps digits instead of hiding them
        table.add_column(head, justify="right", overflow="fold")
    for label, key in ROWS:
        st = metrics.get(key) or {}
        table.add_row(label, str(st.get("count") or 0),
                      *(format_value(st.get(k)) for _, k in columns))
    console.print(table)

    c = result.get("counts", {})
    tp = result.get("throughput", {})
    console.print(
        f"requests  ok {c.get('ok', 0)}  failed {c.get('failed', 0)}  "
        f"dropped {c.get('dropped', 0)}  cancelled {c.get('cancelled', 0)}  "
        f"in flight {c.get('in_flight', 0)}  (sent {c.get('sent', 0)})", highlight=False)
    offered = tp.get("offered_rps")
    console.print(
        f"throughput  {_rate(tp.get('requests_per_s'), 'req/s')} ok · "
        f"{_rate(tp.get('output_tokens_per_s'), 'output tok/s')} · achieved "
        f"{_rate(tp.get('achieved_rps'), 'req/s')}"
        + (f" of {format_value(offered)} offered" if offered else "")
        + f" · window {format_value(tp.get('window_s'))} s", highlight=False)
    cost = result.get("cost")
    if cost is not None:
        if cost.get("price"):
            line = (f"cost  {format_usd(cost.get('usd_total'))} total · "
                    f"{format_usd(cost.get('usd_per_request_mean'))} per request")
            if cost.get("usd_per_1k_output_tokens") is not None:
                line += f" · {format_usd(cost['usd_per_1k_output_tokens'])} per 1k output tokens"
        else:
            line = f"cost  {cost.get('note') or 'no price'}"
        console.print(line, highlight=False)
    errors = result.get("errors") or {}
    if errors:
        err = Text("errors  ", style="bold")
        err.append("  ".join(f"{k} {n}" for k, n in sorted(errors.items(),
                                                             key=lambda kv: -kv[1])),
                   style="red")
        console.print(err)

    cl = result.get("client") or {}
    cpu = cl.get("worker_cpu_percent") or []
    console.print(
        f"client  sched lag p50 {format_value(cl.get('sched_lag_p50_ms'))} ms · "
        f"p99 {format_value(cl.get('sched_lag_p99_ms'))} ms · "
        f"max {format_value(cl.get('sched_lag_max_ms'))} ms · worker CPU "
        + (" ".join(f"{x:.0f}%" for x in cpu) if cpu else DASH), highlight=False)
    if cl.get("saturated"):
        reasons = "; ".join(cl.get("reasons") or []) or "see the client health figures"
        console.print(Text(f"CLIENT SATURATED: {reasons}", style="bold red"))
