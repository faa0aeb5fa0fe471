"""API keys never appear in console output, logs, Parquet, CSV, summaries, reports or errors.

Each test runs lens-fast with a distinctive fake key against the mock, then scans every file
under the output folder (bytes, so Parquet metadata and compressed pages are covered by also
decompressing the Parquet columns) and the captured stdout/stderr for the key and for its
distinctive middle part.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lens.mock.process import MockProcess

KEY = "sk-lens-T0PS3CRET-5f1c9e2a7b4d8c30-QZ"
MIDDLE = "T0PS3CRET-5f1c9e2a7b4d8c30"


def lens(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lens", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def assert_no_key(out: Path, *texts: str) -> int:
    """Scan texts and every file under ``out`` (Parquet decoded too); return files scanned."""
    for t in texts:
        assert KEY not in t and MIDDLE not in t
    files = [p for p in out.rglob("*") if p.is_file()]
    for p in files:
        data = p.read_bytes()
        assert MIDDLE.encode() not in data, p
        if p.suffix == ".parquet":
            f = pq.ParquetFile(p)
            assert MIDDLE not in str(f.schema_arrow.metadata), p
            assert MIDDLE not in f.read().to_pandas().to_csv(), p
    return len(files)


@pytest.fixture(scope="module")
def keyed_mock():
    with MockProcess(ttft_ms=5, itl_ms=1, require_key=KEY) as mock:
        yield mock


def test_key_from_the_environment_is_in_no_output(keyed_mock, tmp_path):
    out = tmp_path / "run"
    p = lens("run", "--url", keyed_mock.url, "--api-key-env", "LENS_TEST_KEY",
             "--requests", "40", "--concurrency", "4", "--max-tokens", "8", "--no-progress",
             "--format", "parquet,json,csv,html", "--output", str(out),
             env={"LENS_TEST_KEY": KEY})
    assert p.returncode == 0, p.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenarios"][0]["results"][0]["counts"]["ok"] == 40
    # the key was really sent: the mock refuses requests without it
    sent = keyed_mock.requests()
    assert sent and all(r["headers"].get("authorization") == f"Bearer {KEY}" for r in sent
                        if r["path"].endswith("/chat/completions"))
    n = assert_no_key(out, p.stdout, p.stderr)
    assert n >= 5      # requests.parquet, tokens.parquet, requests.csv, summary.json, report


def test_rejected_key_leaves_no_trace(keyed_mock, tmp_path):
    """A wrong key gets 401s: the error samples, the summary and the console show none of it."""
    wrong = KEY.replace("QZ", "XX")
    out = tmp_path / "run"
    p = lens("--debug", "run", "--url", keyed_mock.url, "--api-key-env", "LENS_TEST_KEY",
             "--requests", "10", "--concurrency", "2", "--no-progress", "--output", str(out),
             env={"LENS_TEST_KEY": wrong})
    text = p.stdout + p.stderr
    assert "401" in text
    assert_no_key(out, p.stdout, p.stderr)


def test_key_in_a_config_file_is_in_no_output(keyed_mock, tmp_path):
    """A token written in the file itself and one from ${VAR}: neither reaches an output."""
    cfg = tmp_path / "bench.yaml"
    exports = tmp_path / "exports"
    cfg.write_text(f"""
providers:
  - name: openai
    endpoint: {keyed_mock.url}
    auth: {{type: bearer, token: "{KEY}"}}
    models: [lens-mock]
  - name: vllm
    endpoint: {keyed_mock.url}
    auth: {{type: bearer, token: "${{LENS_TEST_KEY}}"}}
    models: [lens-mock]
workload:
  scenarios:
    - {{name: s, requests: 12, concurrency: 3}}
  request_params: {{max_tokens: 6}}
output:
  export:
    - {{format: json, path: "{exports}/all_{{timestamp}}.json"}}
    - {{format: csv, path: "{exports}/{{scenario}}.csv"}}
    - {{format: parquet, path: "{exports}/{{scenario}}.parquet"}}
""")
    out = tmp_path / "run"
    p = lens("run", str(cfg), "--output", str(out), "--no-progress",
             env={"LENS_TEST_KEY": KEY})
    assert p.returncode == 0, p.stderr
    v = lens("validate", str(cfg), env={"LENS_TEST_KEY": KEY})
    assert v.returncode == 0, v.stderr
    assert_no_key(out, p.stdout, p.stderr, v.stdout, v.stderr)
    assert assert_no_key(exports) == 3


def test_bad_token_types_are_described_not_shown(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("""
providers:
  - {name: openai, endpoint: "http://127.0.0.1:9/v1", auth: {type: bearer, token: 987654321},
     models: [m]}
workload: {scenarios: [{name: s, requests: 1, concurrency: 1}]}
""")
    p = lens("validate", str(cfg))
    assert p.returncode == 1
    assert "providers[0].auth.token: found a value of type int (not shown)" in p.stderr
    assert "987654321" not in p.stderr
