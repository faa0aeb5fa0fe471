"""Soak: a long steady run against the mock with injected faults; every process's memory,
file descriptors and connections must stay flat (issue #8). Not part of the test suite.

    python benchmarks/soak.py                        # 10 minutes at 200 req/s, 1% faults
    python benchmarks/soak.py --duration 60 --rps 100

It starts the mock (``--fail-rate``: that share of requests answered 500, plus, where the mock
has them, resets mid-stream), then ``lens-fast run`` as a child process, and samples every
second, for the lens parent and each worker (found as its children): RSS, open file
descriptors and TCP connections (psutil). It reports each process's median RSS over 10–20% of
the run (warm) and over 80–95% (end), the growth between them (limit 10%), and the fd and connection
counts in the same two windows (medians; they must not grow beyond the pool's usual
wander of 10% + 2). Exit status 1 when a limit is broken.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402

from lens.mock.process import MockProcess  # noqa: E402


def sample(proc: psutil.Process) -> dict[int, dict]:
    """RSS (MB), fds and TCP connections of the lens parent and its worker children."""
    out = {}
    try:
        procs = [proc] + [c for c in proc.children()
                          if "spawn_main" in " ".join(c.cmdline())]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            with p.oneshot():
                out[p.pid] = {"rss_mb": p.memory_info().rss / 2**20, "fds": p.num_fds(),
                              "conns": len(p.net_connections(kind="tcp"))}
        except psutil.NoSuchProcess:
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    ap.add_argument("--rps", type=float, default=200.0)
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--fail-rate", type=float, default=0.01)
    ap.add_argument("--max-tokens", type=int, default=32)
    a = ap.parse_args()
    series: list[tuple[float, dict]] = []
    with MockProcess(ttft_ms=20, itl_ms=2, fail_rate=a.fail_rate) as mock, \
            tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "run")
        cmd = [sys.executable, "-m", "lens", "run", "--url", mock.url, "--rps", str(a.rps),
               "--duration", f"{a.duration}s", "--cores", str(a.cores), "--max-tokens",
               str(a.max_tokens), "--max-attempts", "1", "--output", out, "--no-progress"]
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ps = psutil.Process(p.pid)
        while p.poll() is None:
            s = sample(ps)
            if s:
                series.append((time.monotonic() - t0, s))
            time.sleep(1.0)
        err = p.stderr.read() if p.stderr else ""
        if p.returncode != 0:
            print(f"lens-fast run failed ({p.returncode}): {err[-2000:]}")
            return 1
        summary = json.loads(Path(out, "summary.json").read_text())
    res = summary["scenarios"][0]["results"][0]
    # medians over two windows of the load: 10–20% (warm) and 80–95% (end); the load starts
    # about 2 s after the command (imports, spawn, probe)
    def window(lo: float, hi: float) -> dict[int, dict]:
        got = [s for t, s in series if 2.0 + lo * a.duration <= t <= 2.0 + hi * a.duration
               and len(s) == a.cores + 1]
        return {pid: {k: statistics.median(x[pid][k] for x in got) for k in got[0][pid]}
                for pid in got[0]}

    warm, end = window(0.1, 0.2), window(0.8, 0.95)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs")
    print(f"soak: {a.duration:g} s at {a.rps:g} req/s, fail rate {a.fail_rate:g}; "
          f"sent {res['counts']['sent']}, ok {res['counts']['ok']}, "
          f"failed {res['counts']['failed']} ({res['errors']})")
    bad = False
    for pid in warm:
        if pid not in end:
            continue
        w, e = warm[pid], end[pid]
        growth = (e["rss_mb"] - w["rss_mb"]) / w["rss_mb"]
        role = "parent" if pid == p.pid else "worker"
        # a leak grows without bound; a pool's size wanders by a few around its level
        ok = (growth < 0.10 and e["fds"] <= w["fds"] * 1.1 + 2
              and e["conns"] <= w["conns"] * 1.1 + 2)
        bad |= not ok
        print(f"  {role} {pid}: RSS {w['rss_mb']:.1f} → {e['rss_mb']:.1f} MB "
              f"({growth:+.1%}), fds {w['fds']} → {e['fds']}, TCP {w['conns']} → "
              f"{e['conns']}: {'ok' if ok else 'GREW'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
