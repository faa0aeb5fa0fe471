"""The HTML report of a real run, opened in headless Chromium: every plot drawn, no errors.

Chromium is Debian's ``chromium`` package (``apt-get install chromium``; ``.ci/run``
installs it); ``LENS_CHROMIUM`` names another binary. Without one the test fails: a report
nobody has seen render is not tested.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from lens.mock.process import MockProcess

#: Prepended to the page under test: console.error/warn, uncaught errors and rejected promises
#: go into a <pre id=lens-console> that --dump-dom shows (Chromium's own log gives every
#: console message the same level).
RECORDER = """<script>
window.__lensConsole = [];
function __lensRecord(m) {
  __lensConsole.push(String(m));
  let p = document.getElementById("lens-console");
  if (!p && document.body) { p = document.createElement("pre"); p.id = "lens-console";
                             document.body.appendChild(p); }
  if (p) p.textContent = JSON.stringify(__lensConsole);
}
for (const k of ["error", "warn"]) {
  const f = console[k];
  console[k] = (...a) => { __lensRecord(k + ": " + a.join(" ")); f.apply(console, a); };
}
addEventListener("error", e => __lensRecord("uncaught: " + e.message));
addEventListener("unhandledrejection", e => __lensRecord("rejection: " + e.reason));
addEventListener("load", () => setTimeout(() => __lensRecord("loaded"), 500));
</script>"""


def chromium() -> str:
    found = (os.environ.get("LENS_CHROMIUM") or shutil.which("chromium")
             or shutil.which("chromium-browser"))
    if not found:
        pytest.fail("no Chromium to open the HTML report in: apt-get install chromium "
                    "(or set LENS_CHROMIUM to a Chromium/Chrome binary)")
    return found


def lens(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lens", *args], capture_output=True,
                          text=True, timeout=timeout)


def browse(page: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    """Open ``page`` (a file) in headless Chromium and return the finished process."""
    return subprocess.run(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
         "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
         "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0", *extra,
         f"file://{page}"], capture_output=True, text=True, timeout=60)


def render(page: str, tmp_path) -> tuple[subprocess.CompletedProcess, str, dict[str, str]]:
    """Open a report page in Chromium with RECORDER; assert it loaded without console errors.

    Returns the browser process, the rendered DOM and the plot cards by their title.
    """
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + RECORDER, 1))
    b = browse(str(probe), tmp_path, "--dump-dom")
    assert b.returncode == 0, b.stderr[-2000:]
    dom = b.stdout
    console = json.loads(re.search(r'<pre id="lens-console">(.*?)</pre>', dom, re.S).group(1)
                         .replace("&quot;", '"').replace("&amp;", "&"))
    assert console == ["loaded"], f"console errors in the report: {console}"
    cards = dom[dom.index("<main>"):].split('<div class="card">')[1:]
    plots = {re.search(r"<h3>(.*?)</h3>", c).group(1): c for c in cards if 'id="plot' in c}
    return b, dom, plots


def test_report_renders_in_chromium(tmp_path):
    chromium()                                        # no browser: fail before the run
    out = tmp_path / "run"
    with MockProcess(ttft_ms=30.0, ttft_dist="lognormal", ttft_spread_ms=10.0, itl_ms=3.0,
                     itl_dist="normal", itl_spread_ms=0.5, fail_rate=0.05) as mock:
        r = lens("run", "--url", mock.url, "--rps", "100", "--requests", "200",
                 "--max-tokens", "24", "--cores", "1", "--output", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    html = tmp_path / "report.html"
    r = lens("report", str(out), "--html", str(html))
    assert r.returncode == 0, r.stderr
    assert "TTFT (ms)" in r.stdout and f"Report: {html}" in r.stdout
    page = html.read_text()
    n_plots = len(json.loads(re.search(r"const FIGURES = (.*?);\n", page, re.S).group(1)))
    assert n_plots == 10, "every plot of a run with Parquet files is drawn"
    assert "Not drawn" not in page

    b, dom, plots = render(page, tmp_path)
    assert "Uncaught" not in b.stderr, b.stderr[-2000:]

    assert len(re.findall(r'class="main-svg"', dom)) >= n_plots
    assert len(plots) == n_plots
    for title, p in plots.items():
        assert 'class="js-plotly-plot"' in p, f"{title}: not drawn"
        assert re.search(r'<g class="trace (scatter|bars)', p), f"{title}: no trace"
        assert re.search(r'class="js-line" d="M[^"]{8,}|class="point"><path d="M[^"]{8,}', p), \
            f"{title}: an empty trace"
    # 5 % of the requests fail at the mock: bars of http_status errors
    [errors] = [p for t, p in plots.items() if t.startswith("Errors over time")]
    assert re.search(r'<g class="trace bars".*?<g class="point"><path d="M[^"]{8,}', errors)


def test_sweep_report_renders_in_chromium(tmp_path):
    """A short list sweep of the embedded mock with --format html: OUT/report.html has the
    curves against the offered rate, drawn with the SLO lines and the max rate marked."""
    chromium()
    out = tmp_path / "sweep"
    r = lens("sweep", "--rates", "20,40", "--slo", "ttft.p99=150ms,e2e.p95=2s", "--format",
             "html", "--step-duration", "2s", "--max-step-duration", "2s", "--drain", "2s",
             "--max-sched-lag", "100ms", "--max-tokens", "32", "--cores", "1", "--no-progress",
             "--output", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Report: {out / 'report.html'}" in r.stdout
    r = lens("report", str(out))
    assert r.returncode == 0, r.stderr
    assert "highest rate meeting every SLO: 40 req/s" in r.stdout
    assert "max rate 40 req/s · limit: slo · knee: none" in r.stdout
    page = (out / "report.html").read_text()
    figs = json.loads(re.search(r"const FIGURES = (.*?);\n", page, re.S).group(1))
    assert len(figs) == 4 and "Not drawn" not in page
    assert all(f["layout"]["shapes"][0]["x0"] == 40.0 for f in figs)

    _, dom, plots = render(page, tmp_path)
    assert list(plots) == ["TTFT vs offered rate", "E2E vs offered rate",
                           "Throughput vs offered rate",
                           "Error rate vs offered rate (failed, dropped, cancelled)"]
    for title, p in plots.items():
        assert 'class="js-plotly-plot"' in p, f"{title}: not drawn"
        assert re.search(r'class="js-line" d="M[^"]{8,}', p), f"{title}: no line"
        assert len(re.findall(r'class="point"', p)) >= 2, f"{title}: no step markers"
        assert re.search(r'class="shape-group"[^>]*><path[^>]* d="M[^"]{8,}', p), \
            f"{title}: no max-rate line"
        assert "max rate 40 req/s" in p, f"{title}: the max rate is not labelled"
    assert "SLO ttft.p99 ≤ 150 ms" in plots["TTFT vs offered rate"]
    assert "steps/02-step-40rps</a>" in dom
