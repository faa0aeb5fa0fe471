"""Retry decisions, backoff, Retry-After parsing, the token bucket and the mock's fault plan."""
from __future__ import annotations

import email.utils
import time

import pytest

from lens.engine import errors as E
from lens.engine.policy import (
    RetryPolicy,
    TokenBucket,
    parse_retry_after,
    rate_limit_rps,
    rate_limit_tpm,
    retry_after_seconds,
)
from lens.errors import ConfigError
from lens.mock.config import MockConfig
from lens.mock.faults import FaultPlan, fails

MS = 1_000_000


def test_no_policy_without_more_than_one_attempt():
    assert RetryPolicy.of(None) is None
    assert RetryPolicy.of({"max_attempts": 1}) is None
    assert RetryPolicy.of({"max_attempts": 2}) is not None


@pytest.mark.parametrize(("status", "err", "retry"), [
    (429, E.HTTP_STATUS, True), (500, E.HTTP_STATUS, True), (502, E.HTTP_STATUS, True),
    (503, E.HTTP_STATUS, True), (504, E.HTTP_STATUS, True),
    (400, E.HTTP_STATUS, False), (401, E.HTTP_STATUS, False), (403, E.HTTP_STATUS, False),
    (404, E.HTTP_STATUS, False), (422, E.HTTP_STATUS, False),
    (0, E.CONNECT, True), (0, E.TIMEOUT_CONNECT, True), (0, E.RESET, True),
    (0, E.TIMEOUT_FIRST_TOKEN, True),
    (0, E.TLS, False), (0, E.DNS, False), (0, E.PROTOCOL, False), (200, E.STREAM_ERROR, False),
    (0, E.TIMEOUT_TOTAL, False),
])
def test_retryable_by_default(status, err, retry):
    assert RetryPolicy({"max_attempts": 3}).retryable(status, err) is retry


def test_retry_on_narrows_the_set():
    p = RetryPolicy({"max_attempts": 3, "retry_on": [429, "connect"]})
    assert p.retryable(429, E.HTTP_STATUS) and p.retryable(0, E.CONNECT)
    assert not p.retryable(503, E.HTTP_STATUS) and not p.retryable(0, E.RESET)


def test_backoff_doubles_caps_and_yields_to_a_longer_retry_after():
    p = RetryPolicy({"max_attempts": 9, "initial_backoff_ms": 100, "max_backoff_ms": 500})
    assert [p.backoff_ns(a) // MS for a in (1, 2, 3, 4, 5)] == [100, 200, 400, 500, 500]
    assert p.backoff_ns(1, 2.0) == 2000 * MS
    assert p.backoff_ns(3, 0.1) == 400 * MS       # a shorter Retry-After does not shorten it


def test_parse_retry_after():
    head = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\nRetry-After: 7\r\n"
    assert parse_retry_after(head) == 7.0
    assert parse_retry_after(b"HTTP/1.1 503 X\r\nretry-after:0.25\r\n") == 0.25
    assert parse_retry_after(b"HTTP/1.1 429 X\r\ncontent-length: 2\r\n") == -1.0
    assert retry_after_seconds("soon") == -1.0
    assert retry_after_seconds(None) == -1.0
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after_seconds(date) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after_seconds(past) == 0.0


def test_rate_limit_rps():
    assert rate_limit_rps(None) == 0.0
    assert rate_limit_rps({"requests_per_s": 5}) == 5.0
    assert rate_limit_rps({"requests_per_minute": 600}) == 10.0
    assert rate_limit_rps({"requests_per_s": 5, "requests_per_minute": 120}) == 2.0
    assert rate_limit_rps({"tokens_per_minute": 1000}) == 0.0     # tokens: rate_limit_tpm


def test_token_bucket_paces_at_its_rate():
    b = TokenBucket(10.0, 0)
    assert b.take(0) and not b.take(0)
    assert b.wait_ns() == pytest.approx(100 * MS, abs=2)
    assert not b.take(99 * MS) and b.take(100 * MS)
    # 10 s later: capacity one, so no burst builds up
    assert b.take(10_100 * MS) and not b.take(10_100 * MS)
    # backlogged, late polls do not lose tokens: n taken == rate * time
    taken, t = 0, 10_100 * MS
    while t < 20_100 * MS:
        t += 7 * MS
        taken += b.take(t, backlog=True)
    assert taken in (99, 100)
    # without a backlog the capacity cuts what a late poll would have kept
    b = TokenBucket(10.0, 0)
    assert sum(b.take(t * 7 * MS) for t in range(1, 1430)) < 97


def test_fail_rate_is_a_seeded_hash_of_the_request_id():
    ids = [str(i) for i in range(2000)]
    picked = [fails(1, r, 0.3) for r in ids]
    assert 0.25 < sum(picked) / len(ids) < 0.35
    assert picked == [fails(1, r, 0.3) for r in ids]
    assert picked != [fails(2, r, 0.3) for r in ids]
    assert not any(fails(1, r, 0.0) for r in ids) and all(fails(1, r, 1.0) for r in ids)


def test_fail_first_counts_attempts_per_id_and_spares_warmups():
    f = FaultPlan(0.0, 2, 503, 1.5, 0)
    assert [f.should_fail("7") for _ in range(4)] == [True, True, False, False]
    assert f.should_fail("8")
    assert not f.should_fail("-1") and not f.should_fail(None)
    assert f.extra_header() == b"retry-after: 1.5\r\n"
    assert FaultPlan(0.0, 1, 500, 2, 0).extra_header() == b""
    assert FaultPlan(0.0, 1, 429, 2, 0).extra_header() == b"retry-after: 2\r\n"


@pytest.mark.parametrize(("kw", "words"), [
    ({"fail_rate": 1.5}, "--fail-rate"), ({"fail_first": -1}, "--fail-first"),
    ({"fail_status": 200}, "--fail-status"), ({"retry_after": -1.0}, "--retry-after"),
])
def test_mock_fault_settings_are_validated(kw, words):
    with pytest.raises(ConfigError, match=words):
        MockConfig(**kw).validate()


def test_rate_limit_tpm():
    assert rate_limit_tpm(None) == 0.0
    assert rate_limit_tpm({"requests_per_s": 5}) == 0.0
    assert rate_limit_tpm({"tokens_per_minute": 6000}) == 6000.0


def test_token_bucket_takes_n_and_gives_back():
    b = TokenBucket(100.0, 0, burst=50.0)          # 100 tokens/s, 50 at most
    assert b.take(0, n=30) and not b.take(0, n=30)  # 20 left
    assert b.wait_ns(30) == pytest.approx(100_000_000, abs=2)   # 10 more at 100/s
    assert b.take(100_000_001, n=30)
    b.give_back(30)
    assert b.take(100_000_001, n=30)
