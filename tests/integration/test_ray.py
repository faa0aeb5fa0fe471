"""Distributed runs on a 2-node Ray cluster simulated on this machine, against the mock.

``ray.cluster_utils.Cluster`` starts a head and a second raylet (one CPU each) on loopback;
one host agent lands on each. Ray is part of the ``test`` extra, so CI runs these.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest

from lens._core import ROW_DTYPE, LogLinearHistogram
from lens.distributed import run_distributed
from lens.distributed.driver import host_share
from lens.engine.plan import RunPlan
from lens.mock.process import MockProcess
from lens.workload.arrivals import arrival_offsets_ns

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning")]

LEAD_S = 3.0


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False, logging_level="WARNING")
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def mock():
    with MockProcess(ttft_ms=20.0, ttft_dist="uniform", ttft_spread_ms=10.0, itl_ms=1.0,
                     workers=1) as m:
        yield m


def may_renice() -> bool:
    """Whether a process here may lower its niceness (it needs CAP_SYS_NICE)."""
    return subprocess.run([sys.executable, "-c", "import os; os.nice(5); "
                           "os.setpriority(os.PRIO_PROCESS, 0, 0)"], check=False,
                          capture_output=True).returncode == 0


def plan(url, **kw):
    kw.setdefault("cores", 1)
    kw.setdefault("max_tokens", 8)
    return RunPlan(url=url, **kw)


def test_open_loop_is_split_and_merged_exactly(cluster, mock, tmp_path):
    p = plan(mock.url, rps=40.0, duration_s=3.0)
    summary = run_distributed(p, address=cluster.address, hosts=2, out_dir=tmp_path,
                              lead_s=LEAD_S)
    res = summary["scenarios"][0]["results"][0]
    dist = summary["metadata"]["distributed"]
    n = len(arrival_offsets_ns("constant", 40.0, duration_s=3.0))
    rows = pq.read_table(tmp_path / "requests.parquet").to_pandas()
    rows = rows[~rows["warmup"]]
    # exact counts: the union of the hosts is the global schedule, once
    assert res["counts"]["sent"] == res["counts"]["ok"] == n == len(rows)
    assert sorted(rows["request_id"]) == list(range(n))
    assert dist["hosts"] == 2 and dist["workers"] == 2 and dist["hosts_lost"] == []
    # the host on the driver's node writes hosts/NN/ itself; the other returns its files
    # through Ray (both nodes share this machine, but only one is the driver's)
    here = ray.get_runtime_context().get_node_id()
    assert sorted(h["node_id"] == here for h in dist["host_details"]) == [False, True]
    for h in dist["host_details"]:
        assert h["wrote_files"] == (h["node_id"] == here)
        assert (h["bytes_returned"] > 0) == (h["node_id"] != here)
    # one host's files would be linked as they are; these are two, appended
    assert (tmp_path / "requests.parquet").stat().st_nlink == 1
    assert len({h["node_id"] for h in dist["host_details"]}) == 2
    # at normal priority, as a local run (Ray's own default for its workers is nice 15): the
    # agents take it themselves where they may (CAP_SYS_NICE), else Ray starts them so
    assert [h["nice"] for h in dist["host_details"]] == [0, 0]
    assert [h["restarted_for_priority"] for h in dist["host_details"]] == [not may_renice()] * 2
    # the rate split: each host sent its half of the arrivals, within 2 %
    for h in (0, 1):
        mine = rows[rows["worker"] // p.cores == h]
        assert len(mine) == host_share(p, h, 2)["scheduled"]
        assert abs(len(mine) / n - 0.5) <= 0.02
        assert (mine["request_id"] % 2 == h).all()
        host = pq.read_table(tmp_path / "hosts" / f"{h:02d}" / "requests.parquet")
        assert host.num_rows >= len(mine)
    # merged histograms: equal to one histogram of the union of the hosts' rows
    ttft_ns = (rows["t_first_token_ns"] - rows["t_start_ns"]).to_numpy(np.int64)
    union = LogLinearHistogram()
    union.record_many(ttft_ns)
    qs = [0.5, 0.9, 0.99]
    got = [res["metrics"]["ttft"][k] for k in ("p50", "p90", "p99")]
    assert np.allclose(got, union.quantiles(qs) / 1e6, rtol=1e-6)
    # and a quantile of the union's samples, within the histogram's 0.1 % (plus rounding)
    ms = np.sort(ttft_ns / 1e6)
    for q, v in zip(qs, got, strict=True):
        assert np.mean(ms <= v * (1 + 2e-3)) >= q
        assert np.mean(ms < v * (1 - 2e-3)) <= q
    assert res["metrics"]["ttft"]["count"] == n
    # clock honesty and per-host client health
    assert dist["clock_offset_bound_ms"] < 50
    assert [h["host"] for h in res["client"]["hosts"]] == [0, 1]
    assert all(h["start_late_ms"] == 0 for h in dist["host_details"])
    assert sum(res["timeseries"]["started"]) == n


def test_killed_host_is_reported(cluster, mock, tmp_path):
    # 1.5 s answers: when its agent dies, a worker has requests in flight (which, without
    # the parent-death signal, it would finish for a 2 s grace as an orphan)
    p = plan(mock.url, rps=20.0, duration_s=4.0, max_tokens=1500)

    orphans: dict[str, list[int]] = {}

    def kill_later(agents):
        def kill():
            time.sleep(LEAD_S + 3.0)
            before = _workers()
            ray.kill(agents[1], no_restart=True)
            time.sleep(0.5)
            # the killed agent's workers: those whose parent is gone; 1.5 s after the kill
            # none may still run
            orphans["pids"] = [pid for pid, ppid in before.items()
                               if not psutil.pid_exists(ppid)]
            time.sleep(1.0)
            orphans["alive"] = [pid for pid in orphans["pids"] if _alive_worker(pid)]
        threading.Thread(target=kill, daemon=True).start()

    t = time.monotonic()
    summary = run_distributed(p, address=cluster.address, hosts=2, out_dir=tmp_path,
                              lead_s=LEAD_S, on_started=kill_later)
    assert time.monotonic() - t < 40
    res = summary["scenarios"][0]["results"][0]
    dist = summary["metadata"]["distributed"]
    assert dist["hosts_lost"] == [1]
    lost = dist["host_details"][1]
    assert "lost" in lost and 2.5 <= lost["lost_at_s"] <= 4.0
    share = host_share(p, 1, 2)["scheduled"]
    assert lost["scheduled"] == share
    assert 0 < lost["missed_requests"] <= share
    assert "host 1" in summary["metadata"]["hosts_lost"][0]
    # host 0's rows are all there
    every = pq.read_table(tmp_path / "requests.parquet").to_pandas()
    rows = every[~every["warmup"]]
    host0 = rows[rows["worker"] // p.cores == 0]
    assert len(host0) == host_share(p, 0, 2)["scheduled"]
    # and the rows host 1 measured (and streamed) before it was killed are kept
    host1 = rows[rows["worker"] // p.cores == 1]
    assert 0 < len(host1) <= share
    assert (every["worker"] // p.cores == 1).sum() == lost["rows_kept"]   # warm-up rows too
    assert (host1["request_id"] % 2 == 1).all() and host1["request_id"].is_unique
    assert lost["rows_kept"] <= lost["sent_last_reported"]
    # ... in the merged summary too: counts, and the histograms of both hosts' rows
    assert res["counts"]["sent"] == len(rows) == len(host0) + len(host1)
    assert res["counts"]["ok"] == int(rows["ok"].sum()) == res["metrics"]["e2e"]["count"]
    e2e = np.sort(rows.loc[rows["ok"], "e2e_ms"].to_numpy())
    assert res["metrics"]["e2e"]["max"] == pytest.approx(e2e[-1], rel=2e-3)
    assert res["client"]["hosts"][1]["lost"] is True
    host1 = json.loads((tmp_path / "hosts" / "01" / "summary.json").read_text())
    assert "partial" in host1["metadata"]
    # its ITL as of its last report (token stamps stay on the hosts): in the merged ITL
    host0 = json.loads((tmp_path / "hosts" / "00" / "summary.json").read_text())
    itl = [x["scenarios"][0]["results"][0]["metrics"]["itl"]["count"] for x in (host0, host1)]
    assert itl[1] > 0 and res["metrics"]["itl"]["count"] == sum(itl)
    # the killed agent's worker processes die with it (no orphans)
    assert len(lost["worker_pids"]) == p.cores
    assert sorted(orphans["pids"]) == sorted(lost["worker_pids"])
    assert orphans["alive"] == []


def _workers() -> dict[int, int]:
    """Running multiprocessing (spawn) processes: pid → parent pid."""
    out = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        if any("spawn_main" in a for a in proc.info["cmdline"] or ()):
            out[proc.info["pid"]] = proc.info["ppid"]
    return out


def _alive_worker(pid: int) -> bool:
    """Whether ``pid`` is still a running (not zombie) multiprocessing worker."""
    try:
        proc = psutil.Process(pid)
        return (proc.status() != psutil.STATUS_ZOMBIE
                and any("spawn_main" in a for a in proc.cmdline()))
    except psutil.Error:
        return False


# ------------------------------------------------------------- lens-fast run on Ray (CLI)
CONFIG = """\
providers:
  - name: openai
    endpoint: {url}
    models: [mock-model]
workload:
  scenarios:
    - name: steady
      rps: {rps}
      duration: {duration}
      request_params: {{max_tokens: 8}}
execution:
  cores: 1
  ray: {{address: "{address}", hosts: 2, lead_s: 2}}
"""


def lens_run(args: list[str], out) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "lens", "run", *args, "--output", str(out),
                             "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def config_file(tmp_path, url, address, rps=40, duration="3s"):
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG.format(url=url, address=address, rps=rps, duration=duration))
    return path


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_config_file_runs_on_ray_with_live_metrics(cluster, mock, tmp_path):
    """execution.ray in a config file; Prometheus serves the hosts' merged live figures."""
    port = _free_port()
    out = tmp_path / "out"
    proc = lens_run([str(config_file(tmp_path, mock.url, cluster.address)),
                     "--prometheus-port", str(port), "--prometheus-addr", "127.0.0.1",
                     "--prometheus-linger", "3"], out)
    scrapes: list[str] = []
    while proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                scrapes.append(r.read().decode())
        except OSError:
            pass
        time.sleep(0.2)
    log = proc.stdout.read()
    assert proc.returncode == 0, log
    summary = json.loads((out / "steady--openai--mock-model" / "summary.json").read_text())
    res = summary["scenarios"][0]["results"][0]
    n = len(arrival_offsets_ns("constant", 40.0, duration_s=3.0))
    assert res["counts"]["sent"] == res["counts"]["ok"] == n
    assert summary["metadata"]["distributed"]["hosts"] == 2
    assert (out / "summary.json").exists()          # the config run's combined summary
    # live: some scrape saw the run half done, the last one its final figures
    ok = [metric(s, "lens_requests_total", outcome="ok") for s in scrapes]
    assert any(0 < v < n for v in ok), ok
    assert ok[-1] == n
    assert metric(scrapes[-1], "lens_output_tokens_total") == res["counts"]["output_tokens"]
    assert metric(scrapes[-1], "lens_ttft_seconds_count") == n
    assert metric(scrapes[-1], "lens_itl_seconds_count") == res["metrics"]["itl"]["count"] > 0
    assert metric(scrapes[-1], "lens_plan_running") == 0


@pytest.mark.parametrize("sig,signals", [("SIGINT", 1), ("SIGINT", 2), ("SIGTERM", 1)])
def test_ctrl_c_in_the_driver_writes_outputs(cluster, mock, tmp_path, sig, signals):
    """Ctrl-C (or SIGTERM, whose handler ray.init replaces) stops every host (they return
    their outputs); a second one kills them, and the rows they streamed are kept. Either
    way: exit 130 (143), merged outputs marked interrupted."""
    out = tmp_path / "out"
    # --ray overrides the file's address (the same cluster here); 3 s answers (longer than
    # the 2 s grace) keep requests in flight when the signal comes, to be cancelled
    proc = lens_run([str(config_file(tmp_path, mock.url, "nowhere:1", rps=20, duration="20s")),
                     "--ray", cluster.address, "--max-tokens", "3000"], out)
    started = time.monotonic()
    lines = []
    for line in proc.stdout:               # the run starts after the config is read
        lines.append(line)
        if "Run 1/1" in line:
            break
    # Ray's start and the lead, then load until both hosts have streamed rows to the driver
    # (their probe's and 3 measured ones)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not all(
            any(p.stat().st_size >= 4 * ROW_DTYPE.itemsize
                for p in out.glob(f"*/.lens-stream-*/host-0{h}-rows.bin"))
            for h in (0, 1)):
        time.sleep(0.2)
    for _ in range(signals):
        proc.send_signal(getattr(signal, sig))
        time.sleep(0.3)
    log = "".join(lines) + proc.stdout.read()
    proc.wait(60)
    assert proc.returncode == {"SIGINT": 130, "SIGTERM": 143}[sig], log
    assert time.monotonic() - started < 45
    d = out / "steady--openai--mock-model"
    summary = json.loads((d / "summary.json").read_text())
    meta = summary["metadata"]
    assert meta["interrupted"] is True and meta["interrupted_by"] == sig
    dist = meta["distributed"]
    assert dist["hosts_stopped"] == ([] if signals == 1 else [0, 1])
    assert dist["hosts_lost"] == []
    res = summary["scenarios"][0]["results"][0]
    rows = pq.read_table(d / "requests.parquet").to_pandas()
    rows = rows[~rows["warmup"]]
    scheduled = len(arrival_offsets_ns("constant", 20.0, duration_s=20.0))
    assert 0 < res["counts"]["sent"] == len(rows) < scheduled / 2
    assert sorted(rows["worker"].unique()) == [0, 1]
    for h in (0, 1):
        host = json.loads((d / "hosts" / f"{h:02d}" / "summary.json").read_text())
        assert host["metadata"]["interrupted"] is True
        assert host["metadata"]["interrupted_by"] == sig
    if signals == 1:
        # stopped like a local run: in-flight requests were cancelled, and counted
        assert res["counts"]["cancelled"] > 0
    assert f"Interrupted by {sig}" in log


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shared_output_is_written_by_the_hosts(cluster, mock, tmp_path, monkeypatch):
    """--shared-output: each host writes hosts/NN/ itself (the nodes share this machine's
    file system); no file travels through Ray; a relative --output works from any cwd.
    Also: agents that do not take normal priority themselves (as where CAP_SYS_NICE is
    missing) are started again at nice 0 by Ray."""
    from lens.distributed import driver

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(driver, "RENICE", False)
    p = plan(mock.url, rps=20.0, duration_s=2.0)
    summary = run_distributed(p, address=cluster.address, hosts=2, out_dir="shared",
                              lead_s=LEAD_S, shared_dir=True)
    n = len(arrival_offsets_ns("constant", 20.0, duration_s=2.0))
    res = summary["scenarios"][0]["results"][0]
    assert res["counts"]["sent"] == res["counts"]["ok"] == n
    rows = pq.read_table(tmp_path / "shared" / "requests.parquet").to_pandas()
    assert (~rows["warmup"]).sum() == n
    for h in (0, 1):
        d = tmp_path / "shared" / "hosts" / f"{h:02d}"
        meta = pq.read_schema(d / "requests.parquet").metadata
        assert json.loads(meta[b"lens.run"])["config"]["host_index"] == h
    details = summary["metadata"]["distributed"]["host_details"]
    assert [(h["bytes_returned"], h["wrote_files"]) for h in details] == [(0, True)] * 2
    assert [(h["nice"], h["restarted_for_priority"]) for h in details] == [(0, True)] * 2
