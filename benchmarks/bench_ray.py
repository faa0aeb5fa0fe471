"""CPU per request of a Ray-distributed run (one host) vs a plain local run at the same rate.

Both are the real command, ``lens-fast run`` (``python -m lens run``) in a fresh process,
with and without ``--ray auto --hosts 1``: the same open-loop schedule to the same mock
endpoint with the same --cores. Ray runs on this machine as a one-node cluster (``ray start
--head --block``, a child of this benchmark) started before the runs and left to settle, as
a cluster is before anyone runs lens-fast on it; one short Ray run, not counted, comes first
(the first job on a fresh cluster makes Ray start its pool of idle workers, which no later
job pays). Both commands and the cluster get OMP_NUM_THREADS=1 (``--omp-threads``): it sizes
Arrow's thread pool, and unset, Ray would give a host agent its --cores while the local
command had the machine's CPU count. Each repeat runs a short and a long run of each kind,
local and Ray alternating (ABBA order across repeats).

CPU is counted over every process of this benchmark's tree, sampled 10 times a second so
that processes which start and end during a run are counted too (a process's last 0.1 s
can be missed): the command and its lens workers; Ray's daemons and worker processes (the
host agent's actor is a child of the raylet), bar the mock endpoint's processes (the same
work in both runs). From each run's total the tree's idle rate (Ray idling, measured before
and after) times the run's wall time is taken away. So a Ray run's cost holds everything it
made the machine do: the command's start and ``import ray``, connecting, the actor's start,
the agent and its workers, the stream to the driver, Ray's scheduling, the merge. Each run
is also split into the command's own clock (a local run's includes its workers), the Ray
host agent's with its workers (its own clock, from the summary) and the rest (the actor's
process start, Ray's daemons).

Per kind, from the short and the long run of one repeat: the cost per request of each, the
**marginal** cost per request (the slope: CPU added per request added, so what scales with
the load) and the **fixed** cost per run (the intercept: start-up, connecting, the merge).

    python benchmarks/bench_ray.py --rps 1000 --durations 20,120 --cores 1 --repeat 2
    python benchmarks/bench_ray.py --rps 6000 --durations 10,120 --cores 4 --mock-workers 6 \
        --repeat 1 --settle 10 --idle 5          # a 16-core machine
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil

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


def idle_rate(tracker: Tracker, seconds: float) -> float:
    """The tree's CPU seconds per second while nothing runs."""
    c0, t0 = tracker.total(), time.monotonic()
    time.sleep(seconds)
    return (tracker.total() - c0) / (time.monotonic() - t0)


def run_once(tracker: Tracker, idle: float, args: list[str], out: str, env: dict) -> dict:
    """One ``lens-fast run`` in a fresh process: its requests and the tree's CPU less idle."""
    c0, t0, k0 = tracker.total(), time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-m", "lens", "run", *args, "--output", out,
                        "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, check=False, env=env)
    if p.returncode:
        raise SystemExit(f"lens-fast run {' '.join(args)} failed ({p.returncode}):\n"
                         f"{p.stderr[-2000:]}")
    k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(2 * SAMPLE_S)
    c1, t1 = tracker.total(), time.monotonic()
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    res = summary["scenarios"][0]["results"][0]
    sent = res["counts"]["sent"]
    hosts = summary["metadata"].get("distributed", {}).get("host_details", [])
    return {"sent": sent, "ok": res["counts"]["ok"], "tracked": c1 - c0,
            "ttft_p50_ms": res["metrics"]["ttft"].get("p50"),
            "nice": [h.get("nice") for h in hosts],
            "restarted_for_priority": [h.get("restarted_for_priority") for h in hosts],
            "cpu": c1 - c0 - idle * (t1 - t0), "wall": t1 - t0,
            # the command's own clock (with its reaped lens workers, for a local run)
            "command": (k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime),
            # a Ray host's agent with its workers, by the agent's own clock
            "agent": sum(h.get("cpu_s") or 0.0 for h in hosts)}


def background(runs: list[dict], r: int) -> None:
    """The second estimate, once repeat ``r`` ran: the cluster's background rate *during*
    that repeat's local runs (what the tree used beyond the local command's own clock, per
    second), instead of the idle rate measured apart before the runs. A local run then costs
    its command's own clock; a Ray run its tree's CPU less that rate times its wall time.
    Tracker misses (a process's last 0.1 s) lower the rate, so they count against Ray."""
    mine = [x for x in runs if x["repeat"] == r]
    local = [x for x in mine if x["kind"] == "local"]
    bg = sum(x["tracked"] - x["command"] for x in local) / sum(x["wall"] for x in local)
    for x in mine:
        x["background"] = bg
        x["cpu_bg"] = x["command"] if x["kind"] == "local" else x["tracked"] - bg * x["wall"]


def ray_command() -> list[str]:
    """``ray`` beside this Python, else its module (a ``pip install --target`` has no script
    on the PATH)."""
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    if os.path.exists(ray_bin):
        return [ray_bin]
    return [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


def dump(a, runs: list[dict]) -> None:
    import platform

    with open(a.json, "w") as f:
        json.dump({"args": vars(a), "cpus": os.cpu_count(), "machine": platform.platform(),
                   "cpu_model": _cpu_model(), "python": platform.python_version(),
                   "runs": runs}, f, indent=1)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                        None)
    except OSError:
        return None


def start_ray(cpus: int, env: dict) -> subprocess.Popen:
    """A one-node cluster in this benchmark's process tree; refuse to run beside another one
    (``--ray auto`` would find that one, whose processes the tree does not count)."""
    if any("raylet" in " ".join(p.info["cmdline"] or ())
           for p in psutil.process_iter(["cmdline"])):
        raise SystemExit("a Ray cluster already runs on this machine: stop it (ray stop) first")
    proc = subprocess.Popen([*ray_command(), "start", "--head", "--block", f"--num-cpus={cpus}",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return proc


def stop_ray(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    subprocess.run([*ray_command(), "stop", "--force"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rps", type=float, default=1000.0)
    ap.add_argument("--durations", default="20,120",
                    help="the short and the long run's seconds, comma-separated")
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--settle", type=float, default=20.0, help="seconds Ray settles first")
    ap.add_argument("--idle", type=float, default=10.0,
                    help="seconds the idle rate is measured, before and after the runs")
    ap.add_argument("--mock-workers", type=int, default=1,
                    help="the mock endpoint's processes (enough that it keeps up with --rps)")
    ap.add_argument("--gap", type=float, default=5.0,
                    help="seconds between two runs (Ray's daemons finish a run's aftermath)")
    ap.add_argument("--json", help="also write every run's figures to this file")
    ap.add_argument("--omp-threads", type=int, default=1,
                    help="OMP_NUM_THREADS of both commands and the cluster (it sizes Arrow's "
                    "thread pool; unset, Ray sets a host agent's to its CPUs); 0: leave it unset")
    a = ap.parse_args()
    short, long_ = (float(x) for x in a.durations.split(","))

    with MockProcess(ttft_ms=20.0, itl_ms=1.0, workers=a.mock_workers) as mock, \
            tempfile.TemporaryDirectory() as d:
        tracker = Tracker(mock.pid)
        env = dict(os.environ)
        if a.omp_threads:
            env["OMP_NUM_THREADS"] = str(a.omp_threads)
        # the cluster gets the commands' environment: unset, Ray would give a host agent
        # OMP_NUM_THREADS = its CPUs (--cores), and the local command has the benchmark's
        ray_proc = start_ray(a.cores + 1, env)
        try:
            time.sleep(a.settle)                       # the daemons settle
            if ray_proc.poll() is not None:
                raise SystemExit(f"ray start exited with status {ray_proc.returncode}")
            base = ["--url", mock.url, "--cores", str(a.cores), "--max-tokens", "16"]
            common = [*base, "--rps", f"{a.rps:g}"]
            kinds = {"local": [], "ray": ["--ray", "auto", "--hosts", "1"]}
            # one short Ray run first, not counted: the first job on a fresh cluster makes
            # Ray start its pool of idle workers (several CPU-s), which no later run pays
            run_once(tracker, 0.0, [*base, "--rps", "50", "--duration", "2s", *kinds["ray"]],
                     os.path.join(d, "warm-up"), env)
            time.sleep(a.settle / 2)
            idle0 = idle_rate(tracker, a.idle)
            runs: list[dict] = []
            for r in range(a.repeat):
                order = ["local", "ray"] if r % 2 == 0 else ["ray", "local"]
                for dur in (short, long_):
                    for kind in order:
                        out = os.path.join(d, f"{kind}-{r}-{dur:g}")
                        res = run_once(tracker, idle0,
                                       [*common, "--duration", f"{dur:g}s", *kinds[kind]], out,
                                       env)
                        res.update(kind=kind, repeat=r, duration=dur)
                        runs.append(res)
                        if a.json:
                            dump(a, runs)
                        rest = res["cpu"] - res["command"] - res["agent"]
                        print(f"  {kind:5s} repeat {r + 1} {dur:5g} s: {res['sent']} req, "
                              f"{res['cpu']:.2f} CPU-s = command {res['command']:.2f} + agent "
                              f"{res['agent']:.2f} + rest {rest:.2f}, "
                              f"{res['cpu'] / res['sent'] * 1e6:.0f} µs/req, "
                              f"wall {res['wall']:.1f} s, TTFT p50 {res['ttft_p50_ms']} ms"
                              + (f", nice {res['nice']}" if kind == "ray" else ""), flush=True)
                        shutil.rmtree(out, ignore_errors=True)
                        time.sleep(a.gap)
                background(runs, r)
                if a.json:
                    dump(a, runs)                      # with this repeat's background
            idle1 = idle_rate(tracker, a.idle)
        finally:
            tracker.stop()
            stop_ray(ray_proc)
    report(a, runs, idle0, idle1, short, long_)


ESTIMATES = {
    "cpu": "tree less the idle rate measured before",
    "cpu_bg": "tree less the background rate during the local runs",
    "own": "own clocks only: command + agent (no Ray daemons, no actor outside run)",
}


def report(a, runs: list[dict], idle0: float, idle1: float, short: float, long_: float) -> None:
    print(f"\n{_cpu_model()}; rate {a.rps:g} req/s, runs of {short:g} s and {long_:g} s, "
          f"--cores {a.cores}, mock processes {a.mock_workers}, "
          f"OMP_NUM_THREADS {a.omp_threads or 'unset'}, "
          f"cpus {os.cpu_count()}, idle rate {idle0:.3f} / {idle1:.3f} CPU-s/s "
          "(before / after; Ray idling), background during the local runs "
          + ", ".join(f"{next(x['background'] for x in runs if x['repeat'] == r):.3f}"
                      for r in range(a.repeat))
          + " CPU-s/s (per repeat)")
    for x in runs:
        x["own"] = x["command"] + x["agent"]
    for est, what in ESTIMATES.items():
        print(f"\n[{est}] {what}")
        print("repeat | kind | short: µs/req | long: µs/req | marginal µs/req | fixed CPU-s")
        ratios: dict[str, list[float]] = {"short": [], "long": [], "marginal": []}
        fixed: dict[str, list[float]] = {"local": [], "ray": []}
        pooled = {"local": 0.0, "ray": 0.0}
        for r in range(a.repeat):
            per = {}
            for kind in ("local", "ray"):
                s = next(x for x in runs if x["repeat"] == r and x["kind"] == kind
                         and x["duration"] == short)
                lg = next(x for x in runs if x["repeat"] == r and x["kind"] == kind
                          and x["duration"] == long_)
                slope = (lg[est] - s[est]) / (lg["sent"] - s["sent"])
                intercept = lg[est] - slope * lg["sent"]
                per[kind] = (s[est] / s["sent"], lg[est] / lg["sent"], slope)
                pooled[kind] += lg[est] / lg["sent"]
                fixed[kind].append(intercept)
                print(f"{r + 1} | {kind} | {per[kind][0] * 1e6:.0f} | "
                      f"{per[kind][1] * 1e6:.0f} | {slope * 1e6:.0f} | {intercept:.2f}")
            for i, name in enumerate(("short", "long", "marginal")):
                ratios[name].append(per["ray"][i] / per["local"][i])
        for name, v in ratios.items():
            print(f"Ray / local, {name}: median {statistics.median(v):.3f}, range "
                  f"{min(v):.3f}–{max(v):.3f} ({', '.join(f'{x:.3f}' for x in v)})")
        # every repeat's long runs together (ABBA order: a drift of the machine cancels)
        print(f"Ray / local, long runs pooled: {pooled['ray'] / pooled['local']:.3f}")
        for kind, v in fixed.items():
            print(f"fixed cost per run, {kind}: median {statistics.median(v):.2f} CPU-s "
                  f"({', '.join(f'{x:.2f}' for x in v)})")


if __name__ == "__main__":
    main()
