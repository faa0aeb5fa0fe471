"""The driver of a distributed run: place host agents on Ray nodes, agree on a start, merge.

1. Connect to Ray (``address``: ``auto`` for the running cluster, or ``ray://…``/``HOST:PORT``).
2. Place ``hosts`` agents, one per alive node with ``cores`` CPUs (node affinity, not soft).
3. Measure each host's wall-clock offset from the driver: the ping round trip with the least
   delay gives ``offset = t_host − (t_send + t_recv) / 2`` within ``± rtt / 2``.
4. Pick ``start = now + lead`` (driver's clock); host h starts at ``start + offset_h`` on its
   own clock, which its supervisor turns into its CLOCK_MONOTONIC t0.
5. Host h runs the plan with ``host_index=h, hosts=H``: worker k of host h takes arrivals i
   with ``i % (H·W) == h·W + k``, so the hosts' union is exactly the global schedule.
6. Gather each host's summary and Parquet; merge (``lens.distributed.merge``); report each
   host's client health, the clock offset bound and any host lost mid-run with the share of
   the schedule it missed.

A host agent returns its Parquet files and summary when its run ends, and streams its rows
to the driver while it runs (``lens.distributed.stream``: request rows and its ITL histogram
once a second, never more than a second or two of rows held in between). The stream feeds
the live progress line and live metrics, when they are on. One source per host in the
outputs, never both: a host that finishes contributes its own files and summary; for a host
lost mid-run (or stopped by a second Ctrl-C) the driver writes the rows it had streamed
(what it measured until at most ~1 s before its loss) into ``hosts/NN/``, and their figures
into the merged summary, and ``host_details`` says how many were kept.

Ctrl-C or SIGTERM in the driver asks every host to stop (``HostAgent.stop``): each stops as a
local run does on a signal and returns its outputs, which are merged and marked interrupted.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lens._core import now_ns
from lens.distributed.stream import HostStream, HostsView
from lens.engine.plan import RunPlan
from lens.errors import ConfigError

__all__ = ["DEFAULT_LEAD_S", "require_ray", "run_distributed"]

DEFAULT_LEAD_S = 5.0        # agents spawn workers, probe and open pools before the start
PINGS = 5
TAKE_PERIOD_S = 1.0         # the driver takes the streamed rows and shows progress this often
#                             (a Ray call per host each time; benchmarks/RESULTS.md)
#                             The driver's loop wakes once per take: a signal waits for
#                             the wake (each is counted: lens.engine.interrupts.Counter)
STOP_GRACE_S = 10.0         # after a stop request, hosts still running then are killed


def require_ray():
    """Return the ``ray`` module, or raise ConfigError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray, which is not installed; install it with "
                          "pip install 'lens-fast[ray]'") from None
    return ray


def connect(address: str):
    """Connect to Ray (``auto``: the running cluster, else a local one); return ``ray``."""
    from lens.engine import interrupts

    ray = require_ray()
    if ray.is_initialized():
        return ray
    try:
        _init(ray, address)
    finally:
        if interrupts.installed():
            interrupts.install()     # ray.init replaces the SIGTERM handler: record it again
    return ray


def _init(ray, address: str) -> None:
    kw: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING"}
    if address == "auto":
        try:
            ray.init(address="auto", **kw)
        except ConnectionError:
            ray.init(include_dashboard=False, **kw)   # no cluster: one on this machine
    else:
        try:
            ray.init(address=address, **kw)
        except ConnectionError as e:
            raise ConfigError(f"--ray: cannot connect to the Ray cluster at {address!r} ({e}); "
                              "give the head's address (HOST:6379 or ray://HOST:10001) or "
                              "auto") from None


def host_share(plan: RunPlan, h: int, hosts: int) -> dict[str, Any]:
    """What host ``h`` of ``hosts`` is to send: its arrivals (open loop) or requests/users."""
    from lens.engine.worker import worker_share
    from lens.workload.arrivals import arrival_offsets_ns

    W = plan.cores
    if plan.mode == "open":
        offsets = arrival_offsets_ns(plan.arrival, plan.rps, requests=plan.requests,
                                     duration_s=plan.duration_s, seed=plan.seed,
                                     burstiness=plan.burstiness)
        mine = (np.arange(len(offsets)) % (hosts * W)) // W == h
        return {"scheduled": int(mine.sum()), "offsets_ns": offsets[mine]}
    ks = range(h * W, h * W + W)
    if plan.requests is not None:
        return {"scheduled": sum(worker_share(plan.requests, k, hosts * W) for k in ks)}
    return {"users": sum(worker_share(plan.concurrency, k, hosts * W) for k in ks)}


def _pick_nodes(ray, hosts: int | None, cores: int) -> list[str]:
    nodes = sorted((n for n in ray.nodes() if n.get("Alive")),
                   key=lambda n: n["NodeID"])
    fit = [n["NodeID"] for n in nodes if n.get("Resources", {}).get("CPU", 0) >= cores]
    if hosts is None:
        hosts = max(1, len(fit))
    if len(fit) < hosts:
        raise ConfigError(
            f"--hosts {hosts} needs {hosts} Ray nodes with {cores} CPUs each (--cores); the "
            f"cluster has {len(fit)} such node(s) of {len(nodes)} alive; lower --hosts or "
            "--cores, or add nodes")
    return fit[:hosts]


RENICE = True              # agents first try to take normal priority themselves (tests: False)
NORMAL_PRIORITY_ENV = {"env_vars": {"RAY_worker_niceness": "0"}}


def _place_agents(ray, nodes: list[str], cores: int) -> tuple[list, list[dict]]:
    """One host agent per node, at normal priority; return them and their ``info()``.

    Ray starts its workers at nice 15; a host's load generator runs at normal priority, as a
    local run does (niced, beside a busy endpoint or other work, it is descheduled, and its
    timings and CPU figures shift: benchmarks/RESULTS.md). An agent first takes nice 0 itself
    (``normal_priority``: it needs CAP_SYS_NICE); one that cannot is started again through
    Ray's runtime env (``RAY_worker_niceness=0``), which costs a second import of Ray in its
    new worker process, so it is the fallback. ``take`` and ``stop`` reach an agent while its
    run goes on (the ``io`` concurrency group); no task events: the takes are frequent and
    small, and recording each one costs Ray's daemons CPU.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from lens.distributed.agent import IO_GROUP, HostAgent

    remote_agent = ray.remote(concurrency_groups={IO_GROUP: 1})(HostAgent)

    def place(h: int, env: dict | None) -> Any:
        return remote_agent.options(
            num_cpus=cores, max_restarts=0, enable_task_events=False, runtime_env=env,
            scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[h], soft=False),
        ).remote(h, renice=env is None and RENICE)

    agents = [place(h, None) for h in range(len(nodes))]
    infos = ray.get([a.info.remote() for a in agents])
    again = [h for h, i in enumerate(infos) if i["nice"] != 0]
    for h in again:
        ray.kill(agents[h], no_restart=True)
        agents[h] = place(h, NORMAL_PRIORITY_ENV)
    for h, i in zip(again, ray.get([agents[h].info.remote() for h in again]), strict=True):
        infos[h] = {**i, "restarted_for_priority": True}
    return agents, infos


def _writes_directly(ray, infos: list[dict], shared_dir: bool, out: Path | None) -> list[bool]:
    """Which hosts write their files into ``out/hosts/NN/`` themselves: all with
    ``shared_dir``; else those on the driver's own machine (the same Ray node, as the same
    user, and not through Ray Client), so that their Parquet (about 220 bytes a request with
    16 tokens) does not make a round trip through Ray's object store."""
    if out is None:
        return [False] * len(infos)
    if shared_dir:
        return [True] * len(infos)
    try:
        client = ray.util.client.ray.is_connected()
    except AttributeError:           # pragma: no cover - every Ray lens-fast supports has it
        client = True
    here = None if client else ray.get_runtime_context().get_node_id()
    return [here is not None and i["node_id"] == here and i.get("uid") == os.getuid()
            for i in infos]


def _clock_offset(ray, agent) -> dict:
    best = None
    for _ in range(PINGS):
        t1 = time.time_ns()
        th = ray.get(agent.clock.remote())
        t2 = time.time_ns()
        rtt = t2 - t1
        if best is None or rtt < best[1]:
            best = (th - (t1 + t2) // 2, rtt)
    return {"offset_ns": int(best[0]), "bound_ns": int(best[1] // 2)}


def run_distributed(plan: RunPlan, *, address: str = "auto", hosts: int | None = None,
                    out_dir: str | os.PathLike | None = None, lead_s: float = DEFAULT_LEAD_S,
                    shared_dir: bool = False, argv: list[str] | None = None,
                    on_started: Callable[[list], None] | None = None,
                    on_progress: Callable[[float, int, Any], None] | None = None,
                    live: Any = None, stop_grace_s: float = STOP_GRACE_S) -> dict:
    """Run ``plan`` on ``hosts`` Ray nodes (None: every node with ``plan.cores`` CPUs); write
    the merged outputs to ``out_dir``.

    ``shared_dir``: ``out_dir`` is on a file system every node mounts; hosts write their files
    under ``out_dir/hosts/NN/`` themselves instead of returning them through Ray. Without it,
    a host on the driver's own node does so too (``_writes_directly``).
    ``on_started(agents)`` is called once every host runs (tests use it to kill one).
    ``on_progress(elapsed_s, sent, view)`` is called about once a second with the seconds
    since the agreed start, the requests the hosts sent and a ``HostsView`` of the streamed
    results (its ``counts()``, ``in_flight``, ``histogram(name)``).
    ``live``: a started ``LiveMetrics``; it gets the hosts' streamed results.
    A Ctrl-C or SIGTERM (recorded by ``lens.engine.interrupts``, or a KeyboardInterrupt) asks
    every host to stop; hosts not done ``stop_grace_s`` later, or at a second one, are killed
    and keep the rows they streamed. The outputs are written either way, marked interrupted.
    Returns the merged summary; ``metadata.distributed`` says how each host went.
    """
    if hosts is not None and hosts < 1:
        raise ConfigError(f"--hosts must be >= 1 (got {hosts})")
    ray = connect(address)
    out = Path(out_dir).resolve() if out_dir is not None else None   # agents' cwd differs
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    nodes = _pick_nodes(ray, hosts, plan.cores)
    hosts = len(nodes)
    agents, infos = _place_agents(ray, nodes, plan.cores)
    clocks = [_clock_offset(ray, a) for a in agents]
    start = time.time_ns() + int(lead_s * 1e9)
    plans = [dataclasses.replace(plan, host_index=h, hosts=hosts) for h in range(hosts)]
    refs = []
    direct = _writes_directly(ray, infos, shared_dir, out)
    for h, a in enumerate(agents):
        d = str(out / "hosts" / f"{h:02d}") if direct[h] else None
        refs.append(a.run.remote(plans[h], start + clocks[h]["offset_ns"], d, not direct[h]))
    if on_started is not None:
        on_started(agents)
    with tempfile.TemporaryDirectory(prefix=".lens-stream-",
                                     dir=out if out is not None else None) as spool:
        # rows feed live figures only where something shows them (else only the spool)
        streams = [HostStream(p, Path(spool), live=on_progress is not None or live is not None)
                   for p in plans]
        view = HostsView(streams, now_ns() - (time.time_ns() - start), start, plan.scenario)
        if live is not None:
            live.begin({"scenario": plan.scenario, "provider": plan.provider,
                        "model": plan.model}, start)
        try:
            results, lost, interrupted = _wait(ray, refs, agents, streams, view, start,
                                               on_progress, live, stop_grace_s)
            return _finish(plan, plans, out, argv, address, lead_s, start, infos, clocks,
                           results, lost, interrupted, streams, view, live)
        finally:
            for s in streams:
                s.close()


def _signals(base: int, n0: int, kb: int, sigs) -> tuple[int, str | None]:
    """Interrupts to act on, and the first one's name: those ``lens.engine.interrupts``
    recorded before the wait (``base`` of them, the first ``n0`` not to act on), plus those
    since, counted exactly by ``sigs`` (an ``interrupts.Counter``) or, where it cannot count,
    by the handler's calls and ``kb`` KeyboardInterrupts."""
    from lens.engine import interrupts

    if sigs.exact:
        n = base - n0 + sigs.poll()
        first = (interrupts.pending() if base > n0 else None) or sigs.first
    else:
        n = interrupts.count() - n0 + kb
        first = interrupts.pending()
    return n, (first or "SIGINT") if n else None


def _wait(ray, refs: list, agents: list, streams: list[HostStream], view: HostsView,
          start: int, on_progress, live, stop_grace_s: float):
    """Wait for every host: take the streamed rows and progress, stop on an interrupt.

    Returns ``(results, lost, interrupted)``: each finished host's result, each lost (or
    killed) host's reason, and the interrupting signal's name (None without one). The loop
    wakes once a second (for the take) or when every host is done: each wake costs the
    driver CPU, and a signal, counted as it comes, is acted on at the next wake.
    """
    from lens.engine import interrupts

    n0 = 0 if interrupts.installed() else interrupts.count()   # lens-fast run: from its start
    base = interrupts.count()
    results: dict[int, dict] = {}
    lost: dict[int, dict] = {}
    pending = dict(zip(refs, range(len(refs)), strict=True))
    taker = _Taker(ray, agents, streams, view)
    interrupted = None
    deadline = 0.0
    kb = 0
    last_progress = last_take = 0.0
    with interrupts.Counter() as sigs:   # every signal counted, also two in one wait
        while pending:
            try:
                timeout = max(0.05, min(last_take + TAKE_PERIOD_S - time.monotonic(),
                                        TAKE_PERIOD_S))
                done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=timeout)
                if time.monotonic() - last_take >= TAKE_PERIOD_S:
                    last_take = time.monotonic()
                    taker.take(pending.values())
                for ref in done:
                    h = pending.pop(ref)
                    try:
                        results[h] = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        why = str(e).splitlines()[0][:300]
                        lost[h] = {"error": f"{type(e).__name__}: {why}",
                                   "t_unix_ns": time.time_ns()}
                    taker.last([h])                # a finished host's last rows
            except KeyboardInterrupt:
                kb += 1
            if live is not None:
                live.update(view)               # cheap until its next snapshot is due
            now = time.monotonic()
            if on_progress is not None and now - last_progress >= TAKE_PERIOD_S:
                last_progress = now
                on_progress((time.time_ns() - start) / 1e9, view.sent, view)
            n, sig = _signals(base, n0, kb, sigs)
            if n and interrupted is None:
                interrupted = sig
                for h in pending.values():
                    _io(agents[h], "stop").remote(sig)
                # a host still before the agreed start stops at its first tick after it
                deadline = now + stop_grace_s + max(0.0, (start - time.time_ns()) / 1e9)
            if pending and interrupted and (n >= 2 or now > deadline):
                why = ("a second interrupt" if n >= 2 else
                       f"still running {stop_grace_s:g} s after the stop request")
                taker.last(list(pending.values()))     # what they hold, if they still answer
                for h in pending.values():
                    ray.kill(agents[h], no_restart=True)
                    lost[h] = {"error": f"stopped by the driver: {why}", "stopped": True,
                               "t_unix_ns": time.time_ns()}
                pending.clear()
    return results, lost, interrupted


def _io(agent, method: str):
    """``agent.method`` in the agent's ``io`` concurrency group (reached while it runs)."""
    from lens.distributed.agent import IO_GROUP

    return getattr(agent, method).options(concurrency_group=IO_GROUP)


class _Taker:
    """The driver's side of the stream: once a second one ``take`` per running host, its
    answer read the next time round (so a slow or dead host never holds the loop up); a
    host's last take, once its run returned or before it is killed, is waited for (at most
    ``LAST_TIMEOUT_S``, for all the hosts stopped together)."""

    LAST_TIMEOUT_S = 5.0

    def __init__(self, ray, agents: list, streams: list[HostStream], view: HostsView):
        self.ray, self.agents, self.streams, self.view = ray, agents, streams, view
        self.out: dict[int, Any] = {}        # host → its outstanding take
        self.ended: set[int] = set()         # hosts whose stream ended (the agent is gone)

    def _ask(self, h: int) -> Any:
        return _io(self.agents[h], "take").remote()

    def take(self, hosts) -> None:
        """Read the answers that came; ask each running host again."""
        for h in list(hosts):
            ref = self.out.get(h)
            if ref is not None:
                if not self.ray.wait([ref], timeout=0)[0]:
                    continue                 # still on its way
                self._read(h, ref)
            if h not in self.ended:
                self.out[h] = self._ask(h)

    def last(self, hosts) -> None:
        """Read each of ``hosts``' outstanding take and one more (its run is over, or it is
        about to be killed): whatever it still holds. All hosts are asked at once and waited
        for together, ``LAST_TIMEOUT_S`` in all however many hang; one that has not answered
        by then is taken for gone."""
        deadline = time.monotonic() + self.LAST_TIMEOUT_S
        for outstanding in (True, False):     # a host's answers are read in order
            refs = {}
            for h in hosts:
                if h in self.ended:
                    continue
                ref = self.out.get(h) if outstanding else self._ask(h)
                if ref is not None:
                    refs[h] = ref
            if not refs:
                continue
            ready, _ = self.ray.wait(list(refs.values()), num_returns=len(refs),
                                     timeout=max(0.0, deadline - time.monotonic()))
            ready = set(ready)
            for h, ref in refs.items():
                if ref in ready:
                    self._read(h, ref)
                else:                        # hung: its stream ends here
                    self.out.pop(h, None)
                    self.ended.add(h)
        self.ended.update(hosts)

    def _read(self, h: int, ref) -> None:
        """One take's answer (known to be ready) into host h's stream."""
        ray = self.ray
        self.out.pop(h, None)
        try:
            report, rows = ray.get(ref)
        except ray.exceptions.RayError:
            self.ended.add(h)                # the host is gone: its stream ends here
            return
        if report is None:
            return
        self.view.report(h, report)
        s = self.streams[h]
        if s.results is None and report.get("t0_ns"):
            s.start(report["t0_ns"], report["t0_unix_ns"])
        if rows is not None and s.results is not None:
            s.add(rows)
        if report.get("itl") is not None and s.results is not None:
            s.set_itl(report["itl"], report["t_unix_ns"])


def _finish(plan: RunPlan, plans: list[RunPlan], out: Path | None, argv, address: str,
            lead_s: float, start: int, infos: list, clocks: list, results: dict, lost: dict,
            interrupted: str | None, streams: list[HostStream], view: HostsView,
            live) -> dict:
    """Merge: each finished host's own summary and files; each lost host's streamed ones."""
    from lens.distributed.merge import host_result, merge_parquet, merge_summaries
    from lens.engine.runner import metadata
    from lens.output.summary import build_summary, write_summary

    hosts = len(plans)
    progress = view.progress
    summaries: list[dict] = []
    host_meta = []
    host_dirs = []
    for h in range(hosts):
        hm: dict[str, Any] = {"index": h, "hostname": infos[h]["hostname"],
                              "node_id": infos[h]["node_id"], "workers": plan.cores,
                              "nice": infos[h].get("nice"),
                              "restarted_for_priority": bool(infos[h].get(
                                  "restarted_for_priority")),
                              "clock_offset_ms": round(clocks[h]["offset_ns"] / 1e6, 3),
                              "clock_offset_bound_ms": round(clocks[h]["bound_ns"] / 1e6, 3)}
        share = host_share(plan, h, hosts)
        d = (out / "hosts" / f"{h:02d}") if out is not None else None
        s = streams[h]
        if h in results:
            r = results[h]
            hm["start_late_ms"] = round(r["outcome"]["start_late_ms"], 3)
            hm["workers_died"] = r["outcome"]["died"]
            hm["cpu_s"] = r["outcome"].get("cpu_s")
            hm["nice"] = r["outcome"].get("nice", hm["nice"])    # its run's (and workers')
            hm["bytes_returned"] = sum(len(v) for v in r["files"].values())
            hm["wrote_files"] = r["dir"] is not None        # into hosts/NN/ itself
            hm["sent"] = host_result(r["summary"])["counts"]["sent"]
            summaries.append(r["summary"])
            s.drop()
            if d is not None:
                d.mkdir(parents=True, exist_ok=True)
                for name, data in r["files"].items():
                    (d / name).write_bytes(data)
                write_summary(d / "summary.json", r["summary"])
                host_dirs.append(d)
        else:
            # what it streamed: its rows in the merged Parquet and its figures in the summary
            if s.results is None:
                s.start(0, start)
            meta = metadata(plans[h], argv, False)
            meta.update(t0_unix_ns=s.t0_unix_ns, interrupted=interrupted is not None,
                        partial=f"{'stopped' if lost[h].get('stopped') else 'lost'} mid-run: "
                                "the rows it streamed before")
            if interrupted:
                meta["interrupted_by"] = interrupted
            figures = s.figures()
            figures.client = {"worker_cpu_percent": [], "reasons": []}
            summary = build_summary(figures, meta)
            summaries.append(summary)
            hm.update(_lost_report(plan, share, lost[h], progress.get(h), start,
                                   s.rows))
            hm["sent"] = host_result(summary)["counts"]["sent"]
            if d is not None:       # files even with no rows: the outputs stay complete
                for name in ("requests.parquet", "tokens.parquet"):
                    (d / name).unlink(missing_ok=True)    # what a host writing here left
                s.write_parquet(d, meta)
                host_dirs.append(d)
                write_summary(d / "summary.json", summary)
        hm["scheduled"] = share.get("scheduled")
        host_meta.append(hm)

    offs = [c["offset_ns"] for c in clocks]
    bound = (max(offs) - min(offs)) + 2 * max(c["bound_ns"] for c in clocks)
    gone = sorted(h for h in lost if not lost[h].get("stopped"))
    dist = {
        "ray_address": address, "hosts": hosts, "workers_per_host": plan.cores,
        "workers": hosts * plan.cores, "start_unix_ns": start, "lead_s": lead_s,
        # how far apart two hosts' clocks (so their t0s and per-second series) may be
        "clock_offset_bound_ms": round(bound / 1e6, 3),
        "hosts_lost": gone, "hosts_stopped": sorted(set(lost) - set(gone)),
        "host_details": host_meta,
    }
    meta = {"command": " ".join(argv) if argv else None, "distributed": dist}
    if gone:
        meta["hosts_lost"] = [f"host {h} ({host_meta[h]['hostname']}) lost: "
                              f"{host_meta[h]['text']}" for h in gone]
    summary = merge_summaries(summaries, host_meta, meta, plan.rps)
    if interrupted:
        summary["metadata"]["interrupted"] = True
        summary["metadata"]["interrupted_by"] = interrupted
    if live is not None:
        view.in_flight = 0
        live.end(view)
    if out is not None:
        dist["rows"] = merge_parquet(host_dirs, out)
        write_summary(out / "summary.json", summary)
    return summary


def _lost_report(plan: RunPlan, share: dict, lost: dict, progress: dict | None,
                 start_unix_ns: int, kept: int = 0) -> dict:
    """What a lost host missed: from its schedule and its last progress report; ``kept``:
    the request rows it had streamed, kept in the merged Parquet and summary."""
    died_at_s = max(0.0, (lost["t_unix_ns"] - start_unix_ns) / 1e9)
    sent = progress["sent"] if progress else 0
    out: dict[str, Any] = {"lost": lost["error"], "lost_at_s": round(died_at_s, 3),
                           "sent_last_reported": sent, "rows_kept": kept,
                           "worker_pids": (progress or {}).get("worker_pids", [])}
    rows = (f"the {kept} rows it measured before are kept (merged Parquet and summary; "
            "its ITL as of its last report)")
    if "offsets_ns" in share:
        after = int((share["offsets_ns"] >= int(died_at_s * 1e9)).sum())
        out["missed_requests"] = max(after, share["scheduled"] - sent)
        out["text"] = (f"it missed at least {after} and at most {share['scheduled'] - sent} "
                       f"of its {share['scheduled']} scheduled requests; {rows}")
    elif "scheduled" in share:
        out["missed_requests"] = share["scheduled"] - sent
        out["text"] = (f"it missed {share['scheduled'] - sent} of its {share['scheduled']} "
                       f"requests; {rows}")
    else:
        left = max(0.0, (plan.duration_s or 0.0) - died_at_s)
        out["missed_user_s"] = round(share["users"] * left, 3)
        out["text"] = f"it missed {left:.1f} s of load from {share['users']} users; {rows}"
    return out


