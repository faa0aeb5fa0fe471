"""lens.distributed without a cluster: the host split, the CLI checks, the missing-Ray message."""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from lens_cli import cli

from lens.distributed.driver import host_share, require_ray
from lens.engine.plan import RunPlan
from lens.engine.worker import die_with_parent
from lens.errors import ConfigError
from lens.workload.arrivals import arrival_offsets_ns


@pytest.mark.parametrize("hosts,cores", [(1, 1), (2, 1), (3, 2), (4, 3)])
def test_open_loop_hosts_partition_the_schedule(hosts, cores):
    p = RunPlan(url="http://x/v1", rps=100.0, arrival="poisson", duration_s=2.0, cores=cores)
    n = len(arrival_offsets_ns("poisson", 100.0, duration_s=2.0))
    shares = [host_share(p, h, hosts) for h in range(hosts)]
    assert sum(s["scheduled"] for s in shares) == n
    assert max(s["scheduled"] for s in shares) - min(s["scheduled"] for s in shares) <= cores


def test_closed_loop_hosts_split_requests_and_users():
    p = RunPlan(url="http://x/v1", concurrency=7, requests=101, cores=2)
    assert sum(host_share(p, h, 3)["scheduled"] for h in range(3)) == 101
    q = RunPlan(url="http://x/v1", concurrency=7, duration_s=5.0, cores=2)
    assert sum(host_share(q, h, 3)["users"] for h in range(3)) == 7


def test_missing_ray_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'lens-fast\[ray\]'"):
        require_ray()
    assert cli("run", "--ray", "auto", "--hosts", "2", "--requests", "1") == 1
    assert "lens-fast[ray]" in capsys.readouterr().err


def test_hosts_needs_ray(capsys):
    assert cli("run", "--hosts", "2", "--requests", "1") == 1
    assert "--hosts 2 needs --ray" in capsys.readouterr().err


CHILD = ("import sys, time; from lens.engine.worker import die_with_parent; "
         "armed = die_with_parent(int(sys.argv[1])); print(armed, flush=True); time.sleep(60)")
MIDDLE = ("import os, subprocess, sys; c = subprocess.Popen([sys.executable, '-c', sys.argv[1], "
          "str(os.getpid())], stdout=subprocess.PIPE, text=True); print(c.pid, flush=True); "
          "print(c.stdout.readline().strip(), flush=True); import time; time.sleep(60)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_worker_dies_with_its_parent():
    """A process armed by die_with_parent gets SIGTERM when its parent is SIGKILLed."""
    with subprocess.Popen([sys.executable, "-c", MIDDLE, CHILD], stdout=subprocess.PIPE,
                          text=True) as middle:
        _kill_middle_and_wait_for_child(middle)


def _kill_middle_and_wait_for_child(middle: subprocess.Popen) -> None:
    try:
        pid = int(middle.stdout.readline())
        assert middle.stdout.readline().strip() == "True"
        child = psutil.Process(pid)
        os.kill(middle.pid, signal.SIGKILL)
        middle.wait(5)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        else:
            child.kill()
            pytest.fail("the child outlived its parent")
    finally:
        middle.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_worker_exits_if_its_parent_died_before_arming():
    r = subprocess.run([sys.executable, "-c", CHILD, "-1"], capture_output=True, timeout=30)
    assert r.returncode == 1 and r.stdout == b""


def test_die_with_parent_is_a_noop_elsewhere(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert die_with_parent(os.getppid()) is False


# ------------------------------------------------------------------ config and progress
def test_config_execution_ray_is_checked(tmp_path):
    from lens.config import load_config

    base = ("providers: [{name: openai, endpoint: 'http://x/v1', models: [m]}]\n"
            "workload: {scenarios: [{name: s, requests: 1}]}\n")
    ok = tmp_path / "ok.yaml"
    ok.write_text(base + "execution: {ray: {address: 'head:6379', hosts: 3, lead_s: 2.5}}\n")
    assert load_config(ok).ray == {"address": "head:6379", "hosts": 3, "lead_s": 2.5}
    ok.write_text(base + "execution: {ray: {}}\n")
    assert load_config(ok).ray == {"address": "auto"}
    for bad, words in [("{hosts: 0}", "execution.ray.hosts"),
                       ("{host: 2}", "unknown key 'host'"),
                       ("{address: ''}", "execution.ray.address"),
                       ("{lead_s: 9999}", "at most 600"),
                       ("[auto]", "execution.ray")]:
        ok.write_text(base + f"execution: {{ray: {bad}}}\n")
        with pytest.raises(ConfigError, match=re.escape(words)):
            load_config(ok)


def test_ray_settings_flags_over_the_file():
    from lens.engine.command import ray_settings

    assert ray_settings({"ray": None, "hosts": None}) is None
    s = ray_settings({"ray": None, "hosts": 4}, {"address": "auto", "lead_s": 1.0})
    assert (s.address, s.hosts, s.lead_s) == ("auto", 4, 1.0)
    s = ray_settings({"ray": "h:6379", "hosts": None}, {"address": "auto", "hosts": 2})
    assert (s.address, s.hosts, s.lead_s) == ("h:6379", 2, None)
    with pytest.raises(ConfigError, match="--hosts must be >= 1"):
        ray_settings({"ray": "auto", "hosts": 0})


class _View:
    in_flight = 3
    reported_elapsed_s = 3.0

    def __init__(self, ttft_ns):
        from lens._core import LogLinearHistogram

        self.h = LogLinearHistogram()
        self.h.record_many(np.array(ttft_ns, np.int64))

    def counts(self):
        return {"ok": 40, "failed": 2, "dropped": 0}

    def histogram(self, name):
        assert name == "ttft"
        return self.h


def test_progress_line_of_a_distributed_run():
    from rich.console import Console

    from lens.engine.progress import ProgressLine

    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    line = ProgressLine(RunPlan(url="http://x/v1", rps=10.0, duration_s=30.0), console)
    line.update_hosts(-1.5, 0, _View([]))
    assert "hosts start together in 1.5 s" in console.file.getvalue()
    line._last = 0.0
    line.update_hosts(4.0, 45, _View([20_000_000, 21_000_000, 22_000_000]))
    text = console.file.getvalue()
    assert "sent 45" in text and "completed 40" in text and "failed 2" in text
    assert "in flight 3" in text and "TTFT p50 21.0 ms" in text
    assert "achieved 15.0 req/s" in text            # 45 sent by the hosts' 3.0 s
    line.close()


# ------------------------------------------------------------------ the driver's stream
def _rows(ids, t0, ttft_ms=20.0, error=0):
    from lens._core import ROW_DTYPE

    r = np.zeros(len(ids), ROW_DTYPE)
    r["request_id"] = ids
    r["t_sched_ns"] = t0 + np.asarray(ids, np.int64) * 10_000_000
    r["t_start_ns"] = r["t_sched_ns"] + 1000
    r["t_first_token_ns"] = r["t_start_ns"] + int(ttft_ms * 1e6)
    r["t_last_token_ns"] = r["t_first_token_ns"] + 5_000_000
    r["t_end_ns"] = r["t_last_token_ns"] + 100_000
    r["output_tokens"] = r["token_events"] = 6
    r["status"] = 200 if error == 0 else 500
    r["error"] = error
    return r


def test_host_stream_spools_rows_and_mirrors_the_itl(tmp_path):
    import pyarrow.parquet as pq

    from lens._core import LogLinearHistogram
    from lens.distributed.stream import HostStream, HostsView
    from lens.output.summary import build_summary

    plans = [RunPlan(url="http://x/v1", rps=100.0, duration_s=1.0, host_index=h, hosts=2)
             for h in (0, 1)]
    streams = [HostStream(p, tmp_path) for p in plans]
    view = HostsView(streams, 0, 1_700_000_000 * 10**9, "default")
    t0 = 5 * 10**9
    streams[0].start(t0, 1_700_000_000 * 10**9)
    streams[0].add(_rows(range(0, 20, 2), t0))
    streams[0].add(_rows(range(20, 30, 2), t0, ttft_ms=40.0))
    itl = LogLinearHistogram()
    itl.record_many(np.full(7, 1_000_000, np.int64))
    streams[0].set_itl(itl.encode(), at=1)
    streams[0].set_itl(itl.encode(), at=1)          # the same report again: not counted twice
    view.report(0, {"sent": 16, "in_flight": 1, "elapsed_s": 2.5})
    view.report(1, {"sent": 0, "in_flight": 2, "elapsed_s": 2.0})
    assert view.sent == 16 and view.in_flight == 3 and view.reported_elapsed_s == 2.5
    assert view.counts() == {"ok": 15, "failed": 0, "dropped": 0}
    assert view.histogram("ttft").count == 15
    assert view.histogram("ttft").max == pytest.approx(40e6, rel=1e-3)
    assert view.histogram("itl").count == 7
    # a lost host's Parquet from its spool, and its summary from its stream
    streams[0].write_parquet(tmp_path / "h0", {"partial": "lost"})
    t = pq.read_table(tmp_path / "h0" / "requests.parquet").to_pandas()
    assert sorted(t["request_id"]) == list(range(0, 30, 2))
    assert t["ttft_ms"].max() == pytest.approx(40.0)
    streams[0].results.client = {"worker_cpu_percent": [], "reasons": []}
    res = build_summary(streams[0].results, {})["scenarios"][0]["results"][0]
    assert res["counts"]["ok"] == 15 and res["metrics"]["itl"]["count"] == 7
    streams[0].drop()
    assert not list(tmp_path.glob("host-00-*"))


def test_host_stream_without_live_figures_feeds_them_from_its_spool(tmp_path):
    """No progress line or live metrics: rows are only spooled as they come; a lost host's
    figures are read back from the spool once, with the latest ITL."""
    from lens._core import LogLinearHistogram
    from lens.distributed.stream import HostStream

    plan = RunPlan(url="http://x/v1", rps=100.0, duration_s=1.0)
    s = HostStream(plan, tmp_path, live=False)
    t0 = 5 * 10**9
    s.start(t0, 1_700_000_000 * 10**9)
    s.add(_rows(range(10), t0))
    s.add(_rows(range(10, 15), t0, ttft_ms=40.0, error=3))
    for n in (3, 7):                                 # only the latest report counts
        itl = LogLinearHistogram()
        itl.record_many(np.full(n, 1_000_000, np.int64))
        s.set_itl(itl.encode(), at=n)
    assert s.rows == 15
    assert s.results.targets[0].counts["ok"] == 0 and s.results.histogram("itl").count == 0
    for _ in range(2):                               # once, however often it is asked
        r = s.figures()
        assert r.targets[0].counts["ok"] == 10 and r.targets[0].counts["failed"] == 5
        assert r.histogram("ttft").count == 10 and r.histogram("itl").count == 7
    s.drop()


def test_merge_parquet_links_one_host_and_appends_several(tmp_path):
    import pyarrow.parquet as pq

    from lens.distributed.merge import merge_parquet
    from lens.distributed.stream import HostStream

    t0 = 5 * 10**9
    dirs = []
    for h, ids in ((0, range(0, 20, 2)), (1, range(1, 31, 2))):
        plan = RunPlan(url="http://x/v1", rps=100.0, duration_s=1.0, host_index=h, hosts=2)
        s = HostStream(plan, tmp_path)
        s.start(t0, 1_700_000_000 * 10**9)
        s.add(_rows(ids, t0))
        s.write_parquet(tmp_path / f"h{h}", {"host": h})
        dirs.append(tmp_path / f"h{h}")
    one, both = tmp_path / "one", tmp_path / "both"
    one.mkdir()
    both.mkdir()
    # one host: its file as it is (no decoding and encoding again), the count from its footer
    assert merge_parquet(dirs[:1], one) == {"requests.parquet": 10, "tokens.parquet": 0}
    assert (one / "requests.parquet").read_bytes() == (dirs[0] / "requests.parquet").read_bytes()
    assert (one / "requests.parquet").samefile(dirs[0] / "requests.parquet")   # a hard link
    assert merge_parquet(dirs[:1], one)["requests.parquet"] == 10     # again: replaced
    # several: the rows of all, the first host's metadata
    assert merge_parquet(dirs, both) == {"requests.parquet": 25, "tokens.parquet": 0}
    t = pq.read_table(both / "requests.parquet")
    assert sorted(t.column("request_id").to_pylist()) == sorted([*range(0, 20, 2), *range(1, 31, 2)])
    assert t.schema.metadata == pq.read_table(dirs[0] / "requests.parquet").schema.metadata


MAIN_SCRIPT = """
import multiprocessing as mp, os, sys, time
if __name__ == "__mp_main__":              # run again in a spawned child
    open(os.environ["MARK"], "w").close()
if __name__ == "__main__":
    from lens.engine.supervisor import _no_main_rerun
    p = mp.get_context("spawn").Process(target=time.sleep, args=(0,))
    if sys.argv[1] == "hidden":
        with _no_main_rerun():
            p.start()
        assert __file__ and __spec__ is None      # put back
    else:
        p.start()
    p.join()
    sys.exit(p.exitcode)
"""


@pytest.mark.parametrize("how", ["hidden", "plain"])
def test_spawned_workers_do_not_run_the_parents_main_again(tmp_path, how):
    """A lens worker spawned by a Ray host agent ran Ray's default_worker.py again (so
    imported Ray); with _no_main_rerun the child runs only its target."""
    script, mark = tmp_path / "main.py", tmp_path / "mark"
    script.write_text(MAIN_SCRIPT)
    env = {**os.environ, "MARK": str(mark),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]),
                                          os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(script), how], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert mark.exists() == (how == "plain")


def test_link_or_copy_copies_where_links_fail(tmp_path, monkeypatch):
    from lens.distributed import merge

    src, dst = tmp_path / "a.parquet", tmp_path / "b.parquet"
    src.write_bytes(b"PAR1 rows PAR1")
    dst.write_bytes(b"an older file")

    def no_links(a, b):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(merge.os, "link", no_links)
    merge._link_or_copy(src, dst)
    assert dst.read_bytes() == src.read_bytes() and not dst.samefile(src)


def test_last_takes_of_several_hosts_wait_once_for_all(tmp_path, monkeypatch):
    """Stopping hosts: every host's last take is asked at once and the wait is bounded by
    LAST_TIMEOUT_S in all, however many hang (it was up to 2 × 5 s per host, in turn)."""
    from lens.distributed import driver
    from lens.distributed.stream import HostStream, HostsView

    clock = [0.0]
    monkeypatch.setattr(driver.time, "monotonic", lambda: clock[0])

    class Ref:
        def __init__(self, h, ready):
            self.h, self.ready = h, ready

    class FakeRay:
        class exceptions:
            RayError = RuntimeError

        waits: list[float] = []

        def wait(self, refs, num_returns, timeout):
            self.waits.append(timeout)
            ready = [r for r in refs if r.ready]
            if len(ready) < len(refs):
                clock[0] += timeout           # the hung ones make it wait to the end
            return ready, [r for r in refs if not r.ready]

        def get(self, ref):
            return None, None                 # answered, nothing new

    asked = []

    class Agent:
        def __init__(self, h):
            self.take = self
            self.h = h

        def options(self, **kw):
            return self

        def remote(self):
            asked.append(self.h)
            return Ref(self.h, ready=self.h == 0)    # host 0 answers; 1 and 2 hang

    plans = [RunPlan(url="http://x/v1", rps=10.0, duration_s=1.0, host_index=h, hosts=3)
             for h in range(3)]
    streams = [HostStream(p, tmp_path) for p in plans]
    taker = driver._Taker(FakeRay(), [Agent(h) for h in range(3)], streams,
                          HostsView(streams, 0, 0, "default"))
    taker.out = {h: Ref(h, ready=h == 0) for h in range(3)}     # takes on their way
    taker.last([0, 1, 2])
    assert clock[0] <= driver._Taker.LAST_TIMEOUT_S
    assert asked == [0]                  # the hung hosts are not asked again
    assert taker.ended == {0, 1, 2} and taker.out == {}
