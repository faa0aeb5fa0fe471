"""The HTML report and ``lens-fast report``: numbers against hand-computed values.

Run directories are made from synthetic rows the way the engine makes them (``ParquetSink``
for the Parquet files, ``RunResults`` → ``build_summary`` for summary.json).
"""
import json
import re

import numpy as np
import pytest
from lens_cli import cli

from lens._core import FLAG_DROPPED, FLAG_WARMUP, TOKEN_DTYPE, LogLinearHistogram
from lens.engine.runner import combine_summaries
from lens.errors import ConfigError
from lens.output import ParquetSink, RunResults, build_summary, empty_rows, write_summary
from lens.output.report import render_html, write_html_report
from lens.output.report_data import (
    MAX_CDF_POINTS,
    cdf_points,
    grouped_quantiles,
    histogram_cdf,
    itl_gaps_ms,
    load_run,
    read_summary,
)

T0 = 5_000_000_000_000
MS = 1_000_000
TARGET = {"provider": "vllm", "model": "m-small", "url": "http://10.0.0.5:8000/v1"}
META = {"command": "lens-fast run --rps 5", "host": "loadgen-1",
        "config": {"rps": 5, "api_key": "sk-live-SECRET", "max_tokens": 16}}

#: id, sched, start, ttft, e2e (ms from t0), token stamps (ms), error, flags
REQUESTS = [
    (0, 100, 100, 10, 100, [110, 150, 190], 0, 0),
    (1, 300, 302, 20, 200, [322, 352], 0, 0),
    (2, 500, 500, 30, 300, [530, 540, 560, 790], 0, 0),
    (3, 700, 701, 40, 400, [741], 0, 0),
    (4, 1200, 1200, None, 10, [], 7, 0),             # HTTP 500
    (5, 1500, None, None, None, [], 12, FLAG_DROPPED),
    (6, 1300, 1300, 20, 40, [1320, 1330], 10, 0),    # failed mid-stream: its tokens don't count
    (-1, -900, -900, 5, 50, [-895, -880], 0, FLAG_WARMUP),
]


def synthetic(reqs=REQUESTS, scale=1.0):
    """Return (rows, tokens) of ``reqs``; latencies and stamps after the start × ``scale``."""
    r = empty_rows(len(reqs))
    toks = []
    for i, (rid, sched, start, ttft, e2e, stamps, err, flags) in enumerate(reqs):
        r["request_id"][i], r["error"][i], r["flags"][i] = rid, err, flags
        r["t_sched_ns"][i] = T0 + sched * MS
        r["status"][i] = 0 if start is None else 500 if err == 7 else 200
        if start is None:
            continue
        r["t_start_ns"][i] = r["t_attempt_ns"][i] = T0 + start * MS
        r["t_end_ns"][i] = T0 + round((start + e2e * scale) * MS)
        stamps = [start + (s - start) * scale for s in stamps]
        if ttft is not None:
            r["t_first_token_ns"][i] = T0 + round(stamps[0] * MS)
            r["t_last_token_ns"][i] = T0 + round(stamps[-1] * MS)
        r["output_tokens"][i] = r["token_events"][i] = len(stamps)
        for k, s in enumerate(stamps):
            toks.append((rid, k, T0 + round(s * MS)))
    t = np.zeros(len(toks), TOKEN_DTYPE)
    for j, row in enumerate(toks):
        t[j] = row
    return r, t


def make_run(d, reqs=REQUESTS, target=TARGET, scenario="default", scale=1.0, meta=META):
    """Write a run directory as ``lens-fast run`` does; return its summary."""
    rows, toks = synthetic(reqs, scale)
    with ParquetSink(d, T0, meta, targets=[target], scenario=scenario) as sink:
        sink.write_rows(rows)
        sink.write_tokens(toks)
    results = RunResults(T0, t0_unix_ns=1_767_225_600 * 10**9, scenario=scenario,
                         targets=[target], open_loop=True, offered_rps=5.0)
    results.add_rows(rows)
    results.add_tokens(toks)
    summary = build_summary(results, meta)
    write_summary(d / "summary.json", summary)
    return summary


def figures(page):
    """The plotly figures of a report page."""
    m = re.search(r"const FIGURES = (.*?);\n", page, re.S)
    return json.loads(m.group(1))


# ------------------------------------------------------------------------- numbers
def test_grouped_quantiles_interpolate_between_ranks():
    keys = np.array([1, 0, 0, 1, 0, 0, 3])
    values = np.array([7.0, 40.0, 10.0, 5.0, 30.0, 20.0, np.nan])
    k, q = grouped_quantiles(keys, values, (0.5, 0.9, 1.0))
    assert k.tolist() == [0, 1]                      # the NaN-only key 3 has no value
    np.testing.assert_allclose(q, [[25.0, 37.0, 40.0], [6.0, 6.8, 7.0]])


def test_cdf_points_keep_small_samples_whole():
    x, y = cdf_points(np.array([3.0, 1.0, np.nan, 2.0, 2.0]))
    assert x.tolist() == [1.0, 2.0, 2.0, 3.0]
    assert y.tolist() == [0.25, 0.5, 0.75, 1.0]


def test_cdf_points_of_a_million_values_keep_the_tail():
    v = np.random.default_rng(1).lognormal(3, 1, 1_000_000)
    x, y = cdf_points(v)
    assert MAX_CDF_POINTS // 2 < len(x) <= MAX_CDF_POINTS
    s = np.sort(v)
    assert x[0] == s[0] and x[-1] == s[-1] and y[-1] == 1.0
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) > 0)
    # the tail keeps its detail: a point within 1e-6 of p99.99 (100 values from the top)
    for q, tol in ((0.5, 1e-3), (0.99, 1e-4), (0.999, 1e-5), (0.9999, 1e-6)):
        i = np.argmin(np.abs(y - q))
        assert abs(y[i] - q) <= tol
        assert x[i] == s[round(y[i] * len(s)) - 1]


def test_histogram_cdf_from_bucket_tops():
    h = LogLinearHistogram()
    h.record_many(np.array([10, 20, 20, 40]) * MS)
    x, y = histogram_cdf(h)
    assert y.tolist() == [0.25, 0.75, 1.0]
    assert x == pytest.approx([10.002, 20.005, 40], abs=1e-3)  # as h.quantile reports them
    assert histogram_cdf(LogLinearHistogram())[0].size == 0


def test_itl_gaps_are_per_request_in_index_order():
    rid = np.array([2, 1, 2, 1, 2, 1])
    idx = np.array([1, 1, 0, 0, 2, 2])
    t = np.array([15, 7, 10, 5, 30, 12]) * MS
    gaps, owner = itl_gaps_ms(rid, idx, t)
    assert gaps.tolist() == [2.0, 5.0, 5.0, 15.0]
    assert owner.tolist() == [1, 1, 2, 2]


# ------------------------------------------------------------------------- one run
def test_parquet_run_series_cdfs_and_itl(tmp_path):
    summary = make_run(tmp_path)
    run = load_run(tmp_path)
    [t] = run.targets
    assert t.label == "vllm · m-small" and t.source == "requests.parquet"
    s = t.series
    assert s["t_s"].tolist() == [0, 1]
    assert s["requests_ok"].tolist() == [3, 1]
    assert s["output_tokens"].tolist() == [9, 1]
    assert s["ttft_p50_ms"] == pytest.approx([20, 40])
    assert s["ttft_p90_ms"] == pytest.approx([28, 40])     # 20 + 0.8 × (30 − 20)
    assert s["ttft_p99_ms"] == pytest.approx([29.8, 40])
    assert s["e2e_p50_ms"] == pytest.approx([200, 400])
    assert s["e2e_p90_ms"] == pytest.approx([280, 400])
    # lags 0, 2, 0, 1 ms start in second 0; the failed requests' 0, 0 in second 1
    assert s["sched_lag_p50_ms"] == pytest.approx([0.5, 0])
    assert s["sched_lag_p99_ms"] == pytest.approx([1.97, 0])
    assert s["sched_lag_max_ms"] == pytest.approx([2, 0])
    assert {k: v.tolist() for k, v in t.errors.items()} == {
        "dropped": [0, 1], "http_status": [0, 1], "stream_error": [0, 1]}
    # the summary's own series agree where they count the same thing
    ts = summary["scenarios"][0]["results"][0]["timeseries"]
    assert ts["requests_ok"] == s["requests_ok"].tolist()
    assert ts["output_tokens"] == s["output_tokens"].tolist()
    assert ts["ttft_p50_ms"] == pytest.approx(s["ttft_p50_ms"].tolist())
    assert t.cdf["ttft"][0].tolist() == pytest.approx([10, 20, 30, 40])
    assert t.cdf["ttft"][1].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert t.cdf["e2e"][0].tolist() == pytest.approx([100, 200, 300, 400])
    itl, w = t.dist["itl"]
    assert w is None and sorted(itl.tolist()) == pytest.approx([10, 20, 30, 40, 40, 230])
    v, _ = t.dist["output_tokens_per_s"]
    assert sorted(v.tolist()) == pytest.approx([2.5, 10, 13 + 1 / 3, 30])   # tokens / e2e


def test_html_is_self_contained_with_every_plot(tmp_path):
    make_run(tmp_path)
    out = write_html_report(tmp_path, tmp_path / "sub" / "report.html")
    page = out.read_text()
    assert out == tmp_path / "sub" / "report.html"
    assert "<script src" not in page and "<link" not in page
    assert "plotly.js v" in page[:200_000]
    figs = figures(page)
    assert len(figs) == 10
    assert "Not drawn" not in page
    cdf = figs[0]["data"][0]
    assert cdf["x"] == pytest.approx([10, 20, 30, 40]) and cdf["y"] == [25, 50, 75, 100]
    assert figs[0]["layout"]["xaxis"]["title"]["text"] == "TTFT (ms)"
    # header: metadata without the secret, the summary table
    assert "lens-fast run --rps 5" in page and "loadgen-1" in page
    assert "sk-live-SECRET" not in page and "***" in page
    assert "2026-01-01T00:00:00.000Z" in page
    assert "<td>TTFT (ms)</td><td>4</td>" in page
    assert "http_status 1" in page


def test_latency_unit_is_seconds_for_long_requests(tmp_path):
    make_run(tmp_path, scale=100.0)                  # E2E up to 40 s
    figs = figures(render_html(load_run(tmp_path)))
    titles = [f["layout"]["xaxis"]["title"]["text"] for f in figs[:2]]
    assert titles == ["TTFT (ms)", "E2E (s)"]
    assert figs[1]["data"][0]["x"] == pytest.approx([10, 20, 30, 40])


def test_large_run_cdfs_are_downsampled(tmp_path):
    n = 20_000
    r = empty_rows(n)
    r["request_id"] = np.arange(n)
    r["t_sched_ns"] = r["t_start_ns"] = r["t_attempt_ns"] = T0 + np.arange(n) * MS
    r["t_first_token_ns"] = r["t_start_ns"] + (10 + np.arange(n) % 997) * MS
    r["t_last_token_ns"] = r["t_end_ns"] = r["t_first_token_ns"] + 5 * MS
    r["status"], r["output_tokens"], r["token_events"] = 200, 2, 2
    with ParquetSink(tmp_path, T0, targets=[TARGET]) as sink:
        sink.write_rows(r)
    results = RunResults(T0, targets=[TARGET])
    results.add_rows(r)
    write_summary(tmp_path / "summary.json", build_summary(results))
    figs = figures(render_html(load_run(tmp_path)))
    for f in figs[:2]:
        assert MAX_CDF_POINTS // 2 < len(f["data"][0]["x"]) <= MAX_CDF_POINTS
    # 20 s of requests: one point per second
    assert len(figs[2]["data"][0]["x"]) == 21
    # no token stamps at all: the ITL plot says why it is missing
    assert "Not drawn: no ok request with two or more token stamps." in render_html(
        load_run(tmp_path))


def test_run_without_an_ok_request(tmp_path):
    failed = [(i, 100 * i, 100 * i, None, 5, [], 8, 0) for i in range(12)]     # 12 resets
    make_run(tmp_path, reqs=failed)
    run = load_run(tmp_path)
    assert run.targets[0].errors["reset"].tolist() == [10, 2]
    page = render_html(run)
    assert page.count("Not drawn: no ok request.") == 2            # the two CDFs
    assert page.count("Not drawn: no request in this run has such a value.") == 2
    errors = next(f for f in figures(page) if f["data"][0]["type"] == "bar")
    assert errors["data"][0]["y"] == [10, 2]
    assert errors["data"][0]["name"] == "reset · vllm · m-small"


def test_empty_run(tmp_path):
    make_run(tmp_path, reqs=[])
    page = render_html(load_run(tmp_path))
    assert "Not drawn: no request in this run." in page
    assert "<td>TTFT (ms)</td><td>0</td><td>-</td>" in page


# ------------------------------------------------------------------------- several targets
def test_config_run_with_two_targets(tmp_path):
    a, b = tmp_path / "steady--vllm--m-small", tmp_path / "steady--sglang--m-big"
    sa = make_run(a, scenario="steady")
    sb = make_run(b, target={"provider": "sglang", "model": "m-big", "url": "http://x/v1"},
                  scenario="steady", scale=2.0)
    combined = combine_summaries([sa, sb], {"command": "lens-fast run bench.yaml",
                                            "runs": [a.name, b.name]})
    write_summary(tmp_path / "summary.json", combined)
    run = load_run(tmp_path)
    assert [t.label for t in run.targets] == ["vllm · m-small", "sglang · m-big"]
    # twice as slow: TTFTs 20, 40 end in second 0 and 60, 80 in second 1
    assert run.targets[1].series["ttft_p50_ms"] == pytest.approx([30, 70])
    assert sorted(run.targets[1].dist["itl"][0]) == pytest.approx([20, 40, 60, 80, 80, 460])
    page = render_html(run)
    figs = figures(page)
    assert len(figs) == 10
    ttft = figs[0]["data"]
    assert [d["name"] for d in ttft] == ["vllm · m-small", "sglang · m-big"]
    assert ttft[0]["line"]["color"] != ttft[1]["line"]["color"]
    assert ttft[1]["x"] == pytest.approx([20, 40, 60, 80])
    # percentiles over time: p50, p90, p99 of each target
    assert len(figs[2]["data"]) == 6
    assert page.count("<tr><td><span class=sw") == 2      # one overview row per target


def test_a_list_of_run_folders_is_one_report_of_exactly_those(tmp_path):
    names = ("steady--vllm--m-small", "steady--sglang--m-big", "burst--vllm--m-small")
    d = [tmp_path / n for n in names]
    s = [make_run(d[0], scenario="steady"),
         make_run(d[1], target={"provider": "sglang", "model": "m-big", "url": "http://x/v1"},
                  scenario="steady", scale=2.0, meta={**META, "duration_s": 2.0}),
         make_run(d[2], scenario="burst", scale=3.0)]
    write_summary(tmp_path / "summary.json", combine_summaries(s, {"runs": list(names)}))
    out = write_html_report([d[0], str(d[1])], tmp_path / "steady.html")
    page = out.read_text()
    figs = figures(page)
    assert len(figs) == 10
    assert [t["name"] for t in figs[0]["data"]] == ["vllm · m-small", "sglang · m-big"]
    assert figs[0]["data"][1]["x"] == pytest.approx([20, 40, 60, 80])
    assert page.count("<tr><td><span class=sw") == 2          # the burst run is left out
    assert names[2] not in page
    assert f"{tmp_path}: {names[0]}, {names[1]}" in page       # where the runs come from
    run = load_run([d[0], d[1]])
    assert run.path == tmp_path and run.folders == [d[0], d[1]]
    assert [sc["name"] for sc in run.summary["scenarios"]] == ["steady"]
    assert run.summary["metadata"]["command"] == META["command"]
    assert run.targets[1].series["ttft_p50_ms"] == pytest.approx([30, 70])
    # the same folders as the config run's directory gives: the same targets
    whole = load_run(tmp_path)
    assert [t.label for t in whole.targets[:2]] == ["steady · vllm · m-small",
                                                  "steady · sglang · m-big"]
    # two scenarios in the list: labels name them, as in a config run's report
    both = load_run([d[2], d[0]])
    assert [t.label for t in both.targets] == ["burst · vllm · m-small",
                                               "steady · vllm · m-small"]
    with pytest.raises(ConfigError, match="no run folder to report"):
        load_run([])
    with pytest.raises(ConfigError, match="is a config run's folder .* give those run folders"):
        write_html_report([tmp_path], tmp_path / "r.html")
    with pytest.raises(ConfigError, match="does not exist"):
        load_run([d[0], tmp_path / "nope"])


def test_two_scenarios_of_one_file_are_told_apart(tmp_path):
    rows_a, tok_a = synthetic()
    rows_b, tok_b = synthetic(scale=3.0)
    rows_b["request_id"] += 100
    tok_b["request_id"] += 100
    with ParquetSink(tmp_path, T0, targets=[TARGET], scenario="a") as sink:
        sink.write_rows(rows_a)
        sink.scenario = "b"
        sink.write_rows(rows_b)
        sink.write_tokens(np.concatenate([tok_a, tok_b]))
    res = []
    for name, rows, toks in (("a", rows_a, tok_a), ("b", rows_b, tok_b)):
        r = RunResults(T0, scenario=name, targets=[TARGET])
        r.add_rows(rows)
        r.add_tokens(toks)
        res.append(r)
    write_summary(tmp_path / "summary.json", build_summary(res))
    run = load_run(tmp_path)
    assert [t.label for t in run.targets] == ["a · vllm · m-small", "b · vllm · m-small"]
    assert run.targets[1].cdf["ttft"][0] == pytest.approx([30, 60, 90, 120])
    assert len(run.targets[1].dist["itl"][0]) == 6


# ------------------------------------------------------------------------- summary only
def test_summary_only_run_draws_what_it_can(tmp_path):
    make_run(tmp_path)
    (tmp_path / "requests.parquet").unlink()
    (tmp_path / "tokens.parquet").unlink()
    [t] = load_run(tmp_path).targets
    assert t.source == "summary.json"
    x, y = t.cdf["ttft"]
    assert x == pytest.approx([10, 20, 30, 40], rel=1e-3) and y.tolist() == [.25, .5, .75, 1]
    itl, w = t.dist["itl"]
    assert w.sum() == 6 and float(np.average(itl, weights=w)) == pytest.approx(370 / 6, rel=1e-3)
    assert t.series["requests_ok"].tolist() == [3, 1]
    assert t.errors["failed"].tolist() == [0, 2]
    page = write_html_report(tmp_path, tmp_path / "r.html").read_text()
    figs = figures(page)
    assert len(figs) == 8                        # E2E and scheduling lag over time are missing
    assert page.count("Not drawn: needs requests.parquet") == 2
    assert "--format json" in page and "drawn from summary.json" in page


def test_tokens_missing_gives_itl_from_the_summary(tmp_path):
    make_run(tmp_path)
    (tmp_path / "tokens.parquet").unlink()
    [t] = load_run(tmp_path).targets
    assert t.source == "requests.parquet"
    assert t.dist["itl"][1].sum() == 6
    assert any("no tokens.parquet" in n for n in t.notes)


def test_names_are_escaped(tmp_path):
    evil = {"provider": "openai", "model": "</script><script>alert(1)</script>", "url": "x"}
    make_run(tmp_path, target=evil, meta={"command": "<b>run</b>"})
    page = render_html(load_run(tmp_path))
    assert "<script>alert(1)" not in page
    assert "&lt;b&gt;run&lt;/b&gt;" in page
    assert figures(page)[0]["data"][0]["name"] == "openai · </script><script>alert(1)</script>"


# ------------------------------------------------------------------------- bad input
def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "does not exist"),
    (lambda d: d.mkdir(), "no summary.json in"),
    (lambda d: _write(d / "summary.json", b"{not json"), "summary.json' is not valid JSON"),
    (lambda d: _write(d / "summary.json", b'{"schema": "x"}'), "is not a lens-fast summary"),
    (lambda d: (_write(d / "sweep.json", b"{}"), (d / "steps" / "01-rate-10").mkdir(parents=True)),
     r"holds a sweep .* lens-fast report .*run/steps/01-rate-10$"),
])
def test_bad_run_dir_is_one_clear_error(tmp_path, setup, message):
    d = tmp_path / "run"
    setup(d)
    with pytest.raises(ConfigError, match=message):
        read_summary(d)


def test_corrupt_parquet_names_the_file(tmp_path):
    make_run(tmp_path)
    f = tmp_path / "requests.parquet"
    f.write_bytes(f.read_bytes()[:-100])                 # no footer, as after SIGKILL
    with pytest.raises(ConfigError, match=r"requests\.parquet' cannot be read as Parquet"):
        write_html_report(tmp_path, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_missing_run_folder_and_bad_histogram(tmp_path):
    s = make_run(tmp_path / "one")
    write_summary(tmp_path / "summary.json", combine_summaries([s], {"runs": ["one", "two"]}))
    with pytest.raises(ConfigError, match="lists the run folder 'two'"):
        load_run(tmp_path)
    for f in ("requests.parquet", "tokens.parquet"):
        (tmp_path / "one" / f).unlink()
    s["scenarios"][0]["results"][0]["histograms"]["ttft"] = "bm90IGEgaGlzdG9ncmFt"
    write_summary(tmp_path / "one" / "summary.json", s)
    with pytest.raises(ConfigError, match="ttft histogram .* cannot be decoded"):
        load_run(tmp_path / "one")


def test_command_exits_1_with_one_line(tmp_path, capsys):
    assert cli("report", str(tmp_path / "nope")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ConfigError: ") and "nope" in err


# ------------------------------------------------------------------------- the command
def test_command_prints_the_tables_again(tmp_path, capsys):
    make_run(tmp_path)
    assert cli("report", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "run started 2026-01-01T00:00:00.000Z" in out and "lens-fast run --rps 5" in out
    assert "vllm · m-small · http://10.0.0.5:8000/v1" in out
    assert re.search(r"TTFT \(ms\)\s+4\s+10\.00", out)
    assert re.search(r"E2E \(ms\)\s+4\s+100\.0", out)
    assert "requests  ok 4  failed 2  dropped 1  cancelled 0" in out
    assert "errors  http_status 1  stream_error 1" in out
    assert "Report:" not in out
    assert not (tmp_path / "report.html").exists()


def test_command_writes_html_and_titles_scenarios(tmp_path, capsys):
    a = make_run(tmp_path / "a", scenario="short")
    b = make_run(tmp_path / "b", scenario="long", scale=2.0)
    write_summary(tmp_path / "summary.json", combine_summaries([a, b], {"runs": ["a", "b"]}))
    assert cli("report", str(tmp_path), "--html", str(tmp_path / "r.html")) == 0
    out = capsys.readouterr().out
    assert "scenario short · vllm · m-small" in out and "scenario long · vllm · m-small" in out
    assert re.search(r"TTFT \(ms\)\s+4\s+20\.00", out)          # the long scenario's min
    m = re.search(r"Report: (\S+) \(([\d.]+) MB, built in ([\d.]+) s\)", out)
    assert m and m.group(1) == str(tmp_path / "r.html")
    assert 3 < float(m.group(2)) < 10
    assert len(figures((tmp_path / "r.html").read_text())) == 10
