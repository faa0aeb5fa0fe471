"""Ctrl-C and SIGTERM stop the load and still leave complete outputs."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_writes_complete_outputs(mock_endpoint, tmp_path, sig, code):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "lens", "run", "--url", mock_endpoint.url,
                          "--rps", "50", "--duration", "30s", "--output", str(out),
                          "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    # wait until the run has measured something: requests.parquet exists once t0 passed
    deadline = time.monotonic() + 30
    while not (out / "requests.parquet").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == code, stderr
    assert "Interrupted" in stdout
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    measured = rows[~rows["warmup"]]
    assert 20 <= len(measured) < 1500
    assert measured["request_id"].is_unique
    # every row is complete: finished ok, or cancelled at the stop
    assert set(measured["error"]) <= {"ok", "cancelled"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metadata"]["interrupted"] is True
    assert summary["metadata"]["interrupted_by"] == sig.name
    res = summary["scenarios"][0]["results"][0]
    assert res["counts"]["ok"] + res["counts"]["cancelled"] == len(measured)
    assert len(pq.read_table(out / "tokens.parquet")) > 0


def test_killed_worker_is_reported_with_the_load_it_missed(mock_endpoint, tmp_path):
    """SIGKILL of one of two workers: detected within a second, its rows kept, the run ends
    cleanly and says which worker died and how many of its scheduled requests it missed."""
    import psutil

    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "lens", "run", "--url", mock_endpoint.url,
                          "--rps", "40", "--duration", "5s", "--cores", "2", "--max-tokens", "8",
                          "--output", str(out), "--no-progress"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (out / "requests.parquet").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    # the workers are multiprocessing "spawn" children (the resource tracker is not one)
    workers = [c for c in psutil.Process(p.pid).children()
               if "spawn_main" in " ".join(c.cmdline())]
    assert len(workers) == 2, [c.cmdline() for c in psutil.Process(p.pid).children()]
    victim = workers[-1]
    killed_unix = time.time_ns()
    victim.kill()
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    res = summary["scenarios"][0]["results"][0]
    died = res["client"]["workers_died"]
    assert len(died) == 1 and died[0]["pid"] == victim.pid
    m = died[0]["missed"]
    t0_unix = summary["metadata"]["t0_unix_ns"]
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    measured = rows[~rows["warmup"]]
    k = died[0]["index"]
    assert m["scheduled"] == 100            # 40 req/s × 5 s, every other arrival
    from_victim = measured[measured["worker"] == k]
    # its rows sent before the kill are kept (those in flight at the kill are lost with it)
    assert len(from_victim) >= m["sent"] - 5 and m["sent"] >= 20
    assert m["missed_requests"] == m["scheduled"] - m["sent"]
    assert res["client"]["saturated"] and any("died" in r for r in res["client"]["reasons"])
    assert f"worker {k}" in stdout and "missed" in stdout
    # the other worker ran its whole schedule
    assert (measured["worker"] != k).sum() == 100
    assert 0 <= m["died_at_s"] - (killed_unix - t0_unix) / 1e9 < 1.0


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_at_random_points_always_leaves_valid_outputs(mock_endpoint, tmp_path, sig, code):
    """10 signals at seeded random moments from process start to the end of the load (while
    the command starts, spawns, probes, runs): always exit 130/143, Parquet files that open
    and a summary marked interrupted."""
    import random

    rng = random.Random(sig.value)
    delays = [rng.uniform(0.15, 2.4) for _ in range(10)]
    seen = []
    for i, delay in enumerate(delays):
        out = tmp_path / f"run{i}"
        p = subprocess.Popen([sys.executable, "-m", "lens", "run", "--url", mock_endpoint.url,
                              "--rps", "30", "--duration", "3s", "--cores", "1",
                              "--max-tokens", "8", "--output", str(out), "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=60)
        what = f"signal after {delay:.2f} s (run {i})"
        assert p.returncode == code, (what, stderr)
        rows = pq.read_table(out / "requests.parquet")
        pq.read_table(out / "tokens.parquet")
        summary = json.loads((out / "summary.json").read_text())
        assert summary["metadata"]["interrupted"] is True, what
        assert summary["metadata"]["interrupted_by"] == sig.name, what
        m = rows.to_pandas()
        m = m[~m["warmup"]]
        assert m["request_id"].is_unique, what
        assert set(m["error"]) <= {"ok", "cancelled"}, (what, set(m["error"]))
        res = summary["scenarios"][0]["results"][0]
        assert res["counts"]["ok"] + res["counts"]["cancelled"] == len(m), what
        seen.append(len(m))
    # the moments covered the start (nothing measured yet) and the load (rows measured)
    assert min(seen) == 0 and max(seen) >= 10, seen


def test_second_interrupt_exits_at_once_with_readable_outputs(tmp_path):
    """Slow streams in flight: the first Ctrl-C starts the grace period (2 s), the second
    ends the run at once; the Parquet files still open and the summary says interrupted."""
    from lens.mock.process import MockProcess

    out = tmp_path / "run"
    with MockProcess(ttft_ms=5, itl_ms=60, output_tokens=60) as slow:     # 3.6 s streams
        p = subprocess.Popen([sys.executable, "-m", "lens", "run", "--url", slow.url,
                              "--concurrency", "4", "--duration", "60s", "--cores", "1",
                              "--max-tokens", "60", "--output", str(out), "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not (out / "requests.parquet").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        time.sleep(0.3)
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=30)
        took = time.monotonic() - t
    assert p.returncode == 130, stderr
    assert took < 1.5, took            # not the 2-s grace, nor the 3.6-s streams
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    pq.read_table(out / "tokens.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metadata"]["interrupted"] is True
    assert summary["metadata"]["interrupted_by"] == "SIGINT"
    assert rows["request_id"].is_unique
