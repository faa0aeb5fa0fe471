"""``lens-fast compare BASELINE_DIR RUN_DIR``: the verdict of ``compare_runs`` for people and CI.

Prints one table per matched result (rich, like ``lens.output.table``), optionally writes the
same as GitHub-flavoured Markdown (``--markdown``, e.g. ``$GITHUB_STEP_SUMMARY``) and as JSON
(``--json``), and exits 1 when any metric regressed, 0 otherwise. A bad ``--max-regression`` is
a usage error (status 2), raised before any file is read; a folder that is not a run's is a
``ConfigError`` (status 1, one line). The statistics are in ``lens/output/compare.py``.
"""
from __future__ import annotations

import sys

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lens.errors import ConfigError, RunError
from lens.output.compare import (
    DEFAULT_THRESHOLDS,
    Comparison,
    MetricChange,
    compare_runs,
    parse_thresholds,
)
from lens.output.table import consoles, format_value

__all__ = ["compare_command", "comparison_markdown", "render_comparison"]

_STYLE = {"regression": "bold red", "improvement": "green", "inconclusive": "yellow",
          "n/a": "dim"}
_HEAD = ("metric", "baseline", "run", "change", "change %", "{ci} CI", "threshold", "rank p",
         "verdict")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def _cells(m: MetricChange) -> list[str]:
    t = m.threshold
    change = m.change
    return [
        f"{t.key} ({t.unit})",
        format_value(m.baseline),
        format_value(m.run),
        "-" if change is None else ("+" if change >= 0 else "") + format_value(change),
        _pct(m.rel),
        "-" if m.ci is None else f"[{_pct(m.ci[0])}, {_pct(m.ci[1])}]",
        f"{t.limit * 100:+g}%",
        "-" if m.rank_p is None else "<0.001" if m.rank_p < 0.001 else f"{m.rank_p:.3f}",
        m.verdict,
    ]


def _counts(counts: dict[str, dict[str, int]]) -> str:
    return " · ".join(f"{side} ok {c['ok']} failed {c['failed']}" for side, c in counts.items())


def _headline(c: Comparison) -> str:
    if not c.regressions:
        n = sum(len(r.rows) for r in c.results)
        return f"no regression ({n} metric(s) in {len(c.results)} result(s))"
    parts = []
    for r in c.results:
        regs = [m for m in r.rows if m.verdict == "regression"]
        if regs:
            parts.append(r.label + ": " + ", ".join(
                f"{m.threshold.key} {_pct(m.rel)} (limit {m.threshold.limit * 100:+g}%)"
                for m in regs))
    return f"{len(c.regressions)} regression(s) in " + "; ".join(parts)


def render_comparison(c: Comparison, console: Console) -> None:
    """Print one table per matched result, its notes, the unmatched results and the verdict."""
    ci = f"{c.confidence * 100:g}%"
    for r in c.results:
        table = Table(title=r.label, title_justify="left", header_style="bold",
                      box=box.SIMPLE_HEAD)
        for i, head in enumerate(_HEAD):
            table.add_column(head.format(ci=ci), justify="left" if i in (0, 8) else "right",
                             overflow="fold")
        for m in r.rows:
            cells = _cells(m)
            table.add_row(*cells[:-1], Text(cells[-1], style=_STYLE.get(m.verdict, "")))
        console.print(table)
        console.print(f"requests  {_counts(r.counts)}", highlight=False)
        for note in r.notes:
            console.print(Text(f"note  {note}", style="dim"))
    for side, keys in (("baseline", c.only_in_baseline), ("run", c.only_in_run)):
        if keys:
            console.print(Text(f"only in the {side} (not compared): {', '.join(keys)}",
                               style="yellow"))
    style = "bold red" if c.regressions else "bold green"
    console.print(Text(("REGRESSION: " if c.regressions else "OK: ") + _headline(c),
                       style=style))


def _md(s: str) -> str:
    return s.replace("|", "\\|")


def comparison_markdown(c: Comparison) -> str:
    """Return the comparison as GitHub-flavoured Markdown (for a CI job summary)."""
    mark = "❌" if c.regressions else "✅"
    lines = [f"## {mark} lens-fast compare: {_md(_headline(c))}", "",
             f"Baseline `{c.baseline_dir}` · run `{c.run_dir}` · {c.confidence * 100:g}% "
             f"bootstrap intervals ({c.resamples} resamples, seed {c.seed}). A regression is a "
             "change beyond its threshold whose interval excludes no change.", ""]
    ci = f"{c.confidence * 100:g}%"
    for r in c.results:
        lines += [f"### {_md(r.label)}", "",
                  "| " + " | ".join(h.format(ci=ci) for h in _HEAD) + " |",
                  "|---|" + "---:|" * 7 + "---|"]
        for m in r.rows:
            cells = [_md(x) for x in _cells(m)]
            if m.verdict == "regression":
                cells[-1] = "**regression**"
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Requests: {_counts(r.counts)}", ""]
        lines += [f"> {_md(n)}" for n in r.notes] + ([""] if r.notes else [])
    for side, keys in (("baseline", c.only_in_baseline), ("run", c.only_in_run)):
        if keys:
            lines += [f"**Only in the {side} (not compared):** {_md(', '.join(keys))}", ""]
    return "\n".join(lines)


def _thresholds(ctx: click.Context, param: click.Parameter, value: str | None):
    try:
        return parse_thresholds(value)
    except ConfigError as e:
        raise click.BadParameter(str(e), ctx, param) from None


def _write(path: str, text: str, option: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise RunError(f"cannot write {option} {path!r}: {e.strerror}; choose a writable "
                       "path") from e


@click.command("compare")
@click.argument("baseline_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--max-regression", "thresholds", metavar="SPEC", callback=_thresholds,
              help="Comma-separated METRIC.STAT=N% (a rise of more than N% is a regression) "
              "and throughput=-N% / output_throughput=-N% (a drop of more than N%). "
              f"Default: {DEFAULT_THRESHOLDS}.")
@click.option("--markdown", "markdown", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the comparison as GitHub-flavoured Markdown to FILE "
              "(replaced), e.g. \"$GITHUB_STEP_SUMMARY\".")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the comparison as JSON to FILE.")
@click.option("--confidence", type=click.FloatRange(0.5, 0.999), default=0.95,
              show_default=True, help="Level of the bootstrap confidence intervals.")
@click.option("--resamples", type=click.IntRange(100, 100_000), default=2000,
              show_default=True, help="Bootstrap resamples per metric.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the bootstrap: same runs and seed, same intervals.")
def compare_command(baseline_dir: str, run_dir: str, thresholds, markdown: str | None,
                    json_path: str | None, confidence: float, resamples: int,
                    seed: int) -> None:
    """Compare RUN_DIR with BASELINE_DIR; exit 1 when a metric regressed.

    A metric regressed when its change is beyond its threshold in the worse direction and its
    bootstrap confidence interval excludes no change (a change within the noise never is).

    \b
    Examples:
      lens-fast compare results/main results/pr
      lens-fast compare base/ run/ --max-regression ttft.p99=10%,itl.p50=5%,throughput=-5%
      lens-fast compare base/ run/ --markdown "$GITHUB_STEP_SUMMARY"
    """
    import orjson

    c = compare_runs(baseline_dir, run_dir, thresholds, confidence=confidence,
                     resamples=resamples, seed=seed)
    console, _ = consoles(140)        # piped or in CI: every column, not a folded table
    render_comparison(c, console)
    if markdown:
        _write(markdown, comparison_markdown(c) + "\n", "--markdown")
    if json_path:
        data = orjson.dumps(c.to_dict(), option=orjson.OPT_INDENT_2
                            | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
        _write(json_path, data.decode(), "--json")
    sys.exit(c.exit_status)
