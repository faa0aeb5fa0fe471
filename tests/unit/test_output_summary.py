"""build_summary / write_summary: schema, figures, histogram round trip, client health."""
import base64
import json

import numpy as np
import orjson
import pytest

from lens._core import LogLinearHistogram
from lens.errors import RunError
from lens.output import RunResults, build_summary, empty_rows, write_summary
from lens.output.results import METRICS
from lens.output.summary import QUANTILES, SCHEMA, redact_secrets, saturation_reasons

T0 = 3_000_000_000_000
T0_UNIX = 1_735_689_600_000_000_000     # 2025-01-01T00:00:00Z
MS = 1_000_000
STAT_KEYS = ["count", "min", "mean", "p50", "p90", "p95", "p99", "p999", "max"]


def run(n=100, **kw):
    r = empty_rows(n)
    r["request_id"] = np.arange(n)
    r["status"] = 200
    r["t_sched_ns"] = T0 + np.arange(n) * 10 * MS
    r["t_start_ns"] = r["t_sched_ns"] + 500_000
    r["t_first_token_ns"] = r["t_start_ns"] + (np.arange(n) + 1) * MS   # 1 … n ms
    r["t_last_token_ns"] = r["t_first_token_ns"] + 40 * MS
    r["t_end_ns"] = r["t_last_token_ns"]
    r["output_tokens"] = r["token_events"] = 5
    r["error"][-3:] = [7, 7, 8]
    res = RunResults(T0, t0_unix_ns=T0_UNIX, scenario="steady", offered_rps=100,
                     targets=[{"provider": "openai", "model": "llama", "url": "http://h:1"}], **kw)
    res.add_rows(r)
    return res


def test_schema_shape_and_metadata():
    s = build_summary(run(), {"command": "lens-fast run", "interrupted": True,
                              "config": {"api_key": "sk-1"}})
    assert s["schema"] == SCHEMA == "lens-fast/summary/1"
    meta = s["metadata"]
    assert meta["command"] == "lens-fast run"
    assert meta["started_at"] == "2025-01-01T00:00:00.000Z"
    assert meta["interrupted"] is True
    assert meta["config"] == {"api_key": "***"}
    assert {"versions", "duration_s", "host"} <= set(meta)
    [scenario] = s["scenarios"]
    assert scenario["name"] == "steady"
    [res] = scenario["results"]
    assert (res["provider"], res["model"], res["url"]) == ("openai", "llama", "http://h:1")
    assert set(res) >= {"metrics", "throughput", "counts", "errors", "client", "histograms"}
    assert list(res["metrics"]) == list(METRICS)
    for m in METRICS:
        assert list(res["metrics"][m]) == STAT_KEYS
    assert set(res["throughput"]) >= {"requests_per_s", "output_tokens_per_s", "achieved_rps",
                                      "offered_rps"}
    assert res["errors"] == {"http_status": 2, "reset": 1}
    c = res["counts"]
    assert (c["sent"], c["ok"], c["failed"], c["dropped"], c["in_flight"]) == (100, 97, 3, 0, 0)


def test_figures_in_ms_match_the_values():
    res = build_summary(run())["scenarios"][0]["results"][0]
    ttft = res["metrics"]["ttft"]
    values = np.arange(1, 98) * 1.0                  # the 97 ok requests: 1 … 97 ms
    assert ttft["count"] == 97
    assert ttft["min"] == 1.0 and ttft["max"] == 97.0
    assert ttft["mean"] == pytest.approx(values.mean())
    for key, q in QUANTILES.items():
        assert ttft[key] == pytest.approx(np.quantile(values, q, method="inverted_cdf"), rel=1e-3)
    assert res["metrics"]["ttft_sched"]["min"] == 1.5
    assert res["metrics"]["tpot"]["p50"] == 10.0
    assert res["metrics"]["sched_lag"]["max"] == 0.5
    tp = res["throughput"]
    window = (99 * 10 + 100 + 40) / 1000             # first start … last end, in s
    assert tp["window_s"] == pytest.approx(window)
    assert tp["requests_per_s"] == pytest.approx(97 / window, rel=1e-6)
    assert tp["output_tokens_per_s"] == pytest.approx(97 * 5 / window, rel=1e-6)
    assert tp["achieved_rps"] == pytest.approx(100.0)
    assert tp["offered_rps"] == 100


def test_histograms_round_trip_through_base64():
    results = run()
    res = build_summary(results)["scenarios"][0]["results"][0]
    assert res["histogram_units"]["ttft"] == "ns"
    assert res["histogram_units"]["output_tokens_per_s"] == "utok/s"
    for m in METRICS:
        h = LogLinearHistogram.decode(base64.b64decode(res["histograms"][m]))
        orig = results.targets[0].histograms[m]
        assert h.count == orig.count
        qs = list(QUANTILES.values())
        np.testing.assert_array_equal(h.quantiles(qs), orig.quantiles(qs))


def test_write_summary_is_indented_json(tmp_path):
    s = build_summary(run())
    path = tmp_path / "summary.json"
    write_summary(path, s)
    text = path.read_text()
    assert text.startswith('{\n  "schema": "lens-fast/summary/1"')
    assert json.loads(text) == json.loads(orjson.dumps(s))
    with pytest.raises(RunError, match="cannot write the summary"):
        write_summary(tmp_path / "missing" / "summary.json", s)


def test_empty_run_has_nulls_not_errors(tmp_path):
    res = RunResults(T0)
    s = build_summary(res, {})
    [r] = s["scenarios"][0]["results"] or [None]
    assert r is None                                  # no target seen, none configured
    res = RunResults(T0, targets=[{"model": "m"}])
    r = build_summary(res)["scenarios"][0]["results"][0]
    assert r["metrics"]["ttft"] == {"count": 0, **dict.fromkeys(STAT_KEYS[1:])}
    assert r["throughput"]["requests_per_s"] == 0.0
    assert r["counts"]["ok"] == 0 and r["errors"] == {}
    assert r["client"]["saturated"] is False
    write_summary(tmp_path / "s.json", build_summary(res))


def test_several_scenarios_in_order():
    a, b = run(), run()
    b.scenario = "burst"
    s = build_summary([a, b])
    assert [x["name"] for x in s["scenarios"]] == ["steady", "burst"]


def test_client_saturation_from_engine_and_thresholds():
    res = run()
    res.client = {"worker_cpu_percent": [40.0, 97.2], "reasons": ["parent drained late"],
                  "event_loop_lag_ms": 3.0}
    cl = build_summary(res)["scenarios"][0]["results"][0]["client"]
    assert cl["saturated"] is True
    assert cl["reasons"][0] == "parent drained late"
    assert "worker 1 97%" in cl["reasons"][1]
    assert cl["worker_cpu_percent"] == [40.0, 97.2]
    assert cl["event_loop_lag_ms"] == 3.0
    assert cl["sched_lag_p99_ms"] == 0.5
    assert saturation_reasons(0.5, [10.0]) == []
    assert "scheduling lag p99 25.0 ms" in saturation_reasons(25.0, [])[0]


def test_redact_secrets_at_any_depth():
    got = redact_secrets({"targets": [{"api_key": "a", "url": "u"}],
                          "headers": {"X-API-Key": "b", "Accept": "c"}, "password": None,
                          "max_tokens": 5})
    assert got == {"targets": [{"api_key": "***", "url": "u"}],
                   "headers": {"X-API-Key": "***", "Accept": "c"}, "password": None,
                   "max_tokens": 5}
