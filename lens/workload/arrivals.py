"""Open-loop arrival schedules: constant, poisson and gamma, reproducible from a seed.

The schedule is one global sequence of intended start offsets (ns after t0). Worker k of N
takes arrivals i with ``i % N == k`` (``split``), so the union of all workers' arrivals is
exactly the global process, and request ids equal arrival indices.

Gamma arrivals use inter-arrival gaps ``Gamma(shape=burstiness, scale=1/(rate*burstiness))``:
the mean gap is always ``1/rate``; ``burstiness=1`` is Poisson, ``< 1`` is burstier, ``> 1``
is more regular (the convention of vLLM's bench serve).
"""
from __future__ import annotations

import numpy as np

ARRIVALS = ("constant", "poisson", "gamma")
_CHUNK = 65536


def arrival_offsets_ns(kind: str, rate: float, *, requests: int | None = None,
                       duration_s: float | None = None, seed: int = 0,
                       burstiness: float = 1.0) -> np.ndarray:
    """Return int64 intended start offsets (ns after t0), the first at 0.

    Stops after ``requests`` arrivals or before ``duration_s``, whichever comes first; at
    least one of them must be given.
    """
    if kind not in ARRIVALS:
        raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)} (got {kind!r})")
    if not rate > 0:
        raise ValueError(f"rate must be > 0 (got {rate})")
    if requests is None and duration_s is None:
        raise ValueError("give requests or duration_s")
    if kind == "gamma" and not burstiness > 0:
        raise ValueError(f"burstiness must be > 0 (got {burstiness})")
    limit_ns = None if duration_s is None else int(duration_s * 1e9)
    if kind == "constant":
        n = requests if requests is not None else int(np.ceil(duration_s * rate)) + 1
        out = (np.arange(n, dtype=np.float64) * (1e9 / rate)).astype(np.int64)
    else:
        rng = np.random.default_rng(seed)
        parts: list[np.ndarray] = []
        total = 0
        last = 0.0
        while True:
            want = _CHUNK if requests is None else min(_CHUNK, requests - total)
            if kind == "poisson":
                gaps = rng.exponential(1e9 / rate, size=want)
            else:
                gaps = rng.gamma(burstiness, 1e9 / (rate * burstiness), size=want)
            t = last + np.cumsum(gaps)
            if total == 0:
                t -= gaps[0]          # the first arrival is at t0
            last = float(t[-1])
            parts.append(t)
            total += want
            if requests is not None and total >= requests:
                break
            if limit_ns is not None and last >= limit_ns:
                break
        out = np.concatenate(parts).astype(np.int64)
    if limit_ns is not None:
        out = out[out < limit_ns]
    if requests is not None:
        out = out[:requests]
    return out


def split(offsets: np.ndarray, worker: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (request ids, offsets) of the arrivals ``i`` with ``i % workers == worker``."""
    ids = np.arange(worker, len(offsets), workers, dtype=np.int64)
    return ids, offsets[worker::workers]
