"""Outputs of a run: results aggregated from drained rows, Parquet files, summary, table.

The parent, per drain::

    results.add_rows(rows); results.add_tokens(tokens)
    sink.write_rows(rows);  sink.write_tokens(tokens)

and at the end (also on Ctrl-C)::

    sink.close()
    summary = build_summary(results, metadata)
    write_summary(out_dir / "summary.json", summary)
    render_table(summary["scenarios"][0]["results"][0], console)

The files and the summary schema are drawn in ``docs/outputs.md``.
"""
from lens.output.parquet import ParquetSink
from lens.output.results import Progress, RunResults, TargetResults, derive_metrics, empty_rows
from lens.output.summary import build_summary, write_summary
from lens.output.table import render_table

__all__ = [
    "ParquetSink",
    "Progress",
    "RunResults",
    "TargetResults",
    "build_summary",
    "derive_metrics",
    "empty_rows",
    "render_table",
    "write_summary",
]
