"""Live metrics of a run: Prometheus ``/metrics``, a Pushgateway push, InfluxDB points.

The parent owns every figure: its main thread drains the workers' rings into ``RunResults``
and calls ``LiveMetrics.update(results)`` after each drain. ``update`` is cheap; at most every
``interval_s`` it takes a *snapshot* (counts as dict copies, histograms as Prometheus buckets)
and swaps it in under a lock. The HTTP server answers scrapes from its own threads and only
reads snapshots, never ``RunResults``, so a scrape sees one consistent moment of the run.

    main thread:   drain → RunResults → update() ─ every interval_s ─→ snapshot ─┐
    server thread:                          GET /metrics → _Collector ← (lock) ─┘
    influx thread:                    queue of line batches (bounded) → POST /write

Plans (scenario × provider × model) run one after another; each has its own label set, and
a finished plan keeps its final snapshot, so every counter stays monotonic over a config run.
A plan that repeats a label set starts from the previous one's final values.

Histogram buckets
-----------------
Prometheus wants cumulative counts at fixed upper bounds ``le`` (seconds); ours are
log-linear buckets of 0.1 % width. A log-linear bucket counts towards ``le`` when its midpoint
(what its quantiles report) is ≤ ``le``, so a Prometheus bucket holds the values ≤ ``le``
within 0.1 %. Example: TTFTs of 0.9990, 1.0003 and 1.2 s give ``le="1.0"`` 2 (1.0003 s is in
the bucket 0.999293…1.000342 s, midpoint 0.999817 s), ``le="1.5"`` 3. The ladder
(``BUCKETS_S``, 38 bounds) runs 1, 1.5, 2, 3, 5, 7 per decade from 100 µs to 70 s, then 100
and 120 s: neighbours at most 1.5× apart, so ``histogram_quantile``'s interpolation inside a
bucket stays coarse but bounded. It is computed from the non-empty log-linear buckets with
one ``searchsorted`` and one ``cumsum``.

InfluxDB
--------
Per-second points, their line protocol and the writer thread are in ``lens.output.influx``;
``LiveMetrics`` decides when a plan's seconds are offered (every ``influx_interval_s``, and
all of them at ``end``) and turns the writer's failures into warnings.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import functools
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np

from lens._core import now_ns
from lens.errors import ConfigError, RunError
from lens.output.influx import (
    InfluxTarget,
    _check_url,
    _describe,
    _InfluxSeries,
    _InfluxWriter,
    escape_tag,
    line_protocol,
    public_url,
)

if TYPE_CHECKING:
    from lens.output.results import RunResults

__all__ = [
    "BUCKETS_S",
    "HISTOGRAMS",
    "LABELS",
    "InfluxTarget",
    "LiveMetrics",
    "default_run_id",
    "escape_tag",
    "line_protocol",
    "prometheus_buckets",
]

#: Labels of every sample (and tags of every Influx point), in this order.
LABELS = ("run_id", "scenario", "provider", "model")
#: Prometheus histogram upper bounds in seconds (+Inf is added).
BUCKETS_S = tuple(
    [round(m * 10.0 ** e, 10) for e in range(-4, 2) for m in (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)]
    + [100.0, 120.0])
_BUCKETS_NS = np.array(BUCKETS_S) * 1e9
#: Our histogram name → (Prometheus name, help).
HISTOGRAMS = {
    "ttft": ("lens_ttft_seconds", "Time to first token of ok requests (t_first_token - t_start)."),
    "ttft_sched": ("lens_ttft_sched_seconds",
                   "Time to first token from the intended start (t_first_token - t_sched)."),
    "itl": ("lens_itl_seconds", "Gaps between consecutive token events of ok requests."),
    "tpot": ("lens_tpot_seconds", "Time per output token after the first, per ok request."),
    "e2e": ("lens_e2e_seconds", "End-to-end latency of ok requests (t_end - t_start)."),
    "sched_lag": ("lens_sched_lag_seconds",
                  "Scheduling lag, how late the client started a request (t_start - t_sched); "
                  "open loop only."),
}
NS_PER_S = 1_000_000_000
_OUTCOMES = ("ok", "cancelled", "dropped")


def default_run_id() -> str:
    """Return a run id: the UTC start time and the process id, e.g. ``20250601T120000Z-4242``."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"


# ------------------------------------------------------------------ Prometheus side
def prometheus_buckets(h: Any) -> np.ndarray:
    """Return cumulative counts of a ``LogLinearHistogram`` at each ``BUCKETS_S`` bound, +Inf last.

    A log-linear bucket counts for ``le`` when its midpoint is ≤ ``le`` (see the module
    docstring); the +Inf entry equals ``h.count``.
    """
    lo, hi, c = h.bucket_bounds()
    out = np.zeros(len(BUCKETS_S) + 1, np.int64)
    if len(c) == 0:
        return out
    mid = lo + (hi - lo) / 2
    cum = np.cumsum(c)
    idx = np.searchsorted(mid, _BUCKETS_NS, side="right")
    out[:-1] = np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0)
    out[-1] = cum[-1]
    return out


@functools.cache
def _le_labels() -> list[str]:
    from prometheus_client.utils import floatToGoString

    return [floatToGoString(b) for b in BUCKETS_S] + ["+Inf"]


@dataclass
class _Snapshot:
    """One plan's figures at one moment; read by scrapes, never changed once built."""

    labels: tuple[str, ...]
    requests: dict[tuple[str, str], int]            # (outcome, error) → requests
    responses: dict[str, int]                       # HTTP status → responses
    tokens: dict[str, int]                          # output, input
    histograms: dict[str, tuple[np.ndarray, float]]  # name → (cumulative buckets, sum in s)
    start_unix_s: float
    running: bool = True

    def plus(self, base: _Snapshot | None) -> _Snapshot:
        """Return this snapshot with a previous plan's final values (same labels) added."""
        if base is None:
            return self

        def add(a: dict, b: dict) -> dict:
            return {k: a.get(k, 0) + b.get(k, 0) for k in a | b}

        hist = {k: (v[0] + base.histograms[k][0], v[1] + base.histograms[k][1])
                for k, v in self.histograms.items()}
        return _Snapshot(self.labels, add(self.requests, base.requests),
                         add(self.responses, base.responses), add(self.tokens, base.tokens),
                         hist, self.start_unix_s, self.running)


def _snapshot(results: RunResults, labels: tuple[str, ...], start_unix_s: float,
              running: bool) -> _Snapshot:
    ts = results.targets
    names = results.error_names
    requests = {(o, o): 0 for o in _OUTCOMES}
    # every failure kind from the start at 0, so that rate() sees the first error
    requests |= {("failed", n): 0 for n in names.values() if n not in _OUTCOMES}
    responses: dict[str, int] = {}
    tokens = {"output": 0, "input": 0}
    for t in ts:
        for o in _OUTCOMES:
            requests[(o, o)] += t.counts[o]
        for name, n in t.errors(names).items():
            requests[("failed", name)] = requests.get(("failed", name), 0) + n
        for code, n in t.status_codes.items():
            responses[str(code)] = responses.get(str(code), 0) + n
        tokens["output"] += t.counts["output_tokens"]
        tokens["input"] += t.counts["input_tokens"]
    hist = {}
    for name in HISTOGRAMS:
        h = ts[0].histograms[name] if len(ts) == 1 else results.histogram(name)
        hist[name] = (prometheus_buckets(h), h.sum / NS_PER_S)
    return _Snapshot(labels, requests, responses, tokens, hist, start_unix_s, running)


class _Collector:
    """Turn the snapshots of every plan into metric families (runs in the server's threads)."""

    def __init__(self, live: LiveMetrics):
        self.live = live

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        snaps, in_flight = self.live._snapshots()
        lab = list(LABELS)
        req = CounterMetricFamily(
            "lens_requests", "Measured requests finished, by outcome (ok, failed, cancelled, "
            "dropped) and error kind (as requests.parquet's error column).",
            labels=[*lab, "outcome", "error"])
        resp = CounterMetricFamily("lens_responses", "Sent requests that got an HTTP response, "
                                   "by status code.", labels=[*lab, "code"])
        out_tok = CounterMetricFamily("lens_output_tokens", "Output tokens of ok requests.",
                                      labels=lab)
        in_tok = CounterMetricFamily("lens_input_tokens", "Prompt tokens of ok requests "
                                     "(usage report; 0 when unknown).", labels=lab)
        infl = GaugeMetricFamily("lens_requests_in_flight", "Requests sent and not finished.",
                                 labels=lab)
        running = GaugeMetricFamily("lens_plan_running", "1 while the plan sends load, 0 once "
                                    "it finished.", labels=lab)
        start = GaugeMetricFamily("lens_plan_start_time_seconds", "Wall clock at the plan's t0 "
                                  "(Unix seconds).", labels=lab)
        le = _le_labels()
        hists = {name: HistogramMetricFamily(prom, doc, labels=lab)
                 for name, (prom, doc) in HISTOGRAMS.items()}
        for s in snaps:
            lv = list(s.labels)
            for (outcome, error), n in sorted(s.requests.items()):
                req.add_metric([*lv, outcome, error], n)
            for code, n in sorted(s.responses.items()):
                resp.add_metric([*lv, code], n)
            out_tok.add_metric(lv, s.tokens["output"])
            in_tok.add_metric(lv, s.tokens["input"])
            infl.add_metric(lv, in_flight if s.running else 0)
            running.add_metric(lv, 1 if s.running else 0)
            start.add_metric(lv, s.start_unix_s)
            for name, (buckets, sum_s) in s.histograms.items():
                hists[name].add_metric(lv, list(zip(le, buckets.tolist(), strict=True)), sum_s)
        yield from (req, resp, out_tok, in_tok, infl, running, start, *hists.values())


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass                                   # one line per scrape would drown the console


class _Closing:
    """Wrap a WSGI response: call ``on_done`` once the server has written all of it."""

    def __init__(self, body: Any, on_done):
        self.body, self.on_done = body, on_done

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        if hasattr(self.body, "close"):
            self.body.close()
        self.on_done()


# ------------------------------------------------------------------ the facade
class LiveMetrics:
    """Publish a run's live figures: Prometheus ``/metrics``, Pushgateway, InfluxDB.

    ``prometheus_port`` serves ``/metrics`` on ``prometheus_addr`` (all IPv4 interfaces by
    default, as exporters do; ``127.0.0.1`` keeps it local; 0 picks a free port, read back
    from ``prometheus_port`` after ``start``). ``pushgateway`` receives the final values at
    ``close`` under ``job`` (grouping key: the job only, so a run replaces the previous
    one's; ``run_id`` is a label of every sample). ``influx`` receives per-second points.

    ``prometheus_linger_s`` is how long ``close`` may wait for a scrape of the final values:
    None (default) waits, only when at least two scrapes came during the run, for the next
    scrape, at most twice the scrape interval seen (+1 s, ≤ 120 s); 0 never waits; a number
    waits at most that long. Network failures of the Pushgateway or InfluxDB never raise: each is a
    warning line on stderr, counted in ``warnings``.
    """

    def __init__(self, *, prometheus_port: int | None = None, prometheus_addr: str = "0.0.0.0",
                 pushgateway: str | None = None, influx: InfluxTarget | None = None,
                 job: str = "lens-fast", run_id: str | None = None,
                 prometheus_linger_s: float | None = None, interval_s: float = 0.5,
                 influx_interval_s: float = 1.0, timeout_s: float = 5.0):
        self.prometheus_port = prometheus_port
        self.prometheus_addr = prometheus_addr
        self.pushgateway = pushgateway
        self.influx = influx
        self.job = job
        self.run_id = run_id or default_run_id()
        self.prometheus_linger_s = prometheus_linger_s
        self.interval_s = interval_s
        self.influx_interval_s = influx_interval_s
        self.timeout_s = timeout_s
        #: Warning lines printed (unreachable Pushgateway or InfluxDB, …).
        self.warnings: list[str] = []
        #: A private registry holding only this run's collector (scrapes and the push read it).
        self.registry = _prometheus().CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._lock = threading.Lock()
        self._done: dict[tuple[str, ...], _Snapshot] = {}    # finished plans, final values
        self._current: _Snapshot | None = None
        self._base: _Snapshot | None = None                  # earlier plan with these labels
        self._labels: tuple[str, ...] | None = None
        self._start_unix_s = 0.0
        self._results: RunResults | None = None
        self._in_flight = 0
        self._next_snap_ns = 0
        self._next_influx_ns = 0
        self._influx_series: _InfluxSeries | None = None
        self._influx_failures_seen = 0
        self._writer: _InfluxWriter | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._scrape = threading.Condition()
        self._scrapes: list[int] = []      # now_ns of the last completed scrapes
        self._final_gen = 0                # bumped when final values are swapped in
        self._final_scraped = 0            # highest generation a completed scrape has read
        self._started = self._closed = False

    # -- lifecycle --

    def start(self) -> None:
        """Check the URLs, bind ``/metrics`` and start the Influx writer; before any load.

        ConfigError for a malformed ``--pushgateway``/``--influx``; RunError when the port is
        in use or may not be bound.
        """
        if self._started:
            return
        if self.pushgateway is not None:
            _check_url("--pushgateway", self.pushgateway)
        if self.influx is not None:
            self.influx.check()
        if self.prometheus_port is not None:
            self._serve()
        if self.influx is not None:
            self._writer = _InfluxWriter(self.influx, timeout_s=self.timeout_s)
            self._writer.start()
        self._started = True

    def __enter__(self) -> LiveMetrics:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str | None:
        """``http://ADDR:PORT/metrics`` once serving, else None."""
        if self._server is None:
            return None
        host = self.prometheus_addr
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.prometheus_port}/metrics"

    def begin(self, labels: Mapping[str, str], t0_unix_ns: int) -> None:
        """A plan starts: ``labels`` are its ``scenario``, ``provider`` and ``model``."""
        self._end_open_plan()
        lv = (self.run_id, *(str(labels.get(k, "")) for k in LABELS[1:]))
        self._labels = lv
        self._start_unix_s = t0_unix_ns / NS_PER_S
        self._results = None
        self._next_snap_ns = self._next_influx_ns = 0
        with self._lock:
            # a plan with the labels of a finished one goes on from its final values
            self._base = self._done.pop(lv, None)
            self._current = (None if self._base is None else
                             dataclasses.replace(self._base, running=True,
                                                 start_unix_s=self._start_unix_s))
        if self._writer is not None:
            self._influx_series = _InfluxSeries(dict(zip(LABELS, lv, strict=True)), t0_unix_ns)

    def update(self, results: RunResults) -> None:
        """Take the plan's live figures; cheap except every ``interval_s`` (a snapshot)."""
        self._in_flight = int(results.in_flight)
        t = now_ns()
        if t < self._next_snap_ns and (self._writer is None or t < self._next_influx_ns):
            return
        if self._labels is None:
            self._begin_from(results)
        self._results = results
        if t >= self._next_snap_ns:
            self._next_snap_ns = t + int(self.interval_s * NS_PER_S)
            snap = _snapshot(results, self._labels, self._start_unix_s, True).plus(self._base)
            with self._lock:
                self._current = snap
        if self._writer is not None and t >= self._next_influx_ns:
            self._next_influx_ns = t + int(self.influx_interval_s * NS_PER_S)
            self._influx(results, final=False)

    def end(self, results: RunResults) -> None:
        """The plan finished: keep its final values; queue its remaining Influx points."""
        if self._labels is None:
            self._begin_from(results)
        snap = _snapshot(results, self._labels, self._start_unix_s, False).plus(self._base)
        with self._lock:
            self._done[self._labels] = snap
            self._current = self._base = None
            self._final_gen += 1
        self._in_flight = 0
        self._influx(results, final=True)
        self._labels = self._results = None

    def close(self) -> None:
        """End of the run (also on Ctrl-C): last scrape, push, flush Influx, stop the server.

        Never raises for an unreachable Pushgateway or InfluxDB: warns on stderr instead.
        """
        if self._closed:
            return
        self._closed = True
        self._end_open_plan()                # interrupted before the plan's end
        try:
            self._linger()
        except KeyboardInterrupt:
            pass                             # a second Ctrl-C: skip the wait, keep going
        if self.pushgateway is not None and self._started:
            self._push()
        if self._writer is not None:
            self._close_influx()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(5)

    # -- Prometheus --

    def _serve(self) -> None:
        port, addr = int(self.prometheus_port), self.prometheus_addr
        app = _prometheus().make_wsgi_app(self.registry)

        def counting(environ, start_response):
            gen = self._final_gen
            body = app(environ, start_response)
            if environ.get("PATH_INFO") == "/favicon.ico":
                return body
            return _Closing(body, lambda: self._scraped(gen))

        try:
            family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM,
                                        flags=socket.AI_PASSIVE)[0][0]
        except socket.gaierror as e:
            raise RunError(f"--prometheus-addr {addr}: not an address this host has "
                           f"({e.strerror}); use 0.0.0.0 or 127.0.0.1") from e
        server_cls = type("_LensServer", (_Server,), {"address_family": family})
        try:
            self._server = make_server(addr, port, counting, server_cls,
                                       handler_class=_QuietHandler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                free = _free_port_near(addr, port, family)
                hint = f"e.g. --prometheus-port {free}" if free else "another port"
                raise RunError(f"--prometheus-port {port}: {addr}:{port} is already in use "
                               f"(another exporter or lens-fast run?); choose {hint}") from e
            if e.errno == errno.EACCES:
                raise RunError(f"--prometheus-port {port}: permission denied binding "
                               f"{addr}:{port}; use a port ≥ 1024") from e
            raise RunError(f"--prometheus-port {port}: cannot serve on {addr}:{port} "
                           f"({e.strerror or e})") from e
        self.prometheus_port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="lens-prometheus", daemon=True)
        self._thread.start()

    def _snapshots(self) -> tuple[list[_Snapshot], int]:
        with self._lock:
            snaps = list(self._done.values())
            if self._current is not None:
                snaps.append(self._current)
            return snaps, self._in_flight

    def _scraped(self, gen: int) -> None:
        with self._scrape:
            self._scrapes = [*self._scrapes[-7:], now_ns()]
            self._final_scraped = max(self._final_scraped, gen)
            self._scrape.notify_all()

    def _linger(self) -> None:
        """Wait until Prometheus has scraped the final values (see ``prometheus_linger_s``)."""
        if self._server is None or self.prometheus_linger_s == 0:
            return
        with self._scrape:
            seen = list(self._scrapes)
            if self.prometheus_linger_s is None:
                if len(seen) < 2:
                    return                    # no scraper at work (or one curl): no wait
                interval = float(np.median(np.diff(seen))) / NS_PER_S
                wait = min(2 * interval + 1.0, 120.0)
            else:
                wait = float(self.prometheus_linger_s)
            gen = self._final_gen
            if self._final_scraped >= gen:
                return
            if wait > 5:
                print(f"lens-fast: waiting up to {wait:.0f} s for Prometheus to scrape the "
                      f"final values at {self.url} (Ctrl-C to skip)", file=sys.stderr)
            self._scrape.wait_for(lambda: self._final_scraped >= gen, timeout=wait)

    def _push(self) -> None:
        from urllib.parse import unquote

        from prometheus_client.exposition import basic_auth_handler, default_handler

        url, handler = self.pushgateway, default_handler
        p = urlsplit(url)
        if p.username is not None:       # user:password@ in the URL: HTTP basic auth
            user, password = unquote(p.username), unquote(p.password or "")
            url = urlunsplit((p.scheme, p.netloc.rsplit("@", 1)[1], p.path, p.query, ""))

            def handler(url, method, timeout, headers, data):
                return basic_auth_handler(url, method, timeout, headers, data,
                                          username=user, password=password)
        try:
            _prometheus().push_to_gateway(url, job=self.job, registry=self.registry,
                                          timeout=self.timeout_s, handler=handler)
        except Exception as e:                         # noqa: BLE001 - never fail the run
            self._warn(f"could not push the final metrics to the Pushgateway "
                       f"{public_url(self.pushgateway)} ({_describe(e)}); the run's files "
                       "are written")

    # -- Influx --

    def _influx(self, results: RunResults, final: bool) -> None:
        w, series = self._writer, self._influx_series
        if w is None or series is None:
            return
        if w.failures > self._influx_failures_seen and self._influx_failures_seen == 0:
            self._warn(f"InfluxDB {public_url(self.influx.url)}: write failed "
                       f"({w.last_error}); retrying in the background")
        self._influx_failures_seen = w.failures
        upto = None if final else (now_ns() - results.t0_ns) // NS_PER_S
        lines, done = series.lines(results, upto)
        if lines and w.put(lines, timeout_s=self.timeout_s if final else None):
            series.commit(done)
        elif lines and final:
            w.lost += len(lines)

    def _close_influx(self) -> None:
        w = self._writer
        w.close(self.timeout_s * 2)
        if w.failures or w.lost:
            self._warn(f"InfluxDB {public_url(self.influx.url)}: {w.failures} write(s) "
                       f"failed, {w.lost} point(s) not written (last: {w.last_error})")

    # -- helpers --

    def _end_open_plan(self) -> None:
        """End a plan that began and was never ended (a new ``begin``, or ``close``)."""
        if self._labels is None:
            return
        if self._results is not None:
            self.end(self._results)
            return
        with self._lock:                     # no figures at all: keep the earlier values
            if self._base is not None:
                self._done[self._labels] = self._base
            self._current = self._base = None
        self._labels = None

    def _begin_from(self, results: RunResults) -> None:
        ts = results.targets
        info = ts[0].info if ts else {}
        self.begin({"scenario": results.scenario, "provider": str(info.get("provider", "")),
                    "model": str(info.get("model", ""))},
                   results.t0_unix_ns or time.time_ns())

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"lens-fast: warning: {message}", file=sys.stderr)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as e:               # pragma: no cover - a dependency of lens-fast
        raise ConfigError("live metrics need prometheus-client: pip install "
                          "'prometheus-client>=0.20'") from e
    return prometheus_client


def _free_port_near(addr: str, port: int, family: int) -> int | None:
    """Return a free port among the next 50 after ``port``, or None."""
    for p in range(port + 1, min(port + 51, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((addr, p))
                return p
            except OSError:
                continue
    return None
