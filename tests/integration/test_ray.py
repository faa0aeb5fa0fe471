"""Distributed runs on a 2-node Ray cluster simulated on this machine, against the mock.

``ray.cluster_utils.Cluster`` starts a head and a second raylet (one CPU each) on loopback;
one host agent lands on each. Ray is part of the ``test`` extra, so CI runs these.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest

from lens._core import LogLinearHistogram
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
    assert len({h["node_id"] for h in dist["host_details"]}) == 2
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
    assert len(host0) == res["counts"]["sent"] == host_share(p, 0, 2)["scheduled"]
    # and the rows host 1 measured (and streamed) before it was killed are kept
    host1 = rows[rows["worker"] // p.cores == 1]
    assert 0 < len(host1) <= share
    assert (every["worker"] // p.cores == 1).sum() == lost["rows_kept"]   # warm-up rows too
    assert (host1["request_id"] % 2 == 1).all() and host1["request_id"].is_unique
    assert lost["rows_kept"] <= lost["sent_last_reported"]
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
