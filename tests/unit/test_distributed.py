"""lens.distributed without a cluster: the host split, the CLI checks, the missing-Ray message."""
from __future__ import annotations

import sys

import pytest

from lens.cli import main
from lens.distributed.driver import host_share, require_ray
from lens.engine.plan import RunPlan
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
