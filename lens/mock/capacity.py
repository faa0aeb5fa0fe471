"""The mock's capacity model, and the request rate at which it saturates.

Two knobs make a saturation point exist:

- ``max_concurrency`` C: at most C requests hold a slot at once; later ones wait in a FIFO
  queue, and their TTFT includes the wait. A request holds its slot from admission until its
  last token is written (C = 0: no limit).
- ``batch_slowdown`` S: each ITL is drawn, then multiplied by ``1 + S * (active - 1)``, where
  ``active`` is the number of requests holding a slot when the token is scheduled.

A request admitted at time a writes its first token at a + ttft and its k-th token (k >= 2)
one scaled ITL after the (k-1)-th, so it holds its slot for

    D = ttft + (T - 1) * itl * (1 + S * (C - 1))        (all C slots busy)

and the mock completes at most C / D requests per second. Worked example: ttft 20 ms, itl
2 ms, T = 128 tokens, C = 64, S = 0.01: D = 20 + 127 * 2 * 1.63 = 434.0 ms, so the mock
saturates at 64 / 0.4340 s = 147.5 req/s. Offered more, its queue and TTFT grow without bound.

With no concurrency limit and S > 0 the mock still saturates: by Little's law N = rate * D
with D = ttft + (T - 1) * itl * (1 + S * (N - 1)), which has a finite N only while
rate < 1 / ((T - 1) * itl * S). With S = 0 as well there is no saturation point (infinity).

For non-fixed distributions the same formulas hold with the means (normal clipping at 0
aside). Under load a token can be written up to 0.5 ms late (``lens.mock.server``), so a
measured saturation rate lands within a few percent of the formula.
"""
from __future__ import annotations

import math

__all__ = ["itl_factor", "saturation_rps", "slot_time_ms"]


def itl_factor(active: int, batch_slowdown: float) -> float:
    """Return the ITL multiplier with ``active`` requests holding slots: 1 + S * (active - 1)."""
    return 1.0 + batch_slowdown * (active - 1) if active > 1 else 1.0


def slot_time_ms(ttft_ms: float, itl_ms: float, output_tokens: int, active: int,
                 batch_slowdown: float = 0.0) -> float:
    """Return how long one request holds its slot (ms) while ``active`` slots stay busy."""
    return ttft_ms + max(output_tokens - 1, 0) * itl_ms * itl_factor(active, batch_slowdown)


def saturation_rps(ttft_ms: float, itl_ms: float, output_tokens: int, max_concurrency: int,
                   batch_slowdown: float = 0.0) -> float:
    """Return the highest request rate (req/s) the mock sustains with these settings.

    ``max_concurrency`` 0 means no limit: the result is 1 / ((T-1) * itl * S), or ``math.inf``
    when that is unbounded too. Raise ValueError for negative inputs.
    """
    if min(ttft_ms, itl_ms, output_tokens, max_concurrency, batch_slowdown) < 0:
        raise ValueError("saturation_rps takes only non-negative settings")
    if max_concurrency == 0:
        decode_ms = max(output_tokens - 1, 0) * itl_ms * batch_slowdown
        return 1000.0 / decode_ms if decode_ms > 0 else math.inf
    d_ms = slot_time_ms(ttft_ms, itl_ms, output_tokens, max_concurrency, batch_slowdown)
    return 1000.0 * max_concurrency / d_ms if d_ms > 0 else math.inf
