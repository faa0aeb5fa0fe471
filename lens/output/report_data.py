"""Read a run's folders and compute the numbers the HTML report draws (``lens.output.report``).

A run directory holds ``summary.json`` and, unless the run chose ``--format json``,
``requests.parquet`` and ``tokens.parquet`` (``docs/outputs.md``). A config run's directory
holds a combined ``summary.json`` whose ``metadata.runs`` names one subfolder per
scenario × provider × model, each a run directory of its own. ``load_run`` reads either, or
a list of such single-run folders (one scenario's runs, say). Every result of every summary
becomes one ``TargetData``: CDFs, distributions and per-second series of one target.

Everything is vectorised numpy over the Parquet columns, no loop per row. Second *k* covers
``[t0 + k s, t0 + k + 1 s)``, as the summary's ``timeseries`` does, so the throughput series
equal ``requests_ok`` and ``output_tokens`` there. Quantiles of a second interpolate linearly
between the two nearest ranks: TTFTs 10, 20, 30, 40 ms in one second give p50 25 ms and p90
37 ms (rank 0.9 × 3 = 2.7, 30 + 0.7 × 10).

CDFs keep every point up to 2,000 values; past that, 1,000 points evenly spaced in rank
plus 1,000 points spaced geometrically towards the largest value, so p99.9 and p99.99 of a
1,000,000-request run keep their shape. ITL uses at most ``ITL_MAX_TOKENS`` token stamps: a
bigger run uses every k-th request (by id), and the target's notes say so.

Without ``requests.parquet`` a target is drawn from its summary result: CDFs and
histograms from the encoded ``LogLinearHistogram``s (within 0.1 %), throughput, errors and
the TTFT median over time from ``timeseries``; its notes name what is missing.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from lens.errors import ConfigError
from lens.output.summary import SCHEMA

__all__ = ["ITL_MAX_TOKENS", "MAX_CDF_POINTS", "Run", "RunPath", "TargetData", "cdf_points",
           "grouped_quantiles", "histogram_cdf", "itl_gaps_ms", "load_run", "per_second",
           "read_summary"]

MAX_CDF_POINTS = 2000
ITL_MAX_TOKENS = 2_000_000
NS_PER_S = 1_000_000_000
_COLUMNS_READ = ("request_id", "target", "scenario", "error", "ok", "warmup", "dropped",
                 "cancelled", "t_sched_ns", "t_start_ns", "t_end_ns", "ttft_ms", "e2e_ms",
                 "sched_lag_ms", "output_tokens_per_s", "output_tokens")
#: A run folder, or its summary.json.
RunPath = str | os.PathLike[str]


@dataclass
class TargetData:
    """What the report draws of one result (scenario × provider × model) of a run.

    ``cdf`` maps ``ttft``/``e2e`` to (values in ms, fraction ≤ value); ``dist`` maps ``itl``
    (ms) and ``output_tokens_per_s`` to (values, weights or None); ``series`` holds the
    per-second arrays of ``per_second`` (absent keys were not measurable); ``errors`` maps
    an error kind to requests per second. ``notes`` say what was left out and why.
    """

    label: str
    scenario: str
    result: dict[str, Any]
    source: str
    cdf: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    dist: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    series: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Run:
    """A run directory (or a list of run folders) as the report sees it.

    ``summary`` is the directory's (combined) summary; for a list of folders, their summaries
    gathered into one (see ``load_run``). ``path`` is the directory, or the folder that holds
    every listed one; ``folders`` the listed folders in order, None for a run directory.
    """

    path: Path
    summary: dict[str, Any]
    targets: list[TargetData]
    folders: list[Path] | None = None


# ----------------------------------------------------------------------------- reading
def read_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``summary.json`` of a run directory (or the file itself).

    Raises ``ConfigError`` naming the file when the directory or file is missing, is not
    JSON, or is not a ``lens-fast/summary/1`` summary.
    """
    def missing(p: Path) -> ConfigError:
        if (p / "sweep.json").exists():    # lens.output.report_sweep reads it
            steps = sorted(x.name for x in (p / "steps").glob("*") if x.is_dir())
            return ConfigError(f"{str(p)!r} holds a sweep (sweep.json), not one run's "
                               "summary.json; `lens-fast report` draws the sweep, and one of "
                               "its steps with: lens-fast report "
                               f"{p / 'steps' / (steps[-1] if steps else 'NAME')}")
        return ConfigError(f"no summary.json in {str(p)!r}; expected the folder a lens-fast "
                           "run wrote (summary.json, requests.parquet, tokens.parquet)")

    f, data = read_document(path, "summary.json", "run", missing)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(
            data.get("scenarios"), list):
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{str(f)!r} is not a lens-fast summary (schema {got!r}, expected "
                          f"{SCHEMA!r} with a scenarios list)")
    return data


def read_document(path: RunPath, name: str, what: str,
                  missing: Callable[[Path], ConfigError]) -> tuple[Path, Any]:
    """Read the JSON file ``name`` of the --output folder of a lens-fast ``what`` (run,
    sweep), or the file itself; return ``(file, document)``.

    ``missing(folder)`` gives the error for a folder without the file; a path that does not
    exist, an unreadable file and invalid JSON each raise one ``ConfigError`` naming it.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{str(p)!r} does not exist; give the --output folder of a "
                          f"lens-fast {what} (it holds {name})")
    f = p / name if p.is_dir() else p
    try:
        return f, orjson.loads(f.read_bytes())
    except FileNotFoundError:
        raise missing(p) from None
    except OSError as e:
        raise ConfigError(f"cannot read {str(f)!r}: {e.strerror}") from None
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{str(f)!r} is not valid JSON ({e}); expected the {name} a "
                          f"lens-fast {what} wrote") from None


def load_run(run_dir: RunPath | Sequence[RunPath]) -> Run:
    """Read a run directory (a run's, or a config run's with one subfolder per run).

    ``run_dir`` may also be a sequence of single-run folders (each with its own summary.json
    and Parquet files, e.g. the subfolders of one scenario of a config run): their targets,
    exactly those and in that order, make one report side by side. The header metadata is
    then the first folder's, with the durations added up.

    Raises ``ConfigError`` naming the file when a summary, a listed subfolder or a Parquet
    file is missing or unreadable; for a sequence, also when it is empty or names a config
    run's folder (give its subfolders instead).
    """
    if isinstance(run_dir, str | os.PathLike):
        root = Path(run_dir)
        if root.is_file():               # summary.json itself: its folder is the run
            root = root.parent
        summary = read_summary(root)
        names = (summary.get("metadata") or {}).get("runs")
        parts = [root / str(n) for n in names] if names else [root]
        folders = None
    else:
        folders = [Path(p) for p in run_dir]
        parts, subs = _read_folders(folders)
        root = _common_folder(parts)
        summary = _gather(subs)
    many_scenarios = len(summary["scenarios"]) > 1
    targets: list[TargetData] = []
    for i, part in enumerate(parts):
        if folders is not None:
            sub = subs[i]
        elif not part.is_dir():
            raise ConfigError(f"{str(root / 'summary.json')!r} lists the run folder "
                              f"{part.name!r}, which is missing from {str(root)!r}")
        else:
            sub = summary if part == root else read_summary(part)
        targets += _load_part(part, sub, many_scenarios)
    labels = [t.label for t in targets]
    for t in targets:             # the same provider · model twice: tell them apart by URL
        if labels.count(t.label) > 1 and t.result.get("url"):
            t.label += f" · {t.result['url']}"
    return Run(root, summary, targets, folders)


def _read_folders(folders: Sequence[Path]) -> tuple[list[Path], list[dict[str, Any]]]:
    """Return (run folders, their summaries) of a list given to ``load_run``."""
    if not folders:
        raise ConfigError("no run folder to report: give at least one folder that a lens-fast "
                          "run wrote (summary.json, requests.parquet, tokens.parquet)")
    parts = [p.parent if p.is_file() else p for p in folders]
    subs = [read_summary(p) for p in parts]
    for p, s in zip(parts, subs, strict=True):
        runs = (s.get("metadata") or {}).get("runs")
        if runs:
            raise ConfigError(f"{str(p)!r} is a config run's folder (its summary.json lists the "
                              f"runs {', '.join(map(str, runs))}); give those run folders "
                              "instead, or report this folder alone")
    return parts, subs


def _common_folder(parts: Sequence[Path]) -> Path:
    try:
        return Path(os.path.commonpath([str(p) for p in parts]) or ".")
    except ValueError:                   # relative and absolute paths mixed
        return Path(os.path.commonpath([os.path.abspath(p) for p in parts]))


def _gather(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return one summary of several runs' summaries, results gathered by scenario name.

    The metadata is the first run's, with ``duration_s`` added up and ``interrupted`` set
    when any run was (as a config run's combined summary has them).
    """
    scenarios: dict[str, list[Any]] = {}
    for s in summaries:
        for sc in s["scenarios"]:
            scenarios.setdefault(sc.get("name", ""), []).extend(sc.get("results") or [])
    metas = [s.get("metadata") or {} for s in summaries]
    meta = dict(metas[0])
    if any(m.get("duration_s") is not None for m in metas):
        meta["duration_s"] = round(sum(m.get("duration_s") or 0 for m in metas), 6)
    stopped = [m for m in metas if m.get("interrupted")]
    if stopped:
        meta["interrupted"] = True
        meta["interrupted_by"] = stopped[0].get("interrupted_by")
    return {"schema": SCHEMA, "metadata": meta,
            "scenarios": [{"name": k, "results": v} for k, v in scenarios.items()]}


def _label(scenario: str, result: Mapping[str, Any], many_scenarios: bool) -> str:
    parts = [str(result[k]) for k in ("provider", "model") if result.get(k)]
    return " · ".join(([scenario] if many_scenarios else []) + parts) or scenario


def _load_part(d: Path, summary: dict[str, Any], many: bool) -> list[TargetData]:
    req, tok = d / "requests.parquet", d / "tokens.parquet"
    pairs = [(sc.get("name", ""), r) for sc in summary["scenarios"] for r in sc.get("results", [])]
    out = [TargetData(_label(s, r, many), s, r, "summary.json") for s, r in pairs]
    if not req.exists():
        for t in out:
            _from_summary(t)
        return out
    cols = _read_requests(req)
    several = len({s for s, _ in pairs}) > 1
    for t in out:
        index = int((t.result.get("target") or {}).get("index", 0))
        keep = cols["target"] == index
        if several:
            keep &= cols["scenario"] == t.scenario
        _from_rows(t, {k: v[keep] for k, v in cols.items()})
    if tok.exists():
        _add_itl(out, cols, tok, several)
    else:
        for t in out:
            t.dist["itl"] = _hist_values(t.result, "itl", 1e6)
            t.notes.append("ITL from summary.json's histogram (no tokens.parquet)")
    return out


def _read_parquet(path: Path, columns: Sequence[str]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
        missing = [c for c in columns if c not in f.schema_arrow.names]
        if missing:
            raise ConfigError(f"{str(path)!r} has no column {', '.join(missing)}; expected "
                              "a requests.parquet written by lens-fast (docs/outputs.md)")
        return f
    except (pa.ArrowException, OSError) as e:
        raise ConfigError(f"{str(path)!r} cannot be read as Parquet ({e}); a run killed "
                          "with SIGKILL leaves files without a footer: move the file away "
                          "to report from summary.json alone") from None


def _read_requests(path: Path) -> dict[str, np.ndarray]:
    """Read the report's columns as numpy: -1 for null times, NaN for null values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    f = _read_parquet(path, _COLUMNS_READ)
    try:
        t = f.read(columns=list(_COLUMNS_READ))
    except (pa.ArrowException, OSError) as e:
        raise ConfigError(f"{str(path)!r} cannot be read as Parquet ({e})") from None
    out: dict[str, np.ndarray] = {}
    for name in _COLUMNS_READ:
        c = t.column(name)
        if name in ("error", "scenario"):
            # codes into a few shared str objects: 8 bytes a row, not a str per row
            d = pc.fill_null(c, "").combine_chunks().dictionary_encode()
            names = np.asarray(d.dictionary.to_pylist() or [""], object)
            out[name] = names[d.indices.to_numpy(zero_copy_only=False)]
        elif name.endswith("_ms") or name == "output_tokens_per_s":
            out[name] = pc.fill_null(c, math.nan).to_numpy().astype(np.float64, copy=False)
        elif pa.types.is_boolean(c.type):
            out[name] = pc.fill_null(c, False).to_numpy(zero_copy_only=False)
        else:
            out[name] = pc.fill_null(c, -1).to_numpy().astype(np.int64, copy=False)
        t = t.drop_columns([name])           # free each column once converted
    return out


# ----------------------------------------------------------------------------- numbers
def cdf_points(values: np.ndarray, max_points: int = MAX_CDF_POINTS
               ) -> tuple[np.ndarray, np.ndarray]:
    """Return (sorted values, fraction ≤ value) of the non-NaN values, ≤ ``max_points``.

    Up to ``max_points`` values every one is kept (fraction (i + 1) / n); past that, half the
    points are evenly spaced in rank and half spaced geometrically towards the maximum (see
    the module docstring). The first and last value are always kept.
    """
    v = np.sort(np.asarray(values, np.float64)[~np.isnan(values)])
    n = len(v)
    return _pick(v, np.arange(1, n + 1) / n if n else np.zeros(0), max_points)


def histogram_cdf(h: Any, scale: float = 1e6, max_points: int = MAX_CDF_POINTS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Return the CDF of a ``LogLinearHistogram``: (value / scale, fraction ≤ it).

    Each non-empty bucket gives one point at its midpoint clamped to the exact min and max,
    the value ``quantile`` reports for ranks in that bucket (within 0.1 %).
    """
    lo, hi, counts = h.bucket_bounds()
    if not len(counts):
        return np.zeros(0), np.zeros(0)
    c = np.cumsum(counts)
    x = np.clip((lo + hi) / 2, h.min, h.max)
    return _pick(x / scale, c / c[-1], max_points)


def _pick(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    if n <= max_points:
        return x, y
    half = max_points // 2
    tail = n - np.geomspace(1, n, max_points - half)
    idx = np.unique(np.r_[np.linspace(0, n - 1, half), tail].round().astype(np.int64))
    idx = np.clip(idx, 0, n - 1)
    return x[idx], y[idx]


def grouped_quantiles(keys: np.ndarray, values: np.ndarray, qs: Sequence[float]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Return (distinct keys, quantiles of each key's values: shape (keys, len(qs))).

    Quantiles interpolate linearly between the nearest ranks (numpy's default); q 1 is the
    maximum. NaN values are left out.
    """
    ok = ~np.isnan(values)
    keys, values = keys[ok], values[ok]
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    if not len(k):
        return k, np.zeros((0, len(qs)))
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    n = np.diff(np.r_[starts, len(k)])
    out = np.empty((len(starts), len(qs)))
    for j, q in enumerate(qs):         # one numpy pass per quantile, not per group
        pos = q * (n - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        a, b = v[starts + lo], v[starts + hi]
        out[:, j] = a + (b - a) * (pos - lo)
    return k[starts], out


def _seconds(t_ns: np.ndarray) -> np.ndarray:
    return np.clip(t_ns // NS_PER_S, 0, 7 * 24 * 3600)


def per_second(cols: Mapping[str, np.ndarray]
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Compute the per-second series of one target's request columns (times from t0).

    Returns ``(series, errors)``. ``series``: ``t_s``, ``requests_ok`` and
    ``output_tokens`` (per second of ``t_end``), ``ttft_p50_ms`` … ``e2e_p99_ms`` (of ok
    requests ending in the second, NaN when none), ``sched_lag_p50_ms``/``p99``/``max``
    (of sent requests by second of ``t_start``). ``errors``: kind → measured requests that
    were not ok, per second of ``t_end`` (``t_start``, ``t_sched`` when unset); dropped and
    cancelled requests count under those names.
    """
    measured = ~cols["warmup"]
    ok = cols["ok"] & measured
    end = cols["t_end_ns"]
    when = np.where(end >= 0, end, np.where(cols["t_start_ns"] >= 0, cols["t_start_ns"],
                                            cols["t_sched_ns"]))
    sent = measured & ~cols["dropped"] & (cols["t_start_ns"] >= 0)
    bad = measured & ~ok & (when >= 0)
    ok_end = ok & (end >= 0)
    sec_ok = _seconds(end[ok_end])
    last = max([-1] + [int(a.max()) for a in (sec_ok, _seconds(when[bad]),
                                               _seconds(cols["t_start_ns"][sent])) if len(a)])
    n = last + 1
    s: dict[str, np.ndarray] = {"t_s": np.arange(n)}
    s["requests_ok"] = np.bincount(sec_ok, minlength=n)[:n]
    s["output_tokens"] = np.bincount(sec_ok, cols["output_tokens"][ok_end].astype(np.float64),
                                     minlength=n)[:n].round().astype(np.int64)
    for metric in ("ttft", "e2e"):
        secs, q = grouped_quantiles(sec_ok, cols[f"{metric}_ms"][ok_end], (0.5, 0.9, 0.99))
        for j, name in enumerate(("p50", "p90", "p99")):
            s[f"{metric}_{name}_ms"] = _dense(secs, q[:, j], n)
    secs, q = grouped_quantiles(_seconds(cols["t_start_ns"][sent]),
                                np.maximum(cols["sched_lag_ms"][sent], 0.0), (0.5, 0.99, 1.0))
    for j, name in enumerate(("p50", "p99", "max")):
        s[f"sched_lag_{name}_ms"] = _dense(secs, q[:, j], n)
    kind = np.where(cols["dropped"][bad], "dropped",
                    np.where(cols["cancelled"][bad], "cancelled", cols["error"][bad]))
    names, inv = np.unique(kind.astype(object), return_inverse=True)
    counts = np.bincount(inv.reshape(-1) * n + _seconds(when[bad]),
                         minlength=len(names) * n).reshape(len(names), n)
    return s, {str(k): counts[i] for i, k in enumerate(names)}


def _dense(secs: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[secs] = values
    return out


def itl_gaps_ms(request_id: np.ndarray, index: np.ndarray, t_ns: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Return (gaps in ms, request id of each gap) between consecutive stamps of a request.

    Stamps may come in any order; they are ordered by (request id, index) first.
    """
    if not len(request_id):
        return np.zeros(0), np.zeros(0, np.int64)
    order = np.lexsort((index, request_id))
    rid, t = request_id[order], t_ns[order]
    same = rid[1:] == rid[:-1]
    return np.diff(t)[same] / 1e6, rid[1:][same]


def _add_itl(targets: list[TargetData], cols: dict[str, np.ndarray], path: Path,
             several: bool) -> None:
    """Add each target's ITL gaps from tokens.parquet (ok requests only), read in batches."""
    f = _read_parquet(path, ("request_id", "index", "t_ns"))
    ok = cols["ok"] & ~cols["warmup"] & (cols["request_id"] >= 0)
    ids = cols["request_id"][ok]
    owner = np.full(len(ids), -1, np.int64)
    for i, t in enumerate(targets):
        mine = cols["target"][ok] == int((t.result.get("target") or {}).get("index", 0))
        if several:
            mine &= cols["scenario"][ok] == t.scenario
        owner[mine] = i
    stride = max(1, math.ceil(f.metadata.num_rows / ITL_MAX_TOKENS))
    keep = (owner >= 0) & (ids % stride == 0)
    lookup = np.full(int(ids.max()) + 1 if len(ids) else 0, -1, np.int64)
    lookup[ids[keep]] = owner[keep]
    parts: list[tuple[np.ndarray, ...]] = []
    try:
        for b in f.iter_batches(batch_size=1 << 20, columns=["request_id", "index", "t_ns"]):
            rid = b.column(0).to_numpy()
            inside = (rid >= 0) & (rid < len(lookup))
            sel = np.zeros(len(rid), bool)
            sel[inside] = lookup[rid[inside]] >= 0
            parts.append((rid[sel], b.column(1).to_numpy()[sel], b.column(2).to_numpy()[sel]))
    except Exception as e:  # pyarrow raises several kinds on a damaged file
        raise ConfigError(f"{str(path)!r} cannot be read as Parquet ({e})") from None
    rid, idx, tns = ([np.concatenate(c) for c in zip(*parts, strict=True)] if parts
                     else [np.zeros(0, np.int64)] * 3)
    gaps, gap_rid = itl_gaps_ms(rid, idx, tns)
    who = lookup[gap_rid] if len(gap_rid) else gap_rid
    for i, t in enumerate(targets):
        t.dist["itl"] = (gaps[who == i], None)
        if stride > 1:
            t.notes.append(f"ITL histogram from 1 request in {stride} (ids divisible by "
                           f"{stride}) of {f.metadata.num_rows:,} token stamps; the summary "
                           "table has them all")


def _from_rows(t: TargetData, c: dict[str, np.ndarray]) -> None:
    t.source = "requests.parquet"
    ok = c["ok"] & ~c["warmup"]
    for m in ("ttft", "e2e"):
        t.cdf[m] = cdf_points(c[f"{m}_ms"][ok])
    v = c["output_tokens_per_s"][ok]
    t.dist["output_tokens_per_s"] = (v[~np.isnan(v)], None)
    t.series, t.errors = per_second(c)


def _histogram(result: Mapping[str, Any], metric: str) -> Any:
    import base64

    from lens._core import LogLinearHistogram

    enc = (result.get("histograms") or {}).get(metric)
    if not enc:
        return None
    try:
        return LogLinearHistogram.decode(base64.b64decode(enc))
    except ValueError as e:
        raise ConfigError(f"the {metric} histogram of {result.get('model')!r} in summary.json "
                          f"cannot be decoded ({e}); expected base64 of "
                          "LogLinearHistogram.encode()") from None


def _hist_values(result: Mapping[str, Any], metric: str, scale: float
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    h = _histogram(result, metric)
    if h is None:
        return np.zeros(0), None
    lo, hi, counts = h.bucket_bounds()
    return (lo + hi) / 2 / scale, counts.astype(np.float64)


def _from_summary(t: TargetData) -> None:
    r = t.result
    for m in ("ttft", "e2e"):
        h = _histogram(r, m)
        t.cdf[m] = histogram_cdf(h) if h is not None else (np.zeros(0), np.zeros(0))
    t.dist["itl"] = _hist_values(r, "itl", 1e6)
    t.dist["output_tokens_per_s"] = _hist_values(r, "output_tokens_per_s", 1e6)
    ts = r.get("timeseries") or {}
    if ts.get("t_s"):
        t.series = {"t_s": np.asarray(ts["t_s"])}
        for k in ("requests_ok", "output_tokens"):
            t.series[k] = np.asarray(ts.get(k) or [0] * len(ts["t_s"]))
        t.series["ttft_p50_ms"] = np.array(ts.get("ttft_p50_ms") or [], np.float64)
        t.errors = {"failed": np.asarray(ts.get("errors") or [0] * len(ts["t_s"]))}
    t.notes.append("drawn from summary.json (no requests.parquet): latency p90/p99 and E2E "
                   "over time, scheduling lag over time and error kinds over time need "
                   "requests.parquet")

