"""A run's files as other tools read them: Parquet in pyarrow, pandas and DuckDB, CSV, and a
summary whose percentiles agree with the Parquet rows."""
from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from lens.engine.plan import RunPlan
from lens.engine.runner import check_formats, execute
from lens.errors import ConfigError
from lens.output.parquet import REQUESTS_SCHEMA, TOKENS_SCHEMA


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mock_endpoint):
    """One closed-loop run with every file format but html."""
    out = tmp_path_factory.mktemp("formats") / "run"
    plan = RunPlan(url=mock_endpoint.url, cores=1, concurrency=8, requests=400, max_tokens=12)
    summary, _, _ = execute(plan, out, formats=check_formats("parquet,csv,json"),
                            argv=["lens-fast", "run", "--format", "parquet,csv,json"])
    return out, summary


def test_parquet_has_the_documented_columns_and_types(run_dir):
    out, _ = run_dir
    assert pq.read_schema(out / "requests.parquet").remove_metadata() == REQUESTS_SCHEMA
    assert pq.read_schema(out / "tokens.parquet").remove_metadata() == TOKENS_SCHEMA
    kv = pq.read_schema(out / "requests.parquet").metadata
    run = json.loads(kv[b"lens.run"])
    assert run["command"] == "lens-fast run --format parquet,csv,json"
    assert run["versions"]["lens-fast"] and run["versions"]["pyarrow"] == pa.__version__
    assert run["t0_unix_ns"] > 1.7e18 and run["host"]
    assert run["started_at"].endswith("Z") and run["started_at"][:4] >= "2026"
    assert json.loads(kv[b"lens.targets"])[0]["model"] == "lens-mock"


def test_duckdb_reads_the_same_rows_as_pyarrow(run_dir):
    out, summary = run_dir
    res = summary["scenarios"][0]["results"][0]
    con = duckdb.connect()
    n_ok, tokens = con.execute(
        f"SELECT count(*), sum(output_tokens) FROM '{out}/requests.parquet' WHERE ok").fetchone()
    assert n_ok == res["counts"]["ok"] == 400
    assert tokens == res["counts"]["output_tokens"] == 400 * 12
    n_tok = con.execute(f"SELECT count(*) FROM '{out}/tokens.parquet' t JOIN "
                        f"'{out}/requests.parquet' r USING (request_id) WHERE r.ok").fetchone()[0]
    assert n_tok == 400 * 12
    types = {r[0]: r[1] for r in con.execute(
        f"DESCRIBE SELECT * FROM '{out}/requests.parquet'").fetchall()}
    assert types["ttft_ms"] == "DOUBLE" and types["t_start_ns"] == "BIGINT"
    assert types["ok"] == "BOOLEAN" and types["error"] == "VARCHAR"


def test_summary_percentiles_equal_the_rows_within_histogram_error(run_dir):
    out, summary = run_dir
    res = summary["scenarios"][0]["results"][0]
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    ok = rows[rows["ok"]]
    for metric in ("ttft", "e2e", "tpot", "ttft_sched"):
        values = np.sort(ok[f"{metric}_ms"].to_numpy())
        for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            # the histogram reports a value of rank ceil(q·n): the nearest-rank percentile
            exact = values[max(0, int(np.ceil(q * len(values))) - 1)]
            assert res["metrics"][metric][key] == pytest.approx(exact, rel=2e-3, abs=2e-6), \
                (metric, key)
        assert res["metrics"][metric]["count"] == len(values)
        assert res["metrics"][metric]["max"] == pytest.approx(values[-1], rel=1e-9, abs=1e-6)
    # ITL from the token stamps of ok requests
    tok = pq.read_table(out / "tokens.parquet").to_pandas()
    tok = tok[tok["request_id"].isin(ok["request_id"])].sort_values(["request_id", "index"])
    gaps = tok.groupby("request_id")["t_ns"].diff().dropna().to_numpy() / 1e6
    gaps.sort()
    assert res["metrics"]["itl"]["count"] == len(gaps)
    exact = gaps[int(np.ceil(0.5 * len(gaps))) - 1]
    assert res["metrics"]["itl"]["p50"] == pytest.approx(exact, rel=2e-3, abs=2e-6)


def test_csv_holds_the_same_rows_as_parquet(run_dir):
    out, _ = run_dir
    csv = pcsv.read_csv(out / "requests.csv")
    parquet = pq.read_table(out / "requests.parquet")
    assert csv.column_names == parquet.column_names
    assert csv.num_rows == parquet.num_rows
    a = csv.to_pandas().sort_values("request_id").reset_index(drop=True)
    b = parquet.to_pandas().sort_values("request_id").reset_index(drop=True)
    assert (a["request_id"] == b["request_id"]).all()
    np.testing.assert_allclose(a["ttft_ms"], b["ttft_ms"], rtol=1e-12)
    assert (a["error"] == b["error"]).all() and (a["ok"] == b["ok"]).all()


def test_summary_histograms_round_trip(run_dir):
    import base64

    from lens._core import LogLinearHistogram

    _, summary = run_dir
    res = summary["scenarios"][0]["results"][0]
    h = LogLinearHistogram.decode(base64.b64decode(res["histograms"]["ttft"]))
    assert h.count == res["metrics"]["ttft"]["count"]
    assert h.quantile(0.99) / 1e6 == pytest.approx(res["metrics"]["ttft"]["p99"], rel=1e-6)


def test_format_json_only_writes_no_parquet(mock_endpoint, tmp_path):
    plan = RunPlan(url=mock_endpoint.url, cores=1, concurrency=2, requests=10, max_tokens=4)
    summary, _, _ = execute(plan, tmp_path / "j", formats=check_formats("json"))
    assert sorted(p.name for p in (tmp_path / "j").iterdir()) == ["summary.json"]
    assert summary["scenarios"][0]["results"][0]["counts"]["ok"] == 10


@pytest.mark.parametrize(("given", "expected"), [
    (None, ("parquet", "json")), ("csv", ("csv", "json")),
    ("HTML, parquet,html", ("html", "parquet", "json")),
])
def test_check_formats(given, expected):
    assert check_formats(given) == expected


def test_unknown_format_is_refused_before_any_load(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown format 'xls'; expected a comma-separated "
                                          r"list of parquet, json, csv, html"):
        check_formats("parquet,xls")
    p = subprocess.run([sys.executable, "-m", "lens", "run", "--format", "pdf", "--output",
                        str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "unknown format 'pdf'" in p.stderr
    assert not (tmp_path / "x").exists()
