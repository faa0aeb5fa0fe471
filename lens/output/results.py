"""Aggregate drained request rows and token stamps into histograms, counts and rates.

The parent feeds ``RunResults`` batch by batch while the run goes on (``add_rows``,
``add_tokens``); every batch is handled with a few numpy operations, never a Python loop
per row or per token. Latencies go into ``LogLinearHistogram``s (one per metric and target),
never into sample lists, so memory stays flat however long the run.

Per request (all from one row; times are CLOCK_MONOTONIC ns):

=====================  ========================================================  ==========
metric                 definition                                                rows
=====================  ========================================================  ==========
ttft                   t_first_token − t_start                                   ok
ttft_sched             t_first_token − t_sched (response time, free of           ok
                       coordinated omission, as wrk2 reports it)
e2e                    t_end − t_start                                           ok
e2e_sched              t_end − t_sched                                           ok
tpot                   (t_last_token − t_first_token) / (output_tokens − 1)      ok, > 1 token
itl                    each gap between consecutive token stamps of a request   ok, ≥ 2 stamps
output_tokens_per_s    output_tokens / e2e, in seconds (per-request output       ok, > 0 tokens
                       throughput as guidellm and vLLM's benchmark report it)
sched_lag              t_start − t_sched (the client's own lateness)             sent, open loop
=====================  ========================================================  ==========

"ok" rows are measured rows (not warm-up) with ``error == 0`` that were neither dropped nor
cancelled. Every measured row falls in exactly one of ok, failed, dropped and cancelled.

Worked example: a request scheduled at 10.000 s, started at 10.002 s, first token at 10.152 s,
5 tokens with the last at 10.352 s, ended at 10.360 s, gives ttft 150 ms, ttft_sched 152 ms,
tpot (10.352 − 10.152) / 4 = 50 ms, e2e 358 ms, sched_lag 2 ms and
output_tokens_per_s 5 / 0.358 = 13.97.

ITL needs the token stamps, which come from a different ring than the rows: a request's
tokens may arrive before or after its row. Token stamps wait (as two int64 arrays) until
their request's row has arrived and all its stamps are in; then the batch is sorted by
request id (stable, so index order is kept), diffed, and the gaps of ok requests are
recorded. Only stamps of requests still open wait, so memory is bounded by the tokens in
flight. A gap of 0 (two events in one read share a stamp) is a real value and is recorded
(the histogram is exact below 1,024 ns); negative values, which a sane clock never gives, and
values above ``highest_ns`` are not recorded but counted in ``TargetResults.out_of_range``.

Cost: a target's ``info["price"]`` (``{"input_per_mtok", "output_per_mtok", "source"}``, or
None when the model has no price) prices its *billed* requests: the measured ones the
endpoint answered with a 2xx status, whether they then finished, failed mid-stream or were
cancelled (the tokens generated until then are billed). ``TargetResults.billed`` counts
them and their input and output tokens; ``cost()`` turns that into dollars.

The throughput window runs from the first ``t_start`` to the last ``t_end`` of the measured,
sent requests; ``requests_per_s`` and ``output_tokens_per_s`` count ok requests and their
output tokens over it. ``achieved_rps`` is the start rate, (sent − 1) / (last t_start −
first t_start), which equals R for a constant arrival process at R per second.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from lens._core import (
    FLAG_CANCELLED,
    FLAG_DROPPED,
    FLAG_TRUNCATED,
    FLAG_WARMUP,
    ROW_DTYPE,
    ROW_FIELDS,
    TOKEN_DTYPE,
    TOKEN_FIELDS,
    UNSET,
    LogLinearHistogram,
)

try:
    from lens.engine.errors import ERROR_NAMES
except ImportError:  # pragma: no cover - the engine package lands separately
    ERROR_NAMES = {
        0: "ok", 1: "connect", 2: "dns", 3: "tls", 4: "timeout_connect",
        5: "timeout_first_token", 6: "timeout_total", 7: "http_status", 8: "reset",
        9: "protocol", 10: "stream_error", 11: "cancelled", 12: "dropped",
    }

__all__ = [
    "HISTOGRAM_UNITS",
    "METRICS",
    "TOKENS_PER_S_SCALE",
    "Progress",
    "RunResults",
    "TargetResults",
    "as_rows",
    "as_tokens",
    "derive_metrics",
    "empty_rows",
    "error_name",
]

#: Histogram names, in display order.
METRICS = ("ttft", "ttft_sched", "itl", "tpot", "e2e", "e2e_sched", "output_tokens_per_s",
           "sched_lag")
#: ``output_tokens_per_s`` is recorded in micro-tokens per second, so that the integer
#: histogram keeps three significant figures from 0.001 tok/s up.
TOKENS_PER_S_SCALE = 1_000_000
#: What one histogram unit is, per metric.
HISTOGRAM_UNITS = {m: "ns" for m in METRICS} | {"output_tokens_per_s": "utok/s"}

NS_PER_S = 1_000_000_000
MAX_SERIES_S = 7 * 24 * 3600
SERIES = ("started", "requests_ok", "errors", "output_tokens", "token_events")


def error_name(code: int, names: Mapping[int, str] = ERROR_NAMES) -> str:
    """Return the name of an error code; unknown codes read ``error_<code>``."""
    return names.get(int(code), f"error_{int(code)}")


def as_rows(rows: np.ndarray) -> np.ndarray:
    """View a drained batch as a 1-d ``ROW_DTYPE`` array.

    Accepts the structured array itself or the ``(n, len(ROW_FIELDS))`` int64 array that
    ``Ring.drain`` returns (no copy when it is contiguous).
    """
    return _as(rows, ROW_DTYPE, len(ROW_FIELDS), "rows")


def as_tokens(tokens: np.ndarray) -> np.ndarray:
    """View a drained batch as a 1-d ``TOKEN_DTYPE`` array (see ``as_rows``)."""
    return _as(tokens, TOKEN_DTYPE, len(TOKEN_FIELDS), "tokens")


def _as(a: np.ndarray, dtype: np.dtype, words: int, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == dtype:
        return a.reshape(-1)
    if a.dtype == np.int64 and a.ndim == 2 and a.shape[1] == words:
        return np.ascontiguousarray(a).view(dtype).reshape(-1)
    raise TypeError(
        f"{what} must be a {what[:-1]} dtype array or int64 of shape (n, {words}) "
        f"(got dtype {a.dtype}, shape {a.shape})")


def empty_rows(n: int) -> np.ndarray:
    """Return ``n`` rows as ``Recorder.begin`` opens them: every time UNSET, attempt 1.

    For rows made outside a recorder (a dropped arrival) and for tests.
    """
    r = np.zeros(n, ROW_DTYPE)
    for f in ROW_FIELDS:
        if f.startswith("t_"):
            r[f] = UNSET
    r["attempt"] = 1
    r["conn_id"] = -1
    return r


def _span(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # UNSET - x wraps silently in int64 arrays; those entries are masked to NaN.
    out = (b - a).astype(np.float64)
    out[(a == UNSET) | (b == UNSET)] = np.nan
    return out


def derive_metrics(rows: np.ndarray) -> dict[str, np.ndarray]:
    """Compute per-request latencies of a batch: float64 ns, NaN where not applicable.

    Keys: ``ttft``, ``ttft_sched``, ``e2e``, ``e2e_sched`` (a retried request's from its first
    attempt), ``ttft_last_attempt``, ``e2e_last_attempt`` (from its last), ``tpot``, ``itl_mean``
    ((t_last_token − t_first_token) / (token_events − 1), the mean of the request's
    token gaps), ``sched_lag``, and ``output_tokens_per_s`` (tokens per second, not ns).
    Computed for every row whatever its error; callers choose the rows.
    """
    r = as_rows(rows)
    t_first, t_last = r["t_first_token_ns"], r["t_last_token_ns"]
    out = {
        "ttft": _span(r["t_start_ns"], t_first),
        "ttft_sched": _span(r["t_sched_ns"], t_first),
        "e2e": _span(r["t_start_ns"], r["t_end_ns"]),
        "e2e_sched": _span(r["t_sched_ns"], r["t_end_ns"]),
        "sched_lag": _span(r["t_sched_ns"], r["t_start_ns"]),
        # from the start of the last attempt (the same as above when there was one attempt)
        "ttft_last_attempt": _span(r["t_attempt_ns"], t_first),
        "e2e_last_attempt": _span(r["t_attempt_ns"], r["t_end_ns"]),
    }
    decode = _span(t_first, t_last)
    n_out = r["output_tokens"].astype(np.float64)
    n_ev = r["token_events"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["tpot"] = np.where(n_out > 1, decode / (n_out - 1), np.nan)
        out["itl_mean"] = np.where(n_ev > 1, decode / (n_ev - 1), np.nan)
        e2e = out["e2e"]
        out["output_tokens_per_s"] = np.where(
            (n_out > 0) & (e2e > 0), n_out / (e2e / NS_PER_S), np.nan)
    return out


def _count_codes(counts: dict[int, int], codes: np.ndarray) -> None:
    """Add the occurrences of each code (one Python step per distinct code, not per row)."""
    if len(codes):
        for code, n in zip(*np.unique(codes, return_counts=True), strict=True):
            counts[int(code)] = counts.get(int(code), 0) + int(n)


def _add_bins(series: np.ndarray, idx: np.ndarray, weights: np.ndarray | None = None
              ) -> np.ndarray:
    """Add ``bincount(idx, weights)`` to ``series``, growing it as needed."""
    if len(idx) == 0:
        return series
    counts = np.bincount(idx, weights=weights).astype(np.int64)
    if len(counts) > len(series):
        series = np.concatenate([series, np.zeros(len(counts) - len(series), np.int64)])
    series[:len(counts)] += counts
    return series


class Progress(NamedTuple):
    """Live figures for the progress line (see ``RunResults.snapshot``)."""

    completed: int           # ok requests so far
    failed: int
    dropped: int
    in_flight: int           # as last set by the engine on ``RunResults.in_flight``
    achieved_rps: float      # start rate of measured requests so far
    ttft_p50_ms: float | None  # median TTFT of the last ~2 s of ok requests


class TargetResults:
    """Histograms, counts and per-second series of one target of one scenario."""

    def __init__(self, index: int, info: Mapping[str, Any], histogram: Any, t0_ns: int):
        self.index = index
        self.info = dict(info)
        self.t0_ns = t0_ns
        self.histograms = {m: histogram() for m in METRICS}
        #: Values outside [0, highest_ns], per metric (not recorded).
        self.out_of_range = dict.fromkeys(METRICS, 0)
        self.counts = dict.fromkeys(
            ("sent", "ok", "failed", "dropped", "cancelled", "warmup", "truncated", "retried",
             "output_tokens", "input_tokens"), 0)
        #: Measured requests answered with 2xx, and their tokens (what a provider bills).
        self.billed = {"requests": 0, "input_tokens": 0, "output_tokens": 0}
        self.error_codes: dict[int, int] = {}    # failed rows by error code
        self.status_codes: dict[int, int] = {}   # sent rows with a response, by HTTP status
        self.first_start_ns: int | None = None
        self.last_start_ns: int | None = None
        self.last_end_ns: int | None = None
        self.series = {s: np.zeros(0, np.int64) for s in SERIES}
        self.ttft_p50_ms = np.zeros(0, np.float64)  # per second, NaN where none
        # TTFTs of seconds not closed yet (see _add_p50)
        self._open_sec = np.zeros(0, np.int64)
        self._open_ttft = np.zeros(0, np.float64)
        self._max_sec = -1
        self._closed_below = 0

    # -- feeding (called by RunResults with this target's part of a batch) --

    def _add(self, r: np.ndarray, m: dict[str, np.ndarray], measured: np.ndarray,
             ok: np.ndarray, failed: np.ndarray, dropped: np.ndarray,
             cancelled: np.ndarray, open_loop: bool) -> None:
        c = self.counts
        sent = measured & ~dropped
        c["warmup"] += int(len(r) - np.count_nonzero(measured))
        c["sent"] += int(np.count_nonzero(sent))
        c["ok"] += int(np.count_nonzero(ok))
        c["failed"] += int(np.count_nonzero(failed))
        c["dropped"] += int(np.count_nonzero(dropped))
        c["cancelled"] += int(np.count_nonzero(cancelled))
        c["truncated"] += int(np.count_nonzero(sent & (r["flags"] & FLAG_TRUNCATED != 0)))
        c["retried"] += int(np.count_nonzero(sent & (r["attempt"] > 1)))
        c["output_tokens"] += int(r["output_tokens"][ok].sum())
        c["input_tokens"] += int(r["input_tokens"][ok].sum())
        _count_codes(self.error_codes, r["error"][failed])
        status = r["status"][sent]
        _count_codes(self.status_codes, status[status > 0])
        billed = sent & (r["status"] >= 200) & (r["status"] < 300)
        b = self.billed
        b["requests"] += int(np.count_nonzero(billed))
        b["input_tokens"] += int(r["input_tokens"][billed].sum())
        b["output_tokens"] += int(r["output_tokens"][billed].sum())

        starts = r["t_start_ns"][sent]
        starts = starts[starts != UNSET]
        if len(starts):
            lo, hi = int(starts.min()), int(starts.max())
            if self.first_start_ns is None or self.last_start_ns is None:
                self.first_start_ns, self.last_start_ns = lo, hi
            else:
                self.first_start_ns = min(lo, self.first_start_ns)
                self.last_start_ns = max(hi, self.last_start_ns)
            self.series["started"] = _add_bins(self.series["started"], self._sec(starts))
        ends = r["t_end_ns"][sent]
        ends = ends[ends != UNSET]
        if len(ends):
            hi = int(ends.max())
            self.last_end_ns = hi if self.last_end_ns is None else max(hi, self.last_end_ns)
        end_ok = r["t_end_ns"][ok]
        ok_end = end_ok != UNSET
        sec_ok = self._sec(end_ok[ok_end])
        self.series["requests_ok"] = _add_bins(self.series["requests_ok"], sec_ok)
        self.series["output_tokens"] = _add_bins(
            self.series["output_tokens"], sec_ok, r["output_tokens"][ok][ok_end])
        end_failed = r["t_end_ns"][failed]
        self.series["errors"] = _add_bins(
            self.series["errors"], self._sec(end_failed[end_failed != UNSET]))

        for name in ("ttft", "ttft_sched", "tpot", "e2e", "e2e_sched"):
            v = m[name][ok]
            self._record(name, v[~np.isnan(v)])
        v = m["output_tokens_per_s"][ok]
        self._record("output_tokens_per_s", v[~np.isnan(v)] * TOKENS_PER_S_SCALE)
        if open_loop:
            v = m["sched_lag"][sent]
            # a start a hair before its schedule (clock granularity) is no lag at all
            self._record("sched_lag", np.maximum(v[~np.isnan(v)], 0))

        ttft = m["ttft"][ok][ok_end]
        has = ~np.isnan(ttft)
        self._add_p50(sec_ok[has], ttft[has])

    def _sec(self, t_ns: np.ndarray) -> np.ndarray:
        # clipped so that a garbage stamp cannot make a series allocate for years
        return np.clip((t_ns - self.t0_ns) // NS_PER_S, 0, MAX_SERIES_S)

    def _record(self, name: str, values: np.ndarray) -> None:
        if len(values):
            # clip before the cast: a float beyond int64 would make it undefined
            v = np.clip(np.rint(values), -1, 1 << 62).astype(np.int64)
            self.out_of_range[name] += int(self.histograms[name].record_many(v))

    def _record_itl(self, gaps: np.ndarray) -> None:
        if len(gaps):
            self.out_of_range["itl"] += int(self.histograms["itl"].record_many(gaps))

    def _add_p50(self, sec: np.ndarray, ttft: np.ndarray, final: bool = False) -> None:
        """Keep TTFTs per completion second; close a second once rows 2 s later arrived.

        Rows of one second arrive from all workers within a drain or two, so a second is
        closed (its median computed, its samples freed) when a row of a second at least two
        later has been seen. A straggler for a closed second is left out of the median.
        """
        keep = sec >= self._closed_below
        if len(sec):
            self._max_sec = max(self._max_sec, int(sec.max()))
        s = np.concatenate([self._open_sec, sec[keep]])
        v = np.concatenate([self._open_ttft, ttft[keep]])
        limit = self._max_sec + 1 if final else self._max_sec - 1
        close = s < limit
        if not close.any():
            self._open_sec, self._open_ttft = s, v
            return
        cs, cv = s[close], v[close]
        order = np.lexsort((cv, cs))
        cs, cv = cs[order], cv[order]
        starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
        n = np.diff(np.r_[starts, len(cs)])
        med = (cv[starts + (n - 1) // 2] + cv[starts + n // 2]) / 2
        secs = cs[starts]
        if secs[-1] >= len(self.ttft_p50_ms):
            grow = np.full(secs[-1] + 1 - len(self.ttft_p50_ms), np.nan)
            self.ttft_p50_ms = np.concatenate([self.ttft_p50_ms, grow])
        self.ttft_p50_ms[secs] = med / 1e6
        self._closed_below = max(self._closed_below, limit)
        self._open_sec, self._open_ttft = s[~close], v[~close]

    # -- reading --

    @property
    def window_s(self) -> float:
        """Seconds from the first start to the last end of the measured, sent requests."""
        if self.first_start_ns is None or self.last_end_ns is None:
            return 0.0
        return max(self.last_end_ns - self.first_start_ns, 0) / NS_PER_S

    @property
    def achieved_rps(self) -> float:
        """Start rate: (sent − 1) / (last t_start − first t_start); 0 under two starts."""
        if self.first_start_ns is None or self.last_start_ns is None:
            return 0.0
        span = self.last_start_ns - self.first_start_ns
        n = self.counts["sent"]
        return (n - 1) / (span / NS_PER_S) if n > 1 and span > 0 else 0.0

    def cost(self) -> dict[str, Any]:
        """Return the estimated cost of the billed requests, or why there is none.

        ``{"usd_total", "usd_per_request_mean", "usd_per_1k_output_tokens", "requests",
        "input_tokens", "output_tokens", "price": {"input_per_mtok", "output_per_mtok"},
        "source"}``; without a price ``{"price": None, "note": "no price for MODEL"}``.
        """
        price = self.info.get("price")
        if not price:
            return {"price": None, "note": f"no price for {self.info.get('model') or 'the model'}"}
        b = self.billed
        p_in, p_out = float(price["input_per_mtok"]), float(price["output_per_mtok"])
        total = (b["input_tokens"] * p_in + b["output_tokens"] * p_out) / 1e6
        return {
            "usd_total": total,
            "usd_per_request_mean": total / b["requests"] if b["requests"] else None,
            "usd_per_1k_output_tokens": (total / b["output_tokens"] * 1000
                                         if b["output_tokens"] else None),
            "requests": b["requests"],
            "input_tokens": b["input_tokens"],
            "output_tokens": b["output_tokens"],
            "price": {"input_per_mtok": p_in, "output_per_mtok": p_out},
            "source": price.get("source") or None,
        }

    def errors(self, names: Mapping[int, str] = ERROR_NAMES) -> dict[str, int]:
        """Failed requests by error kind name (non-zero kinds only)."""
        return {error_name(code, names): int(n)
                for code, n in sorted(self.error_codes.items())}

    def statuses(self) -> dict[str, int]:
        """Sent requests that got a response, by HTTP status."""
        return {str(code): n for code, n in sorted(self.status_codes.items())}

    def timeseries(self) -> dict[str, list]:
        """Per-second series from t0 (second k covers [t0 + k s, t0 + k + 1 s))."""
        n = max([len(a) for a in self.series.values()] + [len(self.ttft_p50_ms)])
        out: dict[str, list] = {"t_s": list(range(n))}
        for name, a in self.series.items():
            out[name] = np.concatenate([a, np.zeros(n - len(a), np.int64)]).tolist()
        p50 = np.concatenate([self.ttft_p50_ms, np.full(n - len(self.ttft_p50_ms), np.nan)])
        out["ttft_p50_ms"] = [None if np.isnan(x) else round(float(x), 6) for x in p50]
        return out


class RunResults:
    """Results of one scenario, fed batch by batch by the parent while the run goes on.

    ``t0_ns`` is the run's epoch (CLOCK_MONOTONIC) and ``t0_unix_ns`` the wall clock at t0.
    ``targets`` describes each target index (``provider``, ``model``, ``url``, …) for the
    summary. ``open_loop`` turns on the sched_lag histogram; ``offered_rps`` is the configured
    rate, reported next to the achieved one. ``max_token_stamps`` must match the recorders'
    (a truncated request has that many token stamps). Call ``flush(final=True)`` after the
    last drain (``build_summary`` does it if needed).
    """

    def __init__(self, t0_ns: int, *, t0_unix_ns: int | None = None, scenario: str = "default",
                 targets: Sequence[Mapping[str, Any]] = (), open_loop: bool = True,
                 offered_rps: float | None = None, duration_s: float | None = None,
                 error_names: Mapping[int, str] | None = None,
                 max_token_stamps: int = 1 << 20, lowest_ns: int = 1000,
                 highest_ns: int = 3_600_000_000_000, sigfigs: int = 3,
                 join_tokens: int = 1 << 18):
        self.t0_ns = int(t0_ns)
        self.t0_unix_ns = t0_unix_ns
        self.scenario = scenario
        self.open_loop = open_loop
        self.offered_rps = offered_rps
        self.duration_s = duration_s
        self.error_names = dict(ERROR_NAMES if error_names is None else error_names)
        self.max_token_stamps = max_token_stamps
        self.lowest_ns, self.highest_ns, self.sigfigs = lowest_ns, highest_ns, sigfigs
        #: Requests in flight, set by the engine (rows only tell of finished requests).
        self.in_flight = 0
        self._targets_info = [dict(t) for t in targets]
        self._targets: dict[int, TargetResults] = {}
        for i in range(len(self._targets_info)):
            self._target(i)
        by_name = {v: k for k, v in self.error_names.items()}
        self._code_dropped = by_name.get("dropped", 12)
        self._code_cancelled = by_name.get("cancelled", 11)
        self._join_tokens = join_tokens
        # token stamps waiting for their rows: sorted remainder + unsorted new chunks
        self._tok_rid = np.zeros(0, np.int64)
        self._tok_t = np.zeros(0, np.int64)
        self._tok_chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self._tok_new = 0
        # finished requests whose stamps are not all joined: request_id, expected, target, ok
        self._fin = np.zeros((0, 4), np.int64)
        self._fin_chunks: list[np.ndarray] = []
        self._fin_new = 0

    def new_histogram(self) -> LogLinearHistogram:
        """Return an empty histogram with this run's range and precision."""
        return LogLinearHistogram(lowest_ns=self.lowest_ns, highest_ns=self.highest_ns,
                              sigfigs=self.sigfigs)

    def _target(self, i: int) -> TargetResults:
        t = self._targets.get(i)
        if t is None:
            info = self._targets_info[i] if i < len(self._targets_info) else {}
            t = self._targets[i] = TargetResults(i, info, self.new_histogram, self.t0_ns)
        return t

    @property
    def targets(self) -> list[TargetResults]:
        """Per-target results, by target index."""
        return [self._targets[i] for i in sorted(self._targets)]

    ### Public API ###

    def add_rows(self, rows: np.ndarray) -> None:
        """Add a drained batch of request rows (``ROW_DTYPE``, or int64 ``(n, 25)``)."""
        r = as_rows(rows)
        if len(r) == 0:
            return
        flags, err = r["flags"], r["error"]
        measured = (flags & FLAG_WARMUP) == 0
        dropped = measured & (((flags & FLAG_DROPPED) != 0) | (err == self._code_dropped))
        cancelled = measured & ~dropped & (
            ((flags & FLAG_CANCELLED) != 0) | (err == self._code_cancelled))
        ok = measured & ~dropped & ~cancelled & (err == 0)
        failed = measured & ~dropped & ~cancelled & (err != 0)
        m = derive_metrics(r)
        tgt = r["target"]
        first = int(tgt[0])
        if (tgt == first).all():
            self._target(first)._add(r, m, measured, ok, failed, dropped, cancelled,
                                     self.open_loop)
        else:
            for i in np.unique(tgt).tolist():
                sel = tgt == i
                mi = {k: v[sel] for k, v in m.items()}
                self._target(i)._add(r[sel], mi, measured[sel], ok[sel], failed[sel],
                                          dropped[sel], cancelled[sel], self.open_loop)

        # rows with token stamps: their stamps are joined for ITL (see the module docstring)
        has = r["token_events"] > 0
        if has.any():
            expected = np.where(flags[has] & FLAG_TRUNCATED != 0,
                                np.minimum(r["token_events"][has], self.max_token_stamps),
                                r["token_events"][has])
            fin = np.stack([r["request_id"][has], expected, tgt[has],
                            ok[has].astype(np.int64)], axis=1)
            self._fin_chunks.append(fin)
            self._fin_new += len(fin)
            if self._fin_new >= self._join_tokens // 4:
                self._join(final=False)

    def add_tokens(self, tokens: np.ndarray) -> None:
        """Add a drained batch of token stamps (``TOKEN_DTYPE``, or int64 ``(n, 3)``).

        A request's stamps must arrive in index order (one ring per worker keeps it), but
        may come before or after its row and interleaved with other requests'.
        """
        tk = as_tokens(tokens)
        if len(tk) == 0:
            return
        self._tok_chunks.append((tk["request_id"].copy(), tk["t_ns"].copy()))
        self._tok_new += len(tk)
        if self._tok_new >= self._join_tokens:
            self._join(final=False)

    def flush(self, final: bool = False) -> None:
        """Join waiting token stamps with their rows now.

        ``final=True`` (after the last drain) also gives up on the stamps of requests without
        a row (the run ended while they were in flight) and closes the per-second TTFT series.
        """
        self._join(final)
        if final:
            for t in self._targets.values():
                t._add_p50(np.zeros(0, np.int64), np.zeros(0), final=True)

    def snapshot(self) -> Progress:
        """Return live figures for the progress line (cheap: no histogram is read)."""
        ts = list(self._targets.values())
        first = [t.first_start_ns for t in ts if t.first_start_ns is not None]
        last = [t.last_start_ns for t in ts if t.last_start_ns is not None]
        sent = sum(t.counts["sent"] for t in ts)
        rps = 0.0
        if first and sent > 1 and max(last) > min(first):
            rps = (sent - 1) / ((max(last) - min(first)) / NS_PER_S)
        recent = [t._open_ttft for t in ts if len(t._open_ttft)]
        p50 = float(np.median(np.concatenate(recent))) / 1e6 if recent else None
        return Progress(
            completed=sum(t.counts["ok"] for t in ts),
            failed=sum(t.counts["failed"] for t in ts),
            dropped=sum(t.counts["dropped"] for t in ts),
            in_flight=int(self.in_flight),
            achieved_rps=rps,
            ttft_p50_ms=p50,
        )

    def histogram(self, name: str) -> Any:
        """Return one metric's histogram merged over all targets (a new object)."""
        if name not in METRICS:
            raise KeyError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
        h = self.new_histogram()
        for t in self._targets.values():
            h.merge(t.histograms[name])
        return h

    @property
    def pending_tokens(self) -> int:
        """Token stamps waiting for their request's row or for the next join."""
        return len(self._tok_rid) + sum(len(c[0]) for c in self._tok_chunks)

    ### Token join ###

    def _join(self, final: bool) -> None:
        rid = np.concatenate([self._tok_rid] + [c[0] for c in self._tok_chunks])
        t = np.concatenate([self._tok_t] + [c[1] for c in self._tok_chunks])
        fin = np.concatenate([self._fin] + self._fin_chunks)
        self._tok_chunks, self._fin_chunks = [], []
        self._tok_new = self._fin_new = 0
        if len(rid) == 0 or (len(fin) == 0 and not final):
            self._tok_rid, self._tok_t = rid, t
            self._fin = np.zeros((0, 4), np.int64) if final else fin
            return
        # The remainder is sorted already and the new chunks follow it: timsort merges runs.
        order = np.argsort(rid, kind="stable")
        rid, t = rid[order], t[order]
        starts = np.flatnonzero(np.r_[True, rid[1:] != rid[:-1]])
        counts = np.diff(np.r_[starts, len(rid)])
        urid = rid[starts]

        # A retried request may finish twice under one id: the last row wins.
        fin = fin[np.argsort(fin[:, 0], kind="stable")]
        fin = fin[np.r_[fin[1:, 0] != fin[:-1, 0], True]] if len(fin) else fin
        pos = np.minimum(np.searchsorted(fin[:, 0], urid), max(len(fin) - 1, 0))
        found = fin[pos, 0] == urid if len(fin) else np.zeros(len(urid), bool)
        complete = found & (counts >= fin[pos, 1]) if len(fin) else found.copy()
        if final:
            complete[:] = True
        ok_run = complete & found & (fin[pos, 3] == 1) if len(fin) else found
        # one repeat to per-token state: 0 waits, 1 complete, 3 complete and ok
        state = np.repeat(complete.view(np.int8) | (ok_run.view(np.int8) << 1), counts)
        tok_ok = state == 3
        if ok_run.any():
            gap = tok_ok[1:] & (rid[1:] == rid[:-1])
            gaps = t[1:][gap] - t[:-1][gap]
            t_ok = t[tok_ok]
            run_tgt = fin[pos, 2]
            ok_tgt = run_tgt[ok_run]
            if ok_tgt.min() == ok_tgt.max():
                groups = [(int(ok_tgt[0]), gaps, t_ok)]
            else:
                tgt_tok = np.repeat(run_tgt, counts)
                tgt_gap, tgt_ok = tgt_tok[1:][gap], tgt_tok[tok_ok]
                groups = [(i, gaps[tgt_gap == i], t_ok[tgt_ok == i])
                          for i in np.unique(ok_tgt).tolist()]
            for i, g, tt in groups:
                target = self._target(i)
                target._record_itl(g)
                target.series["token_events"] = _add_bins(target.series["token_events"],
                                                          target._sec(tt))

        keep = state == 0
        self._tok_rid, self._tok_t = rid[keep], t[keep]
        if final or len(fin) == 0:
            self._fin = np.zeros((0, 4), np.int64)
        else:
            used = np.zeros(len(fin), bool)
            used[pos[complete & found]] = True
            self._fin = fin[~used]
