"""Build and write ``summary.json``: run metadata, then scenarios → results → metrics.

The schema (``lens-fast/summary/1``) is drawn once, with an example, in ``docs/outputs.md``.
Latencies are in milliseconds, per-request throughput in tokens per second; a statistic of an
empty histogram is ``null``. Each result also carries its histograms, base64 of
``LogLinearHistogram.encode()``, so that ``lens-fast report``/``compare`` can recompute any
quantile or merge runs without the Parquet files.
"""
from __future__ import annotations

import base64
import datetime as _dt
import os
import platform
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from lens._version import __version__
from lens.errors import RunError
from lens.output.results import HISTOGRAM_UNITS, METRICS, TOKENS_PER_S_SCALE, RunResults

__all__ = [
    "QUANTILES",
    "SCHEMA",
    "build_summary",
    "histogram_stats",
    "redact_secrets",
    "saturation_reasons",
    "write_summary",
]

SCHEMA = "lens-fast/summary/1"
#: Reported quantiles: key → q.
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}

#: A worker busier than this, or a scheduling-lag p99 above this, marks the client saturated.
CPU_PERCENT_LIMIT = 90.0
SCHED_LAG_P99_MS_LIMIT = 10.0

_SECRET_KEY = re.compile(
    r"(api[-_]?key|apikey|authorization|auth[-_]?token|access[-_]?token|bearer|secret|"
    r"password|passwd|cookie|x-api-key|private[-_]?key)$", re.IGNORECASE)
REDACTED = "***"


def redact_secrets(obj: Any) -> Any:
    """Return a copy of a JSON-like value with the values of secret-looking keys replaced.

    Keys such as ``api_key``, ``Authorization``, ``x-api-key`` or ``password`` (any case)
    have their value replaced by ``"***"``, at any depth. A safety net: callers still pass
    configs without secrets.
    """
    if isinstance(obj, Mapping):
        return {k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) and v is not None
                    else redact_secrets(v)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_secrets(v) for v in obj]
    return obj


def histogram_stats(h: Any, scale: float = 1e6) -> dict[str, float | int | None]:
    """Summarise a histogram: count, min, mean, p50 … p99.9, max, each divided by ``scale``.

    With the default scale, ns become ms. An empty histogram gives count 0 and ``None``s.
    """
    n = int(h.count)
    if n == 0:
        return {"count": 0, "min": None, "mean": None, **dict.fromkeys(QUANTILES), "max": None}
    qs = h.quantiles(list(QUANTILES.values()))
    out: dict[str, float | int | None] = {
        "count": n, "min": _r(h.min / scale), "mean": _r(h.mean / scale)}
    out.update({k: _r(float(q) / scale) for k, q in zip(QUANTILES, qs, strict=True)})
    out["max"] = _r(h.max / scale)
    return out


def _r(x: float) -> float:
    return round(float(x), 6)


def saturation_reasons(sched_lag_p99_ms: float | None, worker_cpu_percent: Sequence[float],
                       *, sched_lag_p99_ms_limit: float = SCHED_LAG_P99_MS_LIMIT,
                       cpu_percent_limit: float = CPU_PERCENT_LIMIT) -> list[str]:
    """Say why the client itself may have limited the run (empty when it did not)."""
    reasons = []
    if sched_lag_p99_ms is not None and sched_lag_p99_ms > sched_lag_p99_ms_limit:
        reasons.append(f"scheduling lag p99 {sched_lag_p99_ms:.1f} ms > "
                       f"{sched_lag_p99_ms_limit:g} ms; use more --cores or a lower --rps")
    busy = [(i, c) for i, c in enumerate(worker_cpu_percent) if c >= cpu_percent_limit]
    if busy:
        which = ", ".join(f"worker {i} {c:.0f}%" for i, c in busy)
        reasons.append(f"worker CPU >= {cpu_percent_limit:g}% ({which}); use more --cores")
    return reasons


def _iso(unix_ns: int) -> str:
    t = _dt.datetime.fromtimestamp(unix_ns / 1e9, tz=_dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _client(results: RunResults) -> dict[str, Any]:
    given = dict(getattr(results, "client", None) or {})
    lag = histogram_stats(results.histogram("sched_lag"))
    cpu = [round(float(c), 1) for c in given.pop("worker_cpu_percent", [])]
    reasons = list(given.pop("reasons", []))
    # with a rate limit, scheduling lag includes waits for its tokens: judge the client by CPU
    lag_p99 = None if given.get("lag_includes_rate_limit") else lag["p99"]
    reasons += saturation_reasons(lag_p99, cpu)  # type: ignore[arg-type]
    out = {
        "sched_lag_p50_ms": lag["p50"], "sched_lag_p99_ms": lag["p99"],
        "sched_lag_max_ms": lag["max"], "worker_cpu_percent": cpu,
        "saturated": bool(given.pop("saturated", False) or reasons), "reasons": reasons,
    }
    out.update(given)
    return out


def _cost(t: Any) -> dict[str, Any]:
    c = t.cost()
    for k in ("usd_total", "usd_per_request_mean", "usd_per_1k_output_tokens"):
        if c.get(k) is not None:
            c[k] = round(c[k], 9)          # nano-dollars: below any provider's billing unit
    return c


def _result(results: RunResults, index: int) -> dict[str, Any]:
    t = results.targets[index]
    metrics = {}
    for m in METRICS:
        scale = TOKENS_PER_S_SCALE if m == "output_tokens_per_s" else 1e6
        metrics[m] = histogram_stats(t.histograms[m], scale)
    window = t.window_s
    counts = {k: t.counts[k] for k in ("sent", "ok", "failed", "dropped", "cancelled")}
    counts["in_flight"] = int(results.in_flight)
    counts.update({k: t.counts[k] for k in ("warmup", "truncated", "retried",
                                            "output_tokens", "input_tokens")})
    info = dict(t.info)
    info.pop("price", None)               # shown, with what it gives, under "cost"
    return {
        "provider": info.pop("provider", None),
        "model": info.pop("model", None),
        "url": info.pop("url", None),
        "target": {"index": t.index, **redact_secrets(info)},
        "metrics": metrics,
        "cost": _cost(t),
        "throughput": {
            "requests_per_s": _r(t.counts["ok"] / window) if window else 0.0,
            "output_tokens_per_s": _r(t.counts["output_tokens"] / window) if window else 0.0,
            "achieved_rps": _r(t.achieved_rps),
            "offered_rps": results.offered_rps,
            "window_s": _r(window),
        },
        "counts": counts,
        "errors": t.errors(results.error_names),
        "status_codes": t.statuses(),
        "client": _client(results),
        "out_of_range": {m: n for m, n in t.out_of_range.items() if n},
        "timeseries": t.timeseries(),
        "histogram_units": dict(HISTOGRAM_UNITS),
        "histograms": {m: base64.b64encode(t.histograms[m].encode()).decode("ascii")
                       for m in METRICS},
    }


def build_summary(results: RunResults | Sequence[RunResults],
                  metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the summary of one or more scenarios' results as a JSON-ready dict.

    ``metadata`` is the caller's (command, versions, host, config without secrets,
    ``interrupted``, …); missing ``started_at``, ``duration_s``, ``interrupted`` and
    ``versions`` are filled in from the results. Secret-looking keys are redacted. Each
    ``RunResults`` is flushed (``flush(final=True)``) first, so call this after the last
    drain. Client health comes from ``RunResults.client`` when the engine set it
    (``worker_cpu_percent``, ``reasons``, ``saturated``, and any extra keys).
    """
    runs = [results] if isinstance(results, RunResults) else list(results)
    for r in runs:
        r.flush(final=True)
    meta = redact_secrets(dict(metadata or {}))
    meta.setdefault("versions", {"lens-fast": __version__,
                                 "python": platform.python_version()})
    t0_unix = next((r.t0_unix_ns for r in runs if r.t0_unix_ns is not None), None)
    if "started_at" not in meta:
        meta["started_at"] = _iso(t0_unix) if t0_unix is not None else None
    if "duration_s" not in meta:
        given = [r.duration_s for r in runs if r.duration_s is not None]
        meta["duration_s"] = (_r(sum(given)) if given else
                              _r(sum(max((t.window_s for t in r.targets), default=0.0)
                                     for r in runs)))
    meta.setdefault("interrupted", False)
    meta.setdefault("host", platform.node())
    scenarios = [{"name": r.scenario,
                  "results": [_result(r, i) for i in range(len(r.targets))]} for r in runs]
    return {"schema": SCHEMA, "metadata": meta, "scenarios": scenarios}


def write_summary(path: str | os.PathLike[str], summary: Mapping[str, Any]) -> None:
    """Write the summary as indented JSON (UTF-8), replacing the file atomically."""
    data = orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
                        | orjson.OPT_APPEND_NEWLINE, default=str)
    tmp = f"{os.fspath(path)}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        raise RunError(f"cannot write the summary to {os.fspath(path)!r}: {e.strerror}; "
                       "choose a writable --output-dir") from e
