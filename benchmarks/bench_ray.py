"""CPU per request of a Ray-distributed run (one host) vs a plain local run at the same rate.

Both runs send the same open-loop schedule to the same mock endpoint with the same --cores,
alternating, ``--repeat`` times each. Ray runs on this machine as a one-node cluster started
before the runs and left to settle (as a cluster is, before anyone runs lens-fast on it).

CPU is counted over every process of this session's tree, sampled 10 times a second so
that processes which start and end during a run are counted too (a process's last 0.1 s
can be missed): the driver, Ray's daemons and worker processes (children of the driver, as
``ray.init`` starts them), the actor and its lens workers. The mock endpoint's processes are
left out (the same work in both runs). From each run's total the tree's idle rate (measured
with Ray idling, before and after the runs) times the run's wall time is taken away. That
leaves what the run cost: for the Ray path the driver, the actor's start, the agent and its
workers, and whatever Ray's daemons did for it (scheduling, the object store, the streamed
rows). Per run it is split into the driver, the agent with its workers (their own clocks),
and the rest (actor start and Ray's daemons).

    python benchmarks/bench_ray.py --rps 400 --duration 60 --cores 1 --repeat 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

import psutil

from lens.engine.plan import RunPlan
from lens.engine.runner import execute
from lens.mock.process import MockProcess

SAMPLE_S = 0.1


class Tracker:
    """CPU seconds (user + system) of every process under this one, bar ``exclude``'s tree,
    sampled every 0.1 s in a thread: ``total()`` is the sum of each process's last sample."""

    def __init__(self, exclude: int):
        self.me = psutil.Process()
        self.exclude = exclude
        self.seen: dict[tuple[int, float], float] = {}     # (pid, create_time) → CPU-s
        self.lock = threading.Lock()
        self.running = True
        self.own = 0.0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while self.running:
            self.sample()
            self.own = time.thread_time()      # the sampling's own CPU, not the run's
            time.sleep(SAMPLE_S)

    def sample(self) -> None:
        skip = {self.exclude}
        procs = [self.me, *self.me.children(recursive=True)]
        for p in procs:
            try:
                if p.pid in skip or p.ppid() in skip:
                    skip.add(p.pid)
                    continue
                t = p.cpu_times()
                key = (p.pid, p.create_time())
            except psutil.Error:
                continue
            with self.lock:
                self.seen[key] = t.user + t.system

    def total(self) -> float:
        self.sample()
        with self.lock:
            return sum(self.seen.values()) - self.own

    def stop(self) -> None:
        self.running = False
        self.thread.join()


class Meter:
    """CPU of a block over the process tree (``Tracker``), less the idle rate × its wall."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker
        self.idle_rate = 0.0

    def idle(self, seconds: float) -> float:
        c0, t0 = self.tracker.total(), time.monotonic()
        time.sleep(seconds)
        return (self.tracker.total() - c0) / (time.monotonic() - t0)

    def measure(self, fn):
        me = psutil.Process()
        c0, d0, t0 = self.tracker.total(), proc_cpu(me) - self.tracker.own, time.monotonic()
        out = fn()
        time.sleep(2 * SAMPLE_S)
        c1, d1, t1 = self.tracker.total(), proc_cpu(me) - self.tracker.own, time.monotonic()
        wall = t1 - t0
        return out, {"cost": c1 - c0 - self.idle_rate * wall, "wall": wall,
                     "driver": d1 - d0}


def proc_cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rps", type=float, default=400.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--lead", type=float, default=3.0, help="lead_s of the Ray runs")
    a = ap.parse_args()

    import ray

    from lens.distributed import run_distributed

    with MockProcess(ttft_ms=20.0, itl_ms=1.0, workers=1) as mock, \
            tempfile.TemporaryDirectory() as d:
        plan = RunPlan(url=mock.url, rps=a.rps, duration_s=a.duration, cores=a.cores,
                       max_tokens=16)
        tracker = Tracker(mock.pid)
        meter = Meter(tracker)
        ray.init(num_cpus=a.cores + 1, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
        try:
            time.sleep(15)                         # the daemons settle
            idle0 = meter.idle(10)
            rows = []
            for i in range(a.repeat):
                meter.idle_rate = idle0
                (s, _, _), loc = meter.measure(
                    lambda i=i: execute(plan, os.path.join(d, f"local{i}")))
                n_l = s["scenarios"][0]["results"][0]["counts"]["sent"]
                summary, rr = meter.measure(lambda i=i: run_distributed(
                    plan, address="auto", hosts=1, out_dir=os.path.join(d, f"ray{i}"),
                    lead_s=a.lead))
                n_r = summary["scenarios"][0]["results"][0]["counts"]["sent"]
                agent = summary["metadata"]["distributed"]["host_details"][0]["cpu_s"]
                rows.append((n_l, loc, n_r, rr, agent))
            idle1 = meter.idle(10)
        finally:
            tracker.stop()
            ray.shutdown()
    print(f"rate {a.rps:g} req/s, {a.duration:g} s, --cores {a.cores}, cpus {os.cpu_count()}, "
          f"idle rate {idle0:.3f} / {idle1:.3f} CPU-s/s (before / after; Ray idling)")
    print("run | local: req, CPU-s, µs/req | ray: req, CPU-s (driver, agent+workers, rest),"
          " µs/req, wall s | ratio")
    ratios = []
    for i, (n_l, loc, n_r, rr, agent) in enumerate(rows, 1):
        ul, ur = loc["cost"] / n_l * 1e6, rr["cost"] / n_r * 1e6
        rest = rr["cost"] - rr["driver"] - agent
        ratios.append(ur / ul)
        print(f"{i} | {n_l}, {loc['cost']:.2f}, {ul:.0f} | {n_r}, {rr['cost']:.2f} "
              f"({rr['driver']:.2f}, {agent:.2f}, {rest:.2f}), {ur:.0f}, {rr['wall']:.1f} | "
              f"{ur / ul:.3f}")
    print(f"ratio ray/local: median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}–{max(ratios):.3f}")


if __name__ == "__main__":
    main()
