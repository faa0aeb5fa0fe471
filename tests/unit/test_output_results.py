"""RunResults: histograms, ITL join, counts, throughput, series and snapshot from synthetic rows."""
import numpy as np
import pytest

import lens.output
from lens._core import (
    FLAG_CANCELLED,
    FLAG_DROPPED,
    FLAG_TRUNCATED,
    FLAG_WARMUP,
    ROW_FIELDS,
    TOKEN_DTYPE,
    UNSET,
)
from lens.output import RunResults, derive_metrics, empty_rows
from lens.output.results import METRICS, error_name

T0 = 7_000_000_000_000   # run epoch, CLOCK_MONOTONIC ns
MS = 1_000_000
S = 1_000_000_000
QS = (0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def make_rows(n, *, start_ns=None, ttft_ns=100 * MS, decode_ns=80 * MS, tail_ns=MS,
              lag_ns=1000, tokens=5):
    """n ok requests: scheduled every 10 ms from T0, with the given (scalar or array) timings."""
    r = empty_rows(n)
    r["request_id"] = np.arange(n)
    r["status"] = 200
    sched = T0 + np.arange(n, dtype=np.int64) * 10 * MS if start_ns is None else start_ns
    r["t_sched_ns"] = sched
    r["t_start_ns"] = r["t_sched_ns"] + lag_ns
    r["t_sent_ns"] = r["t_start_ns"] + 50_000
    r["t_first_token_ns"] = r["t_start_ns"] + ttft_ns
    r["t_last_token_ns"] = r["t_first_token_ns"] + decode_ns
    r["t_end_ns"] = r["t_last_token_ns"] + tail_ns
    r["output_tokens"] = tokens
    r["token_events"] = tokens
    return r


def assert_quantiles(h, values):
    """Histogram quantiles within 0.1 % (+1 ns) of numpy's inverted_cdf on the same values."""
    values = np.asarray(values)
    assert h.count == len(values)
    for q in QS:
        want = float(np.quantile(values, q, method="inverted_cdf"))
        assert abs(h.quantile(q) - want) <= 1e-3 * abs(want) + 1, (q, h.quantile(q), want)


def test_all_is_exact():
    assert sorted(lens.output.__all__) == sorted(
        name for name in dir(lens.output)
        if not name.startswith("_") and name not in SUBMODULES)


#: lens.output's submodules (attributes of the package once imported, not re-exported names)
SUBMODULES = {m.name for m in __import__("pkgutil").iter_modules(lens.output.__path__)}


def test_empty_rows_match_recorder_defaults():
    r = empty_rows(3)
    assert all((r[f] == UNSET).all() for f in ROW_FIELDS if f.startswith("t_"))
    assert (r["attempt"] == 1).all() and (r["conn_id"] == -1).all() and (r["error"] == 0).all()


def test_worked_example_of_the_docstring():
    r = make_rows(1, start_ns=np.array([T0 + 10 * S]), lag_ns=2 * MS, ttft_ns=150 * MS,
                  decode_ns=200 * MS, tail_ns=8 * MS, tokens=5)
    m = derive_metrics(r)
    assert m["ttft"][0] == 150 * MS
    assert m["ttft_sched"][0] == 152 * MS
    assert m["tpot"][0] == 50 * MS
    assert m["itl_mean"][0] == 50 * MS
    assert m["e2e"][0] == 358 * MS
    assert m["e2e_sched"][0] == 360 * MS
    assert m["sched_lag"][0] == 2 * MS
    assert m["output_tokens_per_s"][0] == pytest.approx(5 / 0.358)


def test_derive_metrics_is_nan_where_not_applicable():
    r = make_rows(3, tokens=1)
    r["t_first_token_ns"][1] = UNSET         # no token at all
    r["output_tokens"][2] = 0
    m = derive_metrics(r)
    assert np.isnan(m["tpot"]).all()         # one token: no time per output token
    assert np.isnan(m["ttft"][1]) and not np.isnan(m["ttft"][0])
    assert np.isnan(m["output_tokens_per_s"][2])


def test_latency_quantiles_match_numpy_over_batches():
    rng = np.random.default_rng(1)
    n = 20_000
    ttft = rng.lognormal(np.log(200 * MS), 0.5, n).astype(np.int64)
    decode = rng.lognormal(np.log(2 * S), 0.3, n).astype(np.int64)
    tokens = rng.integers(2, 400, n)
    lag = rng.integers(0, 10 ** 6, n)
    r = make_rows(n, ttft_ns=ttft, decode_ns=decode, tokens=tokens, lag_ns=lag)
    res = RunResults(T0)
    for batch in np.array_split(r, 37):
        res.add_rows(batch)
    m = derive_metrics(r)
    t = res.targets[0]
    for name in ("ttft", "ttft_sched", "e2e", "e2e_sched", "sched_lag"):
        assert_quantiles(t.histograms[name], m[name])
        assert t.histograms[name].sum == int(m[name].sum())   # exact mean
    assert_quantiles(t.histograms["tpot"], np.rint(m["tpot"]))
    tps = np.rint(m["output_tokens_per_s"] * 1e6)
    assert_quantiles(t.histograms["output_tokens_per_s"], tps)


def _token_stream(rng, n_req, t_start):
    """Per request: token stamps with random gaps (zeros included, as one read gives)."""
    per_req = []
    for i in range(n_req):
        k = int(rng.integers(0, 25))
        gaps = rng.exponential(20 * MS, k) * (rng.random(k) > 0.1)   # ~10 % zero gaps
        t = t_start[i] + 50 * MS + np.cumsum(gaps.astype(np.int64))
        per_req.append(t)
    return per_req


@pytest.mark.parametrize("join_tokens", [1, 97, 1 << 18])
def test_itl_from_interleaved_batches_equals_numpy_diff(join_tokens):
    rng = np.random.default_rng(join_tokens)
    n = 400
    r = make_rows(n, start_ns=T0 + np.sort(rng.integers(0, 4 * S, n)))
    per_req = _token_stream(rng, n, r["t_start_ns"])
    for i, t in enumerate(per_req):
        r["token_events"][i] = r["output_tokens"][i] = len(t)
        r["t_first_token_ns"][i] = t[0] if len(t) else UNSET
        r["t_last_token_ns"][i] = t[-1] if len(t) else UNSET
        r["t_end_ns"][i] = (t[-1] if len(t) else r["t_start_ns"][i]) + MS
    r["error"][::7] = 8                      # reset mid-stream: tokens, but not ok
    r["flags"][3::11] |= FLAG_WARMUP
    tok = np.zeros(sum(map(len, per_req)), TOKEN_DTYPE)
    tok["request_id"] = np.repeat(np.arange(n), [len(t) for t in per_req])
    tok["index"] = np.concatenate([np.arange(len(t)) for t in per_req])
    tok["t_ns"] = np.concatenate(per_req)
    tok = tok[np.argsort(tok["t_ns"], kind="stable")]   # interleaved, index order kept

    res = RunResults(T0, join_tokens=join_tokens)
    # drains every 50 ms; a third of the rows and of the token batches come one drain late
    late_rows = rng.random(n) < 0.33
    drains = np.arange(T0, r["t_end_ns"].max() + 100 * MS, 50 * MS)
    row_due = np.searchsorted(drains, r["t_end_ns"]) + late_rows
    tok_due = np.searchsorted(drains, tok["t_ns"])
    tok_due += (rng.random(len(drains) + 2) < 0.33)[tok_due]
    for d in range(len(drains) + 2):
        res.add_tokens(tok[tok_due == d])
        res.add_rows(r[row_due == d])
    res.flush(final=True)

    ok = (r["error"] == 0) & (r["flags"] & FLAG_WARMUP == 0)
    want = np.concatenate([np.diff(per_req[i]) for i in np.flatnonzero(ok)])
    h = res.targets[0].histograms["itl"]
    assert_quantiles(h, want)
    assert h.sum == int(want.sum()) and h.min == want.min() and h.max == want.max()
    n_ok_tokens = sum(len(per_req[i]) for i in np.flatnonzero(ok))
    assert res.targets[0].series["token_events"].sum() == n_ok_tokens
    assert res.pending_tokens == 0


def test_tokens_of_truncated_request_are_joined_at_max_token_stamps():
    r = make_rows(1, tokens=10)
    r["flags"] = FLAG_TRUNCATED               # 10 events, only 4 stamped
    tok = np.zeros(4, TOKEN_DTYPE)
    tok["index"] = np.arange(4)
    tok["t_ns"] = r["t_first_token_ns"][0] + np.array([0, 5, 15, 30]) * MS
    res = RunResults(T0, max_token_stamps=4)
    res.add_rows(r)
    res.add_tokens(tok)
    res.flush()                               # not final: complete with 4 stamps already
    assert res.pending_tokens == 0
    assert res.targets[0].histograms["itl"].count == 3
    assert res.targets[0].counts["truncated"] == 1


def test_stamps_without_a_row_wait_then_are_dropped_at_the_end():
    tok = np.zeros(3, TOKEN_DTYPE)
    tok["request_id"] = 42
    tok["index"] = np.arange(3)
    tok["t_ns"] = T0 + np.arange(3) * MS
    res = RunResults(T0, join_tokens=1)
    res.add_rows(make_rows(2))                # other requests, no stamps sent for them
    res.add_tokens(tok)
    res.flush()
    assert res.pending_tokens == 3
    res.flush(final=True)
    assert res.pending_tokens == 0
    assert res.histogram("itl").count == 0


def test_warmup_failed_dropped_cancelled_are_counted_not_measured():
    r = make_rows(10, ttft_ns=100 * MS)
    r["flags"][0] = FLAG_WARMUP
    r["t_first_token_ns"][0] = r["t_start_ns"][0] + 5 * S       # an outlier that must not show
    r["error"][1] = 7
    r["status"][1] = 429
    r["error"][2] = 5
    r["flags"][3] = FLAG_DROPPED
    r["error"][4] = 11                        # cancelled by error code
    r["flags"][5] = FLAG_CANCELLED
    r["error"][6] = 99                        # a code this version does not know
    r["error"][7] = -3                        # nor a negative one
    res = RunResults(T0)
    res.add_rows(r)
    t = res.targets[0]
    assert t.counts["warmup"] == 1
    assert t.counts["sent"] == 8              # all but the warm-up and the dropped one
    assert (t.counts["ok"], t.counts["failed"], t.counts["dropped"], t.counts["cancelled"]) == (
        2, 4, 1, 2)
    assert t.errors() == {"error_-3": 1, "timeout_first_token": 1, "http_status": 1,
                          "error_99": 1}
    assert t.statuses() == {"200": 7, "429": 1}
    assert t.counts["output_tokens"] == 10
    assert t.histograms["ttft"].count == 2
    assert t.histograms["ttft"].max == 100 * MS
    assert t.histograms["sched_lag"].count == 8   # client lateness of every sent request
    assert error_name(3) == "tls" and error_name(-1) == "error_-1"


def test_throughput_over_the_measured_window():
    n, rate = 1001, 100                       # constant arrivals at 100/s for 10 s
    r = make_rows(n, ttft_ns=100 * MS, decode_ns=400 * MS, tail_ns=0, tokens=8)
    r["error"][::4] = 1
    res = RunResults(T0, offered_rps=rate)
    res.add_rows(r)
    t = res.targets[0]
    window = (r["t_end_ns"].max() - r["t_start_ns"].min()) / S
    assert t.window_s == pytest.approx(window)
    assert window == pytest.approx(10.5)
    assert t.achieved_rps == pytest.approx(rate)
    ok = int((r["error"] == 0).sum())
    assert t.counts["ok"] == ok == 750
    assert t.counts["output_tokens"] == 8 * ok


def test_sched_lag_only_in_open_loop():
    res = RunResults(T0, open_loop=False)
    res.add_rows(make_rows(5))
    assert res.histogram("sched_lag").count == 0
    assert res.histogram("ttft").count == 5


def test_int64_arrays_from_ring_drain_are_accepted():
    r = make_rows(4)
    tok = np.zeros(6, TOKEN_DTYPE)
    res = RunResults(T0)
    res.add_rows(r.view(np.int64).reshape(4, len(ROW_FIELDS)))
    res.add_tokens(tok.view(np.int64).reshape(6, 3))
    res.add_rows(np.zeros((0, len(ROW_FIELDS)), np.int64))
    assert res.targets[0].counts["ok"] == 4
    with pytest.raises(TypeError, match=r"int64 of shape \(n, 25\)"):
        res.add_rows(np.zeros((2, 5), np.int64))


def test_targets_are_kept_apart():
    r = make_rows(6)
    r["target"] = [0, 1, 0, 1, 0, 1]
    r["t_first_token_ns"] = r["t_start_ns"] + np.where(r["target"] == 0, 10, 30) * MS
    r["token_events"] = 2
    tok = np.zeros(12, TOKEN_DTYPE)
    tok["request_id"] = np.repeat(np.arange(6), 2)
    tok["index"] = np.tile([0, 1], 6)
    tok["t_ns"] = np.repeat(r["t_first_token_ns"], 2) + np.tile([0, 1], 6) * np.repeat(
        np.where(r["target"] == 0, 5, 7) * MS, 2)
    res = RunResults(T0, targets=[{"model": "a"}, {"model": "b"}])
    res.add_tokens(tok)
    res.add_rows(r)
    res.flush(final=True)
    a, b = res.targets
    assert (a.info["model"], b.info["model"]) == ("a", "b")
    assert a.histograms["ttft"].max == 10 * MS and b.histograms["ttft"].min == 30 * MS
    assert (a.histograms["itl"].min, a.histograms["itl"].max) == (5 * MS, 5 * MS)
    assert (b.histograms["itl"].min, b.histograms["itl"].count) == (7 * MS, 3)
    assert res.histogram("ttft").count == 6
    with pytest.raises(KeyError, match="unknown metric"):
        res.histogram("latency")


def test_per_second_series_and_ttft_p50():
    # 3 s of completions: second k has TTFTs 10·(k+1), 20·(k+1), 30·(k+1) ms
    ttft = np.array([10, 20, 30, 20, 40, 60, 30, 60, 90]) * MS
    start = T0 + np.repeat([0, 1, 2], 3) * S + 100 * MS
    r = make_rows(9, start_ns=start, ttft_ns=ttft, decode_ns=0, tail_ns=0, lag_ns=0, tokens=4)
    r["error"][8] = 6
    res = RunResults(T0)
    for i in range(0, 9, 2):
        res.add_rows(r[i:i + 2])
    t = res.targets[0]
    assert list(t.ttft_p50_ms[:1]) == [20.0]        # second 0 closed once second 2 arrived
    res.flush(final=True)
    ts = t.timeseries()
    assert ts["t_s"] == [0, 1, 2]
    assert ts["requests_ok"] == [3, 3, 2]
    assert ts["errors"] == [0, 0, 1]
    assert ts["started"] == [3, 3, 3]
    assert ts["output_tokens"] == [12, 12, 8]
    assert ts["ttft_p50_ms"] == [20.0, 40.0, 45.0]


def test_snapshot_is_cheap_live_progress():
    res = RunResults(T0)
    assert res.snapshot().ttft_p50_ms is None
    r = make_rows(101, ttft_ns=np.arange(101) * MS)  # 100 per second
    r["error"][0] = 1
    res.add_rows(r)
    res.in_flight = 7
    p = res.snapshot()
    assert (p.completed, p.failed, p.dropped, p.in_flight) == (100, 1, 0, 7)
    assert p.achieved_rps == pytest.approx(100.0)
    assert p.ttft_p50_ms == pytest.approx(50.5)


def test_histograms_cover_every_metric_and_count_out_of_range():
    r = make_rows(3, ttft_ns=np.array([MS, 2 * 3_600 * S, MS]), tokens=[5, 5, 10 ** 9])
    r["t_end_ns"][2] = r["t_start_ns"][2] + 1     # 1e9 tokens in 1 ns: absurd, not a crash
    r["t_first_token_ns"][2] = r["t_last_token_ns"][2] = r["t_end_ns"][2]
    res = RunResults(T0)
    res.add_rows(r)
    t = res.targets[0]
    assert set(t.histograms) == set(METRICS)
    assert t.out_of_range["ttft"] == 1 and t.histograms["ttft"].count == 2
    assert t.out_of_range["output_tokens_per_s"] == 1
