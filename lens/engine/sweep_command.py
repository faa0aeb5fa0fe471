"""``lens-fast sweep``: find the highest request rate an endpoint serves within its SLOs.

The command takes ``run``'s target and workload options (the same click ``Option`` objects,
and ``build_plan`` to check them), runs one ``execute()`` per step into ``OUT/steps/NN-…/``,
judges each step with ``lens.engine.sweep`` and rewrites ``OUT/sweep.json`` after every step,
so that Ctrl-C keeps every finished step. docs/sweep.md describes the algorithm and the file.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import os
import platform
import shlex
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
import numpy as np

from lens._version import __version__
from lens.engine import sweep as algo
from lens.engine.command import build_plan, resolve_target, run_command
from lens.engine.plan import RunPlan
from lens.engine.units import parse_duration
from lens.errors import ConfigError, LensError

SCHEMA = "lens-fast/sweep/1"
EXIT_FOUND, EXIT_CLIENT, EXIT_NO_RATE = 0, 3, 4
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}
#: Open-loop rate one worker is planned for before any step says otherwise: one worker
#: sustains 1,400 streamed req/s of 128 tokens on the development VM (benchmarks/RESULTS.md).
PER_WORKER_RPS = 1000.0
#: Fewer requests than this make a poor p99: a step at a low rate is lengthened to reach it
#: (up to --max-step-duration).
MIN_STEP_REQUESTS = 100
#: run's options that sweep takes as they are (target, workload, client).
SHARED_OPTIONS = (
    "provider", "url", "model", "endpoint", "api_key_env", "api_version", "deployment",
    "anthropic_version", "body_template", "token_pointer", "ignore_eos", "price", "pricing",
    "arrival", "burstiness", "max_inflight", "max_attempts", "initial_backoff_ms", "max_tokens",
    "prompt", "input_tokens", "tokenizer", "seed", "timeout", "warmup", "no_progress", "client",
    "http2", "insecure", "ca_cert", "no_usage", "mock_ttft_ms", "mock_itl_ms", "format")
#: Per-request columns read from a step's requests.parquet.
_COLUMNS = ("warmup", "ok", "t_sched_ns", *algo.PER_REQUEST_COLUMNS.values())
_STATS = ("count", "mean", "p50", "p90", "p95", "p99", "max")


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """The sweep's own options, checked."""

    rates: tuple[float, ...] | None        # None: auto
    slos: tuple[algo.Slo, ...]
    step_s: float = 10.0
    max_step_s: float = 30.0
    probe_s: float = 5.0
    probe_concurrency: int = 64
    confirm_s: float = 20.0
    precision: float = 0.05
    max_steps: int = 15
    max_cores: int = 1
    max_error_rate: float = 0.01
    max_sched_lag_ms: float = 10.0
    drain_s: float | None = None            # None: auto (see Sweep.drain_s)

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as sweep.json writes them."""
        d = dataclasses.asdict(self)
        d["rates"] = "auto" if self.rates is None else list(self.rates)
        d["slos"] = [s.spec for s in self.slos]
        d["drain_s"] = "auto" if self.drain_s is None else self.drain_s
        return d


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def _r(x: Any, nd: int = 3) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), nd)


def read_requests(step_dir: Path) -> dict[str, np.ndarray]:
    """Read a step's measured requests (warm-up left out) as numpy arrays by column."""
    import pyarrow.parquet as pq

    path = step_dir / "requests.parquet"
    if not path.exists():
        return {c: np.zeros(0) for c in _COLUMNS}
    t = pq.read_table(path, columns=list(_COLUMNS))
    keep = ~t.column("warmup").to_numpy(zero_copy_only=False).astype(bool)
    out = {}
    for c in _COLUMNS:
        a = t.column(c).to_numpy(zero_copy_only=False)
        if c not in ("warmup", "ok"):
            a = np.asarray(a, dtype=float)       # nulls become NaN
        out[c] = a[keep]
    return out


class Sweep:
    """Run the steps of one sweep, judge them, and keep sweep.json up to date."""

    def __init__(self, plan: RunPlan, settings: SweepSettings, out_dir: Path, *, console,
                 err, progress: bool = False, argv: list[str] | None = None,
                 meta: dict | None = None, embedded: bool = False,
                 formats: tuple[str, ...] = ("parquet", "json")):
        self.plan = plan
        self.s = settings
        self.out = out_dir
        self.console = console
        self.err = err
        self.progress = progress
        self.argv = argv
        self.embedded = embedded
        self.formats = formats            # of each step's run; the sweep reads parquet, json
        self.meta = dict(meta or {})
        self.steps: list[dict] = []
        self.workers = 1 if settings.rates is None else settings.max_cores
        self.search: algo.RateSearch | None = None
        self.probe: dict | None = None
        self.ref_e2e_ms: float | None = None
        self.interrupted: str | None = None
        self.result: dict[str, Any] = {"status": "running"}
        self.t_start = time.time()

    # ------------------------------------------------------------------ one step
    def drain_s(self) -> float:
        """Seconds in-flight requests get after a step's load (then they are cancelled).

        --drain, else 3 x the e2e p99 of the first step with answers (at least 10 s), else
        60 s; never more than the request's total timeout.
        """
        if self.s.drain_s is not None:
            return self.s.drain_s
        d = 60.0 if self.ref_e2e_ms is None else max(10.0, 3 * self.ref_e2e_ms / 1e3)
        return min(d, self.plan.timeouts.total_s)

    def run_step(self, kind: str, rate: float | None, duration: float) -> dict:
        """Run one step (``rate`` None: the closed-loop probe); return its sweep.json record."""
        from lens.engine import interrupts
        from lens.engine.runner import execute

        if interrupts.pending():          # Ctrl-C between steps: start no other
            self.interrupted = interrupts.pending()
            raise KeyboardInterrupt
        index = len(self.steps) + 1
        if rate is not None:
            duration = min(max(self.s.max_step_s, duration),
                           max(duration, MIN_STEP_REQUESTS / rate))
            self.workers = min(self.s.max_cores,
                               max(self.workers, math.ceil(rate / PER_WORKER_RPS)))
            name = f"{index:02d}-{kind}-{rate:g}rps"
            plan = dataclasses.replace(self.plan, rps=rate, concurrency=None,
                                       duration_s=duration, requests=None, cores=self.workers)
        else:
            name = f"{index:02d}-{kind}-c{self.s.probe_concurrency}"
            plan = dataclasses.replace(self.plan, rps=None, concurrency=self.s.probe_concurrency,
                                       duration_s=duration, requests=None, cores=self.workers)
        step_dir = self.out / "steps" / name
        drain = self.drain_s()
        line = None
        if self.progress:
            from lens.engine.progress import ProgressLine

            line = ProgressLine(plan, self.err)
        stopped = []

        def tick(elapsed: float, results, sup) -> None:
            if line is not None:
                line.update(elapsed, results, sup)
            if not stopped and elapsed > duration + drain:
                # the queue is not draining in time: stop the workers (they cancel what is
                # still in flight after their 2-s grace); not an interruption of the sweep
                stopped.append(elapsed)
                sup.stop()

        t = time.time()
        try:
            summary, results, outcome = execute(plan, step_dir, on_tick=tick, argv=self.argv,
                                                embedded=self.embedded, formats=self.formats)
        finally:
            if line is not None:
                line.close()
        interrupted = outcome.interrupted or interrupts.pending()
        rec = self.measure(kind, index, name, plan, summary, results, outcome, step_dir,
                           interrupted=interrupted)
        rec.update(started_at=_iso(t), wall_s=_r(time.time() - t, 2), drain_s=_r(drain, 2),
                   drain_cut=bool(stopped))
        if interrupted:
            self.interrupted = interrupted
        self.steps.append(rec)
        self.print_step(rec)
        return rec

    def measure(self, kind: str, index: int, name: str, plan: RunPlan, summary: dict, results,
                outcome, step_dir: Path, interrupted: str | None) -> dict:
        """Judge one finished step from its summary, histograms and requests.parquet."""
        res = summary["scenarios"][0]["results"][0]
        counts = res["counts"]
        tp = res["throughput"]
        load_s = plan.duration_s or 0.0
        if interrupted:
            load_s = min(load_s, max(1e-3, (outcome.t_end_ns - outcome.t0_ns) / 1e9))
        rows = read_requests(step_dir)
        ok = rows["ok"].astype(bool)
        gp = algo.goodput(rows, ok, self.s.slos, load_s)
        values = algo.slo_values(self.s.slos, results.targets[0].histograms)
        checks = algo.check_slos(self.s.slos, values)
        bad = counts["failed"] + counts["dropped"] + counts["cancelled"]
        total = counts["sent"] + counts["dropped"]
        error_rate = bad / total if total else 0.0
        open_loop = plan.rps is not None
        steady = None
        if open_loop:
            series = {"ttft_sched": rows["ttft_sched_ms"], "e2e_sched": rows["e2e_sched_ms"]}
            steady = algo.steady_state(rows["t_sched_ns"] / 1e9, series, ok, load_s)
        client_reasons = algo.client_limit_reasons(
            res["client"], offered_rps=plan.rps, achieved_rps=tp["achieved_rps"],
            sent=counts["sent"], dropped=counts["dropped"],
            constant_arrivals=plan.arrival == "constant",
            max_sched_lag_ms=self.s.max_sched_lag_ms)
        if open_loop:
            verdict, reasons = algo.step_verdict(checks, error_rate, self.s.max_error_rate,
                                                 steady, client_reasons, bool(interrupted))
        elif interrupted:
            verdict, reasons = "interrupted", ["interrupted before the probe's end"]
        elif client_reasons:
            verdict, reasons = "client", [f"client-limited: {r}" for r in client_reasons]
        else:
            verdict, reasons = "probe", []
        e2e_p99 = res["metrics"]["e2e"]["p99"]
        if self.ref_e2e_ms is None and e2e_p99 is not None and not interrupted:
            self.ref_e2e_ms = e2e_p99
        c = res["client"]
        return {
            "index": index, "kind": kind, "dir": f"steps/{name}",
            "offered_rps": plan.rps, "concurrency": plan.concurrency, "workers": plan.cores,
            "duration_s": _r(plan.duration_s, 3), "load_s": _r(load_s, 3),
            "achieved_rps": tp["achieved_rps"], "throughput_rps": tp["requests_per_s"],
            "output_tokens_per_s": tp["output_tokens_per_s"],
            "goodput_rps": _r(gp.rps), "good": gp.good,
            "good_fraction": _r(gp.good / gp.total if gp.total else None, 4),
            "counts": {k: counts[k] for k in ("sent", "ok", "failed", "dropped", "cancelled")},
            "error_rate": _r(error_rate, 4), "errors": res["errors"],
            "slo": [{"slo": k.slo.spec, "metric": k.slo.metric, "stat": k.slo.stat,
                     "limit_ms": k.slo.limit_ms, "value_ms": _r(k.value_ms), "ok": k.ok}
                    for k in checks],
            "metrics": {m: {s: res["metrics"][m][s] for s in _STATS} for m in algo.CURVE_METRICS},
            "steady": steady.as_dict() if steady is not None else None,
            "client": {"limited": bool(client_reasons), "reasons": client_reasons,
                       "sched_lag_p99_ms": c.get("sched_lag_p99_ms"),
                       "worker_cpu_percent": c.get("worker_cpu_percent"),
                       "loop_lag_p99_ms": c.get("loop_lag_p99_ms")},
            "verdict": verdict, "reasons": reasons, "interrupted": bool(interrupted),
        }

    def print_step(self, rec: dict) -> None:
        """Print one line per finished step."""
        what = (f"{rec['offered_rps']:g} req/s" if rec["offered_rps"] is not None
                else f"closed loop, {rec['concurrency']} users")
        slo = "".join(f"  {s['metric']}.{s['stat']} {_ms(s['value_ms'])}"
                      + ("" if s["ok"] else " ✗") for s in rec["slo"])
        color = {"pass": "green", "fail": "red", "probe": "cyan"}.get(rec["verdict"], "yellow")
        why = f" ({'; '.join(rec['reasons'])})" if rec["reasons"] else ""
        self.console.print(
            f"step {rec['index']} {rec['kind']}: {what}, {rec['workers']} worker(s): achieved "
            f"{rec['achieved_rps']:.1f} req/s, completed {rec['throughput_rps']:.1f}/s, "
            f"goodput {rec['goodput_rps']:.1f}/s{slo}  [{color}]{rec['verdict']}[/]{why}",
            highlight=False)

    # --------------------------------------------------------------- the search
    def settle(self, rate: float | None, kind: str, duration: float) -> tuple[str, dict]:
        """Run ``rate`` (None: the probe) until it has a verdict the search can use.

        Returns the verdict (``pass``, ``fail``, ``probe``; ``client``: stop, the client is
        the limit; ``interrupted``; ``max_steps``) and the last step's record. Client-limited
        steps run again with more workers or once more (``algo.client_action``); a step that
        passes while still not steady runs again, once, for --max-step-duration.
        """
        retried = False
        rec: dict = {}
        while True:
            if len(self.steps) >= self.s.max_steps:
                return "max_steps", rec
            rec = self.run_step(kind, rate, duration)
            verdict = rec["verdict"]
            if verdict == "client":
                act = algo.client_action(True, self.workers, self.s.max_cores, retried)
                rec["action"] = act.message
                self.note(act.message)
                if act.action == "stop":
                    self.result["message"] = act.message
                    return "client", rec
                retried = retried or act.action == "retry"
                self.workers, kind = act.workers, kind if rate is None else "retry"
                continue
            if verdict == "unsteady":
                if rec["duration_s"] < self.s.max_step_s:
                    duration = self.s.max_step_s
                    rec["action"] = f"not steady yet: running it again for {duration:g} s"
                    self.note(rec["action"])
                    kind = "extension"
                    continue
                rec["verdict"] = verdict = "fail"
                rec["reasons"].append("still not steady at --max-step-duration")
            self.write()
            return verdict, rec

    def run_auto(self) -> str:
        """Probe, bisect, confirm; return the final status."""
        verdict, rec = self.settle(None, "probe", self.s.probe_s)
        if verdict != "probe":
            return verdict
        self.probe = rec
        estimate = rec["throughput_rps"]
        self.write()
        if not estimate or rec["counts"]["ok"] == 0:
            self.result["message"] = "the closed-loop probe completed no request"
            return "none"
        self.search = algo.RateSearch(estimate, precision=self.s.precision)
        while True:
            if self.interrupted:
                return "interrupted"
            rate = self.search.next_rate()
            kind, duration = "step", self.s.step_s
            if rate is None:
                if self.search.exhausted or self.search.lo is None:
                    return "none"
                rate, kind, duration = self.search.lo, "confirm", self.s.confirm_s
            verdict, _ = self.settle(rate, kind, duration)
            if verdict in ("client", "interrupted", "max_steps"):
                return verdict
            if kind == "confirm" and verdict == "pass":
                self.result["max_rate"] = rate
                return "found"
            if kind == "confirm":
                self.note(f"the confirming run at {rate:g} req/s failed: searching lower")
            self.search.record(rate, verdict == "pass")

    def run_list(self) -> str:
        """One step per rate of --rates, in ascending order; return the final status."""
        for rate in self.s.rates or ():
            rec = self.run_step("step", rate, self.s.step_s)
            if rec["verdict"] == "unsteady":
                rec["verdict"] = "fail"
                rec["reasons"].append("lengthen --step-duration to see whether it settles")
            self.write()
            if self.interrupted:
                return "interrupted"
        passed = [r["offered_rps"] for r in self.steps if r["verdict"] == "pass"]
        best = max(passed) if passed else None
        self.result["max_rate"] = best
        above = [r for r in self.steps if best is None or r["offered_rps"] > best]
        first = min(above, key=lambda r: r["offered_rps"]) if above else None
        if first is not None and first["verdict"] == "client":
            self.result["message"] = (f"the client, not the endpoint, limited the step at "
                                      f"{first['offered_rps']:g} req/s: "
                                      + "; ".join(first["client"]["reasons"]))
            return "client"
        return "found" if best is not None else "none"

    def run(self) -> int:
        """Run the sweep; write sweep.json; print the table; return the exit status."""
        self.write()
        try:
            status = self.run_auto() if self.s.rates is None else self.run_list()
        except KeyboardInterrupt:
            self.interrupted = self.interrupted or "SIGINT"
            status = "interrupted"
        except LensError as e:        # e.g. the endpoint went away: keep what was measured
            self.result.update(status="error", message=f"{type(e).__name__}: {e}",
                               exit_status=1)
            self.write()
            raise
        self.finish(status)
        self.write()
        self.print_table()
        return self.result["exit_status"]

    # ------------------------------------------------------------------ results
    def note(self, text: str) -> None:
        """Print a remark of the sweep (a change of workers, an extension)."""
        self.console.print(f"  [dim]→ {text}[/]", highlight=False)

    def finish(self, status: str) -> None:
        """Fill in ``result``: the status, the rate found, the message and the exit status."""
        res = self.result
        search = self.search
        if status == "interrupted":
            res.setdefault("max_rate", search.lo if search else None)
            sig = self.interrupted or "SIGINT"
            res["message"] = (f"interrupted by {sig}: sweep.json holds the {len(self.steps)} "
                              "step(s) run until then")
            code = EXIT_SIGNAL.get(sig, 130)
        elif status == "client":
            if search is not None:
                res.setdefault("max_rate", search.lo)
            code = EXIT_CLIENT
        elif status == "found":
            rate = res["max_rate"]
            res["message"] = (f"highest rate meeting every SLO: {rate:g} req/s"
                              + (" (confirmed)" if self.s.rates is None else ""))
            code = EXIT_FOUND
        elif status == "max_steps":
            rate = search.lo if search else None
            res["max_rate"] = rate
            res["message"] = (f"--max-steps {self.s.max_steps} reached before the search "
                              "converged" + (f"; {rate:g} req/s passed (not confirmed)"
                                             if rate else "; no rate passed"))
            code = EXIT_FOUND if rate else EXIT_NO_RATE
        else:
            res["max_rate"] = None
            res.setdefault("message", "no rate met every SLO")
            if self.s.rates is None and search is not None and search.hi is not None:
                res["message"] += f" (down to {search.hi:g} req/s)"
            code = EXIT_NO_RATE
        res["status"] = status
        res["confirmed"] = status == "found" and self.s.rates is None
        res["limit"] = {"found": "slo", "max_steps": "slo", "client": "client",
                        "none": "slo"}.get(status)
        if status == "client":
            res["message"] += ("" if res.get("max_rate") is None else
                               f"; {res['max_rate']:g} req/s met every SLO (a lower bound)")
        res["exit_status"] = code

    def document(self) -> dict:
        """Return sweep.json's content as it stands."""
        curve = algo.sweep_curve(self.steps)
        result = dict(self.result)
        result.setdefault("max_rate", None)
        result["knee"] = algo.curve_knee(curve, self.s.slos)
        result["capacity_estimate_rps"] = self.probe["throughput_rps"] if self.probe else None
        if self.search is not None:
            result["bracket_rps"] = {"passed": self.search.lo, "failed": self.search.hi}
        meta = dict(self.meta)
        meta.update(wall_s=_r(time.time() - self.t_start, 2),
                    interrupted=self.interrupted is not None)
        return {"schema": SCHEMA, "metadata": meta, "settings": self.s.as_dict(),
                "slo": [{"slo": s.spec, "metric": s.metric, "stat": s.stat,
                         "limit_ms": s.limit_ms} for s in self.s.slos],
                "result": result, "curve": curve, "steps": self.steps}

    def write(self) -> None:
        """Write sweep.json (atomically: a reader never sees half a file)."""
        import orjson

        from lens.errors import RunError

        path = self.out / "sweep.json"
        tmp = self.out / "sweep.json.tmp"
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(orjson.dumps(self.document(), option=orjson.OPT_INDENT_2
                                         | orjson.OPT_APPEND_NEWLINE, default=str))
            os.replace(tmp, path)
        except OSError as e:
            raise RunError(f"cannot write {str(path)!r}: {e.strerror}; choose a writable "
                           "--output") from e

    def print_table(self) -> None:
        """Print every step as a table, then the result."""
        from rich.table import Table

        t = Table(title=f"lens-fast sweep · {self.plan.provider} · {self.plan.model} · "
                  f"{self.plan.url}", title_justify="left")
        for col in ("#", "step", "workers", "offered/s", "achieved/s", "completed/s", "goodput/s",
                    *(s.spec for s in self.s.slos), "errors", "steady", "verdict"):
            t.add_column(col, justify="left" if col in ("step", "verdict") else "right")
        for r in self.steps:
            offered = f"{r['offered_rps']:g}" if r["offered_rps"] is not None else \
                f"c={r['concurrency']}"
            steady = r["steady"]
            t.add_row(str(r["index"]), r["kind"], str(r["workers"]), offered,
                      f"{r['achieved_rps']:.1f}", f"{r['throughput_rps']:.1f}",
                      f"{r['goodput_rps']:.1f}",
                      *(_ms(s["value_ms"]) + ("" if s["ok"] else " ✗") for s in r["slo"]),
                      f"{r['error_rate']:.1%}",
                      "–" if steady is None else ("yes" if steady["steady"] else "no"),
                      r["verdict"])
        self.console.print(t)
        res = self.result
        knee = self.document()["result"]["knee"]
        color = {0: "green", 3: "yellow", 4: "red"}.get(res["exit_status"], "yellow")
        self.console.print(f"[bold {color}]{res['message']}[/]", highlight=False)
        if knee:
            self.console.print(f"Knee of {knee['metric']} {knee['stat']} vs rate: "
                               f"{knee['rate']:g} req/s", highlight=False)
        self.console.print(f"Results: {self.out}/sweep.json (steps in {self.out}/steps/)")


def _ms(v: float | None) -> str:
    return "–" if v is None else (f"{v:.1f} ms" if v < 10_000 else f"{v / 1e3:.1f} s")


# ------------------------------------------------------------------------------ command
def _settings(o: dict) -> SweepSettings:
    """Check the sweep's own options (ConfigError before any load)."""
    from lens.engine.supervisor import default_cores

    rates = algo.parse_rates(o["rates"])
    slos = algo.parse_slos(o["slo"]) if o["slo"] is not None else ()
    step = parse_duration(o["step_duration"], "--step-duration")
    max_step = (parse_duration(o["max_step_duration"], "--max-step-duration")
                if o["max_step_duration"] else max(step, 3 * step))
    if max_step < step:
        raise ConfigError(f"--max-step-duration ({o['max_step_duration']}) must be at least "
                          f"--step-duration ({o['step_duration']})")
    for name in ("probe_concurrency", "max_steps", "cores"):
        if o[name] is not None and o[name] < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1 (got {o[name]})")
    precision = algo.parse_fraction(o["precision"], "--precision")
    if precision == 0:
        raise ConfigError("--precision must be > 0 (e.g. 5%): the search must end")
    return SweepSettings(
        rates=rates, slos=slos, step_s=step, max_step_s=max_step,
        probe_s=parse_duration(o["probe_duration"], "--probe-duration"),
        probe_concurrency=o["probe_concurrency"],
        confirm_s=(parse_duration(o["confirm_duration"], "--confirm-duration")
                   if o["confirm_duration"] else 2 * step),
        precision=precision, max_steps=o["max_steps"], max_cores=o["cores"] or default_cores(),
        max_error_rate=algo.parse_fraction(o["max_error_rate"], "--max-error-rate"),
        max_sched_lag_ms=parse_duration(o["max_sched_lag"], "--max-sched-lag") * 1e3,
        drain_s=(None if o["drain"] in (None, "auto") else parse_duration(o["drain"], "--drain")))


def _run_options(o: dict) -> dict:
    """Return ``o`` completed with the run options sweep does not take, as build_plan wants."""
    d = dict(o)
    d.update(rps=None, concurrency=1, duration="1s", requests=None, cores=1, rate_limit=None)
    return d


#: Help that reads differently for a sweep.
_HELP = {"url": "Base URL of the endpoint, e.g. http://localhost:8000/v1. Default: the "
         "provider's; without --url and --provider, sweep starts the embedded mock (with a "
         "capacity limit: --mock-max-concurrency, --mock-batch-slowdown) and sweeps it.",
         "arrival": "Arrival process of the open-loop steps.",
         "format": "Files to write: a comma-separated list of parquet, json, csv, html. Each "
         "step always writes requests.parquet, tokens.parquet and summary.json (the sweep reads "
         "them); csv adds each step's requests.csv; html adds OUT/report.html, the sweep's "
         "curves (see `lens-fast report`)."}


def _shared_options() -> list[click.Parameter]:
    """Return run's options that sweep takes, copied where their help differs."""
    out = []
    for name in SHARED_OPTIONS:
        p = next(p for p in run_command.params if p.name == name)
        if name in _HELP:
            p = copy.copy(p)
            p.help = _HELP[name]
        out.append(p)
    return out


@click.command("sweep")
@click.option("--rates", default="auto", show_default=True, metavar="auto|R1,R2,…",
              help="auto: probe, then search for the highest rate meeting every SLO; or a "
              "list of rates (req/s), one step each, e.g. 10,20,50.")
@click.option("--slo", metavar="SPEC", help="Service-level objectives, e.g. "
              "ttft.p99=500ms,itl.p99=50ms,e2e.p95=10s (metrics: ttft, ttft_sched, itl, tpot, "
              "e2e, e2e_sched; stats: pNN, mean, max). Without: steady with few errors.")
@click.option("--step-duration", default="10s", show_default=True,
              help="Load of each step (lengthened to 100 requests at low rates).")
@click.option("--max-step-duration", help="Auto: a step that meets the SLOs but is not steady "
              "runs again for this long (default 3 x --step-duration).")
@click.option("--probe-duration", default="5s", show_default=True,
              help="Auto: the closed-loop probe that estimates capacity.")
@click.option("--probe-concurrency", type=int, default=64, show_default=True,
              help="Auto: users of the probe (more than the endpoint serves at once).")
@click.option("--confirm-duration", help="Auto: the confirming run at the rate found "
              "(default 2 x --step-duration).")
@click.option("--precision", default="5%", show_default=True, help="Auto: stop when the "
              "highest passing and lowest failing rates are this close.")
@click.option("--max-steps", type=int, default=15, show_default=True,
              help="Auto: at most this many steps, probe and confirmation included.")
@click.option("--cores", type=int, help="At most this many worker processes (default: CPUs − 1, "
              "at least 1). Auto starts with what the rate needs and adds workers when the "
              "client is the limit; a list of rates uses them all.")
@click.option("--max-error-rate", default="1%", show_default=True,
              help="A step with more failed, dropped or cancelled requests fails.")
@click.option("--max-sched-lag", default="10ms", show_default=True, help="A step whose "
              "scheduling-lag or event-loop-lag p99 exceeds this was limited by the client.")
@click.option("--drain", default="auto", show_default=True, help="After a step's load, "
              "requests in flight get this long (+2 s), then are cancelled. auto: 3 x the "
              "first step's e2e p99, at least 10 s (60 s before any step).")
@click.option("--output", type=click.Path(file_okay=False), help="Directory for sweep.json "
              "and steps/ (default: lens-results/sweep-<UTC time>).")
@click.option("--mock-max-concurrency", type=int, default=64, show_default=True,
              help="Embedded mock (no --url): requests served at once (--max-concurrency).")
@click.option("--mock-batch-slowdown", type=float, default=0.01, show_default=True,
              help="Embedded mock (no --url): ITL x (1 + S x (active − 1)).")
def sweep_command(**o) -> None:
    """Find the highest request rate an endpoint serves within SLOs (a saturation sweep).

    Takes run's target and workload options. Exit status: 0 a rate met every SLO, 3 the
    client (not the endpoint) was the limit, 4 no rate met the SLOs, 1 bad input, 130/143
    interrupted (sweep.json keeps the finished steps). See docs/sweep.md.

    \b
    Examples:
      lens-fast sweep --slo ttft.p99=200ms
      lens-fast sweep --url http://localhost:8000/v1 --model M --rates auto \\
          --slo ttft.p99=500ms,itl.p99=50ms,e2e.p95=10s --output results/sweep
      lens-fast sweep --url http://localhost:8000/v1 --model M --rates 5,10,20,40
    """
    from click.core import ParameterSource

    from lens.engine.runner import check_formats, write_report
    from lens.output.table import consoles

    settings = _settings(o)
    formats = check_formats(o["format"])
    if o["http2"] and o["client"] != "httpx":
        raise ConfigError("--http2 needs --client httpx (the fast client speaks HTTP/1.1)")
    if o["mock_max_concurrency"] < 0 or not o["mock_batch_slowdown"] >= 0:
        raise ConfigError("--mock-max-concurrency and --mock-batch-slowdown must be >= 0")
    ctx = click.get_current_context()
    given = ctx.get_parameter_source("provider") not in (ParameterSource.DEFAULT, None)
    url, embedded = resolve_target(o, given)
    plan = build_plan(_run_options(o), url or "http://127.0.0.1:1/v1", embedded=embedded)
    out = Path(o["output"] or os.path.join(
        "lens-results", dt.datetime.now(dt.UTC).strftime("sweep-%Y%m%d-%H%M%S")))
    console, err = consoles(140)
    meta = {"command": shlex.join(sys.argv), "started_at": _iso(time.time()),
            "versions": {"lens-fast": __version__, "python": platform.python_version()},
            "host": platform.node(), "cpu_count": os.cpu_count(), "mode":
            "auto" if settings.rates is None else "list",
            "target": {"provider": plan.provider, "model": plan.model, "url": plan.url},
            "config": {k: v for k, v in plan.public().items()       # no placeholders:
                       if k not in ("rps", "concurrency", "duration_s", "requests", "cores")}}
    with ExitStack() as stack:
        if embedded:
            from lens.mock import MockProcess, saturation_rps

            knobs = {"ttft_ms": o["mock_ttft_ms"], "itl_ms": o["mock_itl_ms"],
                     "max_concurrency": o["mock_max_concurrency"],
                     "batch_slowdown": o["mock_batch_slowdown"]}
            mock = stack.enter_context(MockProcess(**knobs))
            plan = dataclasses.replace(plan, url=mock.url)
            sat = saturation_rps(output_tokens=plan.max_tokens, **knobs)
            meta["target"]["url"] = mock.url
            meta["embedded_mock"] = {**knobs, "output_tokens": plan.max_tokens,
                                     "saturation_rps": _r(sat)}
            err.print(f"[bold]No --url given:[/] sweeping lens' embedded mock at {mock.url} "
                      f"(TTFT {knobs['ttft_ms']:g} ms, ITL {knobs['itl_ms']:g} ms, "
                      f"{knobs['max_concurrency']} slots, batch slowdown "
                      f"{knobs['batch_slowdown']:g}: saturates at {sat:.1f} req/s)")
        sweep = Sweep(plan, settings, out, console=console, err=err,
                      progress=not o["no_progress"] and err.is_terminal, argv=sys.argv,
                      meta=meta, embedded=embedded,
                      formats=("parquet", "json", *(["csv"] if "csv" in formats else [])))
        code = sweep.run()
    if "html" in formats:
        write_report(out, console)
    sys.exit(code)


sweep_command.params[:0] = _shared_options()
