"""CPU per request of a Ray-distributed run (one host) vs a plain local run at the same rate.

Both runs send the same open-loop schedule to the same mock endpoint with the same --cores.
CPU is that of every process of the run on this machine (the driver, the Ray actor and the
workers; Ray's own daemons are counted separately, they idle at a steady cost): psutil's
user + system time of the load-generating process tree, per measured request.

    python benchmarks/bench_ray.py --rps 200 --duration 10 --cores 1
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import psutil

from lens.engine.plan import RunPlan
from lens.engine.runner import execute
from lens.mock.process import MockProcess


def cpu_of(pids: set[int]) -> dict[int, float]:
    """User + system seconds of each process in ``pids`` still alive."""
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def local(plan: RunPlan, out: str) -> tuple[float, int]:
    me = psutil.Process()
    c0 = me.cpu_times()
    summary, _, _ = execute(plan, out)
    c1 = me.cpu_times()
    cpu = sum(c1[:4]) - sum(c0[:4])            # self + reaped workers
    return cpu, summary["scenarios"][0]["results"][0]["counts"]["sent"]


def distributed(plan: RunPlan, out: str) -> tuple[float, int, dict]:
    """Driver CPU + the agent's (with its workers) + Ray's daemons' during the run."""
    import ray

    from lens.distributed import run_distributed

    ray.init(num_cpus=plan.cores + 1, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    try:
        daemons = {p.pid for p in psutil.Process().children(recursive=True)}
        me = psutil.Process()
        c0, d0 = sum(me.cpu_times()[:2]), cpu_of(daemons)
        summary = run_distributed(plan, address="auto", hosts=1, out_dir=out, lead_s=3.0)
        c1, d1 = sum(me.cpu_times()[:2]), cpu_of(daemons)
    finally:
        ray.shutdown()
    host = summary["metadata"]["distributed"]["host_details"][0]
    parts = {"driver": c1 - c0, "agent+workers": host["cpu_s"],
             "ray daemons": sum(d1[p] - d0[p] for p in d1 if p in d0)}
    sent = summary["scenarios"][0]["results"][0]["counts"]["sent"]
    return sum(parts.values()), sent, parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rps", type=float, default=200.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--cores", type=int, default=1)
    a = ap.parse_args()
    with MockProcess(ttft_ms=20.0, itl_ms=1.0, workers=1) as mock:
        plan = RunPlan(url=mock.url, rps=a.rps, duration_s=a.duration, cores=a.cores,
                       max_tokens=16)
        with tempfile.TemporaryDirectory() as d:
            cpu_l, n_l = local(plan, os.path.join(d, "local"))
            t = time.monotonic()
            cpu_r, n_r, parts = distributed(plan, os.path.join(d, "ray"))
            wall_r = time.monotonic() - t
    print(f"rate {a.rps:g} req/s, {a.duration:g} s, --cores {a.cores}, cpus {os.cpu_count()}")
    print(f"local: {n_l} requests, {cpu_l:.2f} CPU-s, {cpu_l / n_l * 1e6:.0f} µs CPU/request")
    print(f"ray  : {n_r} requests, {cpu_r:.2f} CPU-s, {cpu_r / n_r * 1e6:.0f} µs CPU/request "
          f"(wall {wall_r:.1f} s incl. Ray start)")
    print("  ray parts (CPU-s): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    agent = parts["agent+workers"]
    print(f"ratio agent+workers only / local: {agent / n_r / (cpu_l / n_l):.3f}")
    print(f"ratio ray/local: {cpu_r / n_r / (cpu_l / n_l):.3f}")


if __name__ == "__main__":
    main()
