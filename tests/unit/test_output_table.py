"""render_table: the numbers, an empty run, a saturated client, piped output."""
import io

import numpy as np
from rich.console import Console

from lens.output import RunResults, build_summary, empty_rows, render_table
from lens.output.table import format_value

T0 = 1_000_000_000_000
MS = 1_000_000


def summary_result(n=10, **client):
    r = empty_rows(n)
    r["request_id"] = np.arange(n)
    r["status"] = 200
    r["t_sched_ns"] = T0 + np.arange(n) * 100 * MS
    r["t_start_ns"] = r["t_sched_ns"]
    r["t_first_token_ns"] = r["t_start_ns"] + 250 * MS
    r["t_last_token_ns"] = r["t_first_token_ns"] + 1000 * MS
    r["t_end_ns"] = r["t_last_token_ns"]
    r["output_tokens"] = r["token_events"] = 101
    r["error"][0] = 5
    res = RunResults(T0, targets=[{"provider": "vllm", "model": "qwen", "url": "http://h"}])
    res.add_rows(r)
    res.client = client
    return build_summary(res)["scenarios"][0]["results"][0]


def line(text, label):
    return next(x for x in text.splitlines() if x.strip().startswith(label))


def render(result):
    console = Console(record=True, width=120)
    render_table(result, console)
    return console.export_text()


def test_table_shows_the_numbers():
    text = render(summary_result(worker_cpu_percent=[33.0]))
    assert "vllm · qwen · http://h" in text
    for label in ("TTFT (ms)", "TTFT from sched (ms)", "ITL (ms)", "TPOT (ms)", "E2E (ms)",
                  "E2E from sched (ms)", "Output tok/s per req"):
        assert f"  {label} " in text
    assert line(text, "TTFT (ms)").count(" 250.0 ") == 8   # min … max of 9 equal TTFTs
    assert line(text, "E2E (ms)").count(" 1250.0 ") == 8
    assert line(text, "Output tok/s").count(" 80.80 ") == 8   # 101 tokens / 1.25 s
    assert line(text, "TPOT (ms)").count(" 10.00 ") == 8
    assert line(text, "ITL (ms)").count(" - ") == 8
    assert "ok 9  failed 1  dropped 0" in text
    assert "timeout_first_token 1" in text
    assert "worker CPU 33%" in text
    assert "SATURATED" not in text


def test_empty_run_renders_dashes():
    res = RunResults(T0, targets=[{"model": "m"}])
    text = render(build_summary(res)["scenarios"][0]["results"][0])
    assert line(text, "TTFT (ms)").count(" - ") == 8
    assert line(text, "Output tok/s").count(" - ") == 8
    assert "ok 0  failed 0" in text
    render({})                                        # even a bare dict does not crash


def test_saturated_client_gets_a_red_line():
    result = summary_result(worker_cpu_percent=[99.0])
    console = Console(record=True, width=120, force_terminal=True, color_system="standard")
    render_table(result, console)
    text = console.export_text(clear=False)
    assert "CLIENT SATURATED: worker CPU >= 90% (worker 0 99%)" in text
    assert "\x1b[1;31mCLIENT SATURATED" in console.export_text(styles=True)


def test_narrow_console_keeps_the_main_columns():
    console = Console(record=True, width=80)
    render_table(summary_result(), console)
    text = console.export_text()
    assert "p99.9" not in text and "p99" in text
    assert line(text, "E2E (ms)").split() == ["E2E", "(ms)", "9"] + ["1250.0"] * 5


def test_piped_output_has_no_escape_codes():
    out = io.StringIO()
    render_table(summary_result(worker_cpu_percent=[99.0]), Console(file=out, width=100))
    text = out.getvalue()
    assert "CLIENT SATURATED" in text and "TTFT" in text
    assert "\x1b[" not in text


def test_format_value():
    assert format_value(None) == "-"
    assert format_value(0) == "0.00"
    assert format_value(0.01234) == "0.012"
    assert format_value(12.345) == "12.35"
    assert format_value(12345.678) == "12345.7"
