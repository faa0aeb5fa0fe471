"""Build the self-contained HTML report of a run directory (``lens-fast report --html``).

The numbers come from ``lens.output.report_data``, which reads the run's ``summary.json`` and
Parquet files (a run directory, a config run's directory with one subfolder per scenario ×
provider × model, or a list of run folders). Every result of every summary becomes one
*target* of the report: one colour, overlaid on every plot.

What is drawn, per target, from the Parquet files:

==========================  ===================================================  ==========
plot                        values                                               rows
==========================  ===================================================  ==========
TTFT, E2E CDF               sorted ``ttft_ms``/``e2e_ms``, ≤ 2,000 points a trace  ok
ITL histogram               ``diff(t_ns)`` within each request of tokens.parquet   ok
latency over time           p50/p90/p99 of TTFT and E2E per second of ``t_end``    ok
throughput over time        requests and output tokens per second of ``t_end``     ok
output tok/s per request    histogram of ``output_tokens_per_s``                   ok
errors over time            per second of ``t_end`` (else ``t_start``), by kind    not ok
scheduling lag over time    p50/p99/max of ``sched_lag_ms`` per second of start    sent
==========================  ===================================================  ==========

Without ``requests.parquet`` a target is drawn from its summary result, and the report names
the plots it cannot draw in their place. A sweep's folder (``sweep.json``) gets its own page,
the curves against the offered rate (``lens.output.report_sweep``).
"""
from __future__ import annotations

import html
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from lens.errors import RunError
from lens.output.report_data import Run, RunPath, TargetData, load_run
from lens.output.summary import redact_secrets
from lens.output.table import COLUMNS, ROWS, format_usd, format_value

__all__ = ["COLOURS", "SECTIONS", "Plot", "page_html", "render_html", "sections_html",
           "write_html_report"]

#: One colour per target, the same in every plot (plotly's default colorway).
COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692",
           "#b6e880", "#ff97ff", "#fecb52")
_NEEDS_PARQUET = "needs requests.parquet (this run wrote only summary.json, e.g. --format json)"


# ----------------------------------------------------------------------------- plots
@dataclass
class Plot:
    """One plotly figure: traces and layout, or the reason it cannot be drawn."""

    title: str
    traces: list[dict[str, Any]]
    layout: dict[str, Any]
    missing: str = ""
    note: str = ""


def _unit(values: Sequence[np.ndarray]) -> tuple[float, str]:
    """Milliseconds, or seconds when the largest value passes 10 s."""
    top = max((float(np.nanmax(v)) for v in values if len(v) and not np.all(np.isnan(v))),
              default=0.0)
    return (1000.0, "s") if top >= 10_000 else (1.0, "ms")


def _layout(x: str, y: str, **kw: Any) -> dict[str, Any]:
    return {"xaxis": {"title": {"text": x}, "zeroline": False},
            "yaxis": {"title": {"text": y}, "rangemode": "tozero"},
            "margin": {"l": 64, "r": 16, "t": 12, "b": 48}, "height": 380,
            "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom",
                       "font": {"size": 11}},
            "font": {"size": 13}, "template": None, **kw}


def _plot_cdf(run: Run, metric: str, title: str) -> Plot:
    ts = [(i, t) for i, t in enumerate(run.targets) if len(t.cdf.get(metric, ((), ()))[0])]
    div, unit = _unit([t.cdf[metric][0] for _, t in ts])
    xs = np.concatenate([t.cdf[metric][0] for _, t in ts]) if ts else np.zeros(0)
    xs = xs[xs > 0]
    # targets an order of magnitude apart (or a long tail): a log axis shows every curve
    log = len(xs) > 1 and np.percentile(xs, 99.9) > 20 * np.percentile(xs, 0.1)
    traces = [{"type": "scatter", "mode": "lines", "name": t.label, "x": t.cdf[metric][0] / div,
               "y": t.cdf[metric][1] * 100, "line": {"color": _colour(i), "shape": "hv"},
               "hovertemplate": f"%{{x:.4g}} {unit}: %{{y:.2f}} %<extra>{html.escape(t.label)}"
                                "</extra>"} for i, t in ts]
    layout = _layout(f"{title.split()[0]} ({unit}{', log scale' if log else ''})",
                     "% of ok requests ≤ x", hovermode="closest")
    if log:
        layout["xaxis"]["type"] = "log"
    return Plot(title, traces, layout, "" if traces else "no ok request")


def _plot_hist(run: Run, metric: str, title: str, x_title: str, missing: str) -> Plot:
    data = [(i, t, *t.dist[metric]) for i, t in enumerate(run.targets)
            if len(t.dist.get(metric, ((),))[0])]
    if not data:
        return Plot(title, [], {}, missing)
    vals = np.concatenate([v for _, _, v, _ in data])
    wts = np.concatenate([w if w is not None else np.ones(len(v)) for _, _, v, w in data])
    o = np.argsort(vals)
    c = np.cumsum(wts[o]) / wts.sum()
    lo = float(vals[o][np.searchsorted(c, 0.001)])
    hi = float(vals[o][min(np.searchsorted(c, 0.995), len(o) - 1)])
    lo = 0.0 if metric == "itl" or lo < (hi - lo) else lo
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 61)
    traces, outside = [], []
    for i, t, v, w in data:
        n, _ = np.histogram(v, edges, weights=w)
        total = float(w.sum()) if w is not None else float(len(v))
        traces.append({"type": "scatter", "mode": "lines", "name": t.label,
                       "x": (edges[:-1] + edges[1:]) / 2, "y": n / total * 100,
                       "line": {"color": _colour(i), "shape": "hvh"}, "fill": "tozeroy",
                       "opacity": 0.6})
        out = 100 - float(n.sum()) / total * 100
        if out >= 0.01:
            outside.append(f"{t.label}: {out:.2f} %")
    note = (f"values outside {edges[0]:.4g} … {edges[-1]:.4g} not shown ("
            + "; ".join(outside) + ")") if outside else ""
    return Plot(title, traces, _layout(x_title, "% of values", hovermode="x unified"),
                note=note)


def _plot_series(run: Run, title: str, y_title: str, keys: Sequence[tuple[str, str]],
                 missing: str, *, latency: bool = True) -> Plot:
    dashes = ("solid", "dash", "dot")
    have = [(i, t) for i, t in enumerate(run.targets) if any(k in t.series for k, _ in keys)]
    div, unit = _unit([t.series[k] for _, t in have for k, _ in keys if k in t.series]
                      ) if latency else (1.0, "")
    traces = []
    for i, t in have:
        for j, (key, name) in enumerate(keys):
            if key in t.series and not np.all(np.isnan(np.asarray(t.series[key], float))):
                few = len(t.series["t_s"]) <= 120          # markers only where they help
                traces.append({"type": "scatter", "mode": "lines+markers" if few else "lines",
                               "x": t.series["t_s"],
                               "y": np.asarray(t.series[key], np.float64) / div,
                               "name": f"{name} · {t.label}" if name else t.label,
                               "legendgroup": t.label, "marker": {"size": 4},
                               "line": {"color": _colour(i), "dash": dashes[j % 3]}})
    y = y_title.format(unit=unit)
    if any(t.source == "summary.json" for t in run.targets) or not run.targets:
        why = missing
    else:
        why = "no request in this run has such a value"
    return Plot(title, traces, _layout("seconds since start", y, hovermode="x unified"),
                "" if traces else why)


def _plot_errors(run: Run) -> Plot:
    traces = []
    for i, t in enumerate(run.targets):
        kinds = {k: n for k, n in sorted(t.errors.items()) if n.sum()}
        if len(t.series.get("t_s", ())) and not kinds:   # a flat zero says "no errors"
            traces.append({"type": "scatter", "mode": "lines", "x": t.series["t_s"],
                           "y": np.zeros(len(t.series["t_s"])), "name": f"none · {t.label}",
                           "line": {"color": _colour(i)}})
        for j, (kind, n) in enumerate(kinds.items()):
            traces.append({"type": "bar", "x": t.series.get("t_s", np.arange(len(n))),
                           "y": n, "name": f"{kind} · {t.label}", "legendgroup": t.label,
                           "marker": {"color": _colour(i),
                                      "opacity": 1 - 0.6 * j / max(1, len(kinds) - 1)}})
    layout = _layout("seconds since start", "requests / s", barmode="stack",
                     hovermode="x unified")
    return Plot("Errors over time (failed, dropped, cancelled; by end second)", traces,
                layout, "" if traces else "no request in this run")


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def _latency_section(run: Run) -> tuple[str, list[Plot]]:
    pct = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"))
    return "Latency", [
        _plot_cdf(run, "ttft", "TTFT CDF"),
        _plot_cdf(run, "e2e", "E2E CDF"),
        _plot_series(run, "TTFT percentiles over time (ok requests by end second)",
                     "TTFT ({unit})", [(f"ttft_{k}_ms", n) for k, n in pct], _NEEDS_PARQUET),
        _plot_series(run, "E2E percentiles over time (ok requests by end second)",
                     "E2E ({unit})", [(f"e2e_{k}_ms", n) for k, n in pct], _NEEDS_PARQUET),
        _plot_hist(run, "itl", "ITL histogram (gaps between tokens, ok requests)",
                   "inter-token latency (ms)", "no ok request with two or more token stamps"),
        _plot_hist(run, "output_tokens_per_s", "Output tokens/s per request (ok requests)",
                   "output tokens / s of one request (tok/s)", "no ok request with tokens"),
    ]


def _throughput_section(run: Run) -> tuple[str, list[Plot]]:
    return "Throughput, errors and client", [
        _plot_series(run, "Requests/s over time (ok requests by end second)", "requests / s",
                     [("requests_ok", "")], "no per-second series", latency=False),
        _plot_series(run, "Output tokens/s over time (ok requests by end second)",
                     "output tokens / s", [("output_tokens", "")], "no per-second series",
                     latency=False),
        _plot_errors(run),
        _plot_series(run, "Scheduling lag over time (sent requests by start second)",
                     "start − scheduled start ({unit})",
                     [("sched_lag_p50_ms", "p50"), ("sched_lag_p99_ms", "p99"),
                      ("sched_lag_max_ms", "max")], _NEEDS_PARQUET),
    ]


#: Report sections of a run in order: each returns (heading, plots). A sweep's folder has a
#: page of its own (``lens.output.report_sweep``: latency and throughput vs offered rate).
SECTIONS: tuple[Callable[[Run], tuple[str, list[Plot]]], ...] = (
    _latency_section, _throughput_section)


# ----------------------------------------------------------------------------- HTML
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;
background:#f6f7f9}main{max-width:1480px;margin:0 auto;padding:16px 24px}
h1{font-size:22px;margin:4px 0 12px}h2{font-size:18px;margin:28px 0 8px}
table{border-collapse:collapse;background:#fff}td,th{padding:3px 10px;text-align:right;
border-bottom:1px solid #e3e5e8;white-space:nowrap}th{background:#eef0f3}
td:first-child,th:first-child{text-align:left}.meta td{text-align:left}
.meta td:first-child{color:#666}.grid{display:grid;gap:14px;
grid-template-columns:repeat(auto-fit,minmax(580px,1fr))}.card{background:#fff;
border:1px solid #dde0e4;border-radius:6px;padding:8px 10px}.card h3{font-size:14px;
margin:2px 0 4px}.missing{color:#8a5a00;padding:30px 10px}.note{color:#666;font-size:12px}
.bad{color:#c00;font-weight:600}.sw{display:inline-block;width:10px;height:10px;
border-radius:2px;margin-right:6px}details{margin:8px 0}pre{background:#fff;padding:8px;
overflow:auto;max-height:320px;border:1px solid #dde0e4}.wrap{overflow-x:auto}
details>.card{margin:10px 0}summary{cursor:pointer;color:#335}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _meta_html(meta: Mapping[str, Any]) -> str:
    m = redact_secrets(dict(meta))
    interrupted = "no"
    if m.get("interrupted"):
        interrupted = ("yes" + (f", by {m['interrupted_by']}" if m.get("interrupted_by") else "")
                       + ": the outputs hold what was measured until then")
    versions = m.get("versions") or {}
    rows = [("command", m.get("command")), ("config file", m.get("config_file")),
            ("started (UTC)", m.get("started_at")),
            ("duration", f"{m['duration_s']:g} s" if m.get("duration_s") is not None else None),
            ("host", m.get("host")), ("platform", m.get("platform")),
            ("CPUs / workers", f"{m.get('cpu_count', '-')} / {m.get('workers', '-')}"
             if m.get("cpu_count") or m.get("workers") else None),
            ("versions", " · ".join(f"{k} {v}" for k, v in versions.items())
             if isinstance(versions, Mapping) else versions),
            ("embedded mock", "yes" if m.get("embedded_mock") else None),
            ("interrupted", interrupted)]
    bad = " class=bad" if m.get("interrupted") else ""
    body = "".join(f"<tr><td>{_e(k)}</td><td{bad if k == 'interrupted' else ''}>{_e(v)}</td>"
                   "</tr>" for k, v in rows if v is not None)
    out = f"<table class=meta>{body}</table>"
    if m.get("config"):
        cfg = orjson.dumps(m["config"], option=orjson.OPT_INDENT_2, default=str).decode()
        out += f"<details><summary>configuration</summary><pre>{_e(cfg)}</pre></details>"
    return out


def _overview_html(run: Run) -> str:
    head = ("target", "ok / sent", "failed", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99",
            "E2E p50", "E2E p99", "req/s", "output tok/s")
    rows = []
    for i, t in enumerate(run.targets):
        r = t.result
        m, c, tp = r.get("metrics") or {}, r.get("counts") or {}, r.get("throughput") or {}
        cells = [f"{c.get('ok', 0)} / {c.get('sent', 0)}", str(c.get("failed", 0))]
        ms = [(m.get(k) or {}).get(p) for k in ("ttft", "itl", "e2e") for p in ("p50", "p99")]
        cells += [f"{format_value(v)} ms" if v is not None else "-" for v in ms]
        cells += [format_value(tp.get(k)) for k in ("requests_per_s", "output_tokens_per_s")]
        sw = f"<span class=sw style='background:{_colour(i)}'></span>"
        rows.append(f"<tr><td>{sw}{_e(t.label)}</td>"
                    + "".join(f"<td>{_e(x)}</td>" for x in cells) + "</tr>")
    return ("<div class=wrap><table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table></div>")


def _result_html(t: TargetData, i: int) -> str:
    """The console table of one result (``render_table``'s rows and lines) as HTML."""
    r = t.result
    m = r.get("metrics") or {}
    head = "<tr><th>metric</th><th>n</th>" + "".join(f"<th>{h}</th>" for h, _ in COLUMNS)
    body = "".join(
        f"<tr><td>{_e(label)}</td><td>{(m.get(k) or {}).get('count') or 0}</td>"
        + "".join(f"<td>{format_value((m.get(k) or {}).get(s))}</td>" for _, s in COLUMNS)
        + "</tr>" for label, k in ROWS)
    c, tp, cl = r.get("counts") or {}, r.get("throughput") or {}, r.get("client") or {}
    lines = [" · ".join(f"{k.replace('_', ' ')} {c.get(k, 0)}" for k in
                        ("sent", "ok", "failed", "dropped", "cancelled", "in_flight")),
             f"{format_value(tp.get('requests_per_s'))} req/s ok · "
             f"{format_value(tp.get('output_tokens_per_s'))} output tok/s · achieved "
             f"{format_value(tp.get('achieved_rps'))} req/s"
             + (f" of {format_value(tp['offered_rps'])} offered" if tp.get("offered_rps") else "")
             + f" · window {format_value(tp.get('window_s'))} s"]
    cost = r.get("cost")
    if cost:
        lines.append(f"cost {format_usd(cost.get('usd_total'))} total" if cost.get("price")
                     else f"cost: {cost.get('note') or 'no price'}")
    if r.get("errors"):
        lines.append("errors " + " · ".join(f"{k} {n}" for k, n in r["errors"].items()))
    lines.append(f"client sched lag p99 {format_value(cl.get('sched_lag_p99_ms'))} ms · worker "
                 "CPU " + (" ".join(f"{x:.0f}%" for x in cl.get("worker_cpu_percent") or [])
                           or "-"))
    extra = (f"<p class=bad>CLIENT SATURATED: {_e('; '.join(cl.get('reasons') or []))}</p>"
             if cl.get("saturated") else "")
    notes = "".join(f"<p class=note>{_e(n)}</p>" for n in t.notes)
    sw = f"<span class=sw style='background:{_colour(i)}'></span>"
    return (f"<div class=card><h3>{sw}{_e(t.label)}</h3><p class=note>{_e(r.get('url') or '')}"
            f"</p><div class=wrap><table>{head}</tr>{body}</table></div>"
            + "".join(f"<p>{_e(x)}</p>" for x in lines) + extra + notes + "</div>")


def _where(run: Run) -> str:
    """The run's folder; for a list of folders, the folder above them and their names."""
    if not run.folders:
        return str(run.path)
    names = [os.path.relpath(f, run.path) for f in run.folders]
    return str(run.path) if names == ["."] else f"{run.path}: {', '.join(names)}"


def _cards_html(plots: Sequence[Plot], figures: list[dict[str, Any]]) -> str:
    """Return one card per plot (a ``div`` plotly draws into, or why it is not drawn); each
    drawn plot's figure is appended to ``figures``."""
    cards = []
    for p in plots:
        if not p.traces:
            cards.append(f"<div class=card><h3>{_e(p.title)}</h3><p class=missing>"
                         f"Not drawn: {_e(p.missing)}.</p></div>")
            continue
        fid = f"plot{len(figures)}"
        figures.append({"id": fid, "data": p.traces, "layout": p.layout})
        cards.append(f"<div class=card><h3>{_e(p.title)}</h3><div id={fid}></div>"
                     + (f"<p class=note>{_e(p.note)}</p>" if p.note else "") + "</div>")
    return "".join(cards)


def page_html(title: str, body: str, figures: Sequence[Mapping[str, Any]]) -> str:
    """Return a self-contained page: ``body`` (HTML) in the report's style, plotly.js inline,
    and a script that draws ``figures`` (``{"id", "data", "layout"}`` each) into their divs."""
    from plotly.offline import get_plotlyjs

    data = orjson.dumps(list(figures), option=orjson.OPT_SERIALIZE_NUMPY).decode()
    data = data.replace("<", "\\u003c")         # no "</script>" or "<!--" inside the script
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<style>{_CSS}</style><script>{get_plotlyjs()}</script></head><body><main>"
        f"{body}</main><script>const FIGURES = {data};\n"
        "for (const f of FIGURES) Plotly.newPlot(f.id, f.data, f.layout,"
        " {responsive: true, displaylogo: false});</script></body></html>")


def sections_html(sections: Sequence[tuple[str, Sequence[Plot]]],
                  figures: list[dict[str, Any]]) -> str:
    """Return each (heading, plots) section as a heading and a grid of cards (``page_html``
    draws ``figures``, to which the drawn plots are appended)."""
    return "".join(f"<h2>{_e(heading)}</h2><div class=grid>{_cards_html(plots, figures)}</div>"
                   for heading, plots in sections)


def render_html(run: Run) -> str:
    """Return the report of a loaded run as one self-contained HTML page (plotly.js inline)."""
    meta = run.summary.get("metadata") or {}
    figures: list[dict[str, Any]] = []
    sections = sections_html([make(run) for make in SECTIONS], figures)
    results = "".join(_result_html(t, i) for i, t in enumerate(run.targets))
    title = f"lens-fast report · {meta.get('started_at') or run.path.name}"
    return page_html(title, (
        f"<h1>lens-fast report <span class=note>{_e(_where(run))}</span></h1>{_meta_html(meta)}"
        f"<h2>Summary</h2>{_overview_html(run)}<details{' open' if len(run.targets) < 2 else ''}>"
        f"<summary>tables per target</summary>{results}</details>{sections}"), figures)


def write_html_report(run_dir: RunPath | Sequence[RunPath], html_path: RunPath) -> Path:
    """Write the self-contained HTML report of a run directory; return its path.

    ``run_dir`` is a run's or a config run's directory, or a sequence of single-run folders
    (e.g. one scenario's subfolders of a config run) drawn side by side as one report, or a
    sweep's folder (``sweep.json``: the curves of ``lens.output.report_sweep``).
    ``ConfigError`` when a folder cannot be read (see ``load_run``, ``load_sweep``);
    ``RunError`` when the file cannot be written. Parent folders of ``html_path`` are created.
    """
    from lens.output.report_sweep import is_sweep, load_sweep, render_sweep_html

    if isinstance(run_dir, str | os.PathLike) and is_sweep(run_dir):
        page = render_sweep_html(load_sweep(run_dir), Path(html_path).parent)
    else:
        page = render_html(load_run(run_dir))
    out = Path(html_path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as e:
        raise RunError(f"cannot write the report to {str(out)!r}: {e.strerror}; choose a "
                       "writable --html path") from e
    return out
