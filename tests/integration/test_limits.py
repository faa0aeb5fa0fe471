"""Resource limits: token stamps per request are capped, oversized events are refused, and
both are set from the command line."""
from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq

from lens.mock.process import MockProcess


def lens_run(url: str, out, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lens", "run", "--url", url, "--output",
                           str(out), "--no-progress", "--cores", "1", *args],
                          capture_output=True, text=True, timeout=120)


def test_token_stamps_are_capped_per_request(tmp_path):
    with MockProcess(ttft_ms=2, itl_ms=0, output_tokens=400) as m:
        p = lens_run(m.url, tmp_path / "r", "--requests", "6", "--concurrency", "2",
                     "--max-tokens", "400", "--max-token-stamps", "50")
    assert p.returncode == 0, p.stderr
    rows = pq.read_table(tmp_path / "r" / "requests.parquet").to_pandas()
    rows = rows[~rows["warmup"]]
    assert len(rows) == 6 and rows["ok"].all()
    assert rows["truncated"].all()                      # flagged: stamps were cut
    assert (rows["output_tokens"] == 400).all()         # the count is still the stream's
    tok = pq.read_table(tmp_path / "r" / "tokens.parquet").to_pandas()
    per = tok[tok["request_id"].isin(rows["request_id"])].groupby("request_id").size()
    assert (per == 50).all(), per
    res = json.loads((tmp_path / "r" / "summary.json").read_text())["scenarios"][0]["results"][0]
    assert res["counts"]["truncated"] == 6


def test_event_size_limit_is_a_protocol_error(tmp_path):
    with MockProcess(ttft_ms=2, itl_ms=0, output_tokens=8,
                     faults={"oversized_event": 0.5}) as m:
        p = lens_run(m.url, tmp_path / "r", "--requests", "20", "--concurrency", "2",
                     "--max-tokens", "8", "--max-event-bytes", "65536")
    injected = sum(1 for f in m.faults() if f["kind"] == "oversized_event")
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "r" / "summary.json").read_text())["scenarios"][0]["results"][0]
    assert 0 < injected < 20
    assert res["errors"] == {"protocol": injected}
    assert res["counts"]["ok"] == 20 - injected


def test_limits_must_be_positive(tmp_path):
    for flag in ("--max-token-stamps", "--max-event-bytes"):
        p = subprocess.run([sys.executable, "-m", "lens", "run", flag, "0"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and f"{flag} must be >= 1 (got 0)" in p.stderr
