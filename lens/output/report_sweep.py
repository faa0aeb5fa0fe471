"""Draw a sweep's folder (``lens-fast sweep --output OUT``): its table again, and its curves.

``OUT/sweep.json`` (schema ``lens-fast/sweep/1``, docs/sweep.md) holds every step and the
``curve``: per offered rate, the last step there that the sweep judged ``pass`` or ``fail``.
``lens-fast report OUT`` prints the sweep's table; ``--html`` draws, against the offered rate:

===========================  ================================================================
plot                         traces and marks
===========================  ================================================================
METRIC vs offered rate       one plot per SLO metric: each step's p50 and each SLO's statistic
                             (p99 when the only SLO is a p50), a horizontal line at each SLO's
                             ``limit_ms``
Throughput vs offered rate   achieved (start) rate, completed (ok requests/s) and goodput; the
                             line y = x, the probe's capacity estimate, the embedded mock's
                             computed saturation rate
Error rate vs offered rate   (failed + dropped + cancelled) / (sent + dropped), in %, and the
                             ``--max-error-rate`` line
===========================  ================================================================

Every plot marks ``result.max_rate`` (solid green) and ``result.knee.rate`` (dashed purple)
with a vertical line. Lines join the curve's points; the other open-loop steps (one that ran
again: client-limited, not yet steady, a failed confirmation; an interrupted one) are hollow
markers. A marker's symbol is the step's class (``step_class``): ● pass, ✕ fail (an SLO
missed or too many errors), ◆ not steady (failed only for that), ▲ client-limited,
■ interrupted. Without SLOs the plots are of TTFT and of the knee's metric (``e2e_sched``).
"""
from __future__ import annotations

import html
import math
import os
import textwrap
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from lens.errors import ConfigError
from lens.output.report import COLOURS, Plot, _layout, _unit, page_html, sections_html
from lens.output.report_data import read_document
from lens.output.summary import redact_secrets

__all__ = ["SCHEMA", "SYMBOLS", "SweepData", "is_sweep", "load_sweep", "print_sweep",
           "render_sweep_html", "step_class", "sweep_sections"]

#: ``lens.engine.sweep_command.SCHEMA`` (not imported from there: that pulls the engine in).
SCHEMA = "lens-fast/sweep/1"
#: Plotly marker of each step class; steps off the curve get the ``-open`` variant.
SYMBOLS = {"pass": "circle", "fail": "x", "unsteady": "diamond", "client": "triangle-up",
           "interrupted": "square"}
_CHARS = {"pass": "●", "fail": "✕", "unsteady": "◆", "client": "▲", "interrupted": "■"}
_KEY = ("● pass · ✕ fail · ◆ not steady · ▲ client-limited · ■ interrupted; hollow: a step "
        "off the curve (run again at that rate, or interrupted). Hover for each step's verdict.")
MAX_COLOUR, KNEE_COLOUR, GREY = "#2ca02c", "#9467bd", "#888888"
_NAMES = {"ttft": "TTFT", "ttft_sched": "TTFT from the intended start", "itl": "ITL",
          "tpot": "TPOT", "e2e": "E2E", "e2e_sched": "E2E from the intended start",
          "sched_lag": "Scheduling lag"}


# ----------------------------------------------------------------------------- reading
@dataclass
class SweepData:
    """A sweep's folder as the report sees it: sweep.json's parts, checked by ``load_sweep``.

    ``steps`` are every step in run order, ``curve`` the curve's points (each names its step
    by ``step``, the step's ``index``).
    """

    path: Path
    meta: dict[str, Any]
    settings: dict[str, Any]
    slos: list[dict[str, Any]]
    result: dict[str, Any]
    curve: list[dict[str, Any]]
    steps: list[dict[str, Any]]

    def step(self, index: int) -> dict[str, Any]:
        """Return the step of that ``index`` (1-based, as in sweep.json)."""
        return next(s for s in self.steps if s["index"] == index)


def is_sweep(path: str | os.PathLike[str]) -> bool:
    """Return whether ``path`` is a sweep's folder (it holds sweep.json) or its sweep.json."""
    p = Path(path)
    return p.name == "sweep.json" if p.is_file() else (p / "sweep.json").is_file()


_KINDS: dict[str, tuple[type, ...]] = {"num": (int, float), "int": (int,), "str": (str,),
                                       "list": (list,), "dict": (dict,), "bool": (bool,)}


def _check(rec: Mapping[str, Any], key: str, kind: str, where: str, f: Path) -> None:
    optional = kind.endswith("?")
    v = rec.get(key)
    types = _KINDS[kind.rstrip("?")]
    if (v is None and optional) or (isinstance(v, types) and (
            bool in types or not isinstance(v, bool))):
        return
    got = "nothing" if key not in rec else f"{type(v).__name__} {v!r:.40}"
    raise ConfigError(f"{str(f)!r} is not a complete lens-fast sweep: {where}{key} should be "
                      f"{'null or ' if optional else ''}a {kind.rstrip('?')}, got {got}; "
                      "expected the sweep.json lens-fast sweep writes (docs/sweep.md)")


def load_sweep(path: str | os.PathLike[str]) -> SweepData:
    """Read and check a sweep's ``sweep.json`` (``path``: the sweep's folder or the file).

    Raises one ``ConfigError`` naming the file when it is missing, is not JSON, is not a
    ``lens-fast/sweep/1`` document, or lacks a part the report draws (naming the part).
    """
    f, doc = read_document(path, "sweep.json", "sweep", lambda p: ConfigError(
        f"no sweep.json in {str(p)!r}; expected the --output folder of a lens-fast sweep "
        "(sweep.json, steps/)"))
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"{str(f)!r} is not a lens-fast sweep (schema {got!r}, expected "
                          f"{SCHEMA!r})")
    for key, kind in (("metadata", "dict"), ("settings", "dict"), ("slo", "list"),
                      ("result", "dict"), ("curve", "list"), ("steps", "list")):
        _check(doc, key, kind, "", f)
    for i, s in enumerate(doc["slo"]):
        _check({"slo": s}, "slo", "dict", f"slo[{i}]: ", f)
        for key, kind in (("slo", "str"), ("metric", "str"), ("stat", "str"),
                          ("limit_ms", "num")):
            _check(s, key, kind, f"slo[{i}].", f)
    indexes = set()
    for i, s in enumerate(doc["steps"]):
        _check({"step": s}, "step", "dict", f"steps[{i}]: ", f)
        for key, kind in (("index", "int"), ("kind", "str"), ("verdict", "str"),
                          ("offered_rps", "num?"), ("concurrency", "int?"), ("workers", "int?"),
                          ("achieved_rps", "num?"), ("throughput_rps", "num?"),
                          ("goodput_rps", "num?"), ("error_rate", "num?"), ("slo", "list?"),
                          ("metrics", "dict?"), ("steady", "dict?"), ("reasons", "list?"),
                          ("dir", "str?")):
            _check(s, key, kind, f"steps[{i}].", f)
        indexes.add(s["index"])
    for i, c in enumerate(doc["curve"]):
        _check({"point": c}, "point", "dict", f"curve[{i}]: ", f)
        _check(c, "step", "int", f"curve[{i}].", f)
        if c["step"] not in indexes:
            raise ConfigError(f"{str(f)!r} is not a complete lens-fast sweep: curve[{i}] names "
                              f"step {c['step']}, which steps lacks; expected the sweep.json "
                              "lens-fast sweep writes (docs/sweep.md)")
    res = doc["result"]
    for key, kind in (("status", "str"), ("max_rate", "num?"), ("knee", "dict?"),
                      ("message", "str?"), ("capacity_estimate_rps", "num?")):
        _check(res, key, kind, "result.", f)
    if res.get("knee") is not None:
        _check(res["knee"], "rate", "num", "result.knee.", f)
    return SweepData(f.parent, doc["metadata"], doc["settings"],
                     doc["slo"], res, doc["curve"], doc["steps"])


# ----------------------------------------------------------------------------- values
def _num(v: Any) -> float | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def step_class(step: Mapping[str, Any]) -> str:
    """Return a step's class for its marker: its verdict, but ``unsteady`` for a step that
    failed only for not being steady (its first reason), and ``fail`` for an unknown one."""
    verdict = step.get("verdict")
    if verdict == "fail" and str((step.get("reasons") or [""])[0]).startswith("not steady"):
        return "unsteady"
    return verdict if verdict in SYMBOLS else "fail"


def _metric(step: Mapping[str, Any], metric: str, stat: str) -> float | None:
    stats = (step.get("metrics") or {}).get(metric)
    return _num(stats.get(stat)) if isinstance(stats, Mapping) else None


def _slo_value(step: Mapping[str, Any], spec: str, metric: str, stat: str) -> float | None:
    for s in step.get("slo") or ():
        if isinstance(s, Mapping) and s.get("slo") == spec:
            return _num(s.get("value_ms"))
    return _metric(step, metric, stat)


def _rate(v: Any) -> str:
    return "–" if (r := _num(v)) is None else f"{r:g}"


def _ms(v: float | None) -> str:
    return "–" if v is None else (f"{v:.1f} ms" if v < 10_000 else f"{v / 1e3:.1f} s")


def _limit(ms: float) -> str:
    return f"{ms:g} ms" if ms < 10_000 else f"{ms / 1e3:g} s"


def _split(sw: SweepData) -> tuple[list[dict], list[dict]]:
    """Return (the curve's steps by offered rate, the other open-loop steps in run order)."""
    on = [sw.step(c["step"]) for c in sw.curve]
    on = [s for s in on if _num(s.get("offered_rps")) is not None]
    seen = {s["index"] for s in on}
    off = [s for s in sw.steps
           if _num(s.get("offered_rps")) is not None and s["index"] not in seen]
    return on, off


_COLUMNS = ("#", "step", "workers", "offered/s", "achieved/s", "completed/s", "goodput/s")


def _cells(s: Mapping[str, Any], specs: Sequence[str]) -> list[str]:
    """Return a step's row of the sweep's table: ``_COLUMNS``, the SLO values (✗ when
    missed), errors, steady, verdict (as ``lens-fast sweep`` prints its table)."""
    checks = {c.get("slo"): c for c in s.get("slo") or () if isinstance(c, Mapping)}
    steady = (s.get("steady") or {}).get("steady")
    return [str(s["index"]), s["kind"], str(s.get("workers") or "–"),
            _rate(s["offered_rps"]) if s.get("offered_rps") is not None
            else f"c={s.get('concurrency')}",
            *(f"{v:.1f}" if (v := _num(s.get(k))) is not None else "–"
              for k in ("achieved_rps", "throughput_rps", "goodput_rps")),
            *(_ms(_num((checks.get(sp) or {}).get("value_ms")))
              + ("" if (checks.get(sp) or {}).get("ok", True) else " ✗") for sp in specs),
            f"{v:.1%}" if (v := _num(s.get("error_rate"))) is not None else "–",
            "–" if steady is None else ("yes" if steady else "no"), s["verdict"]]


def _why(s: Mapping[str, Any]) -> str:
    why = "; ".join(str(r) for r in s.get("reasons") or [])
    if s.get("action"):
        why += ("; " if why else "") + f"then: {s['action']}"
    return why


def _hover(s: Mapping[str, Any]) -> str:
    head = f"step {s['index']} · {s['kind']} · {s.get('workers') or '?'} worker(s)"
    why = _why(s)
    lines = textwrap.wrap(f"{s['verdict']}" + (f": {why}" if why else ""), 90)
    return "<br>".join(html.escape(x) for x in [head, *lines])


# ----------------------------------------------------------------------------- plots
def _traces(name: str, colour: str, get: Callable[[Mapping[str, Any]], float | None],
            on: Sequence[Mapping], off: Sequence[Mapping], div: float = 1.0,
            unit: str = "") -> list[dict[str, Any]]:
    """Return the curve's line of one series (markers by class) and its off-curve markers."""
    out: list[dict[str, Any]] = []
    for steps, hollow in ((on, False), (off, True)):
        y = [None if (v := get(s)) is None else v / div for s in steps]
        if all(v is None for v in y):
            continue
        out.append({
            "type": "scatter", "mode": "markers" if hollow else "lines+markers",
            "name": f"{name} (off the curve)" if hollow else name, "legendgroup": name,
            "showlegend": not hollow or not out, "x": [s["offered_rps"] for s in steps],
            "y": y, "line": {"color": colour},
            "marker": {"color": colour, "size": 8 if hollow else 10,
                       "symbol": [SYMBOLS[step_class(s)] + ("-open" if hollow else "")
                                  for s in steps],
                       "line": {"color": colour, "width": 1.5}},
            "text": [_hover(s) for s in steps],
            "hovertemplate": f"%{{x:g}} req/s: %{{y:.4g}}{unit}<br>%{{text}}"
                             f"<extra>{html.escape(name)}</extra>"})
    return out


def _hline(name: str, y: float, xs: tuple[float, float], colour: str, dash: str = "dash"
           ) -> dict[str, Any]:
    """A horizontal line across the offered rates, as a trace (in the legend, any y axis)."""
    return {"type": "scatter", "mode": "lines", "name": name, "x": list(xs), "y": [y, y],
            "line": {"color": colour, "dash": dash, "width": 1.5},
            "hovertemplate": f"{html.escape(name)}<extra></extra>"}


def _marks(sw: SweepData) -> dict[str, Any]:
    """Layout shapes and labels: vertical lines at the max rate found and at the knee."""
    shapes, labels = [], []
    knee = sw.result.get("knee") or {}
    for rate, text, colour, dash, y in (
            (_num(sw.result.get("max_rate")), "max rate", MAX_COLOUR, "solid", 1.0),
            (_num(knee.get("rate")), "knee", KNEE_COLOUR, "dash", 0.9)):
        if rate is None:
            continue
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": rate, "x1": rate,
                       "y0": 0, "y1": 1, "line": {"color": colour, "width": 2, "dash": dash}})
        labels.append({"xref": "x", "yref": "paper", "x": rate, "y": y, "xanchor": "left",
                       "yanchor": "top", "showarrow": False, "text": f"{text} {rate:g} req/s",
                       "font": {"color": colour, "size": 11}, "xshift": 3,
                       "bgcolor": "rgba(255,255,255,0.8)"})
    return {"shapes": shapes, "annotations": labels}


def _x_span(sw: SweepData, on: Sequence[Mapping], off: Sequence[Mapping]
            ) -> tuple[float, float]:
    """The offered rates drawn (steps, max rate, knee), padded a little: where lines span."""
    rates = [s["offered_rps"] for s in (*on, *off)] + [
        r for r in (_num(sw.result.get("max_rate")),
                    _num((sw.result.get("knee") or {}).get("rate"))) if r is not None]
    lo, hi = min(rates, default=0.0), max(rates, default=1.0)
    pad = 0.04 * (hi - lo) if hi > lo else 0.05 * hi
    return max(0.0, lo - pad), hi + pad


def _figure_layout(sw: SweepData, y_title: str, **kw: Any) -> dict[str, Any]:
    return _layout("offered rate (req/s)", y_title, hovermode="closest", **_marks(sw), **kw)


def _latency_plot(sw: SweepData, metric: str, on: Sequence[Mapping], off: Sequence[Mapping]
                  ) -> Plot:
    slos = [s for s in sw.slos if s["metric"] == metric]
    stats: list[tuple[str, str | None]] = [("p50", None)]
    for s in slos:
        if all(s["stat"] != st for st, _ in stats):
            stats.append((s["stat"], s["slo"]))
    if len(stats) == 1:
        stats.append(("p99", None))
    getters = [(st, (lambda step, st=st, spec=spec: _slo_value(step, spec, metric, st))
                if spec else (lambda step, st=st: _metric(step, metric, st)))
               for st, spec in stats]
    values = [g(s) for _, g in getters for s in (*on, *off)]
    limits = [float(s["limit_ms"]) for s in slos]
    ys = np.array([v for v in values if v is not None] + limits, np.float64)
    div, unit = _unit([ys])
    title = f"{_NAMES.get(metric, metric)} vs offered rate"
    colour = {st: COLOURS[j % len(COLOURS)] for j, (st, _) in enumerate(stats)}
    traces = []
    for st, get in getters:
        traces += _traces(f"{metric} {st}", colour[st], get, on, off, div, f" {unit}")
    if not traces:
        return Plot(title, [], {}, "no open-loop step with a value of this metric yet")
    xs = _x_span(sw, on, off)
    for s in slos:
        traces.append(_hline(f"SLO {s['metric']}.{s['stat']} ≤ {_limit(s['limit_ms'])}",
                             float(s["limit_ms"]) / div, xs, colour.get(s["stat"], GREY)))
    pos = ys[ys > 0]
    log = len(pos) > 1 and pos.max() > 50 * pos.min()   # a queue's growth past the knee
    layout = _figure_layout(sw, f"{_NAMES.get(metric, metric)} ({unit}"
                            f"{', log scale' if log else ''})")
    if log:
        layout["yaxis"]["type"] = "log"
    return Plot(title, traces, layout, note=_KEY)


def _throughput_plot(sw: SweepData, on: Sequence[Mapping], off: Sequence[Mapping]) -> Plot:
    title = "Throughput vs offered rate"
    traces = []
    for j, (key, name) in enumerate((("achieved_rps", "achieved (start rate)"),
                                     ("throughput_rps", "completed (ok requests/s)"),
                                     ("goodput_rps", "goodput (met every SLO)"))):
        traces += _traces(name, COLOURS[j], lambda s, key=key: _num(s.get(key)), on, off,
                          unit=" req/s")
    if not traces:
        return Plot(title, [], {}, "no open-loop step yet")
    xs = _x_span(sw, on, off)
    traces.append({"type": "scatter", "mode": "lines", "name": "offered (y = x)",
                   "x": list(xs), "y": list(xs), "hoverinfo": "skip",
                   "line": {"color": GREY, "dash": "dot", "width": 1}})
    cap = _num(sw.result.get("capacity_estimate_rps"))
    if cap is not None:
        traces.append(_hline(f"probe's capacity estimate {cap:.1f} req/s", cap, xs, GREY,
                             "dashdot"))
    sat = _num((sw.meta.get("embedded_mock") or {}).get("saturation_rps"))
    if sat is not None:
        traces.append(_hline(f"mock saturation (computed) {sat:.1f} req/s", sat, xs,
                             COLOURS[4], "longdash"))
    return Plot(title, traces, _figure_layout(sw, "requests / s"), note=_KEY)


def _error_plot(sw: SweepData, on: Sequence[Mapping], off: Sequence[Mapping]) -> Plot:
    title = "Error rate vs offered rate (failed, dropped, cancelled)"

    def pct(s: Mapping[str, Any]) -> float | None:
        v = _num(s.get("error_rate"))
        return None if v is None else 100 * v

    traces = _traces("error rate", COLOURS[1], pct, on, off, unit=" %")
    if not traces:
        return Plot(title, [], {}, "no open-loop step yet")
    limit = _num(sw.settings.get("max_error_rate"))
    if limit is not None:
        traces.append(_hline(f"--max-error-rate {100 * limit:g} %", 100 * limit,
                             _x_span(sw, on, off), GREY))
    return Plot(title, traces, _figure_layout(sw, "% of requests not ok"), note=_KEY)


def sweep_sections(sw: SweepData) -> list[tuple[str, list[Plot]]]:
    """Return the page's sections: (heading, plots) of latency, then throughput and errors."""
    on, off = _split(sw)
    metrics = list(dict.fromkeys(s["metric"] for s in sw.slos))
    if not metrics:
        knee = (sw.result.get("knee") or {}).get("metric")
        metrics = list(dict.fromkeys(["ttft", knee if isinstance(knee, str) else "e2e_sched"]))
    return [("Latency vs offered rate", [_latency_plot(sw, m, on, off) for m in metrics]),
            ("Throughput and errors vs offered rate",
             [_throughput_plot(sw, on, off), _error_plot(sw, on, off)])]


# ----------------------------------------------------------------------------- HTML
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _header_html(sw: SweepData) -> str:
    m, res = redact_secrets(sw.meta), redact_secrets(sw.result)
    target = m.get("target") or {}
    mock = m.get("embedded_mock") or {}
    knee = res.get("knee") or {}
    bracket = res.get("bracket_rps") or {}
    rows = [
        ("command", m.get("command")), ("started (UTC)", m.get("started_at")),
        ("wall time", f"{m['wall_s']:g} s" if _num(m.get("wall_s")) is not None else None),
        ("host / CPUs", f"{m.get('host', '-')} / {m.get('cpu_count', '-')}"),
        ("versions", " · ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())
         if isinstance(m.get("versions"), Mapping) else None),
        ("target", " · ".join(str(target[k]) for k in ("provider", "model", "url")
                              if target.get(k)) or None),
        ("embedded mock", ", ".join(f"{k} {v}" for k, v in mock.items()) if mock else None),
        ("mode", {"auto": "auto: probe, bisection over rate, confirmation",
                  "list": "a list of rates"}.get(m.get("mode"), m.get("mode"))),
        ("SLOs", ", ".join(s["slo"] for s in sw.slos) or "none: steady with few errors"),
        ("result", f"{res.get('status')}" + (f" (exit status {res['exit_status']})"
                                             if res.get("exit_status") is not None else "")),
        ("message", res.get("message")),
        ("max rate", f"{res['max_rate']:g} req/s" + (" (confirmed)" if res.get("confirmed")
                                                    else "") + (f", limit: {res['limit']}"
                                                                if res.get("limit") else "")
         if _num(res.get("max_rate")) is not None else "none"),
        ("knee", f"{knee['rate']:g} req/s ({knee.get('metric')} {knee.get('stat')}, "
         f"{knee.get('method')})" if knee else "none (fewer than 3 points, or a flat curve)"),
        ("capacity estimate", f"{res['capacity_estimate_rps']:.1f} req/s (the probe)"
         if _num(res.get("capacity_estimate_rps")) is not None else None),
        ("bracket", f"passed {_rate(bracket.get('passed'))} · failed "
                    f"{_rate(bracket.get('failed'))} req/s" if bracket else None),
        ("interrupted", "yes: sweep.json holds the steps finished until then"
         if m.get("interrupted") else "no")]
    bad = res.get("exit_status") not in (None, 0) or m.get("interrupted")
    attrs = {"message": " class=bad" if bad else "",
             "command": " style='white-space:normal;overflow-wrap:anywhere'"}  # a long line
    body = "".join(f"<tr><td>{_e(k)}</td><td{attrs.get(k, '')}>{_e(v)}</td></tr>"
                   for k, v in rows if v is not None)
    opts = orjson.dumps({"settings": redact_secrets(sw.settings), "config": m.get("config")},
                        option=orjson.OPT_INDENT_2, default=str).decode()
    return (f"<table class=meta>{body}</table><details><summary>settings and run options"
            f"</summary><pre>{_e(opts)}</pre></details>")


def _steps_html(sw: SweepData, html_dir: Path) -> str:
    specs = [s["slo"] for s in sw.slos]
    head = (*_COLUMNS, *specs, "errors", "steady", "verdict", "why", "folder")
    rows = []
    for s in sw.steps:
        cells = _cells(s, specs)
        if s["verdict"] != "probe":
            cells[-1] = f"{_CHARS[step_class(s)]} {cells[-1]}"
        link = "–"
        if s.get("dir"):
            target = sw.path / s["dir"]
            try:
                href = urllib.parse.quote(Path(os.path.relpath(target, html_dir)).as_posix())
            except ValueError:                     # another drive (Windows)
                href = target.resolve().as_uri()
            link = (f"<a href='{_e(href)}/'>{_e(s['dir'])}</a>"
                    + ("" if target.is_dir() else " (missing)"))
        bad = s["verdict"] not in ("pass", "probe")
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells[:-1])
                    + f"<td{' class=bad' if bad else ''}>{_e(cells[-1])}</td>"
                    + f"<td style='text-align:left;white-space:normal;min-width:280px'>"
                    f"{_e(_why(s))}</td><td>{link}</td></tr>")
    return ("<div class=wrap><table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head)
            + "</tr>" + "".join(rows) + "</table></div><p class=note>Each step is a run "
            f"folder: <code>lens-fast report {_e(sw.path / 'steps' / 'NAME')} --html "
            "FILE</code> draws its own report.</p>")


def render_sweep_html(sw: SweepData, html_dir: str | os.PathLike[str] | None = None) -> str:
    """Return the sweep's report as one self-contained HTML page (plotly.js inline).

    ``html_dir`` is the folder the page is written to: step folders are linked relative to
    it (default: the sweep's folder).
    """
    figures: list[dict[str, Any]] = []
    sections = sections_html(sweep_sections(sw), figures)
    title = f"lens-fast sweep report · {sw.meta.get('started_at') or sw.path.name}"
    return page_html(title, (
        f"<h1>lens-fast sweep report <span class=note>{_e(sw.path)}</span></h1>"
        f"{_header_html(sw)}{sections}<h2>Steps</h2>"
        f"{_steps_html(sw, Path(html_dir) if html_dir is not None else sw.path)}"), figures)


# ----------------------------------------------------------------------------- console
def print_sweep(sw: SweepData, console: Any) -> None:
    """Print the sweep's metadata line, its table of steps (as ``lens-fast sweep`` prints
    it at the end) and the result: the message, the max rate, what limited it, the knee."""
    from rich.markup import escape
    from rich.table import Table

    m, res = sw.meta, sw.result
    head = f"sweep started {m.get('started_at') or '-'}"
    if _num(m.get("wall_s")) is not None:
        head += f" · {m['wall_s']:g} s"
    if m.get("command"):
        head += f" · {m['command']}"
    console.print(head, highlight=False, markup=False)
    if m.get("interrupted"):
        console.print("[yellow]Interrupted: sweep.json holds the steps finished until then.[/]")
    target = m.get("target") or {}
    t = Table(title=" · ".join(["lens-fast sweep", *(str(target[k]) for k in
                                                     ("provider", "model", "url")
                                                     if target.get(k))]),
              title_justify="left")
    specs = [s["slo"] for s in sw.slos]
    for col in (*_COLUMNS, *specs, "errors", "steady", "verdict"):
        t.add_column(col, justify="left" if col in ("step", "verdict") else "right")
    for s in sw.steps:
        t.add_row(*(escape(c) for c in _cells(s, specs)))
    console.print(t)
    color = {0: "green", 3: "yellow", 4: "red"}.get(res.get("exit_status"), "yellow")
    message = res.get("message") or f"status {res.get('status')} ({len(sw.steps)} step(s))"
    console.print(f"[bold {color}]{escape(message)}[/]", highlight=False)
    parts = []
    rate = _num(res.get("max_rate"))
    parts.append(f"max rate {rate:g} req/s" + (" (confirmed)" if res.get("confirmed") else "")
                 if rate is not None else "max rate: none")
    if res.get("limit"):
        parts.append(f"limit: {res['limit']}")
    knee = res.get("knee")
    parts.append(f"knee of {knee.get('metric')} {knee.get('stat')} vs rate: {knee['rate']:g} "
                 "req/s" if knee else "knee: none")
    console.print(" · ".join(parts), highlight=False, markup=False)
    console.print(f"Steps: {sw.path / 'steps'}/ (each a run folder: lens-fast report "
                  f"{sw.path / 'steps' / 'NAME'})", highlight=False, markup=False, soft_wrap=True)
