"""The load engine end to end against lens' mock endpoint."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

from lens.engine.plan import RunPlan
from lens.engine.runner import execute
from lens.mock.process import MockProcess


def run(url, tmp_path, name="run", **kw):
    kw.setdefault("cores", 1)
    kw.setdefault("max_tokens", 16)
    plan = RunPlan(url=url, **kw)
    out = tmp_path / name
    summary, results, outcome = execute(plan, out)
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    tokens = pq.read_table(out / "tokens.parquet").to_pandas()
    return summary["scenarios"][0]["results"][0], rows, tokens, outcome


def measured(rows):
    return rows[~rows["warmup"]]


def test_closed_loop_counts_are_exact(mock_endpoint, tmp_path):
    res, rows, tokens, _ = run(mock_endpoint.url, tmp_path, concurrency=4, requests=60)
    m = measured(rows)
    assert len(m) == 60
    assert m["request_id"].is_unique
    assert sorted(m["request_id"]) == list(range(60))
    assert (m["error"] == "ok").all()
    assert res["counts"]["ok"] == 60 and res["counts"]["sent"] == 60
    # 16 tokens per request, each its own event, each with a stamp
    assert (m["output_tokens"] == 16).all() and m["tokens_from_usage"].all()
    tm = tokens[tokens["request_id"] >= 0]
    assert len(tm) == 60 * 16
    assert (tm.groupby("request_id")["index"].max() == 15).all()


def test_closed_loop_keeps_c_in_flight(mock_endpoint, tmp_path):
    c = 6
    _, rows, _, _ = run(mock_endpoint.url, tmp_path, concurrency=c, requests=120)
    m = measured(rows)
    starts = np.sort(m["t_start_ns"].to_numpy())
    ends = np.sort(m["t_end_ns"].to_numpy())
    # in flight just after each start = started so far - ended so far
    in_flight = np.arange(1, len(starts) + 1) - np.searchsorted(ends, starts, side="right")
    assert in_flight.max() == c
    # in the steady part (after the first c starts, before the last c ends) it is c
    steady = in_flight[c: len(starts) - c]
    assert np.median(steady) == c


def test_ttft_and_itl_match_the_mock_at_light_load(tmp_path, untraced):
    with MockProcess(ttft_ms=25.0, itl_ms=3.0) as mock:
        res, rows, tokens, outcome = run(mock.url, tmp_path, concurrency=2, requests=40,
                                         max_tokens=20)
    truth = mock.truth()
    assert abs(res["metrics"]["ttft"]["p50"] - 25.0) < 1.0
    assert abs(res["metrics"]["itl"]["p50"] - 3.0) < 1.0
    # against the mock's own record of when it wrote each token (same CLOCK_MONOTONIC):
    # the client saw every token after it was written, and within 1 ms at the median
    delays = []
    for rid, g in tokens[tokens["request_id"] >= 0].groupby("request_id"):
        seen = np.sort(g["t_ns"].to_numpy()) + outcome.t0_ns
        wrote = np.asarray(truth[str(rid)]["token_write_ns"])
        assert len(seen) == len(wrote) == 20
        delays.append(seen - wrote)
    d = np.concatenate(delays) / 1e6
    assert d.size == 40 * 20
    assert d.min() > 0
    assert np.median(d) < 1.0


def test_open_loop_rate_is_kept(mock_endpoint, tmp_path, untraced):
    res, rows, _, _ = run(mock_endpoint.url, tmp_path, rps=200, duration_s=2.0)
    m = measured(rows)
    assert len(m) == 400
    assert res["throughput"]["achieved_rps"] == pytest.approx(200, rel=0.02)
    lag = (m["t_start_ns"] - m["t_sched_ns"]) / 1e6
    assert lag.quantile(0.99) < 5.0


def test_poisson_schedule_is_seeded_and_poisson(mock_endpoint, tmp_path):
    kw = dict(rps=150, arrival="poisson", requests=300, seed=7)
    _, a, _, _ = run(mock_endpoint.url, tmp_path, "a", **kw)
    _, b, _, _ = run(mock_endpoint.url, tmp_path, "b", **kw)
    sa = measured(a).sort_values("request_id")["t_sched_ns"].to_numpy()
    sb = measured(b).sort_values("request_id")["t_sched_ns"].to_numpy()
    assert np.array_equal(sa, sb)
    gaps = np.diff(sa) / 1e9
    # exponential gaps with mean 1/150 s
    assert stats.kstest(gaps, "expon", args=(0, 1 / 150)).pvalue > 0.01


def test_two_cores_split_the_work(mock_endpoint, tmp_path):
    res, rows, _, outcome = run(mock_endpoint.url, tmp_path, cores=2, rps=100, requests=100)
    m = measured(rows)
    assert len(m) == 100
    assert sorted(m["worker"].unique()) == [0, 1]
    # arrivals i % 2 == k went to worker k
    assert ((m["request_id"] % 2) == m["worker"]).all()
    pids = {w["pid"] for w in outcome.workers}
    assert len(pids) == 2


def test_httpx_client_agrees_with_the_fast_client(mock_endpoint, tmp_path, untraced):
    fast, _, _, _ = run(mock_endpoint.url, tmp_path, "fast", concurrency=1, requests=60)
    slow, _, _, _ = run(mock_endpoint.url, tmp_path, "httpx", concurrency=1, requests=60,
                        client="httpx")
    assert slow["counts"]["ok"] == 60
    for metric in ("ttft", "itl"):
        assert abs(fast["metrics"][metric]["p50"] - slow["metrics"][metric]["p50"]) < 1.0
