"""Memory of the parent while it writes a long run's outputs (issue #6: 1,000,000 requests).

Two modes:

``--mode feed`` (default) drives the parent's own path, ``lens.engine.runner._Feed`` (the
``RunResults`` aggregate, ``requests.parquet``, ``tokens.parquet``, optionally ``requests.csv``),
with the batches workers would send: rows of ok requests and their token stamps, drained in
batches of ``--batch`` rows, token stamps arriving one batch late (as they do from the token
ring). It measures the process's RSS before the first batch, its peak during the run (sampled
after every batch and by /proc's VmHWM) and the CPU time per request.

``--mode run`` makes a real ``lens-fast run`` against the embedded mock (TTFT and ITL 0) and
samples the parent's RSS from a thread. On 2 cores a million requests take 15–20 minutes.

    python benchmarks/bench_outputs.py --requests 1000000 --tokens 16
    python benchmarks/bench_outputs.py --mode run --requests 1000000 --tokens 8
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402

from lens._core import TOKEN_DTYPE  # noqa: E402
from lens.engine.plan import RunPlan  # noqa: E402
from lens.engine.runner import _Feed, metadata  # noqa: E402
from lens.output.results import empty_rows  # noqa: E402

MS = 1_000_000


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def batch(first_id: int, n: int, tokens: int, t0: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n ok requests starting at 1 ms intervals and their token stamps."""
    r = empty_rows(n)
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    r["request_id"] = ids
    r["status"] = 200
    r["t_sched_ns"] = t0 + ids * MS // 2
    r["t_start_ns"] = r["t_sched_ns"] + rng.integers(1000, 50_000, n)
    r["t_sent_ns"] = r["t_start_ns"] + 20_000
    r["t_first_token_ns"] = r["t_start_ns"] + rng.integers(15 * MS, 30 * MS, n)
    gaps = rng.integers(MS, 3 * MS, (n, tokens))
    gaps[:, 0] = 0
    stamps = r["t_first_token_ns"][:, None] + np.cumsum(gaps, axis=1)
    r["t_last_token_ns"] = stamps[:, -1]
    r["t_end_ns"] = r["t_last_token_ns"] + 100_000
    r["output_tokens"] = tokens
    r["token_events"] = tokens
    r["input_tokens"] = 64
    tk = np.empty(n * tokens, TOKEN_DTYPE)
    tk["request_id"] = np.repeat(ids, tokens)
    tk["index"] = np.tile(np.arange(tokens), n)
    tk["t_ns"] = stamps.reshape(-1)
    return r.view(np.int64).reshape(-1), tk.view(np.int64).reshape(-1)


def feed_mode(a: argparse.Namespace) -> dict:
    plan = RunPlan(url="http://127.0.0.1:1/v1", concurrency=64, requests=a.requests)
    rng = np.random.default_rng(0)
    formats = ("parquet", "json", "csv") if a.csv else ("parquet", "json")
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        feed = _Feed(plan, Path(d), metadata(plan, None, False), formats)
        t0 = time.monotonic_ns()
        import pyarrow.parquet  # noqa: F401  (its code pages are not the run's growth)

        base = rss_mb()
        cpu0 = time.process_time()
        peak = base
        curve = []
        pending_tokens = None
        feed.start(t0, time.time_ns(), {"provider": "openai", "model": "m", "url": "x",
                                        "price": None})
        step = max(1, a.requests // 10)
        for first in range(0, a.requests, a.batch):
            rows, tokens = batch(first, min(a.batch, a.requests - first), a.tokens, t0, rng)
            if pending_tokens is not None:      # the token ring runs one batch behind
                feed(rows[:0].view(np.int64), pending_tokens)
            feed(rows, np.zeros(0, np.int64))
            pending_tokens = tokens
            peak = max(peak, rss_mb())
            if (first // a.batch) % max(1, step // a.batch) == 0:
                curve.append(round(rss_mb() - base))
        feed(np.zeros(0, np.int64), pending_tokens)
        feed.results.flush(final=True)
        feed.close()
        cpu = time.process_time() - cpu0
        sizes = {p.name: p.stat().st_size / 2**20 for p in Path(d).iterdir()}
        res = feed.results.targets[0]
        assert res.counts["ok"] == a.requests, res.counts
        assert res.histograms["itl"].count == a.requests * (a.tokens - 1)
    return {"rss_before_mb": base, "rss_peak_mb": max(peak, hwm_mb()),
            "rss_growth_curve_mb": curve[:12],
            "cpu_us_per_request": cpu / a.requests * 1e6,
            "files_mb": {k: round(v, 1) for k, v in sizes.items()}}


def run_mode(a: argparse.Namespace) -> dict:
    from lens.engine.runner import run_and_report

    plan = RunPlan(url="http://127.0.0.1:1/v1", concurrency=a.concurrency, requests=a.requests,
                   max_tokens=a.tokens, cores=a.cores)
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            samples.append(rss_mb())

    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        base = rss_mb()
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        code = run_and_report(plan, embedded=True, output=os.path.join(d, "run"),
                              progress=False, strict=False, mock_ttft_ms=0.0, mock_itl_ms=0.0)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        stop.set()
        th.join()
        sizes = {p.name: p.stat().st_size / 2**20 for p in Path(d, "run").iterdir()}
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {"exit": code, "rss_before_mb": base, "rss_peak_mb": max(samples + [hwm_mb()]),
            "parent_cpu_us_per_request": cpu / a.requests * 1e6, "files_mb": sizes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("feed", "run"), default="feed")
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--tokens", type=int, default=16, help="output tokens per request")
    ap.add_argument("--batch", type=int, default=4096, help="rows per drained batch (feed)")
    ap.add_argument("--csv", action="store_true", help="also write requests.csv (feed)")
    ap.add_argument("--concurrency", type=int, default=64, help="run mode")
    ap.add_argument("--cores", type=int, default=1, help="run mode: worker processes")
    ap.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    a = ap.parse_args()
    out = feed_mode(a) if a.mode == "feed" else run_mode(a)
    growth = out["rss_peak_mb"] - out["rss_before_mb"]
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs")
    print(f"mode {a.mode}: {a.requests:,} requests × {a.tokens} tokens")
    for k, v in out.items():
        print(f"  {k}: {v if not isinstance(v, float) else round(v, 2)}")
    print(f"  parent RSS growth: {growth:.1f} MB (limit 200 MB): "
          f"{'ok' if growth < 200 else 'OVER'}")


if __name__ == "__main__":
    main()
