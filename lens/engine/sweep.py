"""The saturation sweep's algorithm: SLOs, goodput, steady state, the rate search, the knee.

Everything here is a pure function of numbers (no server, no files), so that each rule is
tested on its own; ``lens.engine.sweep_command`` runs the steps and calls these.

SLOs. ``--slo ttft.p99=500ms,itl.p99=50ms,e2e.p95=10s`` is a list of METRIC.STAT=LIMIT items
(``parse_slos``). A step meets an SLO when the statistic of the step's histogram of that metric
(all ok requests of the step) is at most the limit (``check_slos``).

Goodput. Requests that meet every SLO, per second of load (``goodput``). A request is judged on
its own values: ``ttft_ms``, ``ttft_sched_ms``, ``e2e_ms``, ``e2e_sched_ms``, ``tpot_ms`` and,
for ``itl``, its mean token gap ``itl_mean_ms`` (as vLLM's goodput judges TPOT), each against the
highest limit given for that metric. Worked example: SLO ``ttft.p99=100ms``, a 10-s step with
1,000 requests of which 970 ok with TTFT <= 100 ms, 20 ok but slower, 10 failed: goodput
970 / 10 s = 97 req/s.

Steady state (``steady_state``). A step's first ``settle`` fraction (20 %) is left out; the rest
is cut into two halves by intended start time. The step is *not* steady when, for a latency
series (``ttft_sched``, ``e2e_sched``: measured from the intended start, so a queue in the
server or the client shows), both

- the second half's median exceeds the first half's by more than ``rel_tol`` (20 %) and
  ``abs_tol_ms`` (5 ms), and
- the Theil–Sen slope of the per-bin medians over the judged window, times its length, exceeds
  the same margin over the first half's median (a trend, not one burst);

or when the share of requests that did not end ok rises by more than 5 points from the first
half to the second. A queue that grows because the rate is above capacity fails this; one that
settled passes. Worked example: 2 % over capacity, 10-s step: the wait grows by 20 ms per
second; the halves' TTFT medians (20 + 50, 20 + 130 ms) differ by 80 ms > 5 ms and 20 % of
70 ms, and the slope (20 ms/s x 8 s = 160 ms) agrees: not steady.

Rate search (``RateSearch``). Rates that passed and failed are kept; the search brackets the
highest passing rate ``lo`` under the lowest failing rate ``hi``. The first step is 90 % of
the closed-loop probe's throughput; while nothing failed the rate grows (x1.15, then x2);
while nothing passed it halves (giving up below 1/32 of the estimate); then it bisects
(arithmetic mean) until ``hi - lo <= precision * hi``. Rates are rounded to 3 significant
figures. Worked example (limit 70 % of the estimate E, precision 5 %): 0.9E fail, 0.45E pass,
0.675E pass, 0.788E fail, 0.732E fail, 0.704E fail: (0.704 - 0.675) / 0.704 = 4 % -> 0.675E,
3.6 % under the limit, after 6 steps.

Knee (``find_knee``): the Kneedle point of latency versus rate: both scaled to [0, 1], the
rate where scaled rate minus scaled latency is largest.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from lens.errors import ConfigError

__all__ = [
    "CURVE_METRICS",
    "PER_REQUEST_COLUMNS",
    "SLO_METRICS",
    "ClientAction",
    "Goodput",
    "RateSearch",
    "Slo",
    "SloCheck",
    "Steadiness",
    "check_slos",
    "client_action",
    "curve_knee",
    "client_limit_reasons",
    "find_knee",
    "goodput",
    "parse_fraction",
    "parse_rates",
    "parse_slos",
    "round_rate",
    "slo_values",
    "steady_state",
    "step_verdict",
    "sweep_curve",
    "theil_sen_slope",
]

#: Metrics an SLO can name (histograms of the run's summary, in ms).
SLO_METRICS = ("ttft", "ttft_sched", "itl", "tpot", "e2e", "e2e_sched")
#: The requests.parquet column each metric judges one request on (goodput).
PER_REQUEST_COLUMNS = {"ttft": "ttft_ms", "ttft_sched": "ttft_sched_ms", "itl": "itl_mean_ms",
                       "tpot": "tpot_ms", "e2e": "e2e_ms", "e2e_sched": "e2e_sched_ms"}
#: Latency metrics each step of sweep.json carries (ms), and the curve's percentiles of them.
CURVE_METRICS = ("ttft", "ttft_sched", "itl", "tpot", "e2e", "e2e_sched", "sched_lag")
SLO_FORMS = ("expected METRIC.STAT=LIMIT, e.g. ttft.p99=500ms,itl.p99=50ms,e2e.p95=10s "
             f"(METRIC: {', '.join(SLO_METRICS)}; STAT: pNN such as p50, p95, p99, p99.9, "
             "or mean, max; LIMIT: a time with a unit: us, ms, s or m)")
_STAT = re.compile(r"^p(\d+(?:\.\d+)?)$")
_LIMIT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s|m)?$")
_LIMIT_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


# ----------------------------------------------------------------------------------- SLOs
@dataclass(frozen=True)
class Slo:
    """One service-level objective: ``stat`` of ``metric`` at most ``limit_ms``."""

    metric: str           # one of SLO_METRICS
    stat: str             # "p99", "p99.9", "mean" or "max"
    limit_ms: float

    @property
    def key(self) -> str:
        """``metric.stat``, e.g. ``ttft.p99``."""
        return f"{self.metric}.{self.stat}"

    @property
    def quantile(self) -> float | None:
        """The quantile in (0, 1) of a ``pNN`` statistic; None for mean and max."""
        m = _STAT.match(self.stat)
        return float(m.group(1)) / 100.0 if m else None

    @property
    def spec(self) -> str:
        """The SLO as ``--slo`` text, e.g. ``ttft.p99=500ms``."""
        return f"{self.key}={self.limit_ms:g}ms"


def _slo_error(item: str, problem: str) -> ConfigError:
    return ConfigError(f"--slo {item!r}: {problem}; {SLO_FORMS}")


def _parse_limit_ms(item: str, text: str) -> float:
    m = _LIMIT.match(text.strip())
    if not m:
        raise _slo_error(item, f"limit {text!r} is not a time")
    if m.group(2) is None:
        raise _slo_error(item, f"limit {text!r} has no unit (write {text}ms or {text}s)")
    value = float(m.group(1)) * _LIMIT_MS[m.group(2)]
    if not value > 0:
        raise _slo_error(item, f"limit {text!r} must be > 0")
    return value


def parse_slos(text: str) -> tuple[Slo, ...]:
    """Parse ``--slo``: comma-separated ``METRIC.STAT=LIMIT`` items; ConfigError on any bad part.

    ``ttft.p99=500ms,e2e.p95=10s`` → (Slo("ttft", "p99", 500.0), Slo("e2e", "p95", 10000.0)).
    STAT is ``pNN`` (0 < NN < 100, e.g. ``p99.9``), ``mean`` or ``max``; LIMIT needs a unit.
    """
    if not text or not text.strip():
        raise ConfigError(f"--slo is empty; {SLO_FORMS}")
    out: list[Slo] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise ConfigError(f"--slo {text!r} has an empty item (a stray comma); {SLO_FORMS}")
        name, eq, limit = item.partition("=")
        if not eq:
            raise _slo_error(item, "no '=LIMIT'")
        metric, dot, stat = name.strip().partition(".")
        metric, stat = metric.strip().lower(), stat.strip().lower()
        if metric not in SLO_METRICS:
            raise _slo_error(item, f"unknown metric {metric!r}")
        if not dot or not stat:
            raise _slo_error(item, f"no statistic (write {metric}.p99={limit.strip()})")
        m = _STAT.match(stat)
        if m is None and stat not in ("mean", "max"):
            raise _slo_error(item, f"unknown statistic {stat!r}")
        if m is not None and not 0 < float(m.group(1)) < 100:
            raise _slo_error(item, f"percentile {stat!r} must be between p0 and p100")
        slo = Slo(metric, stat, _parse_limit_ms(item, limit))
        if any(s.key == slo.key for s in out):
            raise _slo_error(item, f"{slo.key} is given twice")
        out.append(slo)
    return tuple(out)


def parse_rates(text: str) -> tuple[float, ...] | None:
    """Parse ``--rates``: ``auto`` (None) or comma-separated rates > 0 in req/s, ascending.

    ``"50,10,20"`` → (10.0, 20.0, 50.0). ConfigError names the bad part.
    """
    if text.strip().lower() == "auto":
        return None
    rates = []
    for raw in text.split(","):
        try:
            r = float(raw.strip())
        except ValueError:
            raise ConfigError(f"--rates: {raw.strip()!r} is not a number; give auto or "
                              "requests per second, e.g. --rates 10,20,50") from None
        if not (r > 0 and math.isfinite(r)):
            raise ConfigError(f"--rates: every rate must be > 0 req/s (got {raw.strip()})")
        if r in rates:
            raise ConfigError(f"--rates: {raw.strip()} is given twice")
        rates.append(r)
    return tuple(sorted(rates))


def parse_fraction(text: str, what: str) -> float:
    """Parse ``5%`` or ``0.05`` into 0.05; ConfigError unless 0 <= value < 1."""
    s = str(text).strip()
    try:
        v = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise ConfigError(f"{what} must be a fraction such as 0.05 or 5% (got {text!r})") from None
    if not 0 <= v < 1:
        raise ConfigError(f"{what} must be at least 0 and below 100% (got {text!r})")
    return v


def slo_values(slos: Sequence[Slo], histograms: Mapping[str, Any]) -> dict[str, float | None]:
    """Return each SLO's observed value in ms from a run's histograms (values in ns).

    ``histograms`` maps a metric to a ``LogLinearHistogram``; an empty one gives None.
    """
    out: dict[str, float | None] = {}
    for s in slos:
        h = histograms[s.metric]
        if h.count == 0:
            out[s.key] = None
        elif s.stat == "mean":
            out[s.key] = float(h.mean) / 1e6
        elif s.stat == "max":
            out[s.key] = float(h.max) / 1e6
        else:
            out[s.key] = float(h.quantile(s.quantile)) / 1e6
    return out


class SloCheck(NamedTuple):
    """One SLO judged on one step: the observed value (ms, None when no request had one)."""

    slo: Slo
    value_ms: float | None
    ok: bool


def check_slos(slos: Sequence[Slo], values: Mapping[str, float | None]) -> list[SloCheck]:
    """Judge each SLO: met when its value is known and at most the limit."""
    out = []
    for s in slos:
        v = values.get(s.key)
        out.append(SloCheck(s, v, v is not None and v <= s.limit_ms))
    return out


# -------------------------------------------------------------------------------- goodput
class Goodput(NamedTuple):
    """Requests that met every SLO: how many, out of how many measured, and per second."""

    good: int
    total: int
    rps: float


def goodput(columns: Mapping[str, np.ndarray], ok: np.ndarray, slos: Sequence[Slo],
            load_s: float) -> Goodput:
    """Count ok requests whose own values meet every SLO, per second of load (``load_s``).

    ``columns`` maps a ``PER_REQUEST_COLUMNS`` name to float arrays (ms, NaN where a value does
    not apply, e.g. the TPOT of a one-token answer, which then meets that SLO). Each metric is
    judged against the highest limit given for it: the bound every single request must keep.
    """
    ok = np.asarray(ok, dtype=bool)
    good = ok.copy()
    limits: dict[str, float] = {}
    for s in slos:
        limits[s.metric] = max(limits.get(s.metric, 0.0), s.limit_ms)
    for metric, limit in limits.items():
        v = np.asarray(columns[PER_REQUEST_COLUMNS[metric]], dtype=float)
        good &= ~(v > limit)                  # NaN compares False: no value, no violation
    n = int(good.sum())
    return Goodput(n, int(len(ok)), n / load_s if load_s > 0 else 0.0)


# --------------------------------------------------------------------------- steady state
@dataclass(frozen=True)
class Steadiness:
    """The steady-state verdict of one step, with the figures it rests on."""

    steady: bool
    judged: bool                       # False: too few requests to judge (taken as steady)
    reason: str
    halves_p50_ms: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    rise_ms: dict[str, float | None] = field(default_factory=dict)
    not_ok: tuple[float, float] = (0.0, 0.0)

    def as_dict(self) -> dict[str, Any]:
        """Return the verdict as JSON-ready data (sweep.json)."""
        return {"steady": self.steady, "judged": self.judged, "reason": self.reason,
                "halves_p50_ms": {k: [_r(a), _r(b)] for k, (a, b) in self.halves_p50_ms.items()},
                "rise_ms": {k: _r(v) for k, v in self.rise_ms.items()},
                "not_ok_fraction": [_r(self.not_ok[0]), _r(self.not_ok[1])]}


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def theil_sen_slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Return the median of the pairwise slopes (y_j - y_i) / (x_j - x_i); NaN under 2 points.

    Robust to a few outliers: one burst in a rising-free series leaves the slope near 0.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    keep = dx != 0
    if not keep.any():
        return math.nan
    return float(np.median((y[j] - y[i])[keep] / dx[keep]))


def steady_state(t_s: np.ndarray, series: Mapping[str, np.ndarray], ok: np.ndarray,
                 span_s: float, *, settle: float = 0.2, rel_tol: float = 0.2,
                 abs_tol_ms: float = 5.0, not_ok_rise: float = 0.05,
                 min_per_half: int = 10) -> Steadiness:
    """Decide whether a step reached steady state (module docstring: the rule, an example).

    ``t_s``: each request's intended start (s from the step's t0); ``series``: latency arrays
    (ms, NaN for requests not ok) keyed by name; ``ok``: which requests ended ok; ``span_s``:
    the step's load duration.
    """
    t_s = np.asarray(t_s, dtype=float)
    ok = np.asarray(ok, dtype=bool)
    start = settle * span_s
    mid = start + (span_s - start) / 2
    a = (t_s >= start) & (t_s < mid)
    b = (t_s >= mid) & (t_s <= span_s)
    not_ok = (float((~ok[a]).mean()) if a.any() else 0.0,
              float((~ok[b]).mean()) if b.any() else 0.0)
    if (ok & a).sum() < min_per_half or (ok & b).sum() < min_per_half:
        if a.sum() >= min_per_half and not_ok[1] - not_ok[0] > not_ok_rise:
            return Steadiness(False, True, f"requests not ending ok rose from "
                              f"{not_ok[0]:.0%} to {not_ok[1]:.0%}", not_ok=not_ok)
        return Steadiness(True, False, f"too few ok requests to judge (< {min_per_half} "
                          "per half)", not_ok=not_ok)
    nbins = int(min(20, max(4, round(span_s - start))))
    edges = np.linspace(start, span_s, nbins + 1)
    halves: dict[str, tuple[float | None, float | None]] = {}
    rises: dict[str, float | None] = {}
    rising = []
    for name, values in series.items():
        v = np.asarray(values, dtype=float)
        va, vb = v[a & ok], v[b & ok]
        va, vb = va[~np.isnan(va)], vb[~np.isnan(vb)]
        pa = float(np.median(va)) if len(va) else None
        pb = float(np.median(vb)) if len(vb) else None
        halves[name] = (pa, pb)
        xs, ys = [], []
        for lo_t, hi_t in zip(edges[:-1], edges[1:], strict=True):
            sel = v[(t_s >= lo_t) & (t_s < hi_t) & ok]
            sel = sel[~np.isnan(sel)]
            if len(sel) >= 3:
                xs.append((lo_t + hi_t) / 2)
                ys.append(float(np.median(sel)))
        slope = theil_sen_slope(xs, ys) if len(xs) >= 3 else math.nan
        rise = slope * (span_s - start) if math.isfinite(slope) else None
        rises[name] = rise
        if pa is None or pb is None:
            continue
        margin = pa * rel_tol + abs_tol_ms
        if pb - pa > margin and rise is not None and rise > margin:
            rising.append(f"{name} p50 rose from {pa:.1f} to {pb:.1f} ms "
                          f"(trend +{rise:.1f} ms over the step)")
    if not_ok[1] - not_ok[0] > not_ok_rise:
        rising.append(f"requests not ending ok rose from {not_ok[0]:.0%} to {not_ok[1]:.0%}")
    if rising:
        return Steadiness(False, True, "; ".join(rising), halves, rises, not_ok)
    return Steadiness(True, True, "latency and errors flat across the step's halves",
                      halves, rises, not_ok)


# --------------------------------------------------------------------------- client limit
def client_limit_reasons(client: Mapping[str, Any], *, offered_rps: float | None,
                         achieved_rps: float | None, sent: int, constant_arrivals: bool,
                         dropped: int = 0, max_sched_lag_ms: float = 10.0,
                         max_cpu_percent: float = 90.0) -> list[str]:
    """Say why the client, not the endpoint, may have limited a step (empty: it did not).

    ``client`` is a summary result's ``client`` section. Its scheduling-lag, event-loop-lag
    and CPU reasons are judged again with this sweep's limits (both lags against
    ``max_sched_lag_ms``); its other reasons (a worker that died) are kept. With constant
    arrivals, starting fewer than 90 % of the offered requests per second is a client limit
    too, unless requests were dropped at --max-inflight (then the endpoint held them).
    """
    reasons = [r for r in client.get("reasons") or ()
               if not r.startswith(("scheduling lag", "worker CPU", "event-loop lag"))]
    lag = client.get("sched_lag_p99_ms")
    if offered_rps is not None and lag is not None and lag > max_sched_lag_ms:
        reasons.append(f"scheduling lag p99 {lag:.1f} ms > {max_sched_lag_ms:g} ms")
    loop = max(client.get("loop_lag_p99_ms") or [0.0])
    if loop > max_sched_lag_ms:
        reasons.append(f"event-loop lag p99 {loop:.1f} ms > {max_sched_lag_ms:g} ms")
    busy = [f"worker {i} {c:.0f}%" for i, c in enumerate(client.get("worker_cpu_percent") or ())
            if c >= max_cpu_percent]
    if busy:
        reasons.append(f"worker CPU >= {max_cpu_percent:g}% ({', '.join(busy)})")
    if (constant_arrivals and offered_rps and achieved_rps is not None and sent >= 20
            and not dropped and achieved_rps < 0.9 * offered_rps):
        reasons.append(f"started {achieved_rps:.1f} req/s of the {offered_rps:g} offered")
    return reasons


class ClientAction(NamedTuple):
    """What the auto sweep does after a step: ``accept``, ``add_workers``, ``retry``, ``stop``."""

    action: str
    workers: int
    message: str


def client_action(limited: bool, workers: int, max_workers: int, retried: bool) -> ClientAction:
    """Decide what to do about a step the client may have limited.

    Not limited: accept the step. Limited with fewer than ``max_workers`` (``--cores``):
    double the workers (within the maximum) and run the step again. At the maximum: run it
    once more (other load on the host can starve the client for a moment), then stop.
    """
    if not limited:
        return ClientAction("accept", workers, "")
    if workers < max_workers:
        n = min(max_workers, workers * 2)
        return ClientAction("add_workers", n, f"client-limited with {workers} worker(s): "
                            f"running the step again with {n}")
    if not retried:
        return ClientAction("retry", workers, f"client-limited with {workers} worker(s), "
                            "the --cores maximum: running the step once more")
    return ClientAction("stop", workers, f"the client, not the endpoint, was the limit: "
                        f"{workers} worker(s) (the --cores maximum) could not keep up with "
                        "this step's load; give more --cores or run the client on a bigger "
                        "machine")


# ---------------------------------------------------------------------------- step verdict
def step_verdict(checks: Sequence[SloCheck], error_rate: float, max_error_rate: float,
                 steadiness: Steadiness | None, client_reasons: Sequence[str],
                 interrupted: bool = False) -> tuple[str, list[str]]:
    """Return ``(verdict, reasons)`` of one open-loop step.

    Verdicts: ``interrupted``; ``client`` (the client limited it: says nothing of the
    endpoint); ``fail`` (an SLO missed, too many errors, or not steady while also failing);
    ``unsteady`` (meets every SLO so far but latency or errors still rise: run it longer);
    ``pass``.
    """
    if interrupted:
        return "interrupted", ["interrupted before the step's end"]
    if client_reasons:
        return "client", [f"client-limited: {r}" for r in client_reasons]
    reasons = []
    for c in checks:
        if not c.ok:
            shown = "no value" if c.value_ms is None else f"{c.value_ms:.1f} ms"
            reasons.append(f"{c.slo.key} {shown} > {c.slo.limit_ms:g} ms")
    if error_rate > max_error_rate:
        reasons.append(f"errors {error_rate:.1%} > {max_error_rate:.1%}")
    if reasons:
        if steadiness is not None and not steadiness.steady:
            reasons.append(f"not steady: {steadiness.reason}")
        return "fail", reasons
    if steadiness is not None and not steadiness.steady:
        return "unsteady", [f"not steady: {steadiness.reason}"]
    return "pass", []


# ----------------------------------------------------------------------------- rate search
def round_rate(rate: float) -> float:
    """Round a rate to 3 significant figures (readable step names; well within precision)."""
    if rate <= 0:
        return rate
    return float(f"{rate:.3g}")


@dataclass
class RateSearch:
    """Bisection over the request rate for the highest one that passes (module docstring).

    ``record(rate, passed)`` after each judged step; ``next_rate()`` gives the next rate, or
    None once converged (``found``) or exhausted (no rate down to ``estimate * floor``).
    """

    estimate: float
    precision: float = 0.05
    start: float = 0.9
    floor: float = 1 / 32
    passed: list[float] = field(default_factory=list)
    failed: list[float] = field(default_factory=list)

    @property
    def hi(self) -> float | None:
        """The lowest failing rate."""
        return min(self.failed) if self.failed else None

    @property
    def lo(self) -> float | None:
        """The highest passing rate below every failing one (a pass above a fail is noise)."""
        hi = self.hi
        ok = [r for r in self.passed if hi is None or r < hi]
        return max(ok) if ok else None

    def record(self, rate: float, passed: bool) -> None:
        """Add a judged step."""
        (self.passed if passed else self.failed).append(rate)

    @property
    def converged(self) -> bool:
        """True when passing and failing rates are within ``precision`` of each other."""
        lo, hi = self.lo, self.hi
        return lo is not None and hi is not None and hi - lo <= self.precision * hi

    @property
    def exhausted(self) -> bool:
        """True when nothing passed down to ``floor`` x the estimate."""
        hi = self.hi
        return self.lo is None and hi is not None and hi / 2 < self.estimate * self.floor

    def next_rate(self) -> float | None:
        """Return the next rate to try, or None when converged or exhausted."""
        lo, hi = self.lo, self.hi
        if lo is None and hi is None:
            return round_rate(self.estimate * self.start)
        if self.converged or self.exhausted:
            return None
        if hi is None:
            grow = 1.15 if len(self.passed) == 1 else 2.0
            return round_rate(lo * grow)
        if lo is None:
            return round_rate(hi / 2)
        mid = round_rate((lo + hi) / 2)
        if not lo < mid < hi:                 # rounding closed the gap
            mid = (lo + hi) / 2
        return mid


# ------------------------------------------------------------------------------------ knee
def find_knee(rates: Sequence[float], latencies: Sequence[float | None]) -> float | None:
    """Return the rate at the knee of latency versus rate (Kneedle), or None without one.

    Points without a latency are left out; at least 3 are needed, and the latency must rise
    by at least 10 % over the range. Both axes are scaled to [0, 1]; the knee is the rate
    where scaled rate minus scaled latency is largest (the point farthest above the diagonal
    of a flat-then-steep curve), provided that gap is at least 0.1.
    """
    pts = sorted((r, v) for r, v in zip(rates, latencies, strict=True)
                 if v is not None and math.isfinite(v))
    if len(pts) < 3:
        return None
    x = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    if x[-1] <= x[0] or y.max() < 1.1 * y.min() or y.max() <= y.min():
        return None
    xn = (x - x[0]) / (x[-1] - x[0])
    yn = (y - y.min()) / (y.max() - y.min())
    d = xn - yn
    i = int(np.argmax(d))
    return float(x[i]) if d[i] >= 0.1 else None


def sweep_curve(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return latency and throughput by offered rate: the last judged step at each rate.

    ``steps`` are sweep.json step records; the probe, client-limited and interrupted steps
    are left out (they say nothing of the endpoint at that rate). Sorted by offered rate.
    """
    last: dict[float, Mapping[str, Any]] = {}
    for r in steps:
        if r["offered_rps"] is not None and r["verdict"] in ("pass", "fail"):
            last[r["offered_rps"]] = r
    return [{"offered_rps": rate, "achieved_rps": r["achieved_rps"],
             "throughput_rps": r["throughput_rps"], "goodput_rps": r["goodput_rps"],
             "output_tokens_per_s": r["output_tokens_per_s"], "error_rate": r["error_rate"],
             "steady": (r["steady"] or {}).get("steady"), "verdict": r["verdict"],
             "step": r["index"], "slo_values_ms": {s["slo"]: s["value_ms"] for s in r["slo"]},
             "latency_ms": {m: {k: r["metrics"][m][k] for k in ("p50", "p90", "p95", "p99")}
                            for m in CURVE_METRICS}}
            for rate, r in sorted(last.items())]


def curve_knee(curve: Sequence[Mapping[str, Any]], slos: Sequence[Slo]) -> dict | None:
    """Return the knee of the curve of the first SLO's statistic (``e2e_sched`` p99 without
    SLOs) as ``{"rate", "metric", "stat", "method"}``, or None (``find_knee``)."""
    slo = slos[0] if slos else Slo("e2e_sched", "p99", 1.0)
    ys = []
    for p in curve:
        v = p["slo_values_ms"].get(slo.spec)
        if v is None and slo.stat in ("p50", "p90", "p95", "p99"):
            v = p["latency_ms"][slo.metric][slo.stat]
        ys.append(v)
    rate = find_knee([p["offered_rps"] for p in curve], ys)
    if rate is None:
        return None
    return {"rate": rate, "metric": slo.metric, "stat": slo.stat, "method": "kneedle"}
