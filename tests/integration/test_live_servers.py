"""Live metrics against real servers from Debian packages: Prometheus, Pushgateway, InfluxDB 1.x.

One ``lens-fast run`` (a subprocess, as a user runs it) of 3 s against the mock, with
``--prometheus-port``, ``--pushgateway`` and ``--influx``; each server runs on 127.0.0.1 with a
free port and a temporary directory, and what it stored is read back through its own API.
A missing binary fails the test with the package to install (``.ci/run`` installs them).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import stop_process

pytestmark = pytest.mark.slow

BINARIES = {   # binary → Debian package
    "prometheus": "prometheus",
    "prometheus-pushgateway": "prometheus-pushgateway",
    "influxd": "influxdb",
}
RUN_S = 3


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}")
                                  else None)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install {BINARIES[name]} "
                    "(.ci/run installs it)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process with its log in its own directory; ``ready`` polls a health URL."""

    def __init__(self, name: str, argv: list[str], workdir: Path, health: str):
        self.name, self.health, self.workdir = name, health, workdir
        workdir.mkdir(exist_ok=True)
        self.log = workdir / f"{name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)

    def ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.health, timeout=1.0).status_code < 300:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        pytest.fail(f"{self.name} did not start; its log:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process(self.proc)


def start_prometheus(tmp: Path, scrape_port: int) -> tuple[Server, str]:
    port = _free_port()
    tmp.mkdir()
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: lens-fast\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{scrape_port}']\n")
    argv = [_binary("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn"]
    base = f"http://127.0.0.1:{port}"
    return Server("prometheus", argv, tmp, base + "/-/ready"), base


def start_pushgateway(tmp: Path) -> tuple[Server, str]:
    port = _free_port()
    # Debian's default --persistence.file is /var/lib/prometheus/pushgateway.data: keep it here
    argv = [_binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={tmp / 'pushgateway.data'}", "--log.level=warn"]
    base = f"http://127.0.0.1:{port}"
    return Server("pushgateway", argv, tmp, base + "/-/ready"), base


def start_influxd(tmp: Path) -> tuple[Server, str]:
    port, rpc = _free_port(), _free_port()
    tmp.mkdir()
    # every directory and both listeners of InfluxDB 1.x moved here; no usage reporting
    (tmp / "influxdb.conf").write_text(f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{tmp / 'meta'}"
[data]
  dir = "{tmp / 'data'}"
  wal-dir = "{tmp / 'wal'}"
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
""")
    argv = [_binary("influxd"), "run", "-config", str(tmp / "influxdb.conf")]
    base = f"http://127.0.0.1:{port}"
    return Server("influxd", argv, tmp, base + "/ping"), base


def _wait_for_target(base: str, timeout_s: float = 15.0) -> None:
    """Wait until Prometheus has its scrape target (it syncs discovered targets every 5 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = httpx.get(base + "/api/v1/targets", timeout=2)
        if r.json()["data"]["activeTargets"]:
            return
        time.sleep(0.1)
    pytest.fail(f"Prometheus has no scrape target after {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def live_run(tmp_path_factory, mock_endpoint):
    """Start the three servers, run lens-fast with all three live outputs, stop them after."""
    for name in BINARIES:
        _binary(name)
    tmp = tmp_path_factory.mktemp("live")
    lens_port = _free_port()
    servers = []
    try:
        prom, prom_url = start_prometheus(tmp / "prometheus", lens_port)
        servers.append(prom)
        pgw, pgw_url = start_pushgateway(tmp / "pushgateway")
        servers.append(pgw)
        influx, influx_url = start_influxd(tmp / "influxdb")
        servers.append(influx)
        for s in servers:
            s.ready()
        _wait_for_target(prom_url)
        r = httpx.post(influx_url + "/query", data={"q": "CREATE DATABASE lens_test"})
        assert r.status_code == 200, r.text

        out = tmp / "run"
        t_start = time.time()
        run = subprocess.run(
            [sys.executable, "-m", "lens", "run", "--url", mock_endpoint.url, "--cores", "1",
             "--rps", "25", "--duration", f"{RUN_S}s", "--max-tokens", "8",
             "--output", str(out), "--no-progress",
             "--prometheus-port", str(lens_port), "--pushgateway", pgw_url,
             "--influx", influx_url, "--influx-db", "lens_test"],
            capture_output=True, text=True, timeout=60)
        t_end = time.time()
        assert run.returncode == 0, run.stdout + run.stderr
        assert "warning" not in run.stderr, run.stderr
        counts = json.loads((out / "summary.json").read_text())["scenarios"][0]["results"][0][
            "counts"]
        yield {"counts": counts, "prometheus": prom_url, "pushgateway": pgw_url,
               "influx": influx_url, "t_start": t_start, "t_end": t_end}
    finally:
        for s in servers:
            s.stop()


def _prom_query(base: str, query: str) -> float | None:
    r = httpx.get(base + "/api/v1/query", params={"query": query}, timeout=5)
    r.raise_for_status()
    result = r.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scraped_the_run_count(live_run):
    c, base = live_run["counts"], live_run["prometheus"]
    finished = c["ok"] + c["failed"] + c["dropped"] + c["cancelled"]
    assert finished >= RUN_S * 25 * 0.9
    # lens-fast waited for a scrape of its final values before it exited; that scrape failing
    # afterwards marks the series stale, so read the last sample of each (last_over_time)
    assert _prom_query(base, "sum(last_over_time(lens_requests_total[5m]))") == finished
    assert _prom_query(base, 'sum(last_over_time(lens_requests_total{outcome="ok"}[5m]))') \
        == c["ok"]
    assert _prom_query(base, "sum(last_over_time(lens_ttft_seconds_count[5m]))") == c["ok"]
    assert _prom_query(base, "sum(last_over_time(lens_output_tokens_total[5m]))") \
        == c["output_tokens"]
    # and it saw the count grow during the run, not only at the end
    r = httpx.get(base + "/api/v1/query_range", timeout=5, params={
        "query": "sum(lens_requests_total)", "start": live_run["t_start"],
        "end": live_run["t_end"] + 1, "step": "1s"})
    values = [float(v) for _, v in r.json()["data"]["result"][0]["values"]]
    assert values == sorted(values)
    assert len({v for v in values if 0 < v < finished}) >= 1, values


def test_pushgateway_holds_the_final_count(live_run):
    c = live_run["counts"]
    text = httpx.get(live_run["pushgateway"] + "/metrics", timeout=5).text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    samples = [s for s in fams["lens_requests"].samples if s.labels.get("job") == "lens-fast"]
    assert sum(s.value for s in samples) == c["ok"] + c["failed"] + c["dropped"] + c["cancelled"]
    assert {s.labels["scenario"] for s in samples} == {"default"}
    tokens = [s for s in fams["lens_output_tokens"].samples if s.labels.get("job") == "lens-fast"]
    assert sum(s.value for s in tokens) == c["output_tokens"]


def test_influxdb_holds_per_second_points(live_run):
    c = live_run["counts"]
    r = httpx.get(live_run["influx"] + "/query", timeout=5, params={
        "db": "lens_test",
        "q": "SELECT sum(requests_ok), sum(started), sum(output_tokens), count(started) "
             "FROM lens"})
    assert r.status_code == 200, r.text
    series = r.json()["results"][0]["series"][0]
    row = dict(zip(series["columns"], series["values"][0], strict=True))
    assert row["sum"] == c["ok"]
    assert row["sum_1"] == c["sent"]
    assert row["sum_2"] == c["output_tokens"]
    assert RUN_S <= row["count"] <= RUN_S + 3          # one point per second of the run
