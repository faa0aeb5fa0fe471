"""LiveMetrics: the Prometheus collector, Influx line protocol, failures that must not stop a run."""
import http.server
import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lens._core import FLAG_CANCELLED, FLAG_DROPPED, FLAG_WARMUP, TOKEN_DTYPE
from lens.errors import ConfigError, RunError
from lens.output import RunResults, empty_rows
from lens.output.live import (
    BUCKETS_S,
    HISTOGRAMS,
    InfluxTarget,
    LiveMetrics,
    escape_tag,
    line_protocol,
)

T0 = 7_000_000_000_000           # run epoch, CLOCK_MONOTONIC ns
T0_UNIX = 1_700_000_000_123_000_000
MS = 1_000_000
S = 1_000_000_000
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "contrib" / "grafana" / "lens-fast-dashboard.json"
LABELS = {"scenario": "chat a,b", "provider": "openai", "model": "m=1"}


def make_rows(n, *, rid0=0, start_ns=None, ttft_ns=100 * MS, decode_ns=80 * MS, tokens=5,
              lag_ns=1000):
    """n ok requests scheduled every 10 ms from T0 (or at ``start_ns``)."""
    r = empty_rows(n)
    r["request_id"] = rid0 + np.arange(n)
    r["status"] = 200
    r["t_sched_ns"] = T0 + np.arange(n, dtype=np.int64) * 10 * MS if start_ns is None else start_ns
    r["t_start_ns"] = r["t_sched_ns"] + lag_ns
    r["t_first_token_ns"] = r["t_start_ns"] + ttft_ns
    r["t_last_token_ns"] = r["t_first_token_ns"] + decode_ns
    r["t_end_ns"] = r["t_last_token_ns"] + MS
    r["output_tokens"] = tokens
    r["input_tokens"] = 7
    r["token_events"] = tokens
    return r


def new_results(scenario="chat a,b"):
    return RunResults(T0, t0_unix_ns=T0_UNIX, scenario=scenario,
                      targets=[{"provider": "openai", "model": "m=1"}])


def scrape(live):
    """The exposition text parsed back: {(sample name, sorted label items): value}."""
    text = generate_latest(live.registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def pick(samples, name, **labels):
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, lab), v in samples.items()
               if n == name and labels.items() <= dict(lab).items())


def mixed_rows():
    """20 rows: 12 ok, 2 HTTP 429, 1 timeout_first_token, 2 dropped, 2 cancelled, 1 warm-up."""
    r = make_rows(20)
    r["error"][0:2] = 7
    r["status"][0:2] = 429
    r["error"][2] = 5
    r["status"][2] = 0
    r["flags"][3:5] = FLAG_DROPPED
    r["status"][3:5] = 0
    r["flags"][5] = FLAG_CANCELLED
    r["error"][6] = 11
    r["flags"][7] = FLAG_WARMUP
    return r


# ------------------------------------------------------------------ the collector
def test_requests_by_outcome_error_and_code():
    res = new_results()
    res.add_rows(mixed_rows())
    live = LiveMetrics(run_id="r1", interval_s=0)
    live.begin(LABELS, T0_UNIX)
    res.in_flight = 4
    live.update(res)
    s = scrape(live)
    base = {"run_id": "r1", **LABELS}
    assert pick(s, "lens_requests_total", outcome="ok", error="ok", **base) == 12
    assert pick(s, "lens_requests_total", outcome="failed", error="http_status") == 2
    assert pick(s, "lens_requests_total", outcome="failed", error="timeout_first_token") == 1
    assert pick(s, "lens_requests_total", outcome="failed", error="reset") == 0  # there at 0
    assert pick(s, "lens_requests_total", outcome="dropped", error="dropped") == 2
    assert pick(s, "lens_requests_total", outcome="cancelled", error="cancelled") == 2
    assert pick(s, "lens_requests_total") == 19           # every measured row, warm-up not
    assert pick(s, "lens_responses_total", code="200") == 14   # 12 ok + 2 cancelled mid-stream
    assert pick(s, "lens_responses_total", code="429") == 2
    assert pick(s, "lens_output_tokens_total") == 12 * 5
    assert pick(s, "lens_input_tokens_total") == 12 * 7
    assert pick(s, "lens_requests_in_flight") == 4
    assert pick(s, "lens_plan_running") == 1
    assert pick(s, "lens_plan_start_time_seconds") == pytest.approx(T0_UNIX / 1e9)
    live.end(res)
    s = scrape(live)
    assert pick(s, "lens_requests_in_flight") == 0 and pick(s, "lens_plan_running") == 0
    assert pick(s, "lens_requests_total") == 19


def _token_stamps(r, rng):
    """Token stamps of each row: token_events of them from t_first_token, random gaps."""
    per_req = []
    for i in range(len(r)):
        k = int(r["token_events"][i])
        gaps = rng.lognormal(np.log(3 * MS), 1.0, k - 1).astype(np.int64)
        per_req.append(r["t_first_token_ns"][i] + np.r_[0, np.cumsum(gaps)])
        r["t_last_token_ns"][i] = per_req[-1][-1]
        r["t_end_ns"][i] = per_req[-1][-1] + MS
    tok = np.zeros(sum(map(len, per_req)), TOKEN_DTYPE)
    tok["request_id"] = np.repeat(r["request_id"], [len(t) for t in per_req])
    tok["index"] = np.concatenate([np.arange(len(t)) for t in per_req])
    tok["t_ns"] = np.concatenate(per_req)
    return tok, np.concatenate([np.diff(t) for t in per_req])


def test_histogram_buckets_are_cumulative_counts_of_values_up_to_le():
    rng = np.random.default_rng(6)
    n = 5000
    ttft = rng.lognormal(np.log(150 * MS), 1.2, n).astype(np.int64)
    lag = rng.lognormal(np.log(0.3 * MS), 1.5, n).astype(np.int64)
    r = make_rows(n, ttft_ns=ttft, lag_ns=lag, tokens=rng.integers(2, 30, n))
    tok, itl = _token_stamps(r, rng)
    res = new_results()
    for batch in np.array_split(r, 7):
        res.add_rows(batch)
    res.add_tokens(tok)
    res.flush(final=True)
    live = LiveMetrics(run_id="r1", interval_s=0)
    live.begin(LABELS, T0_UNIX)
    live.update(res)
    s = scrape(live)
    values = {"ttft": ttft, "itl": itl, "sched_lag": lag,
              "e2e": r["t_end_ns"] - r["t_start_ns"]}
    for name, v in values.items():
        prom = HISTOGRAMS[name][0]
        counts = [pick(s, prom + "_bucket", le=le) for le in
                  [str(float(b)) for b in BUCKETS_S] + ["+Inf"]]
        assert counts == sorted(counts), name                    # cumulative
        assert counts[-1] == len(v) == pick(s, prom + "_count")
        assert pick(s, prom + "_sum") == pytest.approx(v.sum() / 1e9, rel=1e-12)
        for b, c in zip(BUCKETS_S, counts, strict=False):
            le_ns = b * 1e9
            lo = np.count_nonzero(v <= le_ns * (1 - 1e-3))
            hi = np.count_nonzero(v <= le_ns * (1 + 1e-3))
            assert lo <= c <= hi, (name, b, lo, c, hi)


def test_counters_stay_monotonic_across_plans():
    live = LiveMetrics(run_id="r1", interval_s=0)
    seen = []

    def check():
        now = scrape(live)
        for before in seen:
            for key, v in before.items():
                if key[0].endswith(("_total", "_bucket", "_count", "_sum")):
                    assert key in now, f"{key} disappeared"
                    assert now[key] >= v - 1e-9, (key, v, now[key])
        seen.append(now)
        return now

    def plan(scenario, n, rid0):
        res = new_results(scenario)
        live.begin({**LABELS, "scenario": scenario}, T0_UNIX)
        check()
        r = make_rows(n, rid0=rid0)
        for batch in np.array_split(r, 3):
            res.add_rows(batch)
            live.update(res)
            check()
        live.end(res)
        return check()

    plan("a", 30, 0)
    plan("b", 10, 100)
    s = plan("a", 20, 200)                   # the same labels again: goes on from 30
    assert pick(s, "lens_requests_total", scenario="a", outcome="ok") == 50
    assert pick(s, "lens_requests_total", scenario="b", outcome="ok") == 10
    assert pick(s, "lens_ttft_seconds_count", scenario="a") == 50
    assert pick(s, "lens_output_tokens_total", scenario="a") == 250


def test_update_is_rate_limited_but_in_flight_is_live():
    res = new_results()
    live = LiveMetrics(run_id="r1", interval_s=60)
    live.begin(LABELS, T0_UNIX)
    res.add_rows(make_rows(5))
    live.update(res)
    res.add_rows(make_rows(5, rid0=5))
    res.in_flight = 9
    t = time.perf_counter()
    for _ in range(1000):
        live.update(res)
    per_call_s = (time.perf_counter() - t) / 1000
    s = scrape(live)
    assert pick(s, "lens_requests_total", outcome="ok") == 5     # the snapshot of 60 s ago
    assert pick(s, "lens_requests_in_flight") == 9
    assert per_call_s < 50e-6
    live.end(res)
    assert pick(scrape(live), "lens_requests_total", outcome="ok") == 10


def test_metrics_are_served_over_http_and_close_stops_the_server():
    live = LiveMetrics(prometheus_port=0, prometheus_addr="127.0.0.1", run_id="r1",
                       interval_s=0, prometheus_linger_s=0)
    live.start()
    try:
        assert live.prometheus_port > 0
        res = new_results()
        live.begin(LABELS, T0_UNIX)
        res.add_rows(make_rows(3))
        live.update(res)
        r = httpx.get(live.url, timeout=5)
        assert r.status_code == 200
        fams = {f.name: f for f in text_string_to_metric_families(r.text)}
        assert sum(s.value for s in fams["lens_requests"].samples) == 3
        live.end(res)
    finally:
        t = time.monotonic()
        live.close()
    assert time.monotonic() - t < 1            # linger 0: no wait for a last scrape
    with pytest.raises(httpx.ConnectError):
        httpx.get(live.url, timeout=2)


def test_close_waits_for_the_scrape_of_the_final_values():
    live = LiveMetrics(prometheus_port=0, prometheus_addr="127.0.0.1", run_id="r1",
                       interval_s=0, prometheus_linger_s=10)
    live.start()
    res = new_results()
    live.begin(LABELS, T0_UNIX)
    res.add_rows(make_rows(3))
    live.update(res)
    res.add_rows(make_rows(4, rid0=3))
    live.end(res)
    got = []

    def scraper():
        time.sleep(0.5)
        got.append(httpx.get(live.url, timeout=5).text)

    th = threading.Thread(target=scraper)
    th.start()
    t = time.monotonic()
    live.close()
    waited = time.monotonic() - t
    th.join()
    assert 0.3 < waited < 5
    fams = {f.name: f for f in text_string_to_metric_families(got[0])}
    assert sum(s.value for s in fams["lens_requests"].samples) == 7


def test_close_waits_by_itself_when_a_scraper_is_at_work():
    live = LiveMetrics(prometheus_port=0, prometheus_addr="127.0.0.1", run_id="r1",
                       interval_s=0)
    live.start()
    res = new_results()
    live.begin(LABELS, T0_UNIX)
    res.add_rows(make_rows(3))
    live.update(res)
    for _ in range(3):                        # a scraper every 0.1 s: waits at most 1.2 s
        httpx.get(live.url, timeout=5)
        time.sleep(0.1)
    live.end(res)
    t = time.monotonic()
    live.close()                              # nobody scrapes any more: gives up after 1.2 s
    assert 1.0 < time.monotonic() - t < 2.5


def test_close_does_not_wait_when_nothing_scrapes():
    live = LiveMetrics(prometheus_port=0, prometheus_addr="127.0.0.1", run_id="r1")
    live.start()
    live.begin(LABELS, T0_UNIX)
    httpx.get(live.url, timeout=5)            # one look by hand is no scraper at work
    live.end(new_results())
    t = time.monotonic()
    live.close()
    assert time.monotonic() - t < 1


def test_port_in_use_is_a_clear_run_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        live = LiveMetrics(prometheus_port=port, prometheus_addr="127.0.0.1")
        with pytest.raises(RunError) as e:
            live.start()
    msg = str(e.value)
    assert f"--prometheus-port {port}" in msg and "already in use" in msg
    assert re.search(r"e\.g\. --prometheus-port \d+", msg)
    assert "\n" not in msg


@pytest.mark.parametrize("kwargs, flag", [
    ({"pushgateway": "ftp://host:9091"}, "--pushgateway"),
    ({"pushgateway": "http://"}, "--pushgateway"),
    ({"influx": InfluxTarget("localhost:8086", db="x")}, "--influx"),
    ({"influx": InfluxTarget("http://h:8086")}, "--influx-db"),
    ({"influx": InfluxTarget("http://h:8086", db="a", bucket="b")}, "not both"),
    ({"influx": InfluxTarget("http://h:8086", bucket="b")}, "--influx-org"),
])
def test_malformed_urls_and_targets_are_config_errors(kwargs, flag):
    with pytest.raises(ConfigError, match=re.escape(flag)):
        LiveMetrics(**kwargs).start()


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_pushgateway_is_a_warning_not_an_error(capsys):
    live = LiveMetrics(pushgateway=f"http://user:pw@127.0.0.1:{_closed_port()}", run_id="r1")
    live.start()
    res = new_results()
    live.begin(LABELS, T0_UNIX)
    res.add_rows(make_rows(2))
    live.end(res)
    live.close()
    err = capsys.readouterr().err
    assert len(live.warnings) == 1
    assert err.count("\n") == 1 and "warning" in err and "Pushgateway" in err
    assert "connection refused" in err and "pw" not in err


# ------------------------------------------------------------------ Influx
def test_line_protocol_escapes_tags_and_types_fields():
    line = line_protocol("lens", {"scenario": "chat a,b", "model": "m=1", "provider": "",
                                  "run_id": "r 1"},
                         {"started": 3, "requests_ok": np.int64(2), "ttft_p50_ms": 21.5,
                          "skip": float("nan")}, 1_700_000_000_000_000_000)
    assert line == (r"lens,model=m\=1,run_id=r\ 1,scenario=chat\ a\,b "
                    "started=3i,requests_ok=2i,ttft_p50_ms=21.5 1700000000000000000")
    assert escape_tag("a b,c=d\ne") == r"a\ b\,c\=d\ e"
    with pytest.raises(ValueError):
        line_protocol("lens", {}, {"x": float("nan")}, 0)


class _Capture(http.server.BaseHTTPRequestHandler):
    """Record each POST; answer with the server's ``status``."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append((self.path, dict(self.headers), body.decode()))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def capture():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    srv.got, srv.status = [], 204
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    th.join()


def _influx_plan(live, scenario="chat a,b"):
    """Rows ending in seconds 0, 0, 2 (of t0): three points, second 1 at zero."""
    res = new_results(scenario)
    live.begin({**LABELS, "scenario": scenario}, T0_UNIX)
    r = make_rows(3, start_ns=T0 + np.array([100, 500, 2100]) * MS, ttft_ns=np.array(
        [100, 300, 200]) * MS, lag_ns=0, tokens=np.array([4, 6, 8]))
    r["error"][1] = 7
    res.add_rows(r)
    res.flush(final=True)
    live.update(res)
    live.end(res)
    return res


def test_influx_v1_points_are_exact(capture):
    port = capture.server_address[1]
    live = LiveMetrics(influx=InfluxTarget(f"http://127.0.0.1:{port}", db="lens db"),
                       run_id="r1", interval_s=0, influx_interval_s=0)
    live.start()
    _influx_plan(live)
    live.close()
    assert live.warnings == []
    assert len(capture.got) >= 1
    path, headers, _ = capture.got[0]
    assert path == "/write?db=lens+db&precision=ns"
    assert "authorization" not in {k.lower() for k in headers}
    lines = "".join(b for _, _, b in capture.got).splitlines()
    tags = r"lens,model=m\=1,provider=openai,run_id=r1,scenario=chat\ a\,b"
    t = [T0_UNIX + k * S for k in range(3)]
    # second 0: requests 0 (ok, ends 0.181 s) and 1 (http_status); second 2: request 2
    assert lines == [
        f"{tags} started=2i,requests_ok=1i,errors=1i,output_tokens=4i,token_events=0i,"
        f"ttft_p50_ms=100.0 {t[0]}",
        f"{tags} started=0i,requests_ok=0i,errors=0i,output_tokens=0i,token_events=0i {t[1]}",
        f"{tags} started=1i,requests_ok=1i,errors=0i,output_tokens=8i,token_events=0i,"
        f"ttft_p50_ms=200.0 {t[2]}",
    ]


def test_influx_second_is_rewritten_when_late_rows_change_it(capture):
    port = capture.server_address[1]
    live = LiveMetrics(influx=InfluxTarget(f"http://127.0.0.1:{port}", db="d"), run_id="r1",
                       interval_s=0, influx_interval_s=0)
    live.start()
    res = RunResults(T0, t0_unix_ns=T0_UNIX, targets=[{"provider": "p", "model": "m"}])
    live.begin({"scenario": "s", "provider": "p", "model": "m"}, T0_UNIX)
    series = live._influx_series
    res.add_rows(make_rows(2, start_ns=T0 + np.array([100, 200]) * MS))
    lines, done = series.lines(res, upto_s=1)
    assert len(lines) == 1 and "started=2i" in lines[0]
    series.commit(done)
    assert series.lines(res, upto_s=1)[0] == []                  # nothing changed
    res.add_rows(make_rows(1, rid0=2, start_ns=np.array([T0 + 300 * MS]), ttft_ns=3 * S))
    lines, _ = series.lines(res, upto_s=1)                        # started in 0, ended in 3
    assert len(lines) == 1 and "started=3i" in lines[0] and lines[0].endswith(f" {T0_UNIX}")
    live.close()


def test_influx_v2_sends_the_token_in_the_header_only(capture, capsys):
    port = capture.server_address[1]
    capture.status = 401
    secret = "s3cr3t-t0ken"
    target = InfluxTarget(f"http://127.0.0.1:{port}/", bucket="b", org="my org", token=secret)
    assert secret not in repr(target)
    live = LiveMetrics(influx=target, run_id="r1", interval_s=0, influx_interval_s=0)
    live.start()
    _influx_plan(live)
    live.close()
    path, headers, _ = capture.got[0]
    assert path == "/api/v2/write?org=my+org&bucket=b&precision=ns"
    assert headers["Authorization"] == f"Token {secret}"
    assert sum(len(b.splitlines()) for _, _, b in capture.got) == 3
    err = capsys.readouterr().err
    assert "HTTP 401" in err and secret not in err
    assert live.warnings and not any(secret in w for w in live.warnings)
    assert live._writer.lost == 3


def test_unreachable_influx_never_blocks_and_warns(capsys):
    secret = "tok-123"
    live = LiveMetrics(influx=InfluxTarget(f"http://127.0.0.1:{_closed_port()}", db="d",
                                           token=secret),
                       run_id="r1", interval_s=0, influx_interval_s=0)
    live.start()
    res = new_results()
    live.begin(LABELS, T0_UNIX)
    r = make_rows(300, start_ns=T0 + np.arange(300) * 20 * MS)
    t = time.perf_counter()
    for batch in np.array_split(r, 30):
        res.add_rows(batch)
        live.update(res)
    assert (time.perf_counter() - t) < 1.0
    live.end(res)
    t = time.monotonic()
    live.close()
    assert time.monotonic() - t < 5
    err = capsys.readouterr().err
    assert "connection refused" in err and secret not in err
    assert live.warnings and all("InfluxDB" in w for w in live.warnings)
    assert live._writer.lost > 0


# ------------------------------------------------------------------ Grafana
def _exported_names():
    live = LiveMetrics(run_id="r1", interval_s=0)
    res = new_results()
    res.add_rows(mixed_rows())
    live.begin(LABELS, T0_UNIX)
    live.update(res)
    return {name for name, _ in scrape(live)}


def _panels(panels):
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def test_grafana_dashboard_queries_only_exported_metrics():
    board = json.loads(DASHBOARD.read_text())
    exported = _exported_names()
    assert {"lens_requests_total", "lens_ttft_seconds_bucket", "lens_itl_seconds_bucket",
            "lens_e2e_seconds_bucket", "lens_sched_lag_seconds_bucket",
            "lens_output_tokens_total", "lens_requests_in_flight"} <= exported
    assert board["title"] and board["uid"] and board["schemaVersion"] >= 30
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    exprs = [v["query"] if isinstance(v["query"], str) else v["query"]["query"]
             for v in variables.values() if v["type"] == "query"]
    panels = [p for p in _panels(board["panels"]) if p["type"] != "row"]
    assert len(panels) >= 6
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        assert {"h", "w", "x", "y"} <= p["gridPos"].keys()
        exprs += [t["expr"] for t in p["targets"]]
    quantiles = set()
    for e in exprs:
        names = set(re.findall(r"\blens_[a-zA-Z0-9_]+", e))
        assert names, e
        assert names <= exported, (e, names - exported)
        assert set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", e)) <= exported, e
        m = re.match(r"histogram_quantile\((0\.\d+),.*?(lens_\w+)_bucket", e)
        if m:
            quantiles.add((m[2], m[1]))
    for prom in ("lens_ttft_seconds", "lens_itl_seconds", "lens_e2e_seconds"):
        assert {(prom, "0.5"), (prom, "0.99")} <= quantiles, prom
