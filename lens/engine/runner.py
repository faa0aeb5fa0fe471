"""Glue of a run: plan → supervisor → results, sinks, summary, console.

``execute(plan, out_dir)`` is the library entry point (``lens.run``); ``run_and_report`` is
what ``lens-fast run`` calls: it also starts the embedded mock when there is no --url, shows
progress, prints the table and picks the exit status.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from lens._core import ROW_DTYPE, TOKEN_DTYPE
from lens._version import __version__
from lens.engine.plan import RunPlan
from lens.engine.supervisor import RunOutcome, Supervisor
from lens.errors import ConfigError, RunError
from lens.providers import check_plan, get_provider
from lens.providers.pricing import lookup

EXIT_OK = 0
EXIT_SATURATED = 3
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}

#: ``--format`` choices. summary.json is always written (report and compare read it); parquet
#: is requests.parquet + tokens.parquet, csv is requests.csv, html is report.html.
FORMATS = ("parquet", "json", "csv", "html")
DEFAULT_FORMATS = ("parquet", "json")


class _Feed:
    """Receives drained batches; holds them until t0 is known, then feeds results and sinks."""

    def __init__(self, plan: RunPlan, out_dir: Path | None, meta: dict,
                 formats: tuple[str, ...] = DEFAULT_FORMATS, live=None):
        self.plan = plan
        self.out_dir = out_dir
        self.meta = meta
        self.formats = formats
        self.live = live
        self.sink = None
        self.results = None
        self.early: list[tuple[np.ndarray, np.ndarray]] = []
        self.tap = None       # called with every drained batch (a distributed run's agent)

    def start(self, t0_ns: int, t0_unix_ns: int, target: dict) -> None:
        from lens.output.results import RunResults

        p = self.plan
        self.results = RunResults(
            t0_ns, t0_unix_ns=t0_unix_ns, scenario=p.scenario, targets=[target], open_loop=p.mode == "open",
            offered_rps=p.rps, duration_s=p.duration_s, max_token_stamps=p.max_token_stamps)
        if self.out_dir is not None and ("parquet" in self.formats or "csv" in self.formats):
            from lens.output.parquet import ParquetSink

            self.meta["t0_unix_ns"] = t0_unix_ns
            self.meta["started_at"] = dt.datetime.fromtimestamp(
                t0_unix_ns / 1e9, tz=dt.UTC).isoformat(timespec="milliseconds").replace(
                    "+00:00", "Z")
            self.sink = ParquetSink(self.out_dir, t0_ns, self.meta, targets=[target],
                                    scenario=p.scenario, parquet="parquet" in self.formats,
                                    csv="csv" in self.formats)
        if self.live is not None:
            self.live.begin({"scenario": p.scenario, "provider": p.provider, "model": p.model},
                            t0_unix_ns)
        for rows, tokens in self.early:
            self._feed(rows, tokens)
        self.early.clear()

    def __call__(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        rows = rows.view(ROW_DTYPE).reshape(-1)
        tokens = tokens.view(TOKEN_DTYPE).reshape(-1)
        if self.tap is not None:
            self.tap(rows, tokens)
        if self.results is None:
            self.early.append((rows, tokens))
        else:
            self._feed(rows, tokens)

    def _feed(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        if len(rows):
            self.results.add_rows(rows)
        if len(tokens):
            self.results.add_tokens(tokens)
        if self.sink is not None:
            if len(rows):
                self.sink.write_rows(rows)
            if len(tokens):
                self.sink.write_tokens(tokens)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


def metadata(plan: RunPlan, argv: list[str] | None, embedded: bool) -> dict[str, Any]:
    """Run metadata for outputs (no secrets)."""
    import numpy
    import pyarrow

    return {
        "command": shlex.join(argv) if argv else None,
        "versions": {"lens-fast": __version__, "python": platform.python_version(),
                     "numpy": numpy.__version__, "pyarrow": pyarrow.__version__},
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "embedded_mock": embedded,
        "config": plan.public(),
    }


def check_formats(formats: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """Parse ``--format parquet,json,csv,html``; return the chosen formats (json always)."""
    if formats is None:
        return DEFAULT_FORMATS
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = []
    for f in (x.strip().lower() for x in items):
        if f not in FORMATS:
            raise ConfigError(f"--format: unknown format {f!r}; expected a comma-separated list "
                              f"of {', '.join(FORMATS)} (e.g. --format parquet,json,html)")
        if f not in out:
            out.append(f)
    if "json" not in out:
        out.append("json")    # summary.json is the run's record: report and compare read it
    return tuple(out)


def execute(plan: RunPlan, out_dir: str | os.PathLike | None = None, *, on_tick=None,
            argv: list[str] | None = None, embedded: bool = False,
            cpus: list[int] | None = None, formats: tuple[str, ...] = DEFAULT_FORMATS,
            live=None, t0_unix_ns: int | None = None,
            on_batch=None) -> tuple[dict, Any, RunOutcome]:
    """Run a plan; write its files (``formats``: Parquet, CSV; summary.json always; html is
    the caller's, once every plan ran) to ``out_dir`` when given.

    ``live`` (a started ``lens.output.live.LiveMetrics``) gets the plan's live results.
    ``t0_unix_ns``: the agreed wall-clock start of a distributed run (lens.distributed).
    ``on_batch(rows, tokens)``: also gets every drained batch (structured arrays, copies).
    Returns ``(summary, results, outcome)``.
    """
    from lens.output.summary import build_summary, write_summary

    check_plan(plan)
    meta = metadata(plan, argv, embedded)
    out = None
    if out_dir is not None:
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create the output directory {str(out)!r}: "
                           f"{e.strerror}") from e
    with ExitStack() as stack:
        feed = _Feed(plan, out, meta, formats, live)
        feed.tap = on_batch
        stack.callback(feed.close)
        sup = Supervisor(plan, feed, on_tick=None, cpus=cpus, t0_unix_ns=t0_unix_ns)
        target = target_info(plan)

        def tick(elapsed: float) -> None:
            if feed.results is None:
                feed.start(sup.outcome.t0_ns, sup.outcome.t0_unix_ns, target)
            if live is not None:
                feed.results.in_flight = sup.counters()[1]
                live.update(feed.results)
            if on_tick is not None:
                on_tick(elapsed, feed.results, sup)

        sup.on_tick = tick
        outcome = sup.run()
        if feed.results is None:
            feed.start(outcome.t0_ns, outcome.t0_unix_ns, target)
        results = feed.results
        results.client = client_health(outcome)
        if plan.rate_limit:
            # waits for the rate limit's tokens show as scheduling lag: not the client's fault
            results.client["lag_includes_rate_limit"] = True
        meta["interrupted"] = outcome.interrupted is not None
        if outcome.interrupted:
            meta["interrupted_by"] = outcome.interrupted
        meta["workers"] = len(outcome.workers)
        if outcome.died:
            meta["workers_died"] = outcome.died
        meta["duration_s"] = round((outcome.t_end_ns - outcome.t0_ns) / 1e9, 6)
        feed.close()
        results.in_flight = 0
        summary = build_summary(results, meta)
        if live is not None:
            live.end(results)
        if out is not None:
            write_summary(out / "summary.json", summary)
    return summary, results, outcome


def target_info(plan: RunPlan) -> dict[str, Any]:
    """Describe the run's target for results and outputs: provider, model, URL, price.

    ``price`` is the plan's (``--price``/``--pricing``/the bundled table, resolved by the CLI)
    or, for plans built in code, the bundled table's; None when the model has no price.
    """
    info: dict[str, Any] = {"provider": plan.provider, "model": plan.model, "url": plan.url}
    if plan.tokenizer is not None:
        info["tokenizer"] = plan.tokenizer
    if get_provider(plan.provider).endpoints:
        info["endpoint"] = plan.endpoint
    price = plan.price
    if price is None:
        found = lookup(plan.provider, plan.model)
        price = found.as_dict() if found is not None else None
    info["price"] = price
    return info


def client_health(outcome: RunOutcome) -> dict[str, Any]:
    """Per-worker CPU and event-loop lag, and reasons the client may have been the limit."""
    cpu, lag_p99, reasons = [], [], []
    spilled = 0
    errors: dict[str, list[str]] = {}
    for w in outcome.workers:
        wall = w.get("wall_s") or 0.0
        cpu.append(100.0 * w.get("cpu_s", 0.0) / wall if wall > 0 else 0.0)
        lag_p99.append(w.get("loop_lag_ms", {}).get("p99", 0.0))
        spilled += w.get("rows_spilled", 0) + w.get("tokens_spilled", 0)
        for k, v in (w.get("errors") or {}).items():
            errors.setdefault(k, []).extend(v)
        if w.get("died"):
            reasons.append(w["died"])
    if lag_p99 and max(lag_p99) > 10.0:
        reasons.append(f"event-loop lag p99 {max(lag_p99):.1f} ms > 10 ms in a worker; "
                       "use more --cores")
    return {
        "worker_cpu_percent": cpu,
        "loop_lag_p99_ms": [round(x, 3) for x in lag_p99],
        "new_connections_in_run": sum(w.get("new_connections_in_run", 0)
                                      for w in outcome.workers),
        "idle_connections_closed": sum(w.get("idle_connections_closed", 0)
                                       for w in outcome.workers),
        "ring_spilled_records": spilled,
        "workers_died": [{k: w[k] for k in ("index", "pid", "died", "missed") if k in w}
                         for w in outcome.workers if w.get("died")],
        "reasons": reasons,
        "error_samples": {k: v[:5] for k, v in errors.items()},
    }


def default_output_dir() -> str:
    """lens-results/run-YYYYmmdd-HHMMSS (UTC)."""
    return os.path.join("lens-results",
                        dt.datetime.now(dt.UTC).strftime("run-%Y%m%d-%H%M%S"))


def write_report(out_dir: Path, console) -> Path | None:
    """Write ``report.html`` into a finished run's directory (``--format html``)."""
    from lens.output.report import write_html_report

    path = write_html_report(out_dir, out_dir / "report.html")
    console.print(f"Report: {path}")
    return path


def show_files(out_dir: Path, formats: tuple[str, ...], console, more: str = "") -> None:
    """Print where a run's files are (``more``: after the list) and write report.html for
    ``--format html``."""
    files = [f for fmt, f in (("parquet", "requests.parquet, tokens.parquet"),
                              ("csv", "requests.csv"), ("json", "summary.json"))
             if fmt in formats]
    console.print(f"Results: {out_dir}/ ({', '.join(files)}{more})")
    if "html" in formats:
        write_report(out_dir, console)


def start_run(stack: ExitStack, plan: RunPlan | None, *, live=None, embedded: bool = False,
              mock_ttft_ms: float = 20.0, mock_itl_ms: float = 2.0) -> RunPlan | None:
    """Start ``live`` metrics (closed when ``stack`` closes, also on Ctrl-C) and, when
    ``embedded``, the mock endpoint (stopped with ``stack``); return the plan aimed at the
    mock. The caller says what it profiles."""
    import dataclasses

    if live is not None:
        live.start()
        stack.callback(live.close)
    if embedded:
        from lens.mock.process import MockProcess

        mock = stack.enter_context(MockProcess(ttft_ms=mock_ttft_ms, itl_ms=mock_itl_ms))
        plan = dataclasses.replace(plan, url=mock.url)
    return plan


def run_and_report(plan: RunPlan, *, embedded: bool, output: str | None, progress: bool,
                   strict: bool, mock_ttft_ms: float = 20.0, mock_itl_ms: float = 2.0,
                   argv: list[str] | None = None, formats: tuple[str, ...] = DEFAULT_FORMATS,
                   live=None) -> int:
    """Run ``lens-fast run``: mock if needed, progress, table, files; return the exit status.

    ``live`` is an unstarted ``LiveMetrics``: it is started before any load and closed (final
    push) at the end, also on Ctrl-C.
    """
    from lens.engine.progress import ProgressLine
    from lens.output.table import consoles, render_table

    console, err = consoles()
    out_dir = output or default_output_dir()
    with ExitStack() as stack:
        plan = start_run(stack, plan, live=live, embedded=embedded,
                         mock_ttft_ms=mock_ttft_ms, mock_itl_ms=mock_itl_ms)
        if embedded:
            err.print(f"[bold]No --url given:[/] profiling lens' embedded mock endpoint at "
                      f"{plan.url} (TTFT {mock_ttft_ms:g} ms, ITL {mock_itl_ms:g} ms)")
        line = ProgressLine(plan, err) if progress and err.is_terminal else None
        try:
            summary, results, outcome = execute(
                plan, out_dir, on_tick=line.update if line else None, argv=argv,
                embedded=embedded, formats=formats, live=live)
        finally:
            if line is not None:
                line.close()
    result = summary["scenarios"][0]["results"][0]
    render_table(result, console)
    show_files(Path(out_dir), formats, console)
    if outcome.interrupted:
        console.print(f"[yellow]Interrupted by {outcome.interrupted}: outputs hold what was "
                      "measured until then.[/]")
        return EXIT_SIGNAL.get(outcome.interrupted, 130)
    if strict and result["client"]["saturated"]:
        return EXIT_SATURATED
    return EXIT_OK


# ------------------------------------------------------------------- config runs
def plan_dir_name(plan: RunPlan) -> str:
    """Return the output subfolder of one scenario × provider × model: safe for any file system."""
    import re

    raw = f"{plan.scenario}--{plan.provider}--{plan.model}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def combine_summaries(summaries: list[dict], meta: dict) -> dict:
    """Return one summary of several runs: scenarios in order, each with every target's result.

    Each run's summary was built by ``build_summary`` when it ended; results of one scenario
    (one per provider × model) are gathered under that scenario's name.
    """
    from lens.output.summary import SCHEMA, redact_secrets

    scenarios: dict[str, list] = {}
    for s in summaries:
        for sc in s["scenarios"]:
            scenarios.setdefault(sc["name"], []).extend(sc["results"])
    first = summaries[0]["metadata"] if summaries else {}
    m = redact_secrets(dict(meta))
    m.setdefault("started_at", first.get("started_at"))
    m.setdefault("versions", first.get("versions"))
    m.setdefault("host", first.get("host"))
    m["duration_s"] = round(sum(s["metadata"].get("duration_s") or 0 for s in summaries), 6)
    m["interrupted"] = any(s["metadata"].get("interrupted") for s in summaries)
    return {"schema": SCHEMA, "metadata": m,
            "scenarios": [{"name": k, "results": v} for k, v in scenarios.items()]}


def _requests_table(dirs: list[tuple[RunPlan, Path]]):
    """Return the requests of several runs as one table, with provider and model columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for plan, d in dirs:
        t = pq.read_table(d / "requests.parquet")
        cols = {name: (t.column(name).cast(pa.string())
                       if pa.types.is_dictionary(t.column(name).type) else t.column(name))
                for name in t.column_names}
        t = pa.table(cols)
        n = t.num_rows
        t = t.add_column(3, "provider", pa.array([plan.provider] * n, pa.string()))
        t = t.add_column(4, "model", pa.array([plan.model] * n, pa.string()))
        tables.append(t)
    return pa.concat_tables(tables)


def write_exports(exports, runs: list[tuple[RunPlan, Path, dict]], meta: dict,
                  stamp: str, out_dir: Path | None = None) -> list[str]:
    """Write a config's ``output.export`` files; return their paths.

    A path with ``{scenario}`` gives one file per scenario; without it, one file for the run.
    json is the summary, parquet and csv the requests table (with provider and model), html
    the report of the run's directory ``out_dir`` (or of the scenario's runs).
    """
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from lens.output.summary import write_summary

    written = []
    names = list(dict.fromkeys(p.scenario for p, _, _ in runs))
    for e in exports:
        groups = ([(n, [r for r in runs if r[0].scenario == n]) for n in names]
                  if "{scenario}" in e.path else [("all", runs)])
        for name, group in groups:
            path = Path(e.path.replace("{timestamp}", stamp).replace("{scenario}", name))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if e.format == "json":
                    write_summary(path, combine_summaries([s for _, _, s in group], meta))
                elif e.format == "html":
                    from lens.output.report import write_html_report

                    if name == "all" and out_dir is not None:
                        write_html_report(out_dir, path)
                    else:       # one scenario: a report of exactly its runs
                        write_html_report([d for _, d, _ in group], path)
                else:
                    table = _requests_table([(p, d) for p, d, _ in group])
                    if e.format == "parquet":
                        pq.write_table(table, path, compression="zstd")
                    else:
                        pcsv.write_csv(table, path)
            except OSError as err:
                raise RunError(f"cannot write the {e.format} export {str(path)!r}: "
                               f"{err.strerror}; fix output.export's path") from err
            written.append(str(path))
    return written


def run_plans_and_report(plans: list[RunPlan], *, exports=(), output: str | None,
                         progress: bool, strict: bool, argv: list[str] | None = None,
                         config_path: str | None = None,
                         formats: tuple[str, ...] = DEFAULT_FORMATS, live=None,
                         run_one=None) -> int:
    """Run a config's plans one after another; write each run's files, the combined summary
    and the exports; print a table per run; return the exit status (the worst run's).

    ``run_one(plan, out_dir, line)``, when given, runs one plan instead of ``execute`` (a
    distributed run: ``lens.distributed.cli``) and returns ``(summary, interrupted_by)``;
    ``line`` is the plan's ``ProgressLine`` or None.
    """
    with ExitStack() as stack:
        start_run(stack, None, live=live)
        return _run_plans(plans, exports=exports, output=output, progress=progress,
                          strict=strict, argv=argv, config_path=config_path, formats=formats,
                          live=live, run_one=run_one)


def _run_plans(plans: list[RunPlan], *, exports, output: str | None, progress: bool,
               strict: bool, argv: list[str] | None, config_path: str | None,
               formats: tuple[str, ...], live, run_one=None) -> int:
    from lens.engine.progress import ProgressLine
    from lens.output.summary import write_summary
    from lens.output.table import consoles, render_table

    console, err = consoles()
    out_dir = Path(output or default_output_dir())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    runs: list[tuple[RunPlan, Path, dict]] = []
    code = EXIT_OK
    for i, plan in enumerate(plans, 1):
        d = out_dir / plan_dir_name(plan)
        console.print(f"[bold]Run {i}/{len(plans)}:[/] scenario {plan.scenario} · "
                      f"{plan.provider} · {plan.model}")
        line = ProgressLine(plan, err) if progress and err.is_terminal else None
        try:
            if run_one is not None:
                summary, interrupted = run_one(plan, d, line)
            else:
                summary, _, outcome = execute(plan, d, on_tick=line.update if line else None,
                                              argv=argv, formats=formats, live=live)
                interrupted = outcome.interrupted
        finally:
            if line is not None:
                line.close()
        runs.append((plan, d, summary))
        result = summary["scenarios"][0]["results"][0]
        render_table(result, console)
        if interrupted:
            console.print(f"[yellow]Interrupted by {interrupted}: the remaining runs "
                          "were not started; outputs hold what was measured.[/]")
            code = EXIT_SIGNAL.get(interrupted, 130)
            break
        if strict and result["client"]["saturated"]:
            code = EXIT_SATURATED
    meta = {"command": shlex.join(argv) if argv else None, "config_file": config_path,
            "runs": [plan_dir_name(p) for p, _, _ in runs]}
    combined = combine_summaries([s for _, _, s in runs], meta)
    write_summary(out_dir / "summary.json", combined)
    written = write_exports(exports, runs, meta, stamp, out_dir)
    console.print(f"Results: {out_dir}/ (summary.json; one folder per scenario × model)")
    if "html" in formats:
        write_report(out_dir, console)
    for w in written:
        console.print(f"Exported: {w}")
    return code
