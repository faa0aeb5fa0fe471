"""The lens-fast command as a user runs it (a subprocess, like the quickstart)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

import lens


def lens_fast(*args, env=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "lens", *args], capture_output=True,
                          text=True, timeout=timeout, env=e)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_version_and_help():
    r = lens_fast("--version")
    assert r.returncode == 0 and lens.__version__ in r.stdout
    r = lens_fast("--help")
    assert r.returncode == 0 and "run" in r.stdout and "mock" in r.stdout
    r = lens_fast("run", "--help")
    assert r.returncode == 0
    for flag in ("--url", "--rps", "--concurrency", "--arrival", "--duration", "--requests",
                 "--max-inflight", "--timeout", "--warmup", "--client", "--no-progress"):
        assert flag in r.stdout


def test_run_without_url_profiles_the_embedded_mock(tmp_path):
    out = tmp_path / "run"
    r = lens_fast("run", "--requests", "40", "--concurrency", "4", "--max-tokens", "8",
                  "--output", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "embedded mock" in r.stderr
    assert "TTFT" in r.stdout and "ITL" in r.stdout
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    assert len(rows[~rows["warmup"]]) == 40
    assert len(pq.read_table(out / "tokens.parquet")) >= 40 * 8
    summary = json.loads((out / "summary.json").read_text())
    res = summary["scenarios"][0]["results"][0]
    assert res["counts"]["ok"] == 40
    assert summary["metadata"]["command"].endswith("--no-progress")
    assert summary["metadata"]["versions"]["lens-fast"] == lens.__version__
    assert 15 < res["metrics"]["ttft"]["p50"] < 30


@pytest.mark.parametrize("args,message", [
    (["--rps", "-5"], "--rps must be > 0 (got -5.0); use --concurrency"),
    (["--rps", "5", "--concurrency", "2"], "not both"),
    (["--url", "localhost:8000"], "--url must be an http:// or https:// base URL"),
    (["--duration", "soon"], "--duration must be a duration like 30s"),
    (["--timeout", "1s/2s"], "--timeout must be TOTAL or CONNECT/FIRST_TOKEN/TOTAL"),
    (["--burstiness", "0.5"], "--burstiness applies to --arrival gamma only"),
    (["--requests", "0"], "--requests must be >= 1 (got 0)"),
    (["--http2"], "--http2 needs --client httpx"),
])
def test_bad_input_gets_one_clear_line(args, message):
    r = lens_fast("run", "--url", "http://127.0.0.1:9/v1", *args) if "--url" not in args \
        else lens_fast("run", *args)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ConfigError: ") and message in lines[0]


def test_unreachable_endpoint_fails_before_any_load():
    port = free_port()
    r = lens_fast("run", "--url", f"http://127.0.0.1:{port}/v1", "--no-progress")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("EndpointError: cannot connect to")


def test_wrong_path_is_reported_by_the_probe(mock_endpoint):
    r = lens_fast("run", "--url", mock_endpoint.base_url + "/nope", "--no-progress")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "EndpointError: the probe request POST" in last and "404" in last


def test_api_key_is_sent_but_never_written(mock_endpoint, tmp_path):
    key = "sk-lens-test-0123456789abcdef"
    out = tmp_path / "k"
    r = lens_fast("run", "--url", mock_endpoint.url, "--requests", "5", "--output", str(out),
                  "--no-progress", "--api-key-env", "LENS_TEST_KEY",
                  env={"LENS_TEST_KEY": key})
    assert r.returncode == 0, r.stderr
    assert key not in r.stdout + r.stderr
    for f in out.iterdir():
        assert key.encode() not in f.read_bytes(), f.name
