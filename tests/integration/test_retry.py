"""Request policy against the mock's fault injection: retries, backoff, fail fast, rate limit."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest

from lens.engine.plan import RunPlan
from lens.engine.runner import execute
from lens.mock.faults import fails
from lens.mock.process import MockProcess

MS = 1e6


def run(url, tmp_path, name="run", summary=None, **kw):
    kw.setdefault("cores", 1)
    kw.setdefault("max_tokens", 4)
    s, _, _ = execute(RunPlan(url=url, **kw), tmp_path / name)
    if summary is not None:
        summary.update(s["scenarios"][0]["results"][0])
    rows = pq.read_table(tmp_path / name / "requests.parquet").to_pandas()
    return rows[~rows["warmup"]]


def arrivals_by_id(mock):
    """Return request id -> the mock's receive times (ns) of its attempts, in order."""
    by = defaultdict(list)
    for r in mock.requests():
        rid = r["headers"].get("x-request-id")
        if rid is not None and not rid.startswith("-"):
            by[int(rid)].append(r["t_received_ns"])
    return by


@pytest.mark.parametrize("client", ["fast", "httpx"])
def test_fail_first_two_503s_retried_with_exponential_backoff(tmp_path, untraced, client):
    with MockProcess(ttft_ms=2, itl_ms=1, output_tokens=4, fail_first=2, fail_status=503) as m:
        rows = run(m.url, tmp_path, rps=20, requests=10, client=client,
                   retry={"max_attempts": 3, "initial_backoff_ms": 100})
        seen = arrivals_by_id(m)
    assert len(rows) == 10
    assert (rows["attempt"] == 3).all()
    assert rows["ok"].all() and (rows["status"] == 200).all()
    for rid in rows["request_id"]:
        gaps = np.diff(seen[rid]) / MS
        assert len(gaps) == 2
        # backoff 1x, 2x the initial 100 ms; slack for the timer tick (uvloop: 1 ms) and the
        # 503 round trip
        assert 98 <= gaps[0] < 130, gaps
        assert 198 <= gaps[1] < 230, gaps
    # latency from the first attempt and from the last, both kept: they differ by the two
    # attempts and backoffs (100 + 200 ms; timers on uvloop's 1 ms grid may fire ~1 ms early)
    extra = rows["e2e_ms"] - rows["e2e_last_attempt_ms"]
    assert ((extra >= 298) & (extra < 360)).all(), extra
    assert (rows["t_attempt_ns"] > rows["t_start_ns"]).all()
    assert (rows["ttft_last_attempt_ms"] < rows["ttft_ms"]).all()
    assert (rows["t_sent_ns"] >= rows["t_attempt_ns"]).all()   # phases of the last attempt


def test_429_waits_for_retry_after(tmp_path, untraced):
    with MockProcess(ttft_ms=2, itl_ms=1, output_tokens=4, fail_first=1, fail_status=429,
                     retry_after=0.2) as m:
        rows = run(m.url, tmp_path, rps=20, requests=6,
                   retry={"max_attempts": 3, "initial_backoff_ms": 10})
        seen = arrivals_by_id(m)
    assert (rows["attempt"] == 2).all() and rows["ok"].all()
    for rid in rows["request_id"]:
        gap = (seen[rid][1] - seen[rid][0]) / MS
        assert 198 <= gap < 240, gap      # Retry-After (200 ms) beats the 10 ms backoff


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_4xx_fail_fast(tmp_path, status):
    with MockProcess(ttft_ms=2, itl_ms=1, output_tokens=4, fail_first=1,
                     fail_status=status) as m:
        rows = run(m.url, tmp_path, rps=50, requests=5,
                   retry={"max_attempts": 3, "initial_backoff_ms": 10})
        seen = arrivals_by_id(m)
    assert (rows["attempt"] == 1).all()
    assert (~rows["ok"]).all() and (rows["status"] == status).all()
    assert (rows["error"] == "http_status").all()
    assert all(len(seen[rid]) == 1 for rid in rows["request_id"])


def test_exhausted_attempts_end_failed_with_attempt_max(tmp_path):
    seed = 3
    with MockProcess(ttft_ms=2, itl_ms=1, output_tokens=4, fail_rate=0.5, fail_status=500,
                     seed=seed) as m:
        rows = run(m.url, tmp_path, rps=100, requests=40,
                   retry={"max_attempts": 3, "initial_backoff_ms": 5})
        seen = arrivals_by_id(m)
    failing = np.array([fails(seed, str(r), 0.5) for r in rows["request_id"]])
    assert 5 < failing.sum() < 35                  # both kinds present
    bad, good = rows[failing], rows[~failing]
    assert (bad["attempt"] == 3).all() and (~bad["ok"]).all() and (bad["status"] == 500).all()
    assert (good["attempt"] == 1).all() and good["ok"].all()
    assert all(len(seen[r]) == 3 for r in bad["request_id"])


def test_no_retry_by_default(tmp_path):
    with MockProcess(ttft_ms=2, itl_ms=1, output_tokens=4, fail_first=1, fail_status=503) as m:
        rows = run(m.url, tmp_path, rps=50, requests=5)
    assert (rows["attempt"] == 1).all() and (rows["status"] == 503).all()


def test_rate_limit_holds_in_sum_over_four_workers(tmp_path, untraced):
    res = {}
    with MockProcess(ttft_ms=2, itl_ms=1, output_tokens=4) as m:
        rows = run(m.url, tmp_path, rps=100, requests=200, cores=4, summary=res,
                   rate_limit={"requests_per_s": 50})
    assert len(rows) == 200 and rows["ok"].all()        # waited, never dropped
    t = np.sort(rows["t_start_ns"].to_numpy()) / 1e9
    rate = np.polyfit(t, np.arange(len(t)), 1)[0]
    assert abs(rate - 50) <= 1.0, rate                   # within 2 %
    # the wait shows as scheduling lag: the last arrival (at ~2 s) starts at ~4 s
    assert rows["sched_lag_ms"].max() > 1500
    # ... which is the rate limit's doing, not the client's
    assert not any("scheduling lag" in r for r in res["client"]["reasons"])


def test_tokens_per_minute_limit_holds_in_sum(tmp_path, untraced):
    # each request costs its prompt ("hi": 1 token) + max_tokens 9 = 10 tokens, so
    # 30,000 tokens/min = 500 tokens/s allow 50 requests/s, offered 100/s on 2 workers
    res = {}
    with MockProcess(ttft_ms=2, itl_ms=1, output_tokens=4) as m:
        rows = run(m.url, tmp_path, rps=100, requests=250, cores=2, summary=res, prompt="hi",
                   max_tokens=9, rate_limit={"tokens_per_minute": 30000})
    assert len(rows) == 250 and rows["ok"].all()
    t = np.sort(rows["t_start_ns"].to_numpy()) / 1e9
    # each worker's bucket starts with one second of tokens (250: 25 requests) and, offered
    # 500 tokens/s against a refill of 250, runs dry after 1 s (~100 requests started at the
    # offered rate); from then on starts follow the limit
    rate = np.polyfit(t[110:], np.arange(110, len(t)), 1)[0]
    assert abs(rate - 50) <= 1.0, rate
    assert not any("scheduling lag" in r for r in res["client"]["reasons"])


def test_first_token_timeouts_are_retried_with_backoff(tmp_path, untraced):
    """Every attempt stalls after its headers: 3 attempts each, recorded in the row, spaced by
    the first-token timeout (0.3 s) plus a backoff of 100 then 200 ms."""
    from lens.engine.plan import Timeouts

    with MockProcess(ttft_ms=2, itl_ms=1, output_tokens=4,
                     faults={"stall_after_headers": 1.0}) as m:
        rows = run(m.url, tmp_path, rps=10, requests=4,
                   timeouts=Timeouts(connect_s=2.0, first_token_s=0.3, total_s=5.0),
                   retry={"max_attempts": 3, "initial_backoff_ms": 100})
        seen = arrivals_by_id(m)
    assert len(rows) == 4
    assert (rows["attempt"] == 3).all() and (rows["error"] == "timeout_first_token").all()
    assert not rows["ok"].any()
    for rid in rows["request_id"]:
        gaps = np.diff(seen[rid]) / MS
        assert len(gaps) == 2, seen[rid]
        # the timeout sweep runs every 20 ms
        assert 398 <= gaps[0] < 445, gaps
        assert 498 <= gaps[1] < 545, gaps


def test_resets_before_headers_are_retried(tmp_path, untraced):
    """A reset before any byte of a response, on a kept-alive connection, is what a server
    closing an idle connection looks like: the request goes again at once on a new connection
    (an attempt); a reset on a new connection is a failure retried after the backoff (100 ms
    after the 1st attempt, 200 ms after the 2nd). Attempts and the final error are in every row."""
    with MockProcess(ttft_ms=2, itl_ms=1, output_tokens=4,
                     faults={"reset_before_headers": 1.0}) as m:
        rows = run(m.url, tmp_path, rps=10, requests=4,
                   retry={"max_attempts": 3, "initial_backoff_ms": 100})
        seen = arrivals_by_id(m)
    assert len(rows) == 4
    assert (rows["attempt"] == 3).all() and (rows["error"] == "reset").all()
    for rid in rows["request_id"]:
        gaps = np.diff(seen[rid]) / MS
        assert len(gaps) == 2, seen[rid]
        # after attempt k: on a kept-alive connection, resent at once; on a new one, the
        # backoff of attempt k (100 ms · 2^(k-1)); a resend goes on a new connection, so two
        # resends never follow each other
        resent = [g < 20 for g in gaps]
        for k, g in enumerate(gaps, 1):
            backoff = 100 * 2 ** (k - 1)
            assert resent[k - 1] or backoff - 2 <= g < backoff + 40, gaps
        assert not all(resent), gaps


def test_connection_failures_mid_run_are_retried_until_the_endpoint_is_back(tmp_path, untraced):
    """The endpoint goes away for ~0.6 s in the middle of a run and comes back on the same
    port: requests that meet the refused connections are retried with backoff and succeed;
    each row says how many attempts it took; nothing is lost."""
    import socket
    import threading
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = MockProcess(ttft_ms=2, itl_ms=1, output_tokens=4, port=port).start()
    second: list[MockProcess] = []

    def outage() -> None:
        time.sleep(2.0)                 # ~1 s into the load (start-up and probe come first)
        first.stop()
        time.sleep(0.6)
        second.append(MockProcess(ttft_ms=2, itl_ms=1, output_tokens=4, port=port).start())

    t = threading.Thread(target=outage)
    t.start()
    try:
        rows = run(f"http://127.0.0.1:{port}/v1", tmp_path, rps=20, duration_s=4.0,
                   retry={"max_attempts": 8, "initial_backoff_ms": 100,
                          "max_backoff_ms": 400})
    finally:
        t.join()
        first.stop()
        for m in second:
            m.stop()
    assert len(rows) == 80 and rows["request_id"].is_unique
    retried = rows[rows["attempt"] > 1]
    assert len(retried) >= 5, rows["attempt"].value_counts()
    # every request ends ok: those in flight at the stop are reset, later ones are refused
    # until the mock is back; both are retried
    assert rows["ok"].all(), rows.loc[~rows["ok"], ["error", "attempt"]]
    # a retried request's latency from its first attempt includes the outage
    assert (retried["e2e_ms"] > retried["e2e_last_attempt_ms"] + 90).all()
