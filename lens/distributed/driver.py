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

A host agent returns its Parquet files when its run ends, and streams its rows to the
driver's collector while it runs (about once a second). One source per host, never both: a
host that finishes contributes its files; for a host lost mid-run the driver writes the rows
it had streamed (what it measured until at most ~1 s before its loss) into ``hosts/NN/`` and
so into the merged Parquet, and ``host_details`` says how many were kept.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lens.engine.plan import RunPlan
from lens.errors import ConfigError, RunError

__all__ = ["DEFAULT_LEAD_S", "require_ray", "run_distributed"]

DEFAULT_LEAD_S = 5.0        # agents spawn workers, probe and open pools before the start
PINGS = 5


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
    ray = require_ray()
    if ray.is_initialized():
        return ray
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
    return ray


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
                    on_started: Callable[[list], None] | None = None) -> dict:
    """Run ``plan`` on ``hosts`` Ray nodes (None: every node with ``plan.cores`` CPUs); write
    the merged outputs to ``out_dir``.

    ``shared_dir``: ``out_dir`` is on a file system every node mounts; hosts write their files
    under ``out_dir/hosts/NN/`` themselves instead of returning them through Ray.
    ``on_started(agents)`` is called once every host runs (tests use it to kill one).
    Returns the merged summary; ``metadata.distributed`` says how each host went.
    """
    from lens.distributed.agent import Collector, HostAgent
    from lens.distributed.merge import merge_parquet, merge_summaries
    from lens.output.summary import write_summary

    if hosts is not None and hosts < 1:
        raise ConfigError(f"--hosts must be >= 1 (got {hosts})")
    ray = connect(address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    nodes = _pick_nodes(ray, hosts, plan.cores)
    hosts = len(nodes)
    collector = ray.remote(num_cpus=0)(Collector).remote()
    remote_agent = ray.remote(HostAgent)
    agents = [remote_agent.options(
        num_cpus=plan.cores, max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(h, collector)
        for h, node in enumerate(nodes)]
    infos = ray.get([a.info.remote() for a in agents])
    clocks = [_clock_offset(ray, a) for a in agents]
    start = time.time_ns() + int(lead_s * 1e9)
    refs = []
    for h, a in enumerate(agents):
        p = dataclasses.replace(plan, host_index=h, hosts=hosts)
        d = str(out / "hosts" / f"{h:02d}") if shared_dir and out is not None else None
        refs.append(a.run.remote(p, start + clocks[h]["offset_ns"], d, not shared_dir))
    if on_started is not None:
        on_started(agents)
    results: dict[int, dict] = {}
    lost: dict[int, dict] = {}
    pending = dict(zip(refs, range(hosts), strict=True))
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                h = pending.pop(ref)
                try:
                    results[h] = ray.get(ref)
                    collector.drop.remote(h)      # its own files replace what it streamed
                except ray.exceptions.RayError as e:
                    lost[h] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                               "t_unix_ns": time.time_ns()}
    except KeyboardInterrupt:
        for a in agents:
            ray.kill(a)
        raise
    progress = ray.get(collector.get.remote())
    if not results:
        raise RunError(f"every host of the distributed run was lost: "
                       f"{'; '.join(v['error'] for v in lost.values())}")

    host_meta = []
    for h in range(hosts):
        hm: dict[str, Any] = {"index": h, "hostname": infos[h]["hostname"],
                              "node_id": infos[h]["node_id"], "workers": plan.cores,
                              "clock_offset_ms": round(clocks[h]["offset_ns"] / 1e6, 3),
                              "clock_offset_bound_ms": round(clocks[h]["bound_ns"] / 1e6, 3)}
        share = host_share(plan, h, hosts)
        if h in results:
            r = results[h]
            hm["start_late_ms"] = round(r["outcome"]["start_late_ms"], 3)
            hm["workers_died"] = r["outcome"]["died"]
            hm["cpu_s"] = r["outcome"].get("cpu_s")
            hm["sent"] = r["summary"]["scenarios"][0]["results"][0]["counts"]["sent"]
        else:
            d = (out / "hosts" / f"{h:02d}") if out is not None else None
            kept = _keep_streamed(dataclasses.replace(plan, host_index=h, hosts=hosts),
                                  ray.get(collector.streamed.remote(h)), progress.get(h),
                                  d, argv)
            hm.update(_lost_report(plan, share, lost[h], progress.get(h), start, kept))
        hm["scheduled"] = share.get("scheduled")
        host_meta.append(hm)

    host_dirs = []
    for h in range(hosts):
        d = (out / "hosts" / f"{h:02d}") if out is not None else None
        if d is None:
            continue
        if h in results:
            d.mkdir(parents=True, exist_ok=True)
            for name, data in results[h]["files"].items():
                (d / name).write_bytes(data)
            write_summary(d / "summary.json", results[h]["summary"])
            host_dirs.append(d)
        elif host_meta[h].get("rows_kept"):
            host_dirs.append(d)       # the lost host's streamed rows (_keep_streamed)
    offs = [c["offset_ns"] for c in clocks]
    bound = (max(offs) - min(offs)) + 2 * max(c["bound_ns"] for c in clocks)
    dist = {
        "ray_address": address, "hosts": hosts, "workers_per_host": plan.cores,
        "workers": hosts * plan.cores, "start_unix_ns": start, "lead_s": lead_s,
        # how far apart two hosts' clocks (so their t0s and per-second series) may be
        "clock_offset_bound_ms": round(bound / 1e6, 3),
        "hosts_lost": sorted(lost), "host_details": host_meta,
    }
    alive = sorted(results)
    meta = {"command": " ".join(argv) if argv else None, "distributed": dist}
    if lost:
        meta["hosts_lost"] = [f"host {h} ({host_meta[h]['hostname']}) lost: "
                              f"{host_meta[h]['text']}" for h in sorted(lost)]
    summary = merge_summaries([results[h]["summary"] for h in alive],
                              [host_meta[h] for h in alive], meta, plan.rps)
    if out is not None:
        dist["rows"] = merge_parquet(host_dirs, out)
        write_summary(out / "summary.json", summary)
    return summary


def _keep_streamed(plan: RunPlan, batches: list, progress: dict | None, d: Path | None,
                   argv: list[str] | None) -> dict[str, int]:
    """Write a lost host's streamed (rows, tokens) batches to ``d`` as its Parquet files (the
    same columns and metadata its own sink writes); return how many rows and token records."""
    n_rows = sum(len(r) for r, _ in batches)
    n_tokens = sum(len(t) for _, t in batches)
    if d is not None and n_rows and progress and progress.get("t0_ns"):
        from lens.engine.runner import metadata, target_info
        from lens.output.parquet import ParquetSink

        meta = metadata(plan, argv, False)
        meta["t0_unix_ns"] = progress["t0_unix_ns"]
        meta["partial"] = "host lost mid-run: the rows it streamed before its loss"
        d.mkdir(parents=True, exist_ok=True)
        sink = ParquetSink(d, progress["t0_ns"], meta, targets=[target_info(plan)],
                           scenario=plan.scenario)
        try:
            for rows, tokens in batches:
                if len(rows):
                    sink.write_rows(rows)
                if len(tokens):
                    sink.write_tokens(tokens)
        finally:
            sink.close()
    return {"rows": n_rows, "tokens": n_tokens}


def _lost_report(plan: RunPlan, share: dict, lost: dict, progress: dict | None,
                 start_unix_ns: int, kept: dict[str, int] | None = None) -> dict:
    """What a lost host missed: from its schedule and its last progress report; ``kept``:
    the rows (and token records) it had streamed, kept in the merged Parquet."""
    died_at_s = max(0.0, (lost["t_unix_ns"] - start_unix_ns) / 1e9)
    sent = progress["sent"] if progress else 0
    kept = kept or {"rows": 0, "tokens": 0}
    out: dict[str, Any] = {"lost": lost["error"], "lost_at_s": round(died_at_s, 3),
                           "sent_last_reported": sent, "rows_kept": kept["rows"],
                           "token_records_kept": kept["tokens"],
                           "worker_pids": (progress or {}).get("worker_pids", [])}
    rows = (f"{kept['rows']} rows it measured before its loss are kept in the merged "
            "Parquet (not in the merged summary's metrics)")
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


