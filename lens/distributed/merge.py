"""Merge the hosts of a distributed run: summaries by adding histograms, Parquet by appending.

Every host ran the ordinary engine on its slice of one global schedule, from one agreed start,
and wrote its own ``summary.json`` (with each metric's encoded histogram) and Parquet files.
The merged percentiles come from the hosts' histograms added bucket by bucket, never from
pooled samples, so they equal the percentiles of the union of all hosts' rows within the
histogram's own relative error (0.1 % at 3 significant figures). Counts, errors, status codes
and the per-second series add up; the series line up because every host's second k starts
at the agreed start + k s (to within the measured clock offset bound).

Worked example: host 0 recorded TTFTs {20.0, 20.1} ms and host 1 {20.2, 40.0} ms; the merged
histogram holds all four, its p50 is 20.1 ms (±0.1 %) and its max 40.0 ms, as if one host had
sent all four requests.
"""
from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lens._core import LogLinearHistogram
from lens.output.results import METRICS, TOKENS_PER_S_SCALE
from lens.output.summary import histogram_stats, saturation_reasons

__all__ = ["merge_parquet", "merge_result", "merge_summaries"]

_COUNTS_SUMMED = ("sent", "ok", "failed", "dropped", "cancelled", "warmup", "truncated",
                  "retried", "output_tokens", "input_tokens")


def _decode(b64: str) -> LogLinearHistogram:
    return LogLinearHistogram.decode(base64.b64decode(b64))


def _add_dicts(dicts: Sequence[dict]) -> dict:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in (d or {}).items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def _merge_series(series: Sequence[dict]) -> dict:
    n = max((len(s.get("t_s", [])) for s in series), default=0)
    out: dict[str, list] = {"t_s": list(range(n))}
    for key in series[0] if series else ():
        if key in ("t_s", "ttft_p50_ms"):
            continue
        out[key] = [sum((s[key][i] if i < len(s.get(key, [])) else 0) for s in series)
                    for i in range(n)]
    # a median does not add up: the hosts' per-second medians, weighted by completions
    p50 = []
    for i in range(n):
        num = den = 0.0
        for s in series:
            v = s.get("ttft_p50_ms", [])
            w = s.get("requests_ok", [])
            if i < len(v) and v[i] is not None:
                weight = w[i] if i < len(w) and w[i] else 1
                num += v[i] * weight
                den += weight
        p50.append(round(num / den, 6) if den else None)
    out["ttft_p50_ms"] = p50
    return out


def _merge_cost(results: Sequence[dict]) -> dict:
    costs = [r["cost"] for r in results]
    if any(c.get("price") is None for c in costs):
        return costs[0]
    price = costs[0]["price"]
    req = sum(c["requests"] for c in costs)
    tin = sum(c["input_tokens"] for c in costs)
    tout = sum(c["output_tokens"] for c in costs)
    total = (tin * price["input_per_mtok"] + tout * price["output_per_mtok"]) / 1e6
    return {"usd_total": round(total, 9),
            "usd_per_request_mean": round(total / req, 9) if req else None,
            "usd_per_1k_output_tokens": round(total / tout * 1000, 9) if tout else None,
            "requests": req, "input_tokens": tin, "output_tokens": tout, "price": price,
            "source": costs[0].get("source")}


def merge_client(results: Sequence[dict], hosts: Sequence[dict], lag: dict) -> dict:
    """Client health of all hosts: each host's, and the hosts whose client saturated named."""
    cpu: list[float] = []
    reasons: list[str] = []
    per_host = []
    for r, h in zip(results, hosts, strict=True):
        c = r["client"]
        cpu += c.get("worker_cpu_percent", [])
        name = f"host {h['index']} ({h.get('hostname', '?')})"
        reasons += [f"{name}: {x}" for x in c.get("reasons", [])]
        late = h.get("start_late_ms") or 0.0
        if late > 10.0:
            reasons.append(f"{name}: its workers were ready {late:.0f} ms after the agreed "
                           "start; give the hosts a longer lead (lead_s)")
        per_host.append({"host": h["index"], "hostname": h.get("hostname"),
                         "saturated": bool(c.get("saturated")), "lost": "lost" in h,
                         "worker_cpu_percent": c.get("worker_cpu_percent", []),
                         "sched_lag_p99_ms": c.get("sched_lag_p99_ms"),
                         "reasons": c.get("reasons", []), "start_late_ms": round(late, 3)})
    # the merged scheduling lag can name a problem no single host's reasons named
    merged_reasons = saturation_reasons(lag["p99"], [])
    reasons += [f"all hosts: {x}" for x in merged_reasons if not reasons]
    saturated = [p["host"] for p in per_host if p["saturated"] or p["start_late_ms"] > 10.0]
    return {
        "sched_lag_p50_ms": lag["p50"], "sched_lag_p99_ms": lag["p99"],
        "sched_lag_max_ms": lag["max"], "worker_cpu_percent": cpu,
        "saturated": bool(saturated or reasons), "reasons": reasons,
        "saturated_hosts": saturated, "hosts": per_host,
    }


def merge_result(results: Sequence[dict], hosts: Sequence[dict],
                 offered_rps: float | None) -> dict:
    """Merge one target's result across hosts (``results[i]`` is host ``hosts[i]``'s)."""
    first = results[0]
    hists = {}
    metrics = {}
    for m in METRICS:
        h = _decode(first["histograms"][m])
        for r in results[1:]:
            h.merge(_decode(r["histograms"][m]))
        hists[m] = h
        metrics[m] = histogram_stats(h, TOKENS_PER_S_SCALE if m == "output_tokens_per_s"
                                     else 1e6)
    counts = {k: sum(r["counts"].get(k, 0) for r in results) for k in _COUNTS_SUMMED}
    counts["in_flight"] = 0
    # every host's window starts near the agreed start: the longest is the run's
    window = max(r["throughput"]["window_s"] for r in results)
    out = dict(first)
    out.update(
        metrics=metrics, counts=counts, cost=_merge_cost(results),
        throughput={
            "requests_per_s": round(counts["ok"] / window, 6) if window else 0.0,
            "output_tokens_per_s": (round(counts["output_tokens"] / window, 6)
                                    if window else 0.0),
            "achieved_rps": round(sum(r["throughput"]["achieved_rps"] for r in results), 6),
            "offered_rps": offered_rps,
            "window_s": window,
        },
        errors=_add_dicts([r["errors"] for r in results]),
        status_codes=_add_dicts([r["status_codes"] for r in results]),
        client=merge_client(results, hosts, metrics["sched_lag"]),
        out_of_range=_add_dicts([r.get("out_of_range") for r in results]),
        timeseries=_merge_series([r["timeseries"] for r in results]),
        histograms={m: base64.b64encode(h.encode()).decode("ascii")
                    for m, h in hists.items()},
    )
    return out


def merge_summaries(summaries: Sequence[dict], hosts: Sequence[dict], meta: dict,
                    offered_rps: float | None) -> dict:
    """Merge the hosts' summaries (same scenarios and targets, in the same order)."""
    first = summaries[0]
    scenarios = []
    for si, sc in enumerate(first["scenarios"]):
        results = [merge_result([s["scenarios"][si]["results"][ri] for s in summaries],
                                hosts, offered_rps)
                   for ri in range(len(sc["results"]))]
        scenarios.append({"name": sc["name"], "results": results})
    m = dict(first["metadata"])
    m.update(meta)
    m["duration_s"] = max(s["metadata"].get("duration_s") or 0.0 for s in summaries)
    m["interrupted"] = any(s["metadata"].get("interrupted") for s in summaries)
    m["workers"] = sum(s["metadata"].get("workers", 0) for s in summaries)
    return {"schema": first["schema"], "metadata": m, "scenarios": scenarios}


def merge_parquet(host_dirs: Sequence[Path], out_dir: Path) -> dict[str, int]:
    """Append the hosts' requests/tokens Parquet files into ``out_dir``; return row counts.

    Request ids are global arrival indices and the ``worker`` column the global worker
    (host × cores + k), so rows stay unique and say which host sent them. The key-value
    metadata is the first host's. One host's files are taken as they are (a hard link where
    the file system allows, else a copy): decoding and encoding them again would cost the
    driver about 7 µs per request (16 tokens each; benchmarks/RESULTS.md), for the same rows.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    written = {}
    for name in ("requests.parquet", "tokens.parquet"):
        paths = [d / name for d in host_dirs if (d / name).exists()]
        if not paths:
            continue
        if len(paths) == 1:
            _link_or_copy(paths[0], out_dir / name)
            written[name] = pq.ParquetFile(out_dir / name).metadata.num_rows
            continue
        tables = [pq.read_table(p) for p in paths]
        meta = tables[0].schema.metadata
        tables = [t.replace_schema_metadata(None) for t in tables]
        table = pa.concat_tables(tables, promote_options="permissive")
        table = table.replace_schema_metadata(meta)
        pq.write_table(table, out_dir / name, compression="zstd")
        written[name] = table.num_rows
    return written


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes the same file as ``src``: a hard link, else (another file system, or
    one without links) a copy."""
    import shutil

    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def host_result(summary: dict) -> dict[str, Any]:
    """The first result of a host's summary (one scenario × target per plan)."""
    return summary["scenarios"][0]["results"][0]
