"""The sweep's algorithm without a server: SLOs, goodput, steady state, the search, the knee."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lens.engine.sweep import (
    SLO_FORMS,
    RateSearch,
    Slo,
    Steadiness,
    check_slos,
    client_action,
    client_limit_reasons,
    curve_knee,
    find_knee,
    goodput,
    parse_fraction,
    parse_rates,
    parse_slos,
    slo_values,
    steady_state,
    step_verdict,
    sweep_curve,
    theil_sen_slope,
)
from lens.errors import ConfigError


# ------------------------------------------------------------------------------- SLOs
def test_parse_slos_reads_every_form():
    slos = parse_slos("ttft.p99=500ms,itl.p99=50ms,e2e.p95=10s")
    assert slos == (Slo("ttft", "p99", 500.0), Slo("itl", "p99", 50.0),
                    Slo("e2e", "p95", 10_000.0))
    assert [s.quantile for s in slos] == [0.99, 0.99, 0.95]
    assert [s.spec for s in slos] == ["ttft.p99=500ms", "itl.p99=50ms", "e2e.p95=10000ms"]
    more = parse_slos(" TTFT.P99.9 = 0.5s , e2e_sched.mean=2m, tpot.max=250us, ttft_sched.p50=.2s")
    assert more == (Slo("ttft", "p99.9", 500.0), Slo("e2e_sched", "mean", 120_000.0),
                    Slo("tpot", "max", 0.25), Slo("ttft_sched", "p50", 200.0))
    assert more[0].quantile == pytest.approx(0.999)
    assert more[1].quantile is None and more[2].quantile is None
    assert more[0].key == "ttft.p99.9"


def test_bad_slo_message_in_full():
    with pytest.raises(ConfigError) as e:
        parse_slos("ttft.p99=500ms,foo.p99=1s")
    assert str(e.value) == (
        "--slo 'foo.p99=1s': unknown metric 'foo'; expected METRIC.STAT=LIMIT, e.g. "
        "ttft.p99=500ms,itl.p99=50ms,e2e.p95=10s (METRIC: ttft, ttft_sched, itl, tpot, e2e, "
        "e2e_sched; STAT: pNN such as p50, p95, p99, p99.9, or mean, max; LIMIT: a time with "
        "a unit: us, ms, s or m)")


@pytest.mark.parametrize("text,message", [
    ("", f"--slo is empty; {SLO_FORMS}"),
    ("ttft.p99=1s,", f"--slo 'ttft.p99=1s,' has an empty item (a stray comma); {SLO_FORMS}"),
    ("ttft.p99", f"--slo 'ttft.p99': no '=LIMIT'; {SLO_FORMS}"),
    ("ttft=500ms", f"--slo 'ttft=500ms': no statistic (write ttft.p99=500ms); {SLO_FORMS}"),
    ("itl.q99=50ms", f"--slo 'itl.q99=50ms': unknown statistic 'q99'; {SLO_FORMS}"),
    ("e2e.p100=1s", f"--slo 'e2e.p100=1s': percentile 'p100' must be between p0 and p100; "
                    f"{SLO_FORMS}"),
    ("ttft.p99=fast", f"--slo 'ttft.p99=fast': limit 'fast' is not a time; {SLO_FORMS}"),
    ("ttft.p99=500", f"--slo 'ttft.p99=500': limit '500' has no unit (write 500ms or 500s); "
                     f"{SLO_FORMS}"),
    ("ttft.p99=0ms", f"--slo 'ttft.p99=0ms': limit '0ms' must be > 0; {SLO_FORMS}"),
    ("ttft.p99=1s,ttft.p99=2s", f"--slo 'ttft.p99=2s': ttft.p99 is given twice; {SLO_FORMS}"),
    ("ttft.p99=-5ms", f"--slo 'ttft.p99=-5ms': limit '-5ms' is not a time; {SLO_FORMS}"),
])
def test_bad_slos_name_the_bad_part(text, message):
    with pytest.raises(ConfigError) as e:
        parse_slos(text)
    assert str(e.value) == message


class FakeHist:
    """The three things slo_values reads of a LogLinearHistogram (values in ns)."""

    def __init__(self, values_ns):
        self.v = np.asarray(values_ns, dtype=float)
        self.count = len(self.v)
        self.mean = self.v.mean() if self.count else math.nan
        self.max = self.v.max() if self.count else 0

    def quantile(self, q):
        return float(np.quantile(self.v, q, method="inverted_cdf"))


def test_slo_values_and_checks():
    hists = {"ttft": FakeHist(np.arange(1, 101) * 1e6),     # 1 … 100 ms
             "itl": FakeHist([]), "e2e": FakeHist([2e9, 4e9])}
    slos = parse_slos("ttft.p99=99ms,ttft.mean=50ms,itl.p99=50ms,e2e.max=3s")
    values = slo_values(slos, hists)
    assert values == {"ttft.p99": 99.0, "ttft.mean": 50.5, "itl.p99": None, "e2e.max": 4000.0}
    checks = check_slos(slos, values)
    assert [c.ok for c in checks] == [True, False, False, False]
    assert checks[1].value_ms == 50.5 and checks[1].slo.limit_ms == 50.0


def test_parse_rates_and_fractions():
    assert parse_rates("auto") is None and parse_rates(" AUTO ") is None
    assert parse_rates("50, 10,20.5") == (10.0, 20.5, 50.0)
    for text, msg in [("10,x", "--rates: 'x' is not a number; give auto or requests per "
                               "second, e.g. --rates 10,20,50"),
                      ("10,0", "--rates: every rate must be > 0 req/s (got 0)"),
                      ("10,10", "--rates: 10 is given twice")]:
        with pytest.raises(ConfigError) as e:
            parse_rates(text)
        assert str(e.value) == msg
    assert parse_fraction("5%", "--precision") == 0.05
    assert parse_fraction("0.02", "--precision") == 0.02
    with pytest.raises(ConfigError, match=r"--precision must be at least 0 and below 100% "
                                          r"\(got '150%'\)"):
        parse_fraction("150%", "--precision")


# ---------------------------------------------------------------------------- goodput
def test_goodput_counts_requests_meeting_every_slo():
    nan = math.nan
    cols = {"ttft_ms": np.array([10, 20, 300, 40, 50, 60, 70, nan]),
            "itl_mean_ms": np.array([1, 9, 1, nan, 2, 2, 2, nan]),
            "e2e_ms": np.array([100] * 8)}
    ok = np.array([True, True, True, True, True, False, True, False])
    # ttft: two limits, the highest (200 ms) bounds each request; itl 5 ms
    slos = parse_slos("ttft.p50=100ms,ttft.p99=200ms,itl.p99=5ms")
    g = goodput(cols, ok, slos, load_s=2.0)
    # 0 good · 1 itl 9 > 5 · 2 ttft 300 > 200 · 3 good (no ITL: one token) · 4 good
    # · 5 not ok · 6 good · 7 not ok
    assert g.good == 4 and g.total == 8 and g.rps == 2.0
    assert goodput(cols, ok, (), load_s=4.0).rps == 6 / 4.0      # no SLO: every ok request
    assert goodput(cols, ok, slos, load_s=0.0).rps == 0.0


# ----------------------------------------------------------------------- steady state
def _step(rate=100.0, span=10.0, latency=lambda t: 20.0, seed=0, fail=lambda t: False):
    rng = np.random.default_rng(seed)
    t = np.arange(0, span, 1 / rate)
    lat = np.array([latency(x) for x in t]) + rng.normal(0, 1.0, len(t))
    ok = ~np.array([fail(x) for x in t])
    lat[~ok] = np.nan
    return t, lat, ok


def test_steady_series_is_steady():
    t, lat, ok = _step()
    s = steady_state(t, {"ttft_sched": lat, "e2e_sched": lat + 150}, ok, 10.0)
    assert s.steady and s.judged
    a, b = s.halves_p50_ms["ttft_sched"]
    assert abs(a - 20) < 0.5 and abs(b - 20) < 0.5
    assert abs(s.rise_ms["ttft_sched"]) < 2


def test_growing_queue_is_not_steady():
    # 2 % over capacity: the wait grows by 20 ms per second of the step
    t, lat, ok = _step(latency=lambda x: 20 + 20 * x)
    s = steady_state(t, {"ttft_sched": lat}, ok, 10.0)
    assert not s.steady and s.judged
    a, b = s.halves_p50_ms["ttft_sched"]
    assert a == pytest.approx(20 + 20 * 4, abs=2) and b == pytest.approx(20 + 20 * 8, abs=2)
    assert s.rise_ms["ttft_sched"] == pytest.approx(160, rel=0.05)
    assert s.reason.startswith("ttft_sched p50 rose from 99.") and "(trend +1" in s.reason


def test_settling_then_flat_is_steady_and_small_rise_is_tolerated():
    # the queue fills in the first second (left out as settling), then stays
    t, lat, ok = _step(latency=lambda x: 20 + 60 * min(x, 1.0))
    assert steady_state(t, {"ttft_sched": lat}, ok, 10.0).steady
    # +3 ms over a 200 ms latency: within 20 % + 5 ms
    t, lat, ok = _step(latency=lambda x: 200 + 0.4 * x)
    assert steady_state(t, {"e2e_sched": lat}, ok, 10.0).steady


def test_one_burst_is_not_a_trend():
    # a 0.3-s stall late in the step (a GC pause, a noisy neighbour): not a growing queue
    t, lat, ok = _step(latency=lambda x: 400.0 if 8.0 <= x < 8.3 else 20.0)
    s = steady_state(t, {"ttft_sched": lat}, ok, 10.0)
    assert s.steady, s.reason


def test_rising_errors_are_not_steady():
    t, lat, ok = _step(fail=lambda x: x > 6 and int(x * 100) % 4 == 0)   # 25 % from 6 s on
    s = steady_state(t, {"ttft_sched": lat}, ok, 10.0)
    assert not s.steady
    assert "requests not ending ok rose from 0% to " in s.reason
    assert s.not_ok[0] == 0.0 and 0.2 < s.not_ok[1] < 0.3


def test_too_few_requests_are_not_judged():
    t, lat, ok = _step(rate=1.5)
    s = steady_state(t, {"ttft_sched": lat}, ok, 10.0)
    assert s.steady and not s.judged
    assert s.reason == "too few ok requests to judge (< 10 per half)"
    d = s.as_dict()
    assert d["steady"] is True and d["judged"] is False


def test_theil_sen_slope():
    x = np.arange(10.0)
    y = 3 * x + 1
    y[7] = 1000                              # one outlier
    assert theil_sen_slope(x, y) == pytest.approx(3.0)
    assert math.isnan(theil_sen_slope([1.0], [2.0]))


# -------------------------------------------------------------------------- the search
def latency_model(rate, capacity=200.0, base_ms=50.0):
    """A queue: latency = base / (1 - rate / capacity), unbounded at capacity."""
    return math.inf if rate >= capacity else base_ms / (1 - rate / capacity)


def search(estimate, limit_ms, precision=0.05, max_steps=20):
    s = RateSearch(estimate, precision=precision)
    rates = []
    while (rate := s.next_rate()) is not None and len(rates) < max_steps:
        rates.append(rate)
        s.record(rate, latency_model(rate) <= limit_ms)
    return s, rates


@pytest.mark.parametrize("estimate", [120.0, 200.0, 260.0, 60.0])
@pytest.mark.parametrize("limit_ms", [100.0, 250.0, 1000.0])
def test_bisection_converges_within_precision_in_bounded_steps(estimate, limit_ms):
    # latency <= limit  <=>  rate <= capacity * (1 - base / limit)
    true = 200.0 * (1 - 50.0 / limit_ms)                 # 100, 160, 190 req/s
    s, rates = search(estimate, limit_ms)
    assert s.converged and not s.exhausted
    assert s.lo <= true <= s.hi
    assert abs(s.lo - true) / true <= 0.05
    assert len(rates) <= 9, rates


def test_bisection_worked_example_of_the_docstring():
    s = RateSearch(1.0)
    rates = []
    while (rate := s.next_rate()) is not None:
        rates.append(rate)
        s.record(rate, rate <= 0.7)
    assert rates == [0.9, 0.45, 0.675, 0.788, 0.732, 0.704]
    assert s.lo == 0.675 and s.hi == 0.704 and s.converged


def test_search_gives_up_when_nothing_passes_and_ignores_noise():
    s = RateSearch(100.0)
    rates = []
    while (rate := s.next_rate()) is not None:
        rates.append(rate)
        s.record(rate, False)
    assert rates == [90.0, 45.0, 22.5, 11.2, 5.6]
    assert s.exhausted and s.lo is None
    noisy = RateSearch(100.0, passed=[80.0, 95.0], failed=[90.0])
    assert noisy.lo == 80.0 and noisy.hi == 90.0      # a pass above a fail does not count


def test_search_grows_while_everything_passes():
    s = RateSearch(100.0)
    rates = []
    for _ in range(4):
        rates.append(s.next_rate())
        s.record(rates[-1], True)
    assert rates == [90.0, 103.0, 206.0, 412.0]


# ------------------------------------------------------------------- client and verdict
def test_client_actions_add_workers_retry_then_stop():
    assert client_action(False, 1, 4, False).action == "accept"
    a = client_action(True, 1, 4, False)
    assert (a.action, a.workers) == ("add_workers", 2)
    assert a.message == "client-limited with 1 worker(s): running the step again with 2"
    assert client_action(True, 2, 3, False)[:2] == ("add_workers", 3)
    assert client_action(True, 3, 3, False)[:2] == ("retry", 3)
    stop = client_action(True, 3, 3, True)
    assert stop.action == "stop"
    assert stop.message.startswith("the client, not the endpoint, was the limit: 3 worker(s)")


def test_client_limit_reasons_rejudge_the_summary():
    client = {"sched_lag_p99_ms": 20.0, "worker_cpu_percent": [40.0, 95.0],
              "loop_lag_p99_ms": [3.0, 12.0],
              "reasons": ["scheduling lag p99 20.0 ms > 10 ms; use more --cores or a lower --rps",
                          "event-loop lag p99 12.0 ms > 10 ms in a worker; use more --cores",
                          "worker 1 (pid 42) died (signal 9)"]}
    r = client_limit_reasons(client, offered_rps=100.0, achieved_rps=100.0, sent=1000,
                             constant_arrivals=True)
    assert r == ["worker 1 (pid 42) died (signal 9)", "scheduling lag p99 20.0 ms > 10 ms",
                 "event-loop lag p99 12.0 ms > 10 ms", "worker CPU >= 90% (worker 1 95%)"]
    calm = {"sched_lag_p99_ms": 20.0, "worker_cpu_percent": [40.0], "loop_lag_p99_ms": [12.0],
            "reasons": ["scheduling lag p99 20.0 ms > 10 ms; use more --cores or a lower --rps",
                        "event-loop lag p99 12.0 ms > 10 ms in a worker; use more --cores"]}
    assert client_limit_reasons(calm, offered_rps=100.0, achieved_rps=99.0, sent=1000,
                                constant_arrivals=True, max_sched_lag_ms=50.0) == []
    short = {"sched_lag_p99_ms": 1.0, "worker_cpu_percent": [50.0], "reasons": []}
    assert client_limit_reasons(short, offered_rps=100.0, achieved_rps=80.0, sent=500,
                                constant_arrivals=True) == ["started 80.0 req/s of the 100 "
                                                            "offered"]
    assert client_limit_reasons(short, offered_rps=100.0, achieved_rps=80.0, sent=500,
                                constant_arrivals=False) == []
    # arrivals dropped at --max-inflight: the endpoint held the requests, not the client
    assert client_limit_reasons(short, offered_rps=100.0, achieved_rps=80.0, sent=500,
                                dropped=100, constant_arrivals=True) == []
    # closed loop (the probe): no scheduling lag to judge
    assert client_limit_reasons(client | {"worker_cpu_percent": [], "reasons": []},
                                offered_rps=None, achieved_rps=500.0, sent=500,
                                constant_arrivals=True) == ["event-loop lag p99 12.0 ms > 10 ms"]


def test_step_verdicts():
    slo = Slo("ttft", "p99", 100.0)
    good, bad = [check_slos([slo], {"ttft.p99": v})[0] for v in (50.0, 150.0)]
    steady = Steadiness(True, True, "flat")
    rising = Steadiness(False, True, "ttft_sched p50 rose from 20.0 to 90.0 ms")
    assert step_verdict([good], 0.0, 0.01, steady, []) == ("pass", [])
    assert step_verdict([bad], 0.0, 0.01, steady, []) == ("fail", ["ttft.p99 150.0 ms > 100 ms"])
    assert step_verdict([good], 0.05, 0.01, steady, []) == ("fail", ["errors 5.0% > 1.0%"])
    assert step_verdict([good], 0.0, 0.01, rising, []) == (
        "unsteady", ["not steady: ttft_sched p50 rose from 20.0 to 90.0 ms"])
    assert step_verdict([bad], 0.0, 0.01, rising, [])[0] == "fail"
    assert step_verdict([bad], 0.0, 0.01, rising, ["scheduling lag p99 30.0 ms > 10 ms"]) == (
        "client", ["client-limited: scheduling lag p99 30.0 ms > 10 ms"])
    assert step_verdict([good], 0.0, 0.01, steady, [], interrupted=True)[0] == "interrupted"


# ------------------------------------------------------------------------ curve and knee
def test_knee_of_a_flat_then_steep_curve():
    rates = [10, 20, 40, 60, 80, 90, 95]
    lat = [20, 20.5, 21, 22, 25, 60, 400]
    assert find_knee(rates, lat) == 90
    assert find_knee(rates, [None, *lat[1:]]) == 90
    assert find_knee([10, 20, 30], [1, 2, 3]) is None          # a straight line has no knee
    assert find_knee([10, 20], [1, 100]) is None               # too few points
    assert find_knee([10, 20, 30], [100, 101, 102]) is None    # flat


def _rec(index, rate, verdict, ttft_p99):
    metrics = {m: {"p50": 1.0, "p90": 1.0, "p95": 1.0, "p99": ttft_p99}
               for m in ("ttft", "ttft_sched", "itl", "tpot", "e2e", "e2e_sched", "sched_lag")}
    return {"index": index, "offered_rps": rate, "achieved_rps": rate, "throughput_rps": rate,
            "goodput_rps": rate, "output_tokens_per_s": 0.0, "error_rate": 0.0,
            "steady": {"steady": True}, "verdict": verdict, "metrics": metrics,
            "slo": [{"slo": "ttft.p99=100ms", "value_ms": ttft_p99}]}


def test_curve_keeps_the_last_judged_step_per_rate():
    steps = [_rec(1, None, "probe", 30), _rec(2, 90, "pass", 25), _rec(3, 104, "client", 500),
             _rec(4, 104, "fail", 300), _rec(5, 97, "pass", 40), _rec(6, 50, "pass", 21),
             _rec(7, 97, "pass", 45)]
    curve = sweep_curve(steps)
    assert [(p["offered_rps"], p["step"]) for p in curve] == [(50, 6), (90, 2), (97, 7),
                                                              (104, 4)]
    assert curve[2]["slo_values_ms"] == {"ttft.p99=100ms": 45}
    knee = curve_knee(curve, parse_slos("ttft.p99=100ms"))
    assert knee == {"rate": 97, "metric": "ttft", "stat": "p99", "method": "kneedle"}
