"""The baseline load client of ``bench_engine.py``: aiohttp on one plain asyncio loop.

    python benchmarks/baseline_aiohttp.py --url http://127.0.0.1:8000/v1 --rate 200 \\
        --duration 10 [--cpu 1] [--json out.json]

This is the client design of vLLM's ``bench serve`` (``backend_request_func.py``) and of most
peers: one asyncio event loop (the default one, not uvloop), one shared ``aiohttp``
``ClientSession`` (``TCPConnector(limit=0)``, keep-alive), and per request::

    async for line in resp.content:              # one line at a time
        line = line.strip(); skip blanks
        chunk = line.decode().removeprefix("data: ")
        ts = time.perf_counter_ns()              # per event
        data = json.loads(chunk)                 # per event
        ttft / itl.append(ts - last) / generated_text += content

What differs from vLLM, on purpose:

* open-loop arrivals at a constant rate with absolute deadlines (``t0 + i / rate``), so the
  schedule is the same as lens-fast's ``--rps`` and the scheduling lag (start − intended
  start) can be measured; vLLM sleeps relative intervals;
* the first token is the first event with non-empty ``delta.content`` (vLLM counts the chat
  role event, which carries no text), so TTFT compares with the mock's first token write;
* before the measured window it opens its connections with short warm-up requests (lens-fast
  also pre-opens its pool), so connection set-up stays out of both clients' CPU figures;
* each request carries an ``x-request-id`` header (``<prefix><i>``), which keys the mock's
  truth record.

``time.perf_counter_ns`` is ``clock_gettime(CLOCK_MONOTONIC)`` on Linux (``check_clock``
verifies it), the clock of the mock's truth record and of lens-fast, so the stamps compare
directly. The process measures its own CPU (user + system, ``resource.getrusage``) over the
load window: from the first intended start to the end of the last response.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time

PROMPT = ("time year people way day man thing woman life child world school state family "
          "student group country problem hand part place case week company system program "
          "question work government number night point")      # 32 words, ~32 tokens


def check_clock() -> str:
    """Return perf_counter's implementation; raise RuntimeError unless it is CLOCK_MONOTONIC."""
    impl = time.get_clock_info("perf_counter").implementation
    if "CLOCK_MONOTONIC" not in impl or "RAW" in impl:
        raise RuntimeError(f"time.perf_counter is {impl}, not CLOCK_MONOTONIC: its stamps do "
                           "not compare with the mock's truth")
    a = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    b = time.perf_counter_ns()
    c = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    if not a <= b <= c:
        raise RuntimeError("time.perf_counter_ns does not read CLOCK_MONOTONIC")
    return impl


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Output:
    """One request's measurements, as vLLM's RequestFuncOutput keeps them (ns, not s)."""

    __slots__ = (
        "error",
        "generated_text",
        "i",
        "itl",
        "latency_ns",
        "output_tokens",
        "success",
        "t_first_ns",
        "t_sched_ns",
        "t_start_ns",
    )

    def __init__(self, i: int, t_sched_ns: int):
        self.i = i
        self.t_sched_ns = t_sched_ns
        self.t_start_ns = 0
        self.t_first_ns = 0
        self.itl: list[int] = []
        self.latency_ns = 0
        self.generated_text = ""
        self.output_tokens = 0
        self.success = False
        self.error = ""


async def request(session, api_url: str, payload: dict, rid: str, out: Output) -> Output:
    """Send one streaming chat request and read it the way vLLM's bench serve does."""
    import aiohttp

    headers = {"Content-Type": "application/json", "x-request-id": rid}
    generated_text = ""
    st = time.perf_counter_ns()
    out.t_start_ns = st
    most_recent = st
    first = 0
    try:
        async with session.post(url=api_url, json=payload, headers=headers) as response:
            if response.status == 200:
                async for chunk_bytes in response.content:
                    chunk_bytes = chunk_bytes.strip()
                    if not chunk_bytes:
                        continue
                    chunk = chunk_bytes.decode("utf-8").removeprefix("data: ")
                    if chunk != "[DONE]":
                        timestamp = time.perf_counter_ns()
                        data = json.loads(chunk)
                        if choices := data.get("choices"):
                            content = choices[0]["delta"].get("content")
                            if content:
                                if first == 0:
                                    first = timestamp
                                    out.t_first_ns = timestamp
                                else:
                                    out.itl.append(timestamp - most_recent)
                                most_recent = timestamp
                                generated_text += content
                        elif usage := data.get("usage"):
                            out.output_tokens = usage.get("completion_tokens")
                out.generated_text = generated_text
                out.success = first != 0
                out.latency_ns = time.perf_counter_ns() - st
            else:
                out.error = f"HTTP {response.status}: {await response.text()}"[:200]
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        out.error = repr(exc)[:200]
    return out


def payload_for(model: str, max_tokens: int) -> dict:
    """The body lens-fast sends: OpenAI chat, stream, include_usage, max_tokens."""
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}}


async def _run(url: str, rate: float, duration_s: float, max_tokens: int, model: str,
               warm_connections: int, id_prefix: str, lead_s: float) -> dict:
    import aiohttp

    api_url = url.rstrip("/") + "/chat/completions"
    payload = payload_for(model, max_tokens)
    timeout = aiohttp.ClientTimeout(total=6 * 60 * 60)
    connector = aiohttp.TCPConnector(limit=0)
    n = int(duration_s * rate) + 1
    period_ns = 1e9 / rate
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # warm-up: open the pool with short concurrent requests (1 token each)
        warm = payload_for(model, 1)
        outs = await asyncio.gather(*(request(session, api_url, warm, f"{id_prefix}warm{k}",
                                              Output(-1, 0))
                                      for k in range(warm_connections)))
        warm_failed = sum(not o.success for o in outs)
        outputs = [Output(i, 0) for i in range(n)]
        loop = asyncio.get_running_loop()
        tasks = []
        t0 = time.perf_counter_ns() + int(lead_s * 1e9)
        await asyncio.sleep(max(0.0, (t0 - time.perf_counter_ns()) / 1e9))
        cpu0 = _cpu_s()
        wall0 = time.perf_counter_ns()
        for i in range(n):
            ts = t0 + int(i * period_ns)
            delay = ts - time.perf_counter_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
            o = outputs[i]
            o.t_sched_ns = ts
            tasks.append(loop.create_task(request(session, api_url, payload,
                                                  f"{id_prefix}{i}", o)))
        await asyncio.gather(*tasks)
        wall1 = time.perf_counter_ns()
        cpu1 = _cpu_s()
    return {"outputs": outputs, "cpu_s": cpu1 - cpu0, "wall_s": (wall1 - wall0) / 1e9,
            "t0_ns": t0, "t_end_ns": wall1, "warm_connections": warm_connections,
            "warm_failed": warm_failed}


def run(url: str, rate: float, duration_s: float, *, max_tokens: int = 128,
        model: str = "lens-mock", warm_connections: int | None = None, id_prefix: str = "b",
        lead_s: float = 0.2) -> dict:
    """Run the baseline client in this process; return its figures and per-request arrays.

    Result keys: ``cpu_s``, ``wall_s`` (load window), ``sent``, ``ok``, ``token_events``,
    ``achieved_rps`` ((sent − 1) / (last start − first start), as lens-fast computes it),
    ``sched_lag_ms`` {p50, p99, max}, ``cpu_ms_per_request``, ``cpu_us_per_token``, ``rps``,
    and ``arrays``: ``request_id`` (the x-request-id strings), ``t_start_ns``,
    ``t_first_token_ns``, ``token_offsets`` / ``token_t_ns`` (every content event's stamp,
    CLOCK_MONOTONIC ns, rebuilt from first + cumulative ITL) for the ok requests.
    """
    import numpy as np

    impl = check_clock()
    if warm_connections is None:
        warm_connections = min(2000, int(rate * 0.3 * 1.5) + 4)
    r = asyncio.run(_run(url, rate, duration_s, max_tokens, model, warm_connections, id_prefix,
                         lead_s))
    outs = r.pop("outputs")
    starts = np.array([o.t_start_ns for o in outs], np.int64)
    sched = np.array([o.t_sched_ns for o in outs], np.int64)
    ok = [o for o in outs if o.success]
    lag = (starts - sched) / 1e6
    sent = len(outs)
    span = (starts.max() - starts.min()) / 1e9 if sent > 1 else 0.0
    n_tok = sum(len(o.itl) + 1 for o in ok)
    offsets = np.zeros(len(ok) + 1, np.int64)
    offsets[1:] = np.cumsum([len(o.itl) + 1 for o in ok])
    token_t = np.empty(int(offsets[-1]), np.int64)
    for k, o in enumerate(ok):
        a = offsets[k]
        token_t[a] = o.t_first_ns
        token_t[a + 1:offsets[k + 1]] = o.t_first_ns + np.cumsum(o.itl, dtype=np.int64)
    errors: dict[str, int] = {}
    for o in outs:
        if not o.success:
            key = o.error.split(":")[0] or "no token"
            errors[key] = errors.get(key, 0) + 1
    r.update({
        "client": "aiohttp baseline (one asyncio loop)",
        "clock": impl,
        "rate": rate,
        "duration_s": duration_s,
        "sent": sent,
        "ok": len(ok),
        "errors": errors,
        "token_events": n_tok,
        "achieved_rps": (sent - 1) / span if span > 0 else 0.0,
        "sched_lag_ms": {"p50": float(np.percentile(lag, 50)),
                         "p99": float(np.percentile(lag, 99)), "max": float(lag.max())},
        "cpu_ms_per_request": 1e3 * r["cpu_s"] / len(ok) if ok else float("nan"),
        "cpu_us_per_token": 1e6 * r["cpu_s"] / n_tok if n_tok else float("nan"),
        "cpu_percent": 100.0 * r["cpu_s"] / r["wall_s"] if r["wall_s"] > 0 else 0.0,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "arrays": {
            "request_id": [f"{id_prefix}{o.i}" for o in ok],
            "t_start_ns": np.array([o.t_start_ns for o in ok], np.int64),
            "t_first_token_ns": np.array([o.t_first_ns for o in ok], np.int64),
            "token_offsets": offsets,
            "token_t_ns": token_t,
        },
    })
    return r


def _child(conn, cpu: int | None, kwargs: dict) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        conn.send(("ok", run(**kwargs)))
    except BaseException as exc:  # noqa: BLE001 - report to the parent, never hang it
        conn.send(("error", repr(exc)))
    finally:
        conn.close()


def run_pinned(cpu: int | None, timeout_s: float | None = None, **kwargs) -> dict:
    """Run ``run(**kwargs)`` in a fresh spawned process pinned to ``cpu``; return its result."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(child, cpu, kwargs), name="baseline-aiohttp")
    p.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise TimeoutError(f"the baseline client did not finish within {timeout_s} s")
        status, value = parent.recv()
    finally:
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join()
    if status != "ok":
        raise RuntimeError(f"baseline client failed: {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--rate", type=float, required=True, help="requests per second")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--model", default="lens-mock")
    ap.add_argument("--cpu", type=int, default=None, help="pin the client to this CPU")
    ap.add_argument("--id-prefix", default="b")
    ap.add_argument("--json", default=None, help="write the figures (no arrays) here")
    a = ap.parse_args(argv)
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    r = run(a.url, a.rate, a.duration, max_tokens=a.max_tokens, model=a.model,
            id_prefix=a.id_prefix)
    r.pop("arrays")
    text = json.dumps(r, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
