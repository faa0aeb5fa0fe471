"""Arrival schedules, request bytes, run options."""
from __future__ import annotations

import httptools
import numpy as np
import orjson
import pytest
from scipy import stats

from lens.engine.plan import RunPlan, Timeouts, api_key_from_env, check_url
from lens.engine.requests import RequestFactory, estimate_tokens, synthetic_prompts
from lens.engine.units import parse_duration, parse_timeouts
from lens.engine.worker import classify_connect_error, worker_share
from lens.errors import ConfigError
from lens.workload.arrivals import arrival_offsets_ns, split


def test_constant_arrivals_are_evenly_spaced():
    a = arrival_offsets_ns("constant", 200, requests=5)
    assert a.tolist() == [0, 5_000_000, 10_000_000, 15_000_000, 20_000_000]
    d = arrival_offsets_ns("constant", 10, duration_s=1.0)
    assert len(d) == 10 and d[-1] == 900_000_000


def test_poisson_arrivals_fit_an_exponential():
    a = arrival_offsets_ns("poisson", 500, requests=20_000, seed=3)
    gaps = np.diff(a) / 1e9
    assert a[0] == 0
    assert gaps.mean() == pytest.approx(1 / 500, rel=0.03)
    assert stats.kstest(gaps, "expon", args=(0, 1 / 500)).pvalue > 0.01


def test_gamma_burstiness_keeps_the_mean_and_changes_the_spread():
    bursty = np.diff(arrival_offsets_ns("gamma", 100, requests=20_000, seed=1, burstiness=0.25))
    smooth = np.diff(arrival_offsets_ns("gamma", 100, requests=20_000, seed=1, burstiness=4))
    for g in (bursty, smooth):
        assert g.mean() / 1e9 == pytest.approx(0.01, rel=0.05)
    # coefficient of variation = 1/sqrt(shape)
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.1)
    assert smooth.std() / smooth.mean() == pytest.approx(0.5, rel=0.1)


def test_same_seed_same_schedule_other_seed_other_schedule():
    a = arrival_offsets_ns("poisson", 50, duration_s=30, seed=9)
    b = arrival_offsets_ns("poisson", 50, duration_s=30, seed=9)
    c = arrival_offsets_ns("poisson", 50, duration_s=30, seed=10)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[:100], c[:100])
    assert a[-1] < 30e9


def test_long_schedules_cross_chunks_monotonically():
    a = arrival_offsets_ns("poisson", 10_000, duration_s=20, seed=0)
    assert len(a) > 150_000
    assert (np.diff(a) >= 0).all()
    assert len(a) == pytest.approx(200_000, rel=0.02)


def test_split_is_i_mod_n_and_the_union_is_the_whole():
    a = arrival_offsets_ns("poisson", 100, requests=1001, seed=2)
    parts = [split(a, k, 3) for k in range(3)]
    ids = np.sort(np.concatenate([p[0] for p in parts]))
    assert np.array_equal(ids, np.arange(1001))
    for k, (i, o) in enumerate(parts):
        assert (i % 3 == k).all() and np.array_equal(o, a[i])


@pytest.mark.parametrize("kw,msg", [
    (dict(kind="uniform", rate=1, requests=1), "arrival must be one of"),
    (dict(kind="constant", rate=0, requests=1), "rate must be > 0"),
    (dict(kind="constant", rate=1), "give requests or duration_s"),
    (dict(kind="gamma", rate=1, requests=1, burstiness=0), "burstiness must be > 0"),
])
def test_bad_arrival_settings_are_refused(kw, msg):
    kind = kw.pop("kind")
    rate = kw.pop("rate")
    with pytest.raises(ValueError, match=msg):
        arrival_offsets_ns(kind, rate, **kw)


def test_worker_share_splits_evenly():
    assert [worker_share(10, k, 3) for k in range(3)] == [4, 3, 3]
    assert sum(worker_share(7, k, 7) for k in range(7)) == 7


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("500ms", 0.5), ("2m", 120),
                                          ("1h", 3600), ("1.5", 1.5), ("3min", 180)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "-1s", "0", "5 parsecs"])
def test_parse_duration_refuses_nonsense(text):
    with pytest.raises(ConfigError, match="--duration must be"):
        parse_duration(text)


def test_parse_timeouts():
    assert parse_timeouts(None) == Timeouts()
    assert parse_timeouts("5s/30s/2m") == Timeouts(5, 30, 120)
    assert parse_timeouts("20s") == Timeouts(10, 20, 20)
    with pytest.raises(ConfigError, match="CONNECT/FIRST_TOKEN/TOTAL"):
        parse_timeouts("1s/2s")
    with pytest.raises(ConfigError, match="must not exceed the total"):
        parse_timeouts("1s/60s/10s")


def test_check_url():
    assert check_url("http://localhost:8000/v1/") == "http://localhost:8000/v1"
    for bad in ("localhost:8000", "ftp://x/v1", "http://", "http://h:99999/v1",
                "http://h/v1?x=1"):
        with pytest.raises(ConfigError, match="--url"):
            check_url(bad)


def test_plan_paths_and_public_view_hide_the_key():
    plan = RunPlan(url="https://api.example.com:8443/v1", api_key="sk-secret-123")
    assert plan.path == "/v1/chat/completions"
    assert plan.request_url == "https://api.example.com:8443/v1/chat/completions"
    assert plan.port == 8443 and plan.host == "api.example.com" and plan.scheme == "https"
    assert plan.mode == "closed"
    pub = plan.public()
    assert "sk-secret-123" not in repr(pub) and "sk-secret-123" not in repr(plan)
    assert pub["api_key_set"] is True
    assert RunPlan(url="http://h/v1", endpoint="completions", rps=1).path == "/v1/completions"


def test_api_key_from_env(monkeypatch):
    monkeypatch.setenv("LENS_TEST_KEY", "k")
    monkeypatch.setenv("LENS_EMPTY_KEY", "")
    assert api_key_from_env("LENS_TEST_KEY") == "k"
    assert api_key_from_env("LENS_EMPTY_KEY") is None
    assert api_key_from_env(None) is None


class _Req:
    def __init__(self):
        self.headers, self.body, self.url = {}, b"", b""

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers[name.lower()] = value

    def on_body(self, body):
        self.body += body


def test_request_bytes_are_valid_http_with_the_id_spliced_in():
    plan = RunPlan(url="http://127.0.0.1:8000/v1", model="m", api_key="sk-x", max_tokens=7,
                   input_tokens=12, seed=1)
    f = RequestFactory(plan)
    assert f.n == 64
    data = f.build(123456, 5)
    req = _Req()
    httptools.HttpRequestParser(req).feed_data(data)
    assert req.url == b"/v1/chat/completions"
    assert req.headers[b"x-request-id"] == b"123456"
    assert req.headers[b"authorization"] == b"Bearer sk-x"
    assert req.headers[b"host"] == b"127.0.0.1:8000"
    body = orjson.loads(req.body)
    assert body["model"] == "m" and body["max_tokens"] == 7 and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert len(body["messages"][0]["content"].split()) == 12
    assert int(req.headers[b"content-length"]) == len(req.body)


def test_completions_body_and_fixed_prompt():
    plan = RunPlan(url="http://h/v1", endpoint="completions", prompt="Hello", rps=1,
                   include_usage=False)
    f = RequestFactory(plan)
    assert f.n == 1
    body = orjson.loads(f.build(1, 0).split(b"\r\n\r\n", 1)[1])
    assert body["prompt"] == "Hello" and "stream_options" not in body
    assert f.input_tokens == [estimate_tokens("Hello")] == [2]


def test_synthetic_prompts_are_seeded():
    assert synthetic_prompts(10, 1, 3) == synthetic_prompts(10, 1, 3)
    assert synthetic_prompts(10, 1, 3) != synthetic_prompts(10, 2, 3)


def test_connect_errors_are_classified():
    import socket
    import ssl

    from lens.engine import errors as E

    assert classify_connect_error(TimeoutError()) == E.TIMEOUT_CONNECT
    assert classify_connect_error(socket.gaierror()) == E.DNS
    assert classify_connect_error(ssl.SSLCertVerificationError()) == E.TLS
    assert classify_connect_error(ConnectionRefusedError()) == E.CONNECT


def test_progress_text_names_every_figure():
    from lens.engine.progress import progress_text
    from lens.output.results import Progress

    plan = RunPlan(url="http://h/v1", rps=10, duration_s=30)
    text = progress_text(plan, 12.34, 120, Progress(100, 3, 0, 17, 9.87, 21.5))
    for part in ("12.3s/30s", "sent 120", "completed 100", "failed 3", "in flight 17",
                 "achieved 9.7 req/s", "TTFT p50 21.5 ms"):
        assert part in text
    assert "TTFT p50 –" in progress_text(plan, 1, 0, Progress(0, 0, 0, 0, 0.0, None))


def test_peak_rss_is_this_process_own():
    import resource

    from lens.engine.worker import peak_rss_mb

    mb = peak_rss_mb()
    assert 5 < mb < 4096
    assert mb <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + 1
