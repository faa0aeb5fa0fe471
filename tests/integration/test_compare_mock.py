"""``lens-fast compare`` on real runs against the embedded mock, as a nightly job uses it.

Three runs with the same settings, compared pairwise with the default thresholds, must never
report a regression (exit 0); a run with the mock's TTFT raised by 20% (20 → 24 ms) must be
reported (exit 1) in the console and in the Markdown job summary. Each run is 300 requests at
concurrency 8 with 16 tokens each, about 2 s on a 2-core machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def lens_fast(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lens", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def mock_run(out, ttft_ms: float) -> None:
    r = lens_fast("run", "--requests", "300", "--concurrency", "8", "--max-tokens", "16",
                  "--output", str(out), "--no-progress", "--mock-ttft-ms", f"{ttft_ms:g}")
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    for name, ttft in (("a", 20), ("b", 20), ("slow", 24), ("c", 20)):
        mock_run(d / name, ttft)
    return d


@pytest.mark.parametrize("baseline,run", [("a", "b"), ("b", "c"), ("a", "c"), ("c", "a")])
def test_same_settings_report_no_regression(runs, baseline, run):
    js = runs / f"{baseline}-{run}.json"
    r = lens_fast("compare", str(runs / baseline), str(runs / run), "--json", str(js))
    data = json.loads(js.read_text())
    verdicts = {m["metric"]: m["verdict"] for m in data["results"][0]["metrics"]}
    assert r.returncode == 0, r.stdout + r.stderr
    assert "regression" not in verdicts.values()
    assert list(verdicts) == ["ttft.p50", "ttft.p99", "itl.p50", "e2e.p50", "e2e.p99",
                              "throughput"]
    assert "OK: no regression (6 metric(s) in 1 result(s))" in r.stdout
    ttft = data["results"][0]["metrics"][0]
    assert ttft["n_baseline"] == ttft["n_run"] == 300 and ttft["source"] == "parquet"
    assert abs(ttft["change_rel"]) < 0.1


def test_ttft_raised_by_20_percent_is_a_regression(runs):
    md, js = runs / "summary.md", runs / "slow.json"
    r = lens_fast("compare", str(runs / "a"), str(runs / "slow"), "--markdown", str(md),
                  "--json", str(js))
    assert r.returncode == 1, r.stdout + r.stderr
    data = json.loads(js.read_text())
    ttft = {m["metric"]: m for m in data["results"][0]["metrics"]}["ttft.p50"]
    assert ttft["verdict"] == "regression"
    assert 0.15 < ttft["change_rel"] < 0.25 and ttft["ci_rel"][0] > 0.1
    assert 3.0 < ttft["change"] < 5.0                                    # ms
    assert "REGRESSION: " in r.stdout and "ttft.p50 +" in r.stdout
    text = md.read_text()
    assert text.startswith("## ❌ lens-fast compare: ")
    row = next(line for line in text.splitlines() if line.startswith("| ttft.p50 (ms) |"))
    assert row.endswith("| **regression** |")
    # the other way round it is an improvement, and the job passes
    r = lens_fast("compare", str(runs / "slow"), str(runs / "a"), "--max-regression",
                  "ttft.p50=10%")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "improvement" in r.stdout
