"""compare: spec grammar, bootstrap intervals, verdicts, throughput, fallbacks, matching, output."""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from lens.errors import ConfigError
from lens.output import ParquetSink, RunResults, build_summary, empty_rows, write_summary
from lens.output.compare import (
    DEFAULT_THRESHOLDS,
    Threshold,
    bootstrap_change,
    compare_runs,
    mann_whitney,
    parse_thresholds,
    verdict,
)
from lens.output.compare_command import (
    compare_command,
    comparison_markdown,
    render_comparison,
)

T0 = 5_000_000_000_000
MS = 1_000_000


def make_run(out, n=2000, *, seed=0, ttft_scale=1.0, itl_scale=1.0, tokens=8, rate=200.0,
             scenario="default", provider="openai", model="m", parquet=True, summary=None,
             failed=0):
    """Write a synthetic run folder (requests.parquet, tokens.parquet, summary.json).

    Requests arrive at ``rate``/s; TTFT is lognormal around 50 ms × ``ttft_scale``, token gaps
    lognormal around 5 ms × ``itl_scale``. Returns the summary (``summary`` is a list to which
    it is also appended, for config runs).
    """
    rng = np.random.default_rng(seed)
    r = empty_rows(n)
    r["request_id"] = np.arange(n)
    r["status"] = 200
    r["t_sched_ns"] = T0 + (np.arange(n) * 1e9 / rate).astype(np.int64)
    r["t_start_ns"] = r["t_sched_ns"] + 100_000
    ttft = (rng.lognormal(np.log(50.0), 0.3, n) * ttft_scale * MS).astype(np.int64)
    gaps = (rng.lognormal(np.log(5.0), 0.25, (n, tokens - 1)) * itl_scale * MS).astype(np.int64)
    t_first = r["t_start_ns"] + ttft
    stamps = t_first[:, None] + np.concatenate([np.zeros((n, 1), np.int64),
                                                np.cumsum(gaps, axis=1)], axis=1)
    r["t_first_token_ns"] = t_first
    r["t_last_token_ns"] = stamps[:, -1]
    r["t_end_ns"] = stamps[:, -1] + 200_000
    r["output_tokens"] = r["token_events"] = tokens
    if failed:
        r["error"][:failed] = 7
    tk = np.zeros(n * tokens, [("request_id", "<i8"), ("index", "<i8"), ("t_ns", "<i8")])
    tk["request_id"] = np.repeat(np.arange(n), tokens)
    tk["index"] = np.tile(np.arange(tokens), n)
    tk["t_ns"] = stamps.ravel()
    order = np.argsort(tk["t_ns"], kind="stable")          # arrival order, interleaved
    tk = tk[order]
    targets = [{"provider": provider, "model": model, "url": "http://h:1/v1"}]
    res = RunResults(T0, t0_unix_ns=1_735_689_600_000_000_000, scenario=scenario,
                     targets=targets, offered_rps=rate)
    res.add_rows(r)
    res.add_tokens(tk)
    os.makedirs(out, exist_ok=True)
    if parquet:
        with ParquetSink(out, T0, {}, targets=targets, scenario=scenario,
                         token_row_group_rows=4000) as sink:      # row groups, as in a run
            sink.write_rows(r)
            for i in range(0, len(tk), 4000):
                sink.write_tokens(tk[i:i + 4000])
    s = build_summary(res, {"config": {"rps": rate, "model": model}})
    write_summary(os.path.join(out, "summary.json"), s)
    if summary is not None:
        summary.append(s)
    return s


def make_config_run(out, pairs, **kw):
    """A config run: one subfolder per (scenario, provider, model) and a combined summary."""
    from lens.engine.runner import combine_summaries

    summaries, names = [], []
    seed = kw.pop("seed", 0)
    for i, (scenario, provider, model) in enumerate(pairs):
        name = f"{scenario}--{provider}--{model}"
        make_run(out / name, scenario=scenario, provider=provider, model=model, seed=seed + i,
                 summary=summaries, **kw)
        names.append(name)
    write_summary(out / "summary.json", combine_summaries(summaries, {"runs": names}))


def t(spec):
    [th] = parse_thresholds(spec)
    return th


# ------------------------------------------------------------------------ the spec grammar
def test_parse_good_specs():
    ths = parse_thresholds("ttft.p99=10%, itl.p50=5%,throughput=-5%,output_throughput=-2.5%")
    assert [(x.key, x.metric, x.stat, x.limit, x.higher_is_better, x.unit) for x in ths] == [
        ("ttft.p99", "ttft", "p99", 0.10, False, "ms"),
        ("itl.p50", "itl", "p50", 0.05, False, "ms"),
        ("throughput", "throughput", None, -0.05, True, "req/s"),
        ("output_throughput", "output_throughput", None, -0.025, True, "tok/s")]
    assert t("output_tokens_per_s.mean=-10%").limit == -0.10
    assert t("output_tokens_per_s.mean=-10%").higher_is_better is True
    assert t("sched_lag.p999=+50%").limit == 0.5
    assert t("e2e_sched.p95=0%").limit == 0.0
    assert t("tpot.mean=.5%").limit == pytest.approx(0.005)
    default = parse_thresholds(None)
    assert [x.key for x in default] == ["ttft.p50", "ttft.p99", "itl.p50", "e2e.p50",
                                        "e2e.p99", "throughput"]
    assert parse_thresholds(DEFAULT_THRESHOLDS) == default


VALID = ("valid forms: METRIC.STAT=N% with METRIC one of ttft, ttft_sched, itl, tpot, e2e, "
         "e2e_sched, sched_lag (N% is the largest allowed rise) or output_tokens_per_s (-N%, "
         "the largest allowed drop) and STAT one of p50, p90, p95, p99, p999, mean; "
         "throughput=-N% (requests/s) and output_throughput=-N% (output tokens/s); "
         "comma-separated, e.g. ttft.p99=10%,itl.p50=5%,throughput=-5%")


@pytest.mark.parametrize("spec,message", [
    ("", f"--max-regression is empty; {VALID}"),
    ("ttft.p99=10%,", f"--max-regression 'ttft.p99=10%,' has an empty item; {VALID}"),
    ("ttft.p99", f"bad --max-regression item 'ttft.p99': no '=' (expected KEY=N%); {VALID}"),
    ("latency.p99=10%", f"bad --max-regression item 'latency.p99=10%': unknown metric "
                        f"'latency'; {VALID}"),
    ("ttft.p42=10%", f"bad --max-regression item 'ttft.p42=10%': unknown statistic 'p42'; "
                     f"{VALID}"),
    ("ttft=10%", f"bad --max-regression item 'ttft=10%': ttft needs a statistic, e.g. "
                 f"ttft.p99; {VALID}"),
    ("throughput.p50=-5%", f"bad --max-regression item 'throughput.p50=-5%': throughput takes "
                           f"no statistic (got 'throughput.p50'); {VALID}"),
    ("ttft.p99=10", f"bad --max-regression item 'ttft.p99=10': threshold '10' is not a "
                    f"percentage such as 10% or -5%; {VALID}"),
    ("ttft.p99=ten%", f"bad --max-regression item 'ttft.p99=ten%': threshold 'ten%' is not a "
                      f"percentage such as 10% or -5%; {VALID}"),
    ("ttft.p99=-10%", f"bad --max-regression item 'ttft.p99=-10%': ttft is lower-is-better: "
                      f"its threshold is the largest allowed rise, a positive percentage such "
                      f"as 10% (got -10%); {VALID}"),
    ("throughput=5%", f"bad --max-regression item 'throughput=5%': throughput is "
                      f"higher-is-better: its threshold is the largest allowed drop, a "
                      f"negative percentage such as -5% (got 5%); {VALID}"),
    ("output_throughput=-100%", f"bad --max-regression item 'output_throughput=-100%': a drop "
                                f"of 100% or more cannot happen (got -100%); {VALID}"),
    ("ttft.p99=10%,ttft.p99=20%", "bad --max-regression item 'ttft.p99=20%': ttft.p99 is given "
                                  "twice; give each metric once"),
])
def test_parse_bad_specs(spec, message):
    with pytest.raises(ConfigError) as e:
        parse_thresholds(spec)
    assert str(e.value) == message


def test_bad_spec_is_a_usage_error_before_any_work(tmp_path):
    # the folders do not even hold a run: the spec is refused first, with status 2
    r = CliRunner().invoke(compare_command, [str(tmp_path), str(tmp_path),
                                             "--max-regression", "ttft.p42=10%"])
    assert r.exit_code == 2
    assert "unknown statistic 'p42'" in r.output and "valid forms" in r.output


# ------------------------------------------------------------------------ statistics
def test_bootstrap_finds_a_20_percent_shift():
    rng = np.random.default_rng(7)
    for stat in ("p50", "p90", "p99", "mean"):
        a = rng.lognormal(np.log(20.0), 0.3, 3000)
        b = rng.lognormal(np.log(20.0), 0.3, 3000) * 1.2
        c = bootstrap_change(a, b, stat, seed=1)
        assert c.rel == pytest.approx(0.2, abs=0.06), stat
        assert c.ci[0] > 0.05 and c.ci[0] < c.rel < c.ci[1], stat
        assert verdict(c.rel, c.ci, t(f"ttft.{stat}=10%")) == "regression", stat
    # the same change where less is worse: a drop of output tokens/s
    c = bootstrap_change(a, a / 1.2, "p50", seed=1)
    assert verdict(c.rel, c.ci, t("output_tokens_per_s.p50=-10%")) == "regression"
    assert verdict(c.rel, c.ci, t("ttft.p50=10%")) == "improvement"


def test_bootstrap_is_reproducible_and_exact_for_a_plain_shift():
    rng = np.random.default_rng(3)
    a = rng.lognormal(0, 0.5, 500)
    c1 = bootstrap_change(a, a * 1.5, "p90", seed=4)
    c2 = bootstrap_change(a, a * 1.5, "p90", seed=4)
    assert c1 == c2
    assert c1.rel == pytest.approx(0.5)
    assert c1.baseline == np.quantile(a, 0.9, method="inverted_cdf")
    assert bootstrap_change(a, a * 1.5, "p90", seed=5).ci != c1.ci


def test_no_false_alarm_on_noise():
    """Same distribution, new samples: 50 repetitions per statistic, 0 regression verdicts."""
    alarms = {}
    for stat, limit in (("p50", "10%"), ("p99", "20%"), ("mean", "10%")):
        alarms[stat] = 0
        significant = 0
        for i in range(50):
            rng = np.random.default_rng(1000 + i)
            a = rng.lognormal(np.log(20.0), 0.5, 2000)
            b = rng.lognormal(np.log(20.0), 0.5, 2000)
            c = bootstrap_change(a, b, stat, seed=i)
            alarms[stat] += verdict(c.rel, c.ci, t(f"ttft.{stat}={limit}")) == "regression"
            significant += c.ci[0] > 0 or c.ci[1] < 0
        # the interval alone excludes 0 about 5% of the time, as a 95% interval should
        assert significant <= 8, stat
    assert alarms == {"p50": 0, "p99": 0, "mean": 0}


def test_block_bootstrap_no_false_alarm_and_finds_a_shift():
    """Values with times (Parquet): 50 repetitions, 0 false alarms; a 20% shift is found."""
    times = np.arange(2000) * 5e6                      # 200 requests/s, in ns
    alarms = found = 0
    for i in range(50):
        rng = np.random.default_rng(2000 + i)
        a = rng.lognormal(np.log(20.0), 0.5, 2000)
        b = rng.lognormal(np.log(20.0), 0.5, 2000)
        for stat, limit in (("p50", "10%"), ("p99", "20%"), ("mean", "10%")):
            c = bootstrap_change(a, b, stat, baseline_times=times, run_times=times, seed=i)
            alarms += verdict(c.rel, c.ci, t(f"ttft.{stat}={limit}")) == "regression"
        c = bootstrap_change(a, b * 1.2, "p50", baseline_times=times, run_times=times, seed=i)
        found += verdict(c.rel, c.ci, t("ttft.p50=10%")) == "regression"
    assert alarms == 0 and found == 50


def test_a_burst_in_one_part_of_the_run_stays_within_noise():
    """10% of the run's requests in one burst 60% slower: time blocks keep most p99 verdicts
    out of "regression", where treating requests as independent calls half of them one."""
    n, times = 2000, np.arange(2000) * 5e6
    blocks = independent = 0
    for i in range(40):
        rng = np.random.default_rng(500 + i)
        a = rng.lognormal(3, 0.3, n)
        b = rng.lognormal(3, 0.3, n)
        start = rng.integers(0, n - n // 10)
        b[start:start + n // 10] *= 1.6
        c = bootstrap_change(a, b, "p99", baseline_times=times, run_times=times, seed=i)
        blocks += verdict(c.rel, c.ci, t("ttft.p99=20%")) == "regression"
        c = bootstrap_change(a, b, "p99", seed=i)
        independent += verdict(c.rel, c.ci, t("ttft.p99=20%")) == "regression"
    assert blocks <= 8 and independent >= 16, (blocks, independent)


def brute_force_interval(a, b, q, blocks=None, resamples=4000, seed=9):
    """The textbook bootstrap, one resample at a time (the reference for the fast one)."""
    rng = np.random.default_rng(seed)
    d = []
    for _ in range(resamples):
        stat = []
        for x in (a, b):
            if blocks is None:
                s = x[rng.integers(0, len(x), len(x))]
            else:
                parts = np.array_split(x, blocks)              # equal time blocks
                s = np.concatenate([parts[i] for i in rng.integers(0, blocks, blocks)])
            stat.append(np.quantile(s, q, method="inverted_cdf"))
        d.append(stat[1] / stat[0] - 1)
    return np.quantile(d, [0.025, 0.975])


@pytest.mark.parametrize("q,stat", [(0.5, "p50"), (0.9, "p90")])
def test_fast_bootstrap_matches_the_textbook_one(q, stat):
    rng = np.random.default_rng(11)
    a, b = rng.lognormal(3, 0.4, 1000), rng.lognormal(3, 0.4, 1000) * 1.05
    iid = bootstrap_change(a, b, stat, resamples=4000, seed=1).ci
    np.testing.assert_allclose(iid, brute_force_interval(a, b, q), atol=0.006)
    times = np.arange(1000.0)
    blocked = bootstrap_change(a, b, stat, baseline_times=times, run_times=times,
                               resamples=4000, seed=1).ci
    np.testing.assert_allclose(blocked, brute_force_interval(a, b, q, blocks=10), atol=0.006)


def test_the_threshold_and_the_interval_are_both_needed():
    th = t("ttft.p99=10%")
    assert verdict(0.25, (0.20, 0.30), th) == "regression"
    assert verdict(0.25, (-0.02, 0.50), th) == "inconclusive"     # beyond, but within noise
    assert verdict(0.25, None, th) == "inconclusive"              # no noise estimate
    assert verdict(0.05, (0.04, 0.06), th) == "ok"                # significant but small
    assert verdict(-0.25, (-0.30, -0.20), th) == "improvement"
    assert verdict(-0.25, (-0.60, 0.10), th) == "ok"
    assert verdict(None, None, th) == "n/a"
    tp = t("throughput=-5%")
    assert verdict(-0.08, (-0.10, -0.06), tp) == "regression"
    assert verdict(0.08, (0.06, 0.10), tp) == "improvement"
    assert verdict(-0.08, (-0.20, 0.04), tp) == "inconclusive"


def test_few_values_give_no_interval():
    a = np.arange(1.0, 11.0)
    c = bootstrap_change(a, a * 2, "p50")
    assert c.rel == pytest.approx(1.0) and c.ci is None         # 10 values: too few
    c = bootstrap_change(np.arange(1.0, 301), np.arange(1.0, 301) * 2, "p999")
    assert c.ci is None                                          # p99.9 of 300 is the max
    c = bootstrap_change(np.arange(1.0, 301), np.arange(1.0, 301) * 2, "p99")
    assert c.ci is not None and c.ci[0] > 0.5


def test_mann_whitney_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    x = np.round(rng.normal(10, 2, 400), 1)              # rounded: many ties
    y = np.round(rng.normal(10.4, 2, 300), 1)
    p, sup = mann_whitney(x, y)
    ref = stats.mannwhitneyu(y, x, alternative="two-sided", method="asymptotic")
    assert p == pytest.approx(ref.pvalue, rel=1e-6)
    assert sup == pytest.approx(ref.statistic / (len(x) * len(y)))
    assert mann_whitney(x, x)[0] == pytest.approx(1.0, abs=0.05)
    assert mann_whitney(np.ones(5), np.ones(5)) == (1.0, 0.5)


# ------------------------------------------------------------------------ run folders
def rows_by_key(c, i=0):
    return {m.threshold.key: m for m in c.results[i].rows}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """base and same (one setting, two seeds), slow (TTFT × 1.2), slow_itl (gaps × 1.2)."""
    d = tmp_path_factory.mktemp("runs")
    make_run(d / "base", seed=1)
    make_run(d / "same", seed=2)
    make_run(d / "slow", seed=3, ttft_scale=1.2, failed=30)
    make_run(d / "slow_itl", seed=4, itl_scale=1.2)
    make_run(d / "slower_rate", seed=5, rate=160.0)
    make_run(d / "summary_only", seed=3, ttft_scale=1.2, parquet=False)
    return d


def test_a_20_percent_ttft_shift_is_a_regression(runs):
    c = compare_runs(runs / "base", runs / "slow", "ttft.p50=10%,ttft.p99=20%,itl.p50=10%,"
                     "output_tokens_per_s.p50=-5%,throughput=-5%")
    m = rows_by_key(c)
    assert m["ttft.p50"].rel == pytest.approx(0.2, abs=0.03)
    assert m["ttft.p50"].verdict == "regression" and m["ttft.p50"].ci[0] > 0.1
    assert m["ttft.p50"].source == "parquet" and m["ttft.p50"].rank_p < 1e-6
    assert m["ttft.p50"].n_baseline == 2000 and m["ttft.p50"].n_run == 1970   # ok rows only
    assert m["ttft.p99"].verdict in ("ok", "inconclusive")    # +20% at a 20% limit: a coin toss
    assert m["itl.p50"].verdict == "ok" and abs(m["itl.p50"].rel) < 0.02
    assert m["output_tokens_per_s.p50"].verdict == "regression"      # tokens/s fell with it
    assert m["output_tokens_per_s.p50"].rel < -0.05
    assert m["throughput"].verdict == "ok"              # open loop at 200/s: the rate is kept
    assert c.exit_status == 1
    assert [(r.label, x.threshold.key) for r, x in c.regressions] == [
        ("default · openai · m", "ttft.p50"), ("default · openai · m", "output_tokens_per_s.p50")]
    assert c.results[0].counts["run"] == {"ok": 1970, "failed": 30, "dropped": 0,
                                          "cancelled": 0}


def test_values_match_the_summary(runs):
    s = json.loads((runs / "base" / "summary.json").read_text())["scenarios"][0]["results"][0]
    c = compare_runs(runs / "base", runs / "same", "ttft.p50=10%,itl.p50=10%,itl.p99=10%,"
                     "e2e.mean=10%,throughput=-5%,output_throughput=-5%")
    m = rows_by_key(c)
    # Parquet values against the histograms' (0.1 %): ITL is the gaps of tokens.parquet
    assert m["ttft.p50"].baseline == pytest.approx(s["metrics"]["ttft"]["p50"], rel=2e-3)
    assert m["itl.p50"].baseline == pytest.approx(s["metrics"]["itl"]["p50"], rel=2e-3)
    assert m["itl.p99"].baseline == pytest.approx(s["metrics"]["itl"]["p99"], rel=2e-3)
    assert m["itl.p50"].n_baseline == s["metrics"]["itl"]["count"] == 2000 * 7
    assert m["e2e.mean"].baseline == pytest.approx(s["metrics"]["e2e"]["mean"], rel=1e-6)
    assert m["throughput"].baseline == pytest.approx(s["throughput"]["requests_per_s"],
                                                     rel=1e-6)
    assert m["output_throughput"].baseline == pytest.approx(
        s["throughput"]["output_tokens_per_s"], rel=1e-6)
    assert m["throughput"].source == "blocks" and m["throughput"].n_baseline == 2000
    assert all(x.verdict == "ok" for x in c.results[0].rows)
    assert c.exit_status == 0


def test_same_settings_never_regress(runs, tmp_path):
    """Five runs of one setting, compared pairwise with the defaults: no regression."""
    for i in range(3):
        make_run(tmp_path / str(i), n=1000, seed=10 + i)
    pairs = [(runs / "base", runs / "same")] + [(tmp_path / str(a), tmp_path / str(b))
                                                for a, b in ((0, 1), (1, 2), (0, 2))]
    for a, b in pairs:
        c = compare_runs(a, b)
        assert [x.verdict for x in c.results[0].rows if x.verdict == "regression"] == []
        assert c.exit_status == 0


def test_an_itl_shift_comes_from_tokens_parquet(runs):
    c = compare_runs(runs / "base", runs / "slow_itl", "itl.p50=10%,itl.p99=10%,tpot.p50=10%")
    m = rows_by_key(c)
    assert m["itl.p50"].rel == pytest.approx(0.2, abs=0.02)
    assert m["itl.p50"].verdict == m["itl.p99"].verdict == m["tpot.p50"].verdict == "regression"
    assert m["itl.p50"].source == "parquet"


def test_throughput_drop(runs):
    c = compare_runs(runs / "base", runs / "slower_rate",
                     "throughput=-5%,output_throughput=-10%,ttft.p50=10%")
    m = rows_by_key(c)
    assert m["throughput"].rel == pytest.approx(-0.2, abs=0.01)
    assert m["throughput"].verdict == m["output_throughput"].verdict == "regression"
    assert m["throughput"].ci[1] < -0.1
    assert m["ttft.p50"].verdict == "ok"
    c = compare_runs(runs / "slower_rate", runs / "base", "throughput=-5%")
    assert rows_by_key(c)["throughput"].verdict == "improvement"


def test_summary_only_falls_back_to_histograms(runs):
    full = rows_by_key(compare_runs(runs / "base", runs / "slow", "ttft.p50=10%,itl.p50=10%"))
    c = compare_runs(runs / "base", runs / "summary_only",
                     "ttft.p50=10%,itl.p50=10%,ttft.mean=10%,throughput=-5%")
    m = rows_by_key(c)
    assert m["ttft.p50"].source == m["itl.p50"].source == "histogram"
    assert m["throughput"].source == "timeseries"
    # same values as from Parquet (the summary_only run has the slow run's seed) within 0.1 %
    assert m["ttft.p50"].run == pytest.approx(full["ttft.p50"].run, rel=2e-3)
    assert m["itl.p50"].run == pytest.approx(full["itl.p50"].run, rel=2e-3)
    assert m["ttft.p50"].verdict == "regression" and m["ttft.p50"].ci[0] > 0.1
    assert m["itl.p50"].verdict == "ok"
    assert m["throughput"].ci is not None and m["throughput"].verdict == "ok"
    assert any("histograms" in n for n in c.results[0].notes)


def test_results_of_config_runs_are_matched(tmp_path):
    make_config_run(tmp_path / "base", [("chat", "openai", "a"), ("chat", "openai", "b"),
                                        ("long", "openai", "a")], n=500)
    make_config_run(tmp_path / "run", [("long", "openai", "a"), ("chat", "openai", "a"),
                                       ("rag", "vllm", "c")], n=500, ttft_scale=1.25)
    c = compare_runs(tmp_path / "base", tmp_path / "run", "ttft.p50=10%")
    assert [r.label for r in c.results] == ["chat · openai · a", "long · openai · a"]
    assert c.only_in_baseline == ["chat · openai · b"]
    assert c.only_in_run == ["rag · vllm · c"]
    assert [r.rows[0].verdict for r in c.results] == ["regression", "regression"]
    assert all(r.rows[0].source == "parquet" for r in c.results)
    # a subfolder gone: that result falls back to the combined summary
    import shutil
    shutil.rmtree(tmp_path / "run" / "chat--openai--a")
    c = compare_runs(tmp_path / "base", tmp_path / "run", "ttft.p50=10%")
    assert [r.rows[0].source for r in c.results] == ["histogram", "parquet"]
    # a single run against one result of a config run: the only results are compared
    make_run(tmp_path / "single", n=500, model="z")
    c = compare_runs(tmp_path / "base" / "chat--openai--a", tmp_path / "single", "ttft.p50=10%")
    assert c.results[0].notes[0] == "compared with the baseline's only result, chat · openai · a"
    assert any(n.startswith("configs differ: model 'a' → 'z'") for n in c.results[0].notes)


def test_nothing_to_compare_is_an_error(tmp_path):
    make_config_run(tmp_path / "base", [("chat", "openai", "a"), ("chat", "openai", "b")], n=100)
    make_config_run(tmp_path / "run", [("chat", "vllm", "a"), ("chat", "vllm", "b")], n=100)
    with pytest.raises(ConfigError, match=r"no result of .* matches one of .* by \(scenario, "
                       r"provider, model\): baseline has \['chat · openai · a', "):
        compare_runs(tmp_path / "base", tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no summary.json in .*empty'.*give the --output"):
        compare_runs(tmp_path / "empty", tmp_path / "run")
    (tmp_path / "empty" / "summary.json").write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="is not a lens-fast summary"):
        compare_runs(tmp_path / "empty", tmp_path / "run")


def test_unreadable_parquet_falls_back_with_a_note(runs, tmp_path):
    import shutil
    shutil.copytree(runs / "same", tmp_path / "broken")
    (tmp_path / "broken" / "requests.parquet").write_bytes(b"PAR1 no footer")
    c = compare_runs(runs / "base", tmp_path / "broken", "ttft.p50=10%,throughput=-5%")
    assert [m.source for m in c.results[0].rows] == ["histogram", "timeseries"]
    assert c.results[0].notes[0].startswith("run: requests.parquet unreadable (")
    shutil.copy(runs / "same" / "requests.parquet", tmp_path / "broken")
    (tmp_path / "broken" / "tokens.parquet").write_bytes(b"PAR1 no footer")
    c = compare_runs(runs / "base", tmp_path / "broken", "ttft.p50=10%,itl.p50=10%")
    assert [m.source for m in c.results[0].rows] == ["parquet", "histogram"]
    assert c.results[0].notes[0].startswith("run: tokens.parquet unreadable (")
    assert all(m.verdict == "ok" for m in c.results[0].rows)


def test_itl_of_huge_token_files_reads_a_bounded_part(runs, monkeypatch):
    import lens.output.compare as compare
    monkeypatch.setattr(compare, "MAX_TOKEN_ROWS", 6000)
    c = compare_runs(runs / "base", runs / "slow_itl", "itl.p50=10%")
    m = c.results[0].rows[0]
    assert 4000 < m.n_baseline < 6000 and m.verdict == "regression"
    assert m.rel == pytest.approx(0.2, abs=0.03)
    assert "baseline: ITL from 6,000 of 16,000 token stamps (2 of 4 row groups)" in \
        c.results[0].notes


def test_cost_is_bounded_for_large_samples():
    """A million values a side: seconds, not the minutes of resampling every value (the
    bound is loose for a shared machine; a loop over values would take far longer)."""
    rng = np.random.default_rng(0)
    a = rng.lognormal(3, 0.5, 1_000_000)
    times = np.arange(1_000_000.0)
    start = time.perf_counter()
    for stat in ("p50", "p99", "p999", "mean"):
        c = bootstrap_change(a, a * 1.03, stat, resamples=2000)
        assert c.ci[0] > 0.01 and c.ci[1] < 0.05, stat
    c = bootstrap_change(a, a * 1.03, "p99", baseline_times=times, run_times=times)
    assert c.ci[0] > 0.01 and c.ci[1] < 0.05
    assert time.perf_counter() - start < 10.0


# ------------------------------------------------------------------------ rendering and CLI
def test_markdown_and_console(runs):
    c = compare_runs(runs / "base", runs / "slow", "ttft.p50=10%,itl.p50=10%")
    md = comparison_markdown(c)
    lines = md.splitlines()
    m = rows_by_key(c)["ttft.p50"]
    assert lines[0] == ("## ❌ lens-fast compare: 1 regression(s) in default · openai · m: "
                        f"ttft.p50 {m.rel * 100:+.1f}% (limit +10%)")
    assert "### default · openai · m" in lines
    head = lines.index("### default · openai · m") + 2
    assert lines[head] == ("| metric | baseline | run | change | change % | 95% CI | "
                           "threshold | rank p | verdict |")
    assert lines[head + 1] == "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    row = lines[head + 2].split(" | ")
    assert row[0] == "| ttft.p50 (ms)" and row[-1] == "**regression** |"
    assert row[4] == f"{m.rel * 100:+.1f}%" and row[6] == "+10%" and row[7] == "<0.001"
    assert row[5] == f"[{m.ci[0] * 100:+.1f}%, {m.ci[1] * 100:+.1f}%]"
    assert lines[head + 3].split(" | ")[-1] == "ok |"
    assert "Requests: baseline ok 2000 failed 0 · run ok 1970 failed 30" in lines

    import io
    buf = io.StringIO()
    render_comparison(c, Console(file=buf, width=140, color_system=None))
    out = buf.getvalue()
    assert "ttft.p50 (ms)" in out and "regression" in out
    assert out.rstrip().splitlines()[-1].startswith("REGRESSION: 1 regression(s)")
    c = compare_runs(runs / "base", runs / "same", "ttft.p50=10%")
    assert comparison_markdown(c).splitlines()[0] == (
        "## ✅ lens-fast compare: no regression (1 metric(s) in 1 result(s))")


def test_cli_exit_status_markdown_and_json(runs, tmp_path):
    md, js = tmp_path / "summary.md", tmp_path / "c.json"
    r = CliRunner().invoke(compare_command, [str(runs / "base"), str(runs / "slow"),
                                             "--markdown", str(md), "--json", str(js)])
    assert r.exit_code == 1, r.output
    assert "REGRESSION" in r.output
    assert md.read_text().startswith("## ❌ lens-fast compare: ")
    assert "**regression**" in md.read_text()
    data = json.loads(js.read_text())
    assert data["schema"] == "lens-fast/compare/1" and data["regressions"] >= 1
    rows = {x["metric"]: x for x in data["results"][0]["metrics"]}
    assert list(rows) == ["ttft.p50", "ttft.p99", "itl.p50", "e2e.p50", "e2e.p99", "throughput"]
    assert rows["ttft.p50"]["verdict"] == "regression" and rows["ttft.p50"]["threshold"] == 0.1
    assert math.isclose(rows["ttft.p50"]["change"],
                        rows["ttft.p50"]["run"] - rows["ttft.p50"]["baseline"])
    r = CliRunner().invoke(compare_command, [str(runs / "base"), str(runs / "same"),
                                             "--max-regression", "ttft.p99=10%"])
    assert r.exit_code == 0, r.output
    assert "OK: no regression (1 metric(s) in 1 result(s))" in r.output


def test_cli_error_is_one_line_with_status_1(tmp_path, capsys):
    from lens.cli import main

    (tmp_path / "a").mkdir()
    with pytest.raises(SystemExit) as e:
        main(["compare", str(tmp_path / "a"), str(tmp_path / "a")])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("ConfigError: no summary.json in ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        main(["compare", str(tmp_path / "a"), str(tmp_path / "missing")])
    assert e.value.code == 2


def test_threshold_dataclass_is_plain():
    assert Threshold("ttft.p50", "ttft", "p50", 0.1, False, "ms") == t("ttft.p50=10%")
