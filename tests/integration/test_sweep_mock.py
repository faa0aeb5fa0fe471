"""``lens-fast sweep`` against the mock's capacity model, whose limits are known in advance.

The mock (lens/mock/capacity.py) holds C = 32 slots and slows each token by 1 + S·(active − 1)
with S = 0.05; a request of T = 64 tokens holds its slot for D(N) = ttft + (T−1)·itl·(1 +
S·(N − 1)) ms with N requests active. Two limits follow:

- saturation: all C slots busy, C / D(C) = 93.8 req/s (``saturation_rps``); above it the queue,
  and TTFT, grow without bound, so a loose TTFT SLO is met up to there;
- an e2e SLO L: by Little's law N = rate·D, so D(N) = L at N = 1 + ((L − ttft)/((T−1)·itl)
  − 1)/S and rate = N / L: 70.0 req/s for L = 250 ms (N = 17.5 < C).

Steps are short here (2 s) to keep the file quick; the defaults are 10 s.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from lens.cli import _register, cli
from lens.mock import MockProcess, saturation_rps

TTFT_MS, ITL_MS, TOKENS, SLOTS, SLOWDOWN = 20.0, 2.0, 64, 32, 0.05
#: Short steps, a quick drain, and a client check that tolerates the stalls of a busy 2-core
#: machine (other processes there can hold a worker off its CPU for tens of ms).
FAST = ["--step-duration", "2s", "--max-step-duration", "3s", "--probe-duration", "1s",
        "--confirm-duration", "2.5s", "--drain", "2s", "--max-sched-lag", "100ms",
        "--max-tokens", str(TOKENS), "--no-progress"]


def e2e_limited_rps(limit_ms: float) -> float:
    """The rate at which the mock's mean e2e reaches ``limit_ms`` (module docstring)."""
    n = 1 + ((limit_ms - TTFT_MS) / ((TOKENS - 1) * ITL_MS) - 1) / SLOWDOWN
    assert n < SLOTS
    return 1000.0 * n / limit_ms


@pytest.fixture(scope="module")
def capacity_mock():
    with MockProcess(ttft_ms=TTFT_MS, itl_ms=ITL_MS, output_tokens=TOKENS,
                     max_concurrency=SLOTS, batch_slowdown=SLOWDOWN, capture=0) as mock:
        yield mock


def sweep(*args: str):
    _register()
    return CliRunner().invoke(cli, ["sweep", *args], catch_exceptions=False)


def load(out) -> dict:
    return json.loads((out / "sweep.json").read_text())


def test_auto_sweep_finds_the_computed_limits(capacity_mock, tmp_path):
    sat = saturation_rps(TTFT_MS, ITL_MS, TOKENS, SLOTS, SLOWDOWN)
    assert sat == pytest.approx(93.76, abs=0.01)
    t = time.monotonic()
    out = tmp_path / "loose"
    r = sweep("--url", capacity_mock.url, "--rates", "auto", "--slo", "ttft.p99=150ms",
              "--output", str(out), "--max-steps", "12", *FAST)
    loose_s = time.monotonic() - t
    doc = load(out)
    assert r.exit_code == 0, r.output
    res = doc["result"]
    assert res["status"] == "found" and res["confirmed"] and res["exit_status"] == 0
    assert abs(res["max_rate"] - sat) / sat <= 0.10, (res["max_rate"], sat, r.output)
    assert len(doc["steps"]) <= 12 and loose_s < 60
    probe = doc["steps"][0]
    assert probe["kind"] == "probe" and probe["concurrency"] == 64
    assert abs(res["capacity_estimate_rps"] - sat) / sat < 0.15
    assert doc["steps"][-1]["kind"] == "confirm"
    assert doc["steps"][-1]["offered_rps"] == res["max_rate"]
    # steps judged above the limit failed, for the endpoint (not the client)
    above = [s for s in doc["steps"] if s["offered_rps"] and s["offered_rps"] > 1.02 * sat
             and s["verdict"] in ("pass", "fail")]
    assert above and all(s["verdict"] == "fail" for s in above)
    assert res["bracket_rps"]["failed"] > res["max_rate"] == res["bracket_rps"]["passed"]
    assert "highest rate meeting every SLO" in r.output

    # a tighter SLO: the e2e limit binds well before saturation
    want = e2e_limited_rps(250.0)
    assert want == pytest.approx(70.03, abs=0.01)
    tight = tmp_path / "tight"
    r = sweep("--url", capacity_mock.url, "--slo", "ttft.p99=150ms,e2e.p95=250ms",
              "--output", str(tight), "--max-steps", "12", *FAST)
    doc2 = load(tight)
    assert r.exit_code == 0, r.output
    found = doc2["result"]["max_rate"]
    assert found < res["max_rate"]
    assert abs(found - want) / want <= 0.10, (found, want, r.output)
    assert len(doc2["steps"]) <= 12
    confirm = doc2["steps"][-1]
    e2e = next(s for s in confirm["slo"] if s["metric"] == "e2e")
    assert e2e["ok"] and 200 < e2e["value_ms"] <= 250


def test_rate_list_gives_one_step_per_rate(capacity_mock, tmp_path):
    out = tmp_path / "list"
    r = sweep("--url", capacity_mock.url, "--rates", "60,30,130", "--slo", "ttft.p99=150ms",
              "--cores", "1", "--output", str(out), *FAST, "--step-duration", "1.5s")
    assert r.exit_code == 0, r.output
    doc = load(out)
    assert doc["schema"] == "lens-fast/sweep/1" and doc["metadata"]["mode"] == "list"
    steps = doc["steps"]
    assert [s["offered_rps"] for s in steps] == [30.0, 60.0, 130.0]
    assert [s["verdict"] for s in steps] == ["pass", "pass", "fail"]
    for s in steps:
        rows = pq.read_table(tmp_path / "list" / s["dir"] / "requests.parquet").to_pandas()
        measured = rows[~rows["warmup"]]
        assert len(measured) == s["counts"]["sent"] + s["counts"]["dropped"]
        assert (tmp_path / "list" / s["dir"] / "summary.json").exists()
        assert s["achieved_rps"] == pytest.approx(s["offered_rps"], rel=0.02)
    # all ok requests of the passing steps met the SLO: goodput is the offered rate
    assert steps[0]["goodput_rps"] == pytest.approx(30.0, rel=0.02)
    assert steps[2]["goodput_rps"] < 100 and steps[2]["slo"][0]["value_ms"] > 150
    assert doc["result"]["max_rate"] == 60.0 and doc["result"]["status"] == "found"
    assert [p["offered_rps"] for p in doc["curve"]] == [30.0, 60.0, 130.0]
    assert set(doc["curve"][0]["latency_ms"]["ttft"]) == {"p50", "p90", "p95", "p99"}


def test_no_rate_meeting_the_slo_exits_4(capacity_mock, tmp_path):
    out = tmp_path / "none"
    r = sweep("--url", capacity_mock.url, "--rates", "40", "--slo", "ttft.p50=5ms",
              "--output", str(out), *FAST, "--step-duration", "1s")
    assert r.exit_code == 4, r.output
    doc = load(out)
    assert doc["result"]["status"] == "none" and doc["result"]["max_rate"] is None
    assert doc["steps"][0]["reasons"][0].startswith("ttft.p50 2")
    assert "no rate met every SLO" in r.output


def test_starved_client_is_reported_not_blamed_on_the_endpoint(tmp_path):
    """One worker of the httpx client (some 3 ms of CPU per streamed request here, so about
    300 req/s a core; the fast client sends 1,400/s, benchmarks/RESULTS.md) offered 800 req/s
    of 16-token streams, which the mock, with no capacity limit, serves with ease."""
    out = tmp_path / "starved"
    with MockProcess(ttft_ms=1, itl_ms=1, output_tokens=16, capture=0) as mock:
        r = sweep("--url", mock.url, "--rates", "800", "--cores", "1", "--client", "httpx",
                  "--output", str(out), "--slo", "ttft.p99=1s", "--step-duration", "1s",
                  "--drain", "1s", "--max-tokens", "16", "--max-sched-lag", "100ms",
                  "--no-progress")
    assert r.exit_code == 3, r.output
    doc = load(out)
    step = doc["steps"][0]
    assert step["verdict"] == "client" and step["client"]["limited"]
    lag = step["client"]["sched_lag_p99_ms"]
    assert lag > 100 and f"scheduling lag p99 {lag:.1f} ms > 100 ms" in step["client"]["reasons"]
    assert step["achieved_rps"] < 600
    assert doc["result"]["status"] == "client" and doc["result"]["limit"] == "client"
    assert doc["result"]["message"].startswith("the client, not the endpoint, limited the "
                                               "step at 800 req/s: scheduling lag p99")
    assert doc["curve"] == []            # nothing said about the endpoint at that rate


def test_auto_adds_workers_then_stops_when_the_client_is_the_limit(capacity_mock, tmp_path):
    """A lag limit no client can meet (1 µs) makes every step client-limited: the probe runs
    with 1 worker, again with 2 (the --cores maximum), once more, then the sweep stops."""
    out = tmp_path / "client"
    r = sweep("--url", capacity_mock.url, "--slo", "ttft.p99=150ms", "--cores", "2",
              "--output", str(out), *FAST, "--max-sched-lag", "0.001ms", "--probe-duration",
              "0.5s")
    assert r.exit_code == 3, r.output
    doc = load(out)
    steps = doc["steps"]
    assert [(s["kind"], s["workers"], s["verdict"]) for s in steps] == [
        ("probe", 1, "client"), ("probe", 2, "client"), ("probe", 2, "client")]
    assert steps[0]["client"]["reasons"][0].startswith("event-loop lag p99 ")
    assert steps[0]["action"] == "client-limited with 1 worker(s): running the step again with 2"
    assert steps[1]["action"].startswith("client-limited with 2 worker(s), the --cores maximum")
    res = doc["result"]
    assert res["status"] == "client" and res["exit_status"] == 3 and res["max_rate"] is None
    assert res["message"].startswith("the client, not the endpoint, was the limit: "
                                     "2 worker(s) (the --cores maximum)")
    assert "the client, not the endpoint, was the limit" in r.output


def test_bad_slo_is_refused_before_any_load(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lens", "sweep", "--slo", "ttft.p99=500",
                        "--output", str(tmp_path / "x")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("ConfigError: --slo 'ttft.p99=500': limit '500' has no unit "
                               "(write 500ms or 500s); expected METRIC.STAT=LIMIT")
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_ctrl_c_keeps_the_finished_steps(capacity_mock, tmp_path):
    out = tmp_path / "int"
    p = subprocess.Popen([sys.executable, "-m", "lens", "sweep", "--url", capacity_mock.url,
                          "--rates", "20,30,40", "--slo", "ttft.p99=150ms", "--output",
                          str(out), *FAST, "--step-duration", "3s", "--cores", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "sweep.json").exists() and load(out)["steps"]:
            break
        time.sleep(0.1)
    time.sleep(1.5)                        # into the second step
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    doc = load(out)
    assert doc["metadata"]["interrupted"] is True
    assert doc["result"]["status"] == "interrupted" and doc["result"]["exit_status"] == 130
    first = doc["steps"][0]
    assert first["offered_rps"] == 20.0 and first["verdict"] == "pass"
    assert len(doc["steps"]) <= 2
    assert (out / first["dir"] / "requests.parquet").exists()
    assert "interrupted by SIGINT" in stdout
