"""Write drained rows and token stamps to ``requests.parquet`` and ``tokens.parquet``.

Batches are buffered and written as row groups of at least ``row_group_rows`` rows, or
whatever is buffered every ``flush_interval_s`` (10 s), so memory stays flat however long the
run, and what was measured is on disk up to the last row group even before ``close()``. The
files are only readable once ``close()`` has written their footers: the engine closes the sink
on every way out (end, Ctrl-C, SIGTERM). Columns are drawn in ``docs/outputs.md``. Timestamps
are int64 ns relative to the run's epoch t0, null where never taken; derived latencies are
float64 ms, null where they do not apply. ``cost_usd`` is ``input_tokens × input +
output_tokens × output`` (USD per million tokens, the target's ``price``) for a request
answered with 2xx, 0 for one that was not (never sent, refused, failed before a response), and
null when the target's model has no price.
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from lens._core import (
    FLAG_CANCELLED,
    FLAG_CONN_REUSED,
    FLAG_DROPPED,
    FLAG_TRUNCATED,
    FLAG_USAGE_FROM_STREAM,
    FLAG_WARMUP,
    UNSET,
)
from lens.errors import RunError
from lens.output.results import ERROR_NAMES, as_rows, as_tokens, derive_metrics, error_name
from lens.output.summary import redact_secrets

__all__ = ["REQUESTS_SCHEMA", "TOKENS_SCHEMA", "ParquetSink"]

REQUESTS_FILE = "requests.parquet"
TOKENS_FILE = "tokens.parquet"
REQUESTS_CSV_FILE = "requests.csv"

_TIMES = ("t_sched_ns", "t_start_ns", "t_dns_ns", "t_connect_ns", "t_tls_ns", "t_sent_ns",
          "t_first_byte_ns", "t_headers_ns", "t_first_token_ns", "t_last_token_ns", "t_end_ns",
          "t_attempt_ns")
_MS = ("ttft", "ttft_sched", "e2e", "e2e_sched", "tpot", "itl_mean", "sched_lag",
       "ttft_last_attempt", "e2e_last_attempt")
_FLAGS = (("tokens_from_usage", FLAG_USAGE_FROM_STREAM), ("warmup", FLAG_WARMUP),
          ("conn_reused", FLAG_CONN_REUSED), ("truncated", FLAG_TRUNCATED),
          ("cancelled", FLAG_CANCELLED), ("dropped", FLAG_DROPPED))

REQUESTS_SCHEMA = pa.schema(
    [("request_id", pa.int64()), ("worker", pa.int64()), ("target", pa.int64()),
     ("scenario", pa.string()), ("status", pa.int64()), ("error", pa.string()),
     ("ok", pa.bool_()), ("flags", pa.int64()), ("attempt", pa.int64())]
    + [(f, pa.int64()) for f in _TIMES]
    + [(f"{m}_ms", pa.float64()) for m in _MS]
    + [("output_tokens_per_s", pa.float64()), ("output_tokens", pa.int64()),
       ("input_tokens", pa.int64()), ("token_events", pa.int64()), ("bytes_in", pa.int64()),
       ("conn_id", pa.int64()), ("finish", pa.int64())]
    + [(name, pa.bool_()) for name, _ in _FLAGS]
    + [("cost_usd", pa.float64())])
TOKENS_SCHEMA = pa.schema([("request_id", pa.int64()), ("index", pa.int64()),
                           ("t_ns", pa.int64())])


def _per_token(target: Mapping[str, Any], key: str) -> float:
    price = target.get("price")
    return float(price[key]) / 1e6 if price else np.nan


def _strings(codes: np.ndarray, name_of: Any) -> pa.Array:
    """Map int codes to strings with one Python call per distinct code, not per row."""
    uniq, inv = np.unique(codes, return_inverse=True)
    names = pa.array([name_of(c) for c in uniq.tolist()], pa.string())
    return pa.DictionaryArray.from_arrays(inv.astype(np.int32).reshape(-1), names
                                          ).dictionary_decode()


class ParquetSink:
    """Stream request rows and token stamps to Parquet in ``out_dir``.

    ``run_metadata`` (command, versions, host, t0 wall clock, config without secrets) goes,
    as JSON, into the ``lens.run`` key of both files' key-value metadata; ``targets`` (one
    mapping per target index: provider, model, url) into ``lens.targets``. Secret-looking
    keys are redacted. ``scenario`` fills the ``scenario`` column and may be changed between
    batches (a sweep writes one sink). Use as a context manager or call ``close()``.

    ``csv=True`` also writes the requests table, the same columns batch by batch, to
    ``requests.csv``; ``parquet=False`` writes no Parquet file (``--format csv,json``).
    """

    def __init__(self, out_dir: str | os.PathLike[str], t0_ns: int,
                 run_metadata: Mapping[str, Any] | None = None, *,
                 targets: Sequence[Mapping[str, Any]] = (), scenario: str = "default",
                 error_names: Mapping[int, str] | None = None,
                 row_group_rows: int = 65536, token_row_group_rows: int = 1 << 18,
                 compression: str = "zstd", parquet: bool = True, csv: bool = False,
                 flush_interval_s: float = 10.0):
        if row_group_rows < 1 or token_row_group_rows < 1:
            raise ValueError(f"row group sizes must be >= 1 (got {row_group_rows}, "
                             f"{token_row_group_rows})")
        self.out_dir = os.fspath(out_dir)
        self.t0_ns = int(t0_ns)
        self.scenario = scenario
        self.error_names = dict(ERROR_NAMES if error_names is None else error_names)
        self.row_group_rows = row_group_rows
        self.token_row_group_rows = token_row_group_rows
        self.flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()
        self.requests_path = os.path.join(self.out_dir, REQUESTS_FILE)
        self.tokens_path = os.path.join(self.out_dir, TOKENS_FILE)
        self.csv_path = os.path.join(self.out_dir, REQUESTS_CSV_FILE) if csv else None
        self.rows_written = 0
        self.tokens_written = 0
        self._rows: list[tuple[np.ndarray, str]] = []
        self._n_rows = 0
        self._tokens: list[np.ndarray] = []
        self._n_tokens = 0
        meta = {
            b"lens.run": orjson.dumps(redact_secrets(dict(run_metadata or {})),
                                      option=orjson.OPT_SERIALIZE_NUMPY, default=str),
            b"lens.targets": orjson.dumps(redact_secrets([dict(t) for t in targets]),
                                          default=str),
            b"lens.t0_ns": str(self.t0_ns).encode(),
        }
        # USD per token by target index; NaN: no price
        self._usd_in = np.array([_per_token(t, "input_per_mtok") for t in targets], np.float64)
        self._usd_out = np.array([_per_token(t, "output_per_mtok") for t in targets],
                                 np.float64)
        self._closed = False
        self._req_writer = self._tok_writer = self._csv_writer = None
        try:
            os.makedirs(self.out_dir, exist_ok=True)
            if parquet:
                self._req_writer = pq.ParquetWriter(
                    self.requests_path,
                    REQUESTS_SCHEMA.with_metadata({**meta,
                                                   b"lens.schema": b"lens-fast/requests/1"}),
                    compression=compression)
                self._tok_writer = pq.ParquetWriter(
                    self.tokens_path,
                    TOKENS_SCHEMA.with_metadata({**meta, b"lens.schema": b"lens-fast/tokens/1"}),
                    compression=compression)
            if self.csv_path is not None:
                self._csv_writer = pcsv.CSVWriter(self.csv_path, REQUESTS_SCHEMA)
        except (OSError, pa.ArrowException) as e:
            self.close()
            raise RunError(f"cannot write result files in {self.out_dir!r}: {e}; "
                           "choose a writable --output-dir") from e

    ### Public API ###

    def write_rows(self, rows: np.ndarray) -> None:
        """Buffer a drained batch of rows; write a row group once enough are buffered."""
        self._check_open()
        r = as_rows(rows)
        if len(r):
            self._rows.append((r.copy(), self.scenario))
            self._n_rows += len(r)
            if self._n_rows >= self.row_group_rows:
                self._flush_rows()
            elif time.monotonic() - self._last_flush >= self.flush_interval_s:
                self.flush()        # a slow run's rows reach the disk every few seconds

    def write_tokens(self, tokens: np.ndarray) -> None:
        """Buffer a drained batch of token stamps; write a row group once enough are buffered."""
        self._check_open()
        tk = as_tokens(tokens)
        if len(tk):
            self._tokens.append(tk.copy())
            self._n_tokens += len(tk)
            if self._n_tokens >= self.token_row_group_rows:
                self._flush_tokens()

    def flush(self) -> None:
        """Write whatever is buffered as (possibly short) row groups."""
        self._check_open()
        self._flush_rows()
        self._flush_tokens()

    def close(self) -> None:
        """Flush and write both footers. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._flush_rows()
            self._flush_tokens()
            for w in (self._req_writer, self._tok_writer, self._csv_writer):
                if w is not None:
                    w.close()
        finally:
            self._rows, self._tokens = [], []

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    ### Conversion ###

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the Parquet sink for {self.out_dir!r} is closed")

    def _flush_rows(self) -> None:
        self._last_flush = time.monotonic()
        if not self._rows:
            return
        r = np.concatenate([b for b, _ in self._rows])
        scen = [s for _, s in self._rows]
        lengths = [len(b) for b, _ in self._rows]
        self._rows, self._n_rows = [], 0
        table = self.requests_table(r, np.repeat(np.arange(len(scen)), lengths), scen)
        if self._req_writer is not None:
            self._req_writer.write_table(table, row_group_size=len(table))
        if self._csv_writer is not None:
            self._csv_writer.write_table(table)
        self.rows_written += len(table)

    def _flush_tokens(self) -> None:
        if not self._tokens or self._tok_writer is None:
            self._tokens, self._n_tokens = [], 0
            return
        tk = np.concatenate(self._tokens).view(np.int64).reshape(-1, 3).T  # columns
        self._tokens, self._n_tokens = [], 0
        t = tk[2] - self.t0_ns    # the recorder stamps every token: no UNSET here
        table = pa.table({
            "request_id": pa.array(np.ascontiguousarray(tk[0])),
            "index": pa.array(np.ascontiguousarray(tk[1])),
            "t_ns": pa.array(t),
        }, schema=TOKENS_SCHEMA)
        self._tok_writer.write_table(table, row_group_size=len(table))
        self.tokens_written += len(table)

    def cost_usd(self, rows: np.ndarray) -> np.ndarray:
        """Return each row's cost in USD: 0 without a 2xx answer, NaN where no price."""
        r = as_rows(rows)
        tgt = r["target"]
        if len(self._usd_in) == 0:
            return np.full(len(r), np.nan)
        known = (tgt >= 0) & (tgt < len(self._usd_in))
        idx = np.where(known, tgt, 0)
        p_in = np.where(known, self._usd_in[idx], np.nan)
        p_out = np.where(known, self._usd_out[idx], np.nan)
        status = r["status"]
        billed = (status >= 200) & (status < 300)
        cost = r["input_tokens"] * p_in + r["output_tokens"] * p_out
        return np.where(billed, cost, np.where(np.isnan(p_in), np.nan, 0.0))

    def requests_table(self, rows: np.ndarray, scenario_idx: np.ndarray | None = None,
                       scenarios: Sequence[str] | None = None) -> pa.Table:
        """Convert rows to the ``requests`` table (the columns of ``REQUESTS_SCHEMA``)."""
        r = as_rows(rows)
        n = len(r)
        if scenario_idx is None or scenarios is None:
            scenario_idx, scenarios = np.zeros(n, np.int64), [self.scenario]
        flags, err = r["flags"], r["error"]
        m = derive_metrics(r)
        cols: dict[str, Any] = {
            "request_id": r["request_id"], "worker": r["worker"], "target": r["target"],
            "scenario": pa.DictionaryArray.from_arrays(
                scenario_idx.astype(np.int32), pa.array(list(scenarios), pa.string())
            ).dictionary_decode(),
            "status": r["status"],
            "error": _strings(err, lambda c: error_name(c, self.error_names)),
            "ok": (err == 0) & (flags & (FLAG_WARMUP | FLAG_DROPPED | FLAG_CANCELLED) == 0),
            "flags": flags, "attempt": r["attempt"],
        }
        for f in _TIMES:
            v = r[f]
            unset = v == UNSET
            cols[f] = pa.array(np.where(unset, 0, v - self.t0_ns), pa.int64(), mask=unset)
        for name in _MS:
            v = m[name]
            cols[f"{name}_ms"] = pa.array(v / 1e6, pa.float64(), mask=np.isnan(v))
        v = m["output_tokens_per_s"]
        cols["output_tokens_per_s"] = pa.array(v, pa.float64(), mask=np.isnan(v))
        for f in ("output_tokens", "input_tokens", "token_events", "bytes_in", "conn_id",
                  "finish"):
            cols[f] = r[f]
        for name, bit in _FLAGS:
            cols[name] = (flags & bit) != 0
        cost = self.cost_usd(r)
        cols["cost_usd"] = pa.array(cost, pa.float64(), mask=np.isnan(cost))
        return pa.table({k: (v if isinstance(v, pa.Array) else pa.array(np.ascontiguousarray(v)))
                         for k, v in cols.items()}, schema=REQUESTS_SCHEMA)
