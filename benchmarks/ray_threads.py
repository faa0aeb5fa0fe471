"""Where a Ray host's CPU goes: per-thread CPU of the driver and of the host agent (with its
lens workers) mid-run, against a plain local run's command and workers at the same rate.

Each run is the real command (``python -m lens run``, with or without ``--ray auto --hosts
1``) against the mock; a one-node cluster (``ray start --head``) is started first. After
``--warm`` seconds each process's threads are read from ``/proc/PID/task/*/stat`` and again
``--window`` seconds later; the difference, in ms of CPU per second, is printed per thread
(Linux only). Runs follow ``--order``.

    python benchmarks/ray_threads.py --rps 3000 --order ray,local,ray,local
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import psutil

from lens.mock.process import MockProcess

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ray import start_ray, stop_ray  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> dict[tuple[int, str, str], float]:
    """CPU seconds of each thread of ``pid``: (pid, tid, name) → seconds."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        out[(pid, t, s[s.index("(") + 1:s.rindex(")")])] = \
            (int(fields[11]) + int(fields[12])) / TICK
    return out


def tree(pid: int) -> dict:
    """``threads`` of ``pid`` and every process under it."""
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return {}
    out = {}
    for p in procs:
        out.update(threads(p.pid))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rps", type=float, default=1000.0)
    ap.add_argument("--order", default="ray,local,ray,local")
    ap.add_argument("--warm", type=float, default=15.0, help="seconds before the first read")
    ap.add_argument("--window", type=float, default=25.0, help="seconds between the reads")
    ap.add_argument("--mock-workers", type=int, default=2)
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    duration = a.warm + a.window + 10
    with MockProcess(ttft_ms=20.0, itl_ms=1.0, workers=a.mock_workers) as mock, \
            tempfile.TemporaryDirectory() as out:
        cluster = start_ray(2, env)
        try:
            time.sleep(15)
            base = [sys.executable, "-m", "lens", "run", "--url", mock.url, "--cores", "1",
                    "--max-tokens", "16", "--no-progress"]
            ray_args = ["--ray", "auto", "--hosts", "1"]
            subprocess.run([*base, "--rps", "50", "--duration", "2s", *ray_args, "--output",
                            os.path.join(out, "warm-up")], env=env, capture_output=True, check=False)
            for kind in a.order.split(","):
                p = subprocess.Popen([*base, "--rps", f"{a.rps:g}", "--duration",
                                      f"{duration:g}s", *(ray_args if kind == "ray" else []),
                                      "--output", os.path.join(out, kind)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(a.warm)
                procs = {"driver" if kind == "ray" else "command": p.pid}
                if kind == "ray":
                    procs["agent"] = next(q.pid for q in psutil.process_iter(["cmdline"])
                                          if "HostAgent" in " ".join(q.info["cmdline"] or ()))
                before = {k: tree(v) for k, v in procs.items()}
                time.sleep(a.window)
                after = {k: tree(v) for k, v in procs.items()}
                p.wait()
                print(f"== {kind}, {a.rps:g} req/s")
                for k in procs:
                    d = {x: after[k].get(x, y) - y for x, y in before[k].items()}
                    print(f"  {k}: {1000 * sum(d.values()) / a.window:.1f} ms/s")
                    for x, v in sorted(d.items(), key=lambda kv: -kv[1])[:8]:
                        if v > 0:
                            print(f"     pid {x[0]} {x[2]}: {1000 * v / a.window:.1f}")
        finally:
            stop_ray(cluster)


if __name__ == "__main__":
    main()
