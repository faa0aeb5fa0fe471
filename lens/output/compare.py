"""Compare a run with a baseline: per-metric change, its bootstrap confidence interval, a verdict.

``compare_runs(baseline_dir, run_dir, thresholds)`` matches the results of two run folders by
(scenario, provider, model) and, for each threshold (``ttft.p99=10%``, ``throughput=-5%``),
computes the relative change of the statistic, a bootstrap confidence interval of that change
and a verdict. The statistics, the spec grammar and the verdict rule are drawn in
``docs/compare.md``; ``lens-fast compare`` (``compare_command.py``, which also renders it as
a console table and as Markdown) prints it and exits with its status.

Verdict: with w the change in the worse direction (+ for a latency that rose, + for a
throughput that fell), [w_lo, w_hi] its confidence interval and T the threshold's size,

* ``regression``   w > T and w_lo > 0: beyond the threshold *and* significant;
* ``inconclusive`` w > T but the interval reaches no change (or there is no noise estimate);
* ``improvement``  w < −T and w_hi < 0;
* ``ok``           anything else; ``n/a`` when a side has no value.

Worked example: baseline TTFT p50 20.0 ms, run 24.1 ms, threshold 10 %: w = +20.5 %; the
bootstrap interval [+19.6 %, +21.3 %] excludes 0, so it is a regression. Had the interval been
[−2 %, +40 %] (a few dozen requests), the verdict would be inconclusive.

Noise: per-request values come from ``requests.parquet`` (ok rows), ITL from the gaps of
``tokens.parquet``, each with its time. The run is cut into ``BLOCKS`` equal time blocks and
the bootstrap draws whole blocks with replacement: a run's requests are not independent (a
busy machine slows a burst of them), and a change confined to one burst then stays within the
noise while a change over the whole run does not. Throughput uses the same blocks of ok
completions. Without Parquet, the summary's histograms (requests taken as independent) and
per-second series serve. The cost does not grow with the run: values are grouped into at
most ``MAX_BINS`` log-spaced bins and a resample's quantile is a binary search over them.
"""
from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from lens.errors import ConfigError

__all__ = [
    "Change",
    "DEFAULT_THRESHOLDS",
    "Comparison",
    "MetricChange",
    "ResultComparison",
    "Threshold",
    "bootstrap_change",
    "compare_runs",
    "mann_whitney",
    "parse_thresholds",
    "verdict",
]

#: Metric → (requests.parquet column, unit, higher is better). ``itl`` comes from tokens.parquet.
METRICS = {
    "ttft": ("ttft_ms", "ms", False), "ttft_sched": ("ttft_sched_ms", "ms", False),
    "itl": (None, "ms", False), "tpot": ("tpot_ms", "ms", False),
    "e2e": ("e2e_ms", "ms", False), "e2e_sched": ("e2e_sched_ms", "ms", False),
    "output_tokens_per_s": ("output_tokens_per_s", "tok/s", True),
    "sched_lag": ("sched_lag_ms", "ms", False),
}
#: Run-wide rates (summary ``throughput.requests_per_s``, ``.output_tokens_per_s``) → unit.
RATES = {"throughput": "req/s", "output_throughput": "tok/s"}
STATS = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999, "mean": None}
DEFAULT_THRESHOLDS = ("ttft.p50=10%,ttft.p99=20%,itl.p50=10%,e2e.p50=10%,e2e.p99=20%,"
                      "throughput=-5%")
#: The block bootstrap cuts a run into this many equal time blocks (throughput too), and
#: groups values into at most ``MAX_BINS`` bins.
BLOCKS, MAX_BINS = 10, 4096
#: No noise estimate with fewer values than this on a side, or fewer beyond a quantile, or
#: (throughput from the summary) fewer seconds.
MIN_VALUES, MIN_BEYOND, MIN_SERIES = 20, 2, 8
#: The rank test uses at most this many values per side (evenly spaced quantiles beyond).
RANK_VALUES = 200_000
#: ITL: read about this many token stamps per run at most (parts of evenly spaced row groups).
MAX_TOKEN_ROWS = 2_000_000

_VALID = ("valid forms: METRIC.STAT=N% with METRIC one of ttft, ttft_sched, itl, tpot, e2e, "
          "e2e_sched, sched_lag (N% is the largest allowed rise) or output_tokens_per_s (-N%, "
          "the largest allowed drop) and STAT one of p50, p90, p95, p99, p999, mean; "
          "throughput=-N% (requests/s) and output_throughput=-N% (output tokens/s); "
          "comma-separated, e.g. ttft.p99=10%,itl.p50=5%,throughput=-5%")
_PERCENT = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)%")


# --------------------------------------------------------------------------- thresholds
@dataclass(frozen=True)
class Threshold:
    """One ``--max-regression`` item: ``metric.stat`` (``stat`` None for rates) and its limit.

    ``limit`` is a fraction with the sign the user wrote: +0.10 for "a rise of more than 10 %",
    −0.05 for "a drop of more than 5 %" (higher-is-better metrics).
    """

    key: str
    metric: str
    stat: str | None
    limit: float
    higher_is_better: bool
    unit: str


def parse_thresholds(spec: str | None = None) -> tuple[Threshold, ...]:
    """Parse ``ttft.p99=10%,itl.p50=5%,throughput=-5%``; None gives ``DEFAULT_THRESHOLDS``.

    Raises ``ConfigError`` naming the bad item and the valid forms, before any work.
    """
    spec = DEFAULT_THRESHOLDS if spec is None else spec
    if not spec.strip():
        raise ConfigError(f"--max-regression is empty; {_VALID}")
    out: dict[str, Threshold] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            raise ConfigError(f"--max-regression {spec!r} has an empty item; {_VALID}")
        t = _parse_item(item)
        if t.key in out:
            raise ConfigError(f"bad --max-regression item {item!r}: {t.key} is given twice; "
                              "give each metric once")
        out[t.key] = t
    return tuple(out.values())


def _parse_item(item: str) -> Threshold:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"bad --max-regression item {item!r}: {why}; {_VALID}")

    key, eq, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if not eq:
        raise bad("no '=' (expected KEY=N%)")
    metric, dot, stat = key.partition(".")
    if metric in RATES:
        if dot:
            raise bad(f"{metric} takes no statistic (got {key!r})")
        higher, unit, stat_ = True, RATES[metric], None
    elif metric in METRICS:
        if not dot:
            raise bad(f"{metric} needs a statistic, e.g. {metric}.p99")
        if stat not in STATS:
            raise bad(f"unknown statistic {stat!r}")
        _, unit, higher = METRICS[metric]
        stat_ = stat
    else:
        raise bad(f"unknown metric {metric!r}")
    m = _PERCENT.fullmatch(value)
    if m is None:
        raise bad(f"threshold {value!r} is not a percentage such as 10% or -5%")
    limit = float(m[1] + m[2]) / 100.0
    if limit != 0 and higher and limit > 0:
        raise bad(f"{metric} is higher-is-better: its threshold is the largest allowed drop, "
                  f"a negative percentage such as -5% (got {value})")
    if limit != 0 and not higher and limit < 0:
        raise bad(f"{metric} is lower-is-better: its threshold is the largest allowed rise, "
                  f"a positive percentage such as 10% (got {value})")
    if limit <= -1.0:
        raise bad(f"a drop of 100% or more cannot happen (got {value})")
    return Threshold(key, metric, stat_, limit, higher, unit)


# --------------------------------------------------------------------------- statistics
@dataclass
class _Sample:
    """One side's values of a metric: the statistics and what the bootstrap draws from.

    ``blocks`` (values from Parquet, with their times) is ``(bin values, counts per time
    block × bin)``; without it (the summary's histogram) ``x`` holds the sorted values or
    ``hist`` the histogram (values ``hist.quantiles(q) / scale``).
    """

    n: int
    point: dict[str, float]
    var: float
    x: np.ndarray | None = None
    hist: Any = None
    scale: float = 1.0
    blocks: tuple[np.ndarray, np.ndarray] | None = None

    def inverse_cdf(self, u: np.ndarray) -> np.ndarray:
        """Return the values at quantiles ``u`` (the smallest value v with F(v) >= u)."""
        if self.x is not None:
            idx = np.clip(np.ceil(u * self.n).astype(np.int64) - 1, 0, self.n - 1)
            return self.x[idx]
        return np.asarray(self.hist.quantiles(u), np.float64) / self.scale


def _bins(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group values into log-spaced bins (0.05 % wide, wider past ``MAX_BINS`` bins); return
    each value's bin and each bin's mean, in increasing order (0 and negatives included)."""
    width = 5e-4
    with np.errstate(divide="ignore"):
        mag = np.log(np.abs(x))
    while True:
        k = np.floor(mag / math.log1p(width)) + 1e7           # > 0 for any |x| > 1e-300
        key = np.where(x > 0, k, np.where(x < 0, -k, 0.0))
        uniq, inv = np.unique(key, return_inverse=True)
        if len(uniq) <= MAX_BINS:
            return inv, np.bincount(inv, weights=x) / np.bincount(inv)
        width *= 2


def _sample(values: np.ndarray, times: np.ndarray | None = None) -> _Sample:
    """Return the sample of ``values``; with ``times``, cut into ``BLOCKS`` equal time blocks."""
    values = np.asarray(values, np.float64)
    x = np.sort(values)
    n = len(x)
    if n == 0:
        return _Sample(0, {}, math.nan, x)
    point = {k: float(x.mean()) if q is None else float(x[max(0, math.ceil(q * n) - 1)])
             for k, q in STATS.items()}
    s = _Sample(n, point, float(x.var()), x)
    if times is not None:
        t = np.asarray(times, np.float64)
        span = float(t.max() - t.min())
        if span > 0:
            block = np.minimum(((t - t.min()) / span * BLOCKS).astype(np.int64), BLOCKS - 1)
            inv, mids = _bins(values)
            counts = np.bincount(block * len(mids) + inv, minlength=BLOCKS * len(mids))
            s.blocks = mids, counts.reshape(BLOCKS, len(mids)).astype(np.float64)
    return s


def _sample_from_histogram(h: Any, scale: float) -> _Sample:
    n = int(h.count)
    if n == 0:
        return _Sample(0, {}, math.nan, np.empty(0))
    point = {k: (float(h.mean) / scale if q is None else float(h.quantile(q)) / scale)
             for k, q in STATS.items()}
    lo, hi, counts = h.bucket_bounds()
    mid = (lo.astype(np.float64) + hi) / 2.0 / scale
    var = float(np.sum(counts * (mid - point["mean"]) ** 2) / n)
    return _Sample(n, point, var, hist=h, scale=scale)


def _resample(s: _Sample, stat: str, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``resamples`` bootstrap draws of ``stat``.

    With time blocks (the block bootstrap): each resample draws ``BLOCKS`` blocks with
    replacement and takes the statistic of all their values, from the per-block bin counts
    (O(resamples × BLOCKS × log bins), whatever n).
    Values are dependent in time (a burst of slow requests on a busy machine); resampling
    whole blocks keeps that in the noise, so a slowdown in one burst stays within it.

    Without (histogram): values are taken as independent. A quantile needs no resampling:
    the k-th smallest of n values drawn from the empirical distribution F is F⁻¹(U₍ₖ₎), and
    the k-th smallest of n uniforms is Beta(k, n + 1 − k) distributed, so each draw is O(1)
    (the exact bootstrap distribution); the mean is drawn from its normal limit N(mean, var/n).
    """
    q = STATS[stat]
    if s.blocks is None:
        if q is None:
            return rng.normal(s.point["mean"], math.sqrt(s.var / s.n), size=resamples)
        k = max(1, math.ceil(q * s.n))
        return s.inverse_cdf(rng.beta(k, s.n + 1 - k, size=resamples))
    mids, counts = s.blocks
    # how often each block is drawn, per resample (resamples × BLOCKS)
    pick = rng.integers(0, BLOCKS, size=(resamples, BLOCKS))
    pick += (np.arange(resamples) * BLOCKS)[:, None]
    drawn = np.bincount(pick.ravel(), minlength=resamples * BLOCKS).reshape(resamples, BLOCKS)
    drawn = drawn.astype(np.float64)
    cum = np.cumsum(counts, axis=1)                 # BLOCKS × bins: values ≤ each bin
    total = drawn @ cum[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        if q is None:
            return drawn @ (counts @ mids) / total
        # the smallest bin whose resampled count of values ≤ it reaches q · total: a binary
        # search over bins, all resamples at once (O(resamples × BLOCKS × log bins))
        target = np.maximum(q * total, 0.5)
        lo = np.zeros(resamples, np.int64)
        hi = np.full(resamples, len(mids) - 1)
        while (active := lo < hi).any():
            mid = (lo + hi) // 2
            below = np.einsum("rk,kr->r", drawn, cum[:, mid]) < target
            lo = np.where(active & below, mid + 1, lo)
            hi = np.where(active & ~below, mid, hi)
        return np.where(total > 0, mids[lo], np.nan)


def _has_noise_estimate(n: int, stat: str) -> bool:
    q = STATS[stat]
    beyond = n if q is None else n - math.ceil(q * n)
    return n >= MIN_VALUES and beyond >= MIN_BEYOND


@dataclass
class Change:
    """The change of one statistic: values, relative change, its confidence interval."""

    baseline: float | None
    run: float | None
    rel: float | None
    ci: tuple[float, float] | None
    n_baseline: int
    n_run: int


def _change(b: float | None, r: float | None) -> float | None:
    if b is None or r is None or b == 0 or not (math.isfinite(b) and math.isfinite(r)):
        return None
    return float(r / b - 1.0)


def _interval(bb: np.ndarray, rb: np.ndarray, confidence: float) -> tuple[float, float] | None:
    with np.errstate(divide="ignore", invalid="ignore"):
        d = rb / bb - 1.0
    d = d[np.isfinite(d)]
    if len(d) < 0.9 * len(bb):
        return None
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(d, [a, 1.0 - a])
    return float(lo), float(hi)


def _change_of(bs: _Sample, rs: _Sample, stat: str, confidence: float, resamples: int,
               rng: np.random.Generator) -> Change:
    b, r = bs.point.get(stat), rs.point.get(stat)
    ci = None
    if _change(b, r) is not None and _has_noise_estimate(bs.n, stat) \
            and _has_noise_estimate(rs.n, stat):
        ci = _interval(_resample(bs, stat, resamples, rng), _resample(rs, stat, resamples, rng),
                       confidence)
    return Change(b, r, _change(b, r), ci, bs.n, rs.n)


def bootstrap_change(baseline: Sequence[float] | np.ndarray, run: Sequence[float] | np.ndarray,
                     stat: str = "p50", *, baseline_times: np.ndarray | None = None,
                     run_times: np.ndarray | None = None, confidence: float = 0.95,
                     resamples: int = 2000, seed: int = 0) -> Change:
    """Return the relative change of ``stat`` from ``baseline`` to ``run`` values, with a
    percentile-bootstrap confidence interval (None with too few values; see
    ``_has_noise_estimate``). With both sides' times (any unit) the bootstrap resamples time
    blocks, else single values."""
    blocked = baseline_times is not None and run_times is not None
    return _change_of(_sample(np.asarray(baseline), baseline_times if blocked else None),
                      _sample(np.asarray(run), run_times if blocked else None), stat,
                      confidence, resamples, np.random.default_rng(seed))


def mann_whitney(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Return ``(p, P(y > x))``: the two-sided Mann-Whitney U p-value (normal approximation,
    tie-corrected) and the probability of superiority of y; None when a side is empty."""
    x, y = np.sort(np.asarray(x, np.float64)), np.asarray(y, np.float64)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return None
    left, right = np.searchsorted(x, y, "left"), np.searchsorted(x, y, "right")
    u = float(np.sum(left) + 0.5 * np.sum(right - left))          # pairs with y above x
    _, t = np.unique(np.concatenate([x, y]), return_counts=True)
    nn = n1 + n2
    ties = float(np.sum(t.astype(np.float64) ** 3 - t))
    var = n1 * n2 / 12.0 * ((nn + 1) - ties / (nn * (nn - 1) if nn > 1 else 1))
    if var <= 0:
        return 1.0, u / (n1 * n2)
    z = (abs(u - n1 * n2 / 2.0) - 0.5) / math.sqrt(var)
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2.0))), u / (n1 * n2)


# --------------------------------------------------------------------------- run folders
Key = tuple[str, str | None, str | None]


@dataclass
class _Result:
    """One result of a run folder: its summary entry and where its Parquet files are."""

    key: Key
    summary: dict[str, Any]
    config: dict[str, Any]
    folder: Path | None
    scenario: str
    target: int


def _read_summary(folder: Path) -> dict[str, Any]:
    path = folder / "summary.json"
    try:
        s = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"no summary.json in {str(folder)!r}: not a lens-fast run folder; "
                          "give the --output folder of `lens-fast run`") from None
    except (OSError, orjson.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {str(path)!r}: {e}") from e
    if not isinstance(s, dict) or not str(s.get("schema", "")).startswith("lens-fast/summary/"):
        raise ConfigError(f"{str(path)!r} is not a lens-fast summary (no lens-fast/summary "
                          "schema)")
    return s


def _results(summary: dict[str, Any], folder: Path | None) -> list[_Result]:
    config = (summary.get("metadata") or {}).get("config") or {}
    out = []
    for sc in summary.get("scenarios") or []:
        for r in sc.get("results") or []:
            key = (str(sc.get("name")), r.get("provider"), r.get("model"))
            out.append(_Result(key, r, config, folder, str(sc.get("name")),
                               int((r.get("target") or {}).get("index", 0))))
    return out


def _load_results(folder: str | Path) -> list[_Result]:
    """Return the results of a run folder, or of a config run's subfolders (``metadata.runs``).

    A result whose subfolder is missing keeps the combined summary's entry (no Parquet).
    """
    folder = Path(folder)
    summary = _read_summary(folder)
    runs = (summary.get("metadata") or {}).get("runs")
    if not runs:
        out = _results(summary, folder)
    else:
        out = []
        for sub in runs:
            if (folder / sub / "summary.json").is_file():
                out += _results(_read_summary(folder / sub), folder / sub)
        seen = {r.key for r in out}
        out += [r for r in _results(summary, None) if r.key not in seen]
    count: dict[Key, int] = {}
    for r in out:     # the same scenario × provider × model twice: number the later ones
        count[r.key] = count.get(r.key, 0) + 1
        if count[r.key] > 1:
            r.key = (f"{r.key[0]}#{count[r.key]}", r.key[1], r.key[2])
    return out


class _Data:
    """One result's values: from its Parquet files when present, else from its summary."""

    def __init__(self, res: _Result, columns: set[str]):
        self.res = res
        self.notes: list[str] = []
        self._rows: dict[str, np.ndarray] | None = None
        self._itl: tuple[np.ndarray, np.ndarray] | None = None
        folder = res.folder
        self.has_requests = folder is not None and (folder / "requests.parquet").is_file()
        self.has_tokens = self.has_requests and (folder / "tokens.parquet").is_file()
        self.columns = columns | {"request_id", "target", "scenario", "ok", "warmup", "dropped",
                                  "t_start_ns", "t_end_ns", "output_tokens"}

    def rows(self) -> dict[str, np.ndarray] | None:
        """Return the result's rows of requests.parquet as numpy columns (None if unreadable)."""
        if self._rows is None and self.has_requests:
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            try:
                t = pq.read_table(self.res.folder / "requests.parquet", columns=sorted(
                    self.columns))
            except Exception as e:    # a file without its footer, a foreign file: use the summary
                self.notes.append(f"requests.parquet unreadable ({e}); using the summary")
                self.has_requests = self.has_tokens = False
                return None
            t = t.filter(pc.and_(pc.equal(t["scenario"], self.res.scenario),
                                 pc.equal(t["target"], self.res.target)))
            self._rows = {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names
                          if c != "scenario"}
        return self._rows

    def values(self, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Return the metric's per-request values and start times: ok rows (sent rows for
        sched_lag); ITL gives token gaps and the times of their later stamps."""
        if metric == "itl":
            return self.itl()
        r = self.rows()
        rows = ~r["warmup"] & ~r["dropped"] if metric == "sched_lag" else r["ok"]
        v = r[METRICS[metric][0]][rows].astype(np.float64)
        t = r["t_start_ns"][rows].astype(np.float64)
        keep = ~np.isnan(v) & ~np.isnan(t)
        return v[keep], t[keep]

    def itl(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Return the token gaps (ms) of ok requests and the times of their later stamps.

        Past ``MAX_TOKEN_ROWS`` stamps, only the first rows of evenly spaced row groups are
        read (about ``MAX_TOKEN_ROWS`` in all); a gap counts only between consecutive stamps
        of one request, so a request cut by the selection loses gaps, never gains one.
        """
        if self._itl is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            cols = ["request_id", "index", "t_ns"]
            try:
                f = pq.ParquetFile(self.res.folder / "tokens.parquet")
                n, groups = f.metadata.num_rows, f.metadata.num_row_groups
                if n <= MAX_TOKEN_ROWS:
                    t = f.read(columns=cols)
                else:
                    take = min(groups, math.ceil(MAX_TOKEN_ROWS * groups / n))
                    chosen = sorted(set(np.linspace(0, groups - 1, take).round().astype(int)))
                    per = MAX_TOKEN_ROWS // len(chosen)
                    t = pa.Table.from_batches([next(f.iter_batches(per, [g], cols))
                                               for g in chosen])
                    self.notes.append(f"ITL from {len(t):,} of {n:,} token stamps "
                                      f"({len(chosen)} of {groups} row groups)")
            except Exception as e:    # as for requests.parquet: the summary's histogram serves
                self.notes.append(f"tokens.parquet unreadable ({e}); ITL from the summary")
                self.has_tokens = False
                return None
            rid, idx, ts = (t[c].to_numpy() for c in cols)
            # one sort key, request then index: consecutive stamps differ by exactly 1
            m = int(idx.max()) + 1 if len(idx) else 1
            key = rid * m + idx
            order = np.argsort(key)
            key, ts = key[order], ts[order]
            same = (np.diff(key) == 1) & (key[1:] % m != 0)
            r = self.rows()
            ok_ids = np.sort(r["request_id"][r["ok"]])
            gid = key[1:][same] // m
            pos = np.minimum(np.searchsorted(ok_ids, gid), max(len(ok_ids) - 1, 0))
            keep = ok_ids[pos] == gid if len(ok_ids) else np.zeros(len(gid), bool)
            self._itl = np.diff(ts)[same][keep] / 1e6, ts[1:][same][keep].astype(np.float64)
        return self._itl

    def histogram(self, metric: str) -> _Sample | None:
        """Return the metric's sample from the summary's histogram (None when absent)."""
        from lens._core import LogLinearHistogram

        enc = (self.res.summary.get("histograms") or {}).get(metric)
        if not enc:
            return None
        unit = (self.res.summary.get("histogram_units") or {}).get(metric, "ns")
        h = LogLinearHistogram.decode(base64.b64decode(enc))
        # ns → ms, µtok/s → tok/s (TOKENS_PER_S_SCALE): both a factor of a million
        return _sample_from_histogram(h, 1e6 if unit in ("ns", "utok/s") else 1.0)

    def blocks(self, key: str, parquet: bool) -> tuple[float, np.ndarray] | None:
        """Return ``(window_s, per-block counts)`` of ok requests (``throughput``) or of their
        output tokens (``output_throughput``): ``BLOCKS`` equal time blocks of the measured
        window (by ``t_end``) from the Parquet rows (``parquet``), else the summary's
        per-second series. None without a window."""
        if parquet:
            r = self.rows()
            sent, ok = ~r["warmup"] & ~r["dropped"], r["ok"]
            if not ok.any():
                return None
            w0 = float(np.nanmin(r["t_start_ns"][sent].astype(np.float64)))
            w1 = float(np.nanmax(r["t_end_ns"][sent].astype(np.float64)))
            weights = None if key == "throughput" else r["output_tokens"][ok].astype(np.float64)
            counts, _ = np.histogram(r["t_end_ns"][ok].astype(np.float64), BLOCKS, (w0, w1),
                                     weights=weights)
            return (w1 - w0) / 1e9, counts.astype(np.float64)
        ts = self.res.summary.get("timeseries") or {}
        window = (self.res.summary.get("throughput") or {}).get("window_s")
        ok = np.asarray(ts.get("requests_ok") or [], np.float64)
        if not window or not ok.any():
            return None
        nz = np.flatnonzero(ok)
        series = ok if key == "throughput" else np.asarray(ts.get("output_tokens"), np.float64)
        return float(window), series[nz[0]:nz[-1] + 1]


# --------------------------------------------------------------------------- comparison
@dataclass
class MetricChange:
    """One threshold's row: both values, the change, its interval, the rank test, a verdict.

    ``rel`` and ``ci`` are fractions (0.2 = +20 %); ``source`` says where the values came
    from: ``parquet``, ``histogram`` (the summary's), ``blocks`` (throughput from Parquet
    rows), ``timeseries`` (throughput from the summary) or ``""`` (no data).
    """

    threshold: Threshold
    baseline: float | None
    run: float | None
    rel: float | None
    ci: tuple[float, float] | None
    n_baseline: int
    n_run: int
    rank_p: float | None
    source: str
    verdict: str

    @property
    def change(self) -> float | None:
        """Return run − baseline, in the metric's unit."""
        return None if self.baseline is None or self.run is None else self.run - self.baseline


@dataclass
class ResultComparison:
    """The comparison of one (scenario, provider, model) result of both folders."""

    key: Key
    rows: list[MetricChange]
    counts: dict[str, dict[str, int]]
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Return ``scenario · provider · model``."""
        return " · ".join(str(k) for k in self.key if k)


@dataclass
class Comparison:
    """What ``compare_runs`` found: one ``ResultComparison`` per matched result."""

    baseline_dir: str
    run_dir: str
    thresholds: tuple[Threshold, ...]
    confidence: float
    resamples: int
    seed: int
    results: list[ResultComparison]
    only_in_baseline: list[str]
    only_in_run: list[str]

    @property
    def regressions(self) -> list[tuple[ResultComparison, MetricChange]]:
        """Return every (result, row) whose verdict is ``regression``."""
        return [(r, m) for r in self.results for m in r.rows if m.verdict == "regression"]

    @property
    def exit_status(self) -> int:
        """Return 1 when any metric regressed, else 0."""
        return 1 if self.regressions else 0

    def to_dict(self) -> dict[str, Any]:
        """Return the comparison as a JSON-ready dict (fractions, values in their units)."""
        def row(m: MetricChange) -> dict[str, Any]:
            return {"metric": m.threshold.key, "unit": m.threshold.unit,
                    "threshold": m.threshold.limit, "baseline": m.baseline, "run": m.run,
                    "change": m.change, "change_rel": m.rel,
                    "ci_rel": list(m.ci) if m.ci else None, "n_baseline": m.n_baseline,
                    "n_run": m.n_run, "rank_p": m.rank_p, "source": m.source,
                    "verdict": m.verdict}
        return {
            "schema": "lens-fast/compare/1", "baseline": self.baseline_dir, "run": self.run_dir,
            "confidence": self.confidence, "resamples": self.resamples, "seed": self.seed,
            "regressions": len(self.regressions),
            "results": [{"scenario": r.key[0], "provider": r.key[1], "model": r.key[2],
                         "counts": r.counts, "notes": r.notes, "metrics": [row(m) for m in r.rows]}
                        for r in self.results],
            "only_in_baseline": self.only_in_baseline, "only_in_run": self.only_in_run,
        }


def verdict(rel: float | None, ci: tuple[float, float] | None, threshold: Threshold) -> str:
    """Return ``regression``, ``inconclusive``, ``improvement``, ``ok`` or ``n/a`` (see the
    module docstring): a regression needs the change beyond the threshold *and* an interval
    that excludes no change."""
    if rel is None:
        return "n/a"
    sign = -1.0 if threshold.higher_is_better else 1.0
    worse, limit = sign * rel, abs(threshold.limit)
    lo, hi = sorted((sign * ci[0], sign * ci[1])) if ci else (math.nan, math.nan)
    if worse > limit:
        return "regression" if lo > 0 else "inconclusive"
    if worse < -limit and hi < 0:
        return "improvement"
    return "ok"


def _rank_values(s: _Sample) -> np.ndarray:
    if s.x is not None and s.n <= RANK_VALUES:
        return s.x
    m = min(s.n, RANK_VALUES)      # a histogram, or too many values: m evenly spaced quantiles
    return s.inverse_cdf((np.arange(m) + 0.5) / m)


def _rate_row(t: Threshold, b: _Data, r: _Data, confidence: float, resamples: int,
              rng: np.random.Generator) -> MetricChange:
    """Compare a rate: bootstrap over time blocks (Parquet) or seconds (summary series)."""
    parquet = all(d.has_requests and d.rows() is not None for d in (b, r))
    bb, rb = b.blocks(t.metric, parquet), r.blocks(t.metric, parquet)
    if bb is None or rb is None:
        return MetricChange(t, None, None, None, None, 0, 0, None, "", "n/a")
    (bw, bc), (rw, rc) = bb, rb
    bv, rv = float(bc.sum() / bw), float(rc.sum() / rw)
    ci = None
    if min(len(bc), len(rc)) >= MIN_SERIES and min(bc.sum(), rc.sum()) >= MIN_VALUES:
        boot = [c[rng.integers(0, len(c), (resamples, len(c)))].sum(axis=1) / w
                for w, c in ((bw, bc), (rw, rc))]
        ci = _interval(boot[0], boot[1], confidence)
    rel = _change(bv, rv)
    return MetricChange(t, bv, rv, rel, ci, int(bc.sum()), int(rc.sum()), None,
                        "blocks" if parquet else "timeseries", verdict(rel, ci, t))


def _metric_row(t: Threshold, b: _Data, r: _Data, cache: dict, confidence: float,
                resamples: int, rng: np.random.Generator) -> MetricChange:
    if t.stat is None:
        return _rate_row(t, b, r, confidence, resamples, rng)
    if t.metric not in cache:
        pair, src = None, "parquet"
        if all(d.has_requests and d.rows() is not None and (t.metric != "itl" or d.has_tokens)
               for d in (b, r)):
            values = [d.values(t.metric) for d in (b, r)]
            if values[0] is not None and values[1] is not None:
                pair = (_sample(*values[0]), _sample(*values[1]))
        if pair is None:
            pair, src = (b.histogram(t.metric), r.histogram(t.metric)), "histogram"
        rank = None
        if pair[0] is not None and pair[1] is not None and pair[0].n and pair[1].n:
            mw = mann_whitney(_rank_values(pair[0]), _rank_values(pair[1]))
            rank = mw[0] if mw else None
        cache[t.metric] = pair, src, rank
    (bs, rs), src, rank = cache[t.metric]
    if bs is None or rs is None:
        return MetricChange(t, None, None, None, None, 0, 0, None, "", "n/a")
    c = _change_of(bs, rs, t.stat, confidence, resamples, rng)
    return MetricChange(t, c.baseline, c.run, c.rel, c.ci, c.n_baseline, c.n_run, rank, src,
                        verdict(c.rel, c.ci, t))


def _config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = [k for k in dict.fromkeys([*a, *b]) if k != "url" and a.get(k) != b.get(k)]
    return [f"{k} {a.get(k)!r} → {b.get(k)!r}" for k in keys]


def compare_runs(baseline_dir: str | Path, run_dir: str | Path,
                 thresholds: Sequence[Threshold] | str | None = None, *,
                 confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Comparison:
    """Compare every result of ``run_dir`` with the matching one of ``baseline_dir``.

    Results match by (scenario, provider, model); when each folder has exactly one result they
    are compared whatever their names (with a note). ``thresholds`` is a spec string or parsed
    ``Threshold``s (None: ``DEFAULT_THRESHOLDS``). The same inputs and ``seed`` give the same
    intervals. Raises ``ConfigError`` for a folder that is not a run's or when nothing matches.
    """
    if thresholds is None or isinstance(thresholds, str):
        thresholds = parse_thresholds(thresholds)
    if not 0.5 <= confidence < 1.0:
        raise ConfigError(f"confidence must be in [0.5, 1) (got {confidence})")
    if resamples < 100:
        raise ConfigError(f"resamples must be >= 100 (got {resamples})")
    base, run = _load_results(baseline_dir), _load_results(run_dir)
    bmap, rmap = {x.key: x for x in base}, {x.key: x for x in run}
    pairs = [(bmap[k], rmap[k]) for k in bmap if k in rmap]
    notes: list[str] = []
    if not pairs and len(base) == 1 and len(run) == 1:
        pairs = [(base[0], run[0])]
        notes.append(f"compared with the baseline's only result, {_label(base[0].key)}")
    if not pairs:
        raise ConfigError(
            f"no result of {str(run_dir)!r} matches one of {str(baseline_dir)!r} by "
            f"(scenario, provider, model): baseline has {[_label(x.key) for x in base]}, "
            f"run has {[_label(x.key) for x in run]}")
    matched_b, matched_r = {id(p[0]) for p in pairs}, {id(p[1]) for p in pairs}
    columns = {METRICS[t.metric][0] for t in thresholds if t.metric in METRICS} - {None}
    out = []
    for i, (b, r) in enumerate(pairs):
        bd, rd = _Data(b, columns), _Data(r, columns)
        cache: dict[str, Any] = {}
        rows = [_metric_row(t, bd, rd, cache, confidence, resamples,
                            np.random.default_rng([seed, i, j]))
                for j, t in enumerate(thresholds)]
        counts = {side: {k: int((x.summary.get("counts") or {}).get(k, 0))
                         for k in ("ok", "failed", "dropped", "cancelled")}
                  for side, x in (("baseline", b), ("run", r))}
        res_notes = list(notes) + [f"baseline: {n}" for n in bd.notes] + \
            [f"run: {n}" for n in rd.notes]
        if any(m.source in ("histogram", "timeseries") for m in rows):
            res_notes.append("no Parquet files on both sides: values and intervals come from "
                             "the summaries' histograms (within 0.1 %) and per-second series")
        diff = _config_diff(b.config, r.config)
        if diff:
            res_notes.append("configs differ: " + "; ".join(diff[:6]))
        out.append(ResultComparison(r.key, rows, counts, res_notes))
    return Comparison(str(baseline_dir), str(run_dir), tuple(thresholds), confidence, resamples,
                      seed, out, [_label(x.key) for x in base if id(x) not in matched_b],
                      [_label(x.key) for x in run if id(x) not in matched_r])


def _label(key: Key) -> str:
    return " · ".join(str(k) for k in key if k)
