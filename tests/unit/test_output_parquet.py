"""ParquetSink: columns, types, nulls, metadata and flat row-group writes."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lens._core import (
    FLAG_CONN_REUSED,
    FLAG_TRUNCATED,
    FLAG_USAGE_FROM_STREAM,
    FLAG_WARMUP,
    TOKEN_DTYPE,
    UNSET,
)
from lens.errors import RunError
from lens.output import ParquetSink, empty_rows

T0 = 9_000_000_000_000
MS = 1_000_000

TIMES = ["t_sched_ns", "t_start_ns", "t_dns_ns", "t_connect_ns", "t_tls_ns", "t_sent_ns",
         "t_first_byte_ns", "t_headers_ns", "t_first_token_ns", "t_last_token_ns", "t_end_ns", "t_attempt_ns"]
DERIVED = ["ttft_ms", "ttft_sched_ms", "e2e_ms", "e2e_sched_ms", "tpot_ms", "itl_mean_ms",
           "sched_lag_ms", "ttft_last_attempt_ms", "e2e_last_attempt_ms", "output_tokens_per_s"]
INTS = ["request_id", "worker", "target", "status", "flags", "attempt", "output_tokens",
        "input_tokens", "token_events", "bytes_in", "conn_id", "finish"]
BOOLS = ["ok", "tokens_from_usage", "warmup", "conn_reused", "truncated", "cancelled", "dropped"]


def rows(n):
    r = empty_rows(n)
    r["request_id"] = np.arange(n)
    r["worker"] = np.arange(n) % 3
    r["status"] = 200
    r["t_sched_ns"] = T0 + np.arange(n) * MS
    r["t_start_ns"] = r["t_sched_ns"] + 2000
    r["t_connect_ns"] = r["t_start_ns"] + 300_000
    r["t_sent_ns"] = r["t_connect_ns"] + 10_000
    r["t_first_byte_ns"] = r["t_sent_ns"] + 40 * MS
    r["t_headers_ns"] = r["t_first_byte_ns"] + 1000
    r["t_first_token_ns"] = r["t_start_ns"] + 50 * MS
    r["t_last_token_ns"] = r["t_first_token_ns"] + 90 * MS
    r["t_end_ns"] = r["t_last_token_ns"] + MS
    r["output_tokens"] = 10
    r["token_events"] = 10
    r["input_tokens"] = 32
    r["bytes_in"] = 4096
    return r


def test_requests_columns_types_nulls_and_values(tmp_path):
    r = rows(4)
    r["error"][1] = 7
    r["status"][1] = 503
    r["t_first_token_ns"][1] = r["t_last_token_ns"][1] = UNSET
    r["output_tokens"][1] = r["token_events"][1] = 0
    r["flags"][2] = FLAG_WARMUP | FLAG_USAGE_FROM_STREAM
    r["flags"][3] = FLAG_CONN_REUSED | FLAG_TRUNCATED
    r["conn_id"] = [5, 6, 7, 5]
    with ParquetSink(tmp_path, T0, scenario="steady") as sink:
        sink.write_rows(r)
    t = pq.read_table(tmp_path / "requests.parquet")
    assert t.num_rows == 4
    for c in INTS + TIMES:
        assert t.schema.field(c).type == pa.int64(), c
    for c in DERIVED:
        assert t.schema.field(c).type == pa.float64(), c
    for c in BOOLS:
        assert t.schema.field(c).type == pa.bool_(), c
    assert t.schema.field("error").type == pa.string()
    d = t.to_pydict()
    assert d["scenario"] == ["steady"] * 4
    assert d["error"] == ["ok", "http_status", "ok", "ok"]
    assert d["ok"] == [True, False, False, True]         # warm-up is never ok
    assert d["status"] == [200, 503, 200, 200]
    assert d["t_sched_ns"] == [0, MS, 2 * MS, 3 * MS]     # relative to t0
    assert d["t_start_ns"][0] == 2000
    assert d["t_dns_ns"] == [None] * 4 and d["t_tls_ns"] == [None] * 4
    assert d["t_first_token_ns"][1] is None
    assert d["ttft_ms"] == [50.0, None, 50.0, 50.0]
    assert d["ttft_sched_ms"][0] == pytest.approx(50.002)
    assert d["e2e_ms"][0] == pytest.approx(141.0)
    assert d["tpot_ms"][0] == d["itl_mean_ms"][0] == 10.0
    assert d["sched_lag_ms"][0] == pytest.approx(0.002)
    assert d["output_tokens_per_s"][0] == pytest.approx(10 / 0.141)
    assert d["tpot_ms"][1] is None and d["output_tokens_per_s"][1] is None
    assert d["warmup"] == [False, False, True, False]
    assert d["tokens_from_usage"] == [False, False, True, False]
    assert d["conn_reused"] == [False, False, False, True]
    assert d["truncated"] == [False, False, False, True]
    assert d["conn_id"] == [5, 6, 7, 5]
    assert d["attempt"] == [1] * 4


def test_tokens_relative_to_t0(tmp_path):
    tok = np.zeros(3, TOKEN_DTYPE)
    tok["request_id"] = 8
    tok["index"] = [0, 1, 2]
    tok["t_ns"] = T0 + np.array([5, 7, 9]) * MS
    with ParquetSink(tmp_path, T0) as sink:
        sink.write_tokens(tok.view(np.int64).reshape(3, 3))   # as Ring.drain returns it
    t = pq.read_table(tmp_path / "tokens.parquet")
    assert t.schema.names == ["request_id", "index", "t_ns"]
    assert all(f.type == pa.int64() for f in t.schema)
    assert t.to_pydict() == {"request_id": [8, 8, 8], "index": [0, 1, 2],
                             "t_ns": [5 * MS, 7 * MS, 9 * MS]}


def test_run_metadata_in_both_files_without_secrets(tmp_path):
    meta = {"command": "lens-fast run --rps 5", "versions": {"lens-fast": "0.1.0"},
            "t0_utc": "2025-01-01T00:00:00.000Z",
            "config": {"api_key": "sk-live-123", "headers": {"Authorization": "Bearer x"},
                       "max_tokens": 128}}
    targets = [{"provider": "openai", "model": "m", "url": "http://127.0.0.1:8000"}]
    with ParquetSink(tmp_path, T0, meta, targets=targets):
        pass
    for name, schema in (("requests", "lens-fast/requests/1"), ("tokens", "lens-fast/tokens/1")):
        kv = pq.read_schema(tmp_path / f"{name}.parquet").metadata
        run = json.loads(kv[b"lens.run"])
        assert run["command"] == "lens-fast run --rps 5"
        assert run["config"] == {"api_key": "***", "headers": {"Authorization": "***"},
                                 "max_tokens": 128}
        assert b"sk-live-123" not in kv[b"lens.run"]
        assert json.loads(kv[b"lens.targets"]) == targets
        assert kv[b"lens.schema"] == schema.encode()
        assert int(kv[b"lens.t0_ns"]) == T0
        assert pq.read_table(tmp_path / f"{name}.parquet").num_rows == 0   # empty but valid


def test_row_groups_are_buffered_and_flat(tmp_path):
    r = rows(10_000)
    tok = np.zeros(25_000, TOKEN_DTYPE)
    tok["request_id"] = np.arange(25_000)
    tok["t_ns"] = T0
    with ParquetSink(tmp_path, T0, row_group_rows=3000, token_row_group_rows=10_000) as sink:
        for batch in np.array_split(r, 40):          # 250-row drains
            sink.write_rows(batch)
        for batch in np.array_split(tok, 10):
            sink.write_tokens(batch)
        assert sink.rows_written == 9000             # 3 groups on disk, the rest buffered
    f = pq.ParquetFile(tmp_path / "requests.parquet")
    sizes = [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)]
    assert sizes == [3000, 3000, 3000, 1000]
    assert f.read().column("request_id").to_pylist() == list(range(10_000))
    ft = pq.ParquetFile(tmp_path / "tokens.parquet")
    assert [ft.metadata.row_group(i).num_rows for i in range(ft.metadata.num_row_groups)] == [
        10_000, 10_000, 5000]


def test_a_slow_run_reaches_the_disk_every_flush_interval(tmp_path, monkeypatch):
    import lens.output.parquet as P

    clock = [100.0]
    monkeypatch.setattr(P.time, "monotonic", lambda: clock[0])
    with ParquetSink(tmp_path, T0, flush_interval_s=10.0) as sink:
        sink.write_rows(rows(5))
        clock[0] += 9.9
        sink.write_rows(rows(5))
        assert sink.rows_written == 0                # under 10 s: buffered
        clock[0] += 0.2
        sink.write_rows(rows(5))
        assert sink.rows_written == 15               # 10.1 s after the last write: flushed
        clock[0] += 3
        sink.write_rows(rows(2))
        assert sink.rows_written == 15
    f = pq.ParquetFile(tmp_path / "requests.parquet")
    assert [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)] == [
        15, 2]


def test_interrupted_run_keeps_what_it_measured(tmp_path):
    with pytest.raises(KeyboardInterrupt), ParquetSink(tmp_path, T0) as sink:
        sink.write_rows(rows(7))
        raise KeyboardInterrupt
    assert pq.read_table(tmp_path / "requests.parquet").num_rows == 7
    sink.close()                                      # twice is fine
    with pytest.raises(ValueError, match="closed"):
        sink.write_rows(rows(1))


def test_scenario_column_follows_the_sink(tmp_path):
    with ParquetSink(tmp_path, T0, scenario="a") as sink:
        sink.write_rows(rows(2))
        sink.scenario = "b"
        sink.write_rows(rows(1))
    assert pq.read_table(tmp_path / "requests.parquet").column("scenario").to_pylist() == [
        "a", "a", "b"]


def test_unwritable_directory_is_a_run_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RunError, match="cannot write result files"):
        ParquetSink(blocker / "out", T0)
