"""lens.distributed without a cluster: the host split, the CLI checks, the missing-Ray message."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from lens.cli import main
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
    assert cli(["run", "--ray", "auto", "--hosts", "2", "--requests", "1"], capsys) == 1
    assert "lens-fast[ray]" in capsys.readouterr().err


def test_hosts_needs_ray(capsys):
    assert cli(["run", "--hosts", "2", "--requests", "1"], capsys) == 1
    assert "--hosts 2 needs --ray" in capsys.readouterr().err


def cli(argv, capsys) -> int:
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code


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
