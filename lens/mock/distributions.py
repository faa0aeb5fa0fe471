"""Draw the mock's TTFT and ITL values from a chosen distribution.

Every distribution is given by a mean and a spread, both in milliseconds:

    fixed       always the mean; the spread must be 0
    uniform     U[mean - spread, mean + spread]; the spread is the half-width (spread <= mean)
    normal      N(mean, spread), values below 0 clipped to 0; the spread is the std dev
    lognormal   exp(N(mu, sigma)) with mean and std dev equal to the given mean and spread:
                sigma^2 = ln(1 + (spread/mean)^2),  mu = ln(mean) - sigma^2 / 2

Worked example: ``lognormal`` with mean 2 ms and spread 1 ms gives sigma = 0.472 and
mu = 0.582, i.e. a median of exp(mu) = 1.79 ms and a long right tail, with mean 2 ms and std
dev 1 ms.

Values are drawn by numpy in blocks of ``BLOCK`` and handed out one by one as integer ns, so
a draw in the per-token path is a list index, not a numpy call. A ``Sampler`` is seeded, so a
worker's sequence of draws is reproducible; which request gets which draw depends on arrival
order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lens.errors import ConfigError

__all__ = ["DIST_KINDS", "DistSpec", "Sampler"]

DIST_KINDS = ("fixed", "uniform", "normal", "lognormal")
BLOCK = 4096


@dataclass(frozen=True)
class DistSpec:
    """A distribution of a time in ms: ``kind`` (one of DIST_KINDS), ``mean_ms``, ``spread_ms``."""

    kind: str = "fixed"
    mean_ms: float = 0.0
    spread_ms: float = 0.0

    def validate(self, name: str) -> None:
        """Raise ConfigError when the spec cannot be drawn; ``name`` is the flag stem (``ttft``)."""
        if self.kind not in DIST_KINDS:
            raise ConfigError(
                f"--{name}-dist must be one of {', '.join(DIST_KINDS)} (got {self.kind!r})")
        if not math.isfinite(self.mean_ms) or self.mean_ms < 0:
            raise ConfigError(f"--{name}-ms must be >= 0 (got {self.mean_ms})")
        if not math.isfinite(self.spread_ms) or self.spread_ms < 0:
            raise ConfigError(f"--{name}-spread-ms must be >= 0 (got {self.spread_ms})")
        if self.kind == "fixed" and self.spread_ms > 0:
            raise ConfigError(
                f"--{name}-spread-ms {self.spread_ms} has no effect with --{name}-dist fixed; "
                f"add --{name}-dist uniform, normal or lognormal")
        if self.kind == "uniform" and self.spread_ms > self.mean_ms:
            raise ConfigError(
                f"--{name}-spread-ms must be <= --{name}-ms for a uniform distribution "
                f"(got {self.spread_ms} > {self.mean_ms}); it is the half-width around the mean")
        if self.kind == "lognormal" and self.spread_ms > 0 and self.mean_ms == 0:
            raise ConfigError(f"--{name}-ms must be > 0 for a lognormal distribution (got 0)")

    @property
    def is_constant(self) -> bool:
        """Return True when every draw is the mean (fixed, or a spread of 0)."""
        return self.kind == "fixed" or self.spread_ms == 0

    def sample_ms(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` values in ms (float64, never negative)."""
        m, s = self.mean_ms, self.spread_ms
        if self.is_constant:
            return np.full(size, m)
        if self.kind == "uniform":
            return rng.uniform(m - s, m + s, size)
        if self.kind == "normal":
            return np.maximum(rng.normal(m, s, size), 0.0)
        sigma2 = math.log1p((s / m) ** 2)
        return rng.lognormal(math.log(m) - sigma2 / 2, math.sqrt(sigma2), size)


class Sampler:
    """Hand out draws of a DistSpec as integer ns, one per ``next_ns()`` call."""

    __slots__ = ("_block", "_i", "_rng", "_spec", "constant_ns")

    def __init__(self, spec: DistSpec, rng: np.random.Generator) -> None:
        self._spec = spec
        self._rng = rng
        #: The value of every draw when the distribution is constant, else None.
        self.constant_ns: int | None = round(spec.mean_ms * 1e6) if spec.is_constant else None
        self._block: list[int] = []
        self._i = 0

    def next_ns(self) -> int:
        """Return the next draw in ns."""
        if self.constant_ns is not None:
            return self.constant_ns
        i = self._i
        if i == len(self._block):
            self._block = np.rint(self._spec.sample_ms(self._rng, BLOCK) * 1e6).astype(np.int64).tolist()
            i = 0
        self._i = i + 1
        return self._block[i]
