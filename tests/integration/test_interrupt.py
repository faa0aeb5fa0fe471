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
