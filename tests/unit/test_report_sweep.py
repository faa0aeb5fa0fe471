"""The report of a sweep's folder: sweep.json values → traces, marks and tables.

The sweep.json here is written by hand in the form ``lens-fast sweep`` writes it
(docs/sweep.md), with one step of every class: pass, fail, not steady, client-limited, a rerun
and an interrupted step.
"""
import copy
import json
import re

import orjson
import pytest
from lens_cli import cli

from lens.errors import ConfigError
from lens.output.report import write_html_report
from lens.output.report_data import read_summary
from lens.output.report_sweep import (
    SCHEMA,
    SYMBOLS,
    is_sweep,
    load_sweep,
    render_sweep_html,
    step_class,
    sweep_sections,
)

SLOS = [{"slo": "ttft.p99=200ms", "metric": "ttft", "stat": "p99", "limit_ms": 200.0},
        {"slo": "e2e.p95=1s", "metric": "e2e", "stat": "p95", "limit_ms": 1000.0}]


def step(index, kind, rate, verdict, ttft=(20.0, 30.0), e2e=(300.0, 400.0), reasons=(),
         achieved=None, done=None, good=None, errors=0.0, **extra):
    """One step record: ttft (p50, p99) and e2e (p50, p95) in ms; rates in req/s."""
    metrics = {"ttft": {"count": 100, "mean": ttft[0], "p50": ttft[0], "p90": ttft[1],
                        "p95": ttft[1], "p99": ttft[1], "max": ttft[1]},
               "e2e": {"count": 100, "mean": e2e[0], "p50": e2e[0], "p90": e2e[1],
                       "p95": e2e[1], "p99": e2e[1], "max": e2e[1]}}
    name = f"{index:02d}-{kind}-" + (f"{rate:g}rps" if rate else "c64")
    return {"index": index, "kind": kind, "dir": f"steps/{name}", "offered_rps": rate,
            "concurrency": None if rate else 64, "workers": 1,
            "achieved_rps": achieved if achieved is not None else (rate or 180.0),
            "throughput_rps": done if done is not None else 0.95 * (rate or 180.0),
            "goodput_rps": good if good is not None else (rate or 180.0),
            "error_rate": errors, "verdict": verdict, "reasons": list(reasons),
            "slo": [{"slo": "ttft.p99=200ms", "metric": "ttft", "stat": "p99", "limit_ms": 200,
                     "value_ms": ttft[1], "ok": ttft[1] <= 200},
                    {"slo": "e2e.p95=1s", "metric": "e2e", "stat": "p95", "limit_ms": 1000,
                     "value_ms": e2e[1], "ok": e2e[1] <= 1000}],
            "metrics": metrics, "steady": None if rate is None else {"steady": True},
            "counts": {"sent": 100, "ok": 100, "failed": 0, "dropped": 0, "cancelled": 0},
            "errors": {}, **extra}


STEADY_NOT = "not steady: ttft_sched p50 rose from 20.0 to 60.0 ms"
STEPS = [
    step(1, "probe", None, "probe"),
    step(2, "step", 100.0, "pass"),
    step(3, "step", 200.0, "fail", ttft=(600.0, 1500.0), e2e=(4000.0, 12000.0), good=20.0,
         done=150.0, errors=0.02, reasons=["ttft.p99 1500.0 ms > 200 ms", STEADY_NOT],
         steady={"steady": False}),
    step(4, "step", 150.0, "unsteady", ttft=(25.0, 90.0), reasons=[STEADY_NOT],
         action="not steady yet: running it again for 30 s", steady={"steady": False}),
    step(5, "extension", 150.0, "fail", ttft=(30.0, 120.0), steady={"steady": False},
         reasons=[STEADY_NOT, "still not steady at --max-step-duration"]),
    step(6, "step", 125.0, "client", achieved=90.0,
         reasons=["client-limited: scheduling lag p99 40.0 ms > 10 ms"]),
    step(7, "retry", 125.0, "pass", ttft=(21.0, 35.0)),
    step(8, "confirm", 125.0, "pass", ttft=(22.0, 40.0)),
    step(9, "step", 140.0, "interrupted", reasons=["interrupted before the step's end"]),
]
#: The curve: per rate, the last pass/fail step there.
CURVE = [{"offered_rps": r, "step": i} for r, i in ((100.0, 2), (125.0, 8), (150.0, 5),
                                                    (200.0, 3))]


def document(**change):
    doc = {"schema": SCHEMA,
           "metadata": {"command": "lens-fast sweep --slo ttft.p99=200ms,e2e.p95=1s",
                        "started_at": "2026-01-01T00:00:00Z", "mode": "auto", "host": "lg-1",
                        "cpu_count": 4, "versions": {"lens-fast": "0.1.0"}, "wall_s": 98.5,
                        "target": {"provider": "vllm", "model": "m", "url": "http://h:8000/v1"},
                        "config": {"api_key": "sk-live-SECRET", "max_tokens": 64},
                        "embedded_mock": {"saturation_rps": 170.0}, "interrupted": False},
           "settings": {"rates": "auto", "slos": ["ttft.p99=200ms", "e2e.p95=1s"],
                        "max_error_rate": 0.01},
           "slo": SLOS,
           "result": {"status": "found", "max_rate": 125.0, "confirmed": True, "limit": "slo",
                      "message": "highest rate meeting every SLO: 125 req/s (confirmed)",
                      "exit_status": 0, "capacity_estimate_rps": 180.0,
                      "knee": {"rate": 150.0, "metric": "ttft", "stat": "p99",
                               "method": "kneedle"},
                      "bracket_rps": {"passed": 125.0, "failed": 150.0}},
           "curve": CURVE, "steps": STEPS}
    doc.update(change)
    return copy.deepcopy(doc)


def make_sweep(path, doc=None, step_dirs=True):
    path.mkdir(parents=True, exist_ok=True)
    doc = document() if doc is None else doc
    (path / "sweep.json").write_bytes(orjson.dumps(doc))
    if step_dirs:
        for s in doc["steps"]:
            (path / s["dir"]).mkdir(parents=True, exist_ok=True)
    return path


def plots(tmp_path, doc=None):
    sw = load_sweep(make_sweep(tmp_path / "sw", doc))
    return {p.title: p for _, ps in sweep_sections(sw) for p in ps}


def trace(plot, name):
    [t] = [t for t in plot.traces if t["name"] == name]
    return t


def marks(plot):
    return {a["text"]: s["x0"] for s, a in zip(plot.layout["shapes"],
                                               plot.layout["annotations"], strict=True)}


# ------------------------------------------------------------------------- plots
@pytest.mark.parametrize("index, cls", [(2, "pass"), (3, "fail"), (4, "unsteady"),
                                        (5, "unsteady"), (6, "client"), (9, "interrupted")])
def test_step_class(index, cls):
    assert step_class(STEPS[index - 1]) == cls
    assert step_class({"verdict": "something new"}) == "fail"


def test_latency_plot_draws_the_curve_with_symbols_and_the_slo_line(tmp_path):
    p = plots(tmp_path)
    assert list(p) == ["TTFT vs offered rate", "E2E vs offered rate",
                       "Throughput vs offered rate",
                       "Error rate vs offered rate (failed, dropped, cancelled)"]
    ttft = p["TTFT vs offered rate"]
    p50, p99 = trace(ttft, "ttft p50"), trace(ttft, "ttft p99")
    assert p50["x"] == [100.0, 125.0, 150.0, 200.0] and p50["mode"] == "lines+markers"
    assert p50["y"] == [20.0, 22.0, 30.0, 600.0]
    assert p99["y"] == [30.0, 40.0, 120.0, 1500.0]      # the SLO's own values (step "slo")
    assert p50["marker"]["symbol"] == ["circle", "circle", "diamond", "x"]
    # off the curve, in run order: the unsteady run, the client-limited and the rerun step
    # at 125, the interrupted one; hollow
    off = trace(ttft, "ttft p99 (off the curve)")
    assert off["mode"] == "markers" and not off["showlegend"]
    assert off["x"] == [150.0, 125.0, 125.0, 140.0] and off["y"] == [90.0, 30.0, 35.0, 30.0]
    assert off["marker"]["symbol"] == ["diamond-open", "triangle-up-open", "circle-open",
                                       "square-open"]
    assert "step 6 · step · 1 worker(s)<br>client: client-limited: scheduling lag p99 40.0 ms "\
           "&gt; 10 ms" in off["text"][1]
    slo = trace(ttft, "SLO ttft.p99 ≤ 200 ms")
    assert slo["y"] == [200.0, 200.0] and slo["line"]["color"] == p99["line"]["color"]
    assert slo["x"][0] < 100 and slo["x"][1] > 200
    assert marks(ttft) == {"max rate 125 req/s": 125.0, "knee 150 req/s": 150.0}
    assert ttft.layout["shapes"][0]["yref"] == "paper"
    # 20 ms to 1.5 s: a log axis keeps the low rates readable
    assert ttft.layout["yaxis"]["type"] == "log"
    assert ttft.layout["yaxis"]["title"]["text"] == "TTFT (ms, log scale)"


def test_latency_in_seconds_past_10_s(tmp_path):
    e2e = plots(tmp_path)["E2E vs offered rate"]
    assert e2e.layout["yaxis"]["title"]["text"] == "E2E (s)"      # 300 ms … 12 s: 40×
    assert "type" not in e2e.layout["yaxis"]
    assert trace(e2e, "e2e p95")["y"] == [0.4, 0.4, 0.4, 12.0]
    assert trace(e2e, "SLO e2e.p95 ≤ 1000 ms")["y"] == [1.0, 1.0]


def test_throughput_and_error_plots(tmp_path):
    p = plots(tmp_path)
    tp = p["Throughput vs offered rate"]
    assert trace(tp, "achieved (start rate)")["y"] == [100.0, 125.0, 150.0, 200.0]
    assert trace(tp, "completed (ok requests/s)")["y"] == pytest.approx([95, 118.75, 142.5, 150])
    assert trace(tp, "goodput (met every SLO)")["y"] == [100.0, 125.0, 150.0, 20.0]
    assert trace(tp, "achieved (start rate) (off the curve)")["y"][1] == 90.0  # client-limited
    line = trace(tp, "offered (y = x)")
    assert line["x"] == line["y"] and line["x"][0] < 100 < 200 < line["x"][1]
    assert trace(tp, "probe's capacity estimate 180.0 req/s")["y"] == [180.0, 180.0]
    assert trace(tp, "mock saturation (computed) 170.0 req/s")["y"] == [170.0, 170.0]
    assert marks(tp) == {"max rate 125 req/s": 125.0, "knee 150 req/s": 150.0}
    err = p["Error rate vs offered rate (failed, dropped, cancelled)"]
    assert trace(err, "error rate")["y"] == [0.0, 0.0, 0.0, 2.0]
    assert trace(err, "--max-error-rate 1 %")["y"] == [1.0, 1.0]
    assert marks(err) == {"max rate 125 req/s": 125.0, "knee 150 req/s": 150.0}


def test_without_slos_plots_ttft_and_the_knee_metric(tmp_path):
    doc = document(slo=[], result={"status": "found", "max_rate": None, "knee": None})
    for s in doc["steps"]:
        s["slo"] = []
        s["metrics"]["e2e_sched"] = s["metrics"]["e2e"]
    p = plots(tmp_path, doc)
    assert list(p)[:2] == ["TTFT vs offered rate", "E2E from the intended start vs offered rate"]
    ttft = p["TTFT vs offered rate"]
    assert [t["name"] for t in ttft.traces] == ["ttft p50", "ttft p50 (off the curve)",
                                                "ttft p99", "ttft p99 (off the curve)"]
    assert trace(ttft, "ttft p99")["y"] == [30.0, 40.0, 120.0, 1500.0]   # from metrics
    assert ttft.layout["shapes"] == [] and ttft.layout["annotations"] == []


def test_a_p50_slo_also_gets_p99_and_only_curve_points(tmp_path):
    doc = document(slo=[{"slo": "ttft.p50=100ms", "metric": "ttft", "stat": "p50",
                         "limit_ms": 100.0}],
                   steps=[step(1, "step", 10.0, "pass"), step(2, "step", 20.0, "pass")],
                   curve=[{"offered_rps": 10.0, "step": 1}, {"offered_rps": 20.0, "step": 2}])
    ttft = plots(tmp_path, doc)["TTFT vs offered rate"]
    assert [t["name"] for t in ttft.traces] == ["ttft p50", "ttft p99", "SLO ttft.p50 ≤ 100 ms"]
    assert marks(ttft) == {"max rate 125 req/s": 125.0, "knee 150 req/s": 150.0}


def test_a_sweep_with_no_open_loop_step_says_so(tmp_path):
    doc = document(steps=[step(1, "probe", None, "client")], curve=[])
    p = plots(tmp_path, doc)
    assert all(not x.traces for x in p.values())
    assert p["Throughput vs offered rate"].missing == "no open-loop step yet"
    page = render_sweep_html(load_sweep(tmp_path / "sw"))
    assert "Not drawn: no open-loop step with a value of this metric yet." in page


# ------------------------------------------------------------------------- page
def figures(page):
    return json.loads(re.search(r"const FIGURES = (.*?);\n", page, re.S).group(1))


def test_page_header_steps_and_no_secret(tmp_path):
    d = make_sweep(tmp_path / "sw")
    (d / STEPS[-1]["dir"]).rmdir()
    out = write_html_report(d, tmp_path / "html" / "report.html")
    page = out.read_text()
    assert len(figures(page)) == 4
    assert "sk-live-SECRET" not in page and "***" in page
    for text in ("lens-fast sweep --slo ttft.p99=200ms,e2e.p95=1s", "auto: probe, bisection",
                 "ttft.p99=200ms, e2e.p95=1s", "highest rate meeting every SLO: 125 req/s",
                 "125 req/s (confirmed), limit: slo", "150 req/s (ttft p99, kneedle)",
                 "180.0 req/s (the probe)", "passed 125 · failed 150 req/s"):
        assert text in page, text
    # one row per step, the folder linked relative to the page
    assert "<a href='../sw/steps/02-step-100rps/'>steps/02-step-100rps</a>" in page
    assert "steps/09-step-140rps</a> (missing)" in page
    assert "◆ unsteady" in page and "▲ client" in page and "■ interrupted" in page
    assert "then: not steady yet: running it again for 30 s" in page
    assert "<script>alert" not in page


def test_names_are_escaped(tmp_path):
    doc = document()
    doc["metadata"]["target"]["model"] = "</script><script>alert(1)</script>"
    doc["steps"][1]["reasons"] = ["<b>x</b>"]
    page = render_sweep_html(load_sweep(make_sweep(tmp_path / "sw", doc)))
    assert "<script>alert(1)" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


# ------------------------------------------------------------------------- bad input
def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _doc(**change):
    return orjson.dumps(document(**change))


def _step_without_index():
    doc = document()
    del doc["steps"][2]["index"]
    return orjson.dumps(doc)


@pytest.mark.parametrize("data, message", [
    (None, "no sweep.json in"),
    (b"{not json", r"sweep\.json' is not valid JSON"),
    (b'{"schema": "lens-fast/summary/1"}', r"is not a lens-fast sweep \(schema "
                                           r"'lens-fast/summary/1', expected 'lens-fast/sweep/1'"),
    (b"[]", r"is not a lens-fast sweep \(schema 'list'"),
    (_doc(steps="all"), "not a complete lens-fast sweep: steps should be a list, got str"),
    (_step_without_index(), r"steps\[2\]\.index should be a int, got nothing"),
    (_doc(slo=[{"slo": "x", "metric": "ttft", "stat": "p99", "limit_ms": "200ms"}]),
     r"slo\[0\]\.limit_ms should be a num, got str '200ms'"),
    (_doc(curve=[{"offered_rps": 5.0, "step": 42}]), r"curve\[0\] names step 42, which steps "
                                                     "lacks"),
    (_doc(result={"status": "found", "knee": {"rate": None}}), r"result\.knee\.rate should"),
])
def test_bad_sweep_json_is_one_clear_error(tmp_path, data, message):
    d = tmp_path / "sw"
    d.mkdir()
    if data is not None:
        _write(d / "sweep.json", data)
    with pytest.raises(ConfigError, match=message):
        load_sweep(d)
    assert is_sweep(d) == (data is not None)


def test_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; give the --output folder of a "
                                          "lens-fast sweep"):
        load_sweep(tmp_path / "nope")


def test_schema_is_the_sweeps():
    from lens.engine.sweep_command import SCHEMA as WRITTEN

    assert SCHEMA == WRITTEN
    assert set(SYMBOLS) == {"pass", "fail", "unsteady", "client", "interrupted"}


def test_read_summary_of_a_sweep_points_to_the_sweep_report(tmp_path):
    d = make_sweep(tmp_path / "sw")
    with pytest.raises(ConfigError, match=r"holds a sweep \(sweep\.json\), not one run's "
                                          r"summary\.json; `lens-fast report` draws the sweep"):
        read_summary(d)


# ------------------------------------------------------------------------- the command
def test_command_prints_the_sweep_table_and_result(tmp_path, capsys):
    d = make_sweep(tmp_path / "sw")
    assert cli("report", str(d)) == 0
    out = capsys.readouterr().out
    assert "sweep started 2026-01-01T00:00:00Z · 98.5 s · lens-fast sweep --slo" in out
    assert "lens-fast sweep · vllm · m · http://h:8000/v1" in out
    assert re.search(r"ttft\.p99=200ms\s+.*e2e\.p95=1s\s+.*errors\s+.*steady\s+.*verdict", out)
    assert re.search(r"│ 1 │ probe\s+│\s+1 │\s+c=64 │\s+180\.0 │", out)
    assert re.search(r"│ 3 │ step\s+│.*│\s+1500\.0 ms ✗ │\s+12\.0 s ✗ │\s+2\.0% │\s+no │ fail ",
                     out)
    assert re.search(r"│ 4 │ step\s+│.*│\s+no │ unsteady ", out)
    assert "highest rate meeting every SLO: 125 req/s (confirmed)" in out
    assert ("max rate 125 req/s (confirmed) · limit: slo · knee of ttft p99 vs rate: 150 req/s"
            in out)
    assert f"lens-fast report {d}/steps/NAME" in out
    assert "Report:" not in out and not (d / "report.html").exists()


def test_command_writes_the_sweep_html(tmp_path, capsys):
    d = make_sweep(tmp_path / "sw")
    assert cli("report", str(d / "sweep.json"), "--html", str(d / "report.html")) == 0
    out = capsys.readouterr().out
    assert re.search(rf"Report: {re.escape(str(d / 'report.html'))} \([\d.]+ MB", out)
    page = (d / "report.html").read_text()
    assert len(figures(page)) == 4 and "<a href='steps/02-step-100rps/'>" in page


def test_command_on_a_running_sweep(tmp_path, capsys):
    doc = document(result={"status": "running", "max_rate": None, "knee": None})
    d = make_sweep(tmp_path / "sw", doc)
    assert cli("report", str(d), "--html", str(tmp_path / "r.html")) == 0
    out = capsys.readouterr().out
    assert "status running (9 step(s))" in out and "max rate: none · knee: none" in out


def test_command_bad_sweep_exits_1_with_one_line(tmp_path, capsys):
    _write(tmp_path / "sw" / "sweep.json", b"{}")
    assert cli("report", str(tmp_path / "sw")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ConfigError: ") and "sweep.json" in err
