"""``lens-fast run --ray ADDRESS --hosts N`` (flags or a config file): the console side of a
distributed run: the embedded mock, the progress line, live metrics, the table, the files
asked for with ``--format``, the exit status."""
from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from lens.engine.plan import RunPlan

__all__ = ["RaySettings", "plan_runner", "run_on_ray"]


@dataclasses.dataclass(frozen=True)
class RaySettings:
    """Where and how to run: ``--ray``/``--hosts`` or a config's ``execution.ray``."""

    address: str = "auto"
    hosts: int | None = None
    lead_s: float | None = None          # None: lens.distributed.driver.DEFAULT_LEAD_S
    shared_output: bool = False          # --output is mounted on every node (hosts write it)


def plan_runner(ray: RaySettings, *, argv: list[str] | None, formats: tuple[str, ...],
                live: Any = None):
    """Return ``run_one(plan, out_dir, line) -> (summary, interrupted_by)`` running each plan
    on the Ray cluster (``lens.engine.runner.run_plans_and_report``'s hook)."""
    from lens.distributed.driver import DEFAULT_LEAD_S, run_distributed

    def run_one(plan: RunPlan, out_dir: Path, line: Any) -> tuple[dict, str | None]:
        summary = run_distributed(
            plan, address=ray.address, hosts=ray.hosts, out_dir=out_dir, argv=argv,
            lead_s=DEFAULT_LEAD_S if ray.lead_s is None else ray.lead_s,
            shared_dir=ray.shared_output,
            on_progress=line.update_hosts if line is not None else None, live=live)
        write_formats(Path(out_dir), formats)
        return summary, summary["metadata"].get("interrupted_by")

    return run_one


def write_formats(out_dir: Path, formats: tuple[str, ...]) -> None:
    """Make the merged files match ``--format``: requests.csv from the merged Parquet for
    csv; the merged Parquet removed without parquet (each host's stays in hosts/NN/)."""
    req = out_dir / "requests.parquet"
    if "csv" in formats and req.exists():
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        pcsv.write_csv(pq.read_table(req), out_dir / "requests.csv")
    if "parquet" not in formats:
        for name in ("requests.parquet", "tokens.parquet"):
            (out_dir / name).unlink(missing_ok=True)


def run_on_ray(plan: RunPlan, ray: RaySettings, *, embedded: bool, output: str | None,
               strict: bool, progress: bool = True, mock_ttft_ms: float = 20.0,
               mock_itl_ms: float = 2.0, argv: list[str] | None = None,
               formats: tuple[str, ...] = ("parquet", "json"), live: Any = None) -> int:
    """Run ``plan`` on the Ray cluster; print the merged table; return the exit status."""
    from lens.distributed.driver import require_ray
    from lens.engine.progress import ProgressLine
    from lens.engine.runner import (
        EXIT_OK,
        EXIT_SATURATED,
        EXIT_SIGNAL,
        default_output_dir,
        show_files,
        start_run,
    )
    from lens.output.table import consoles, render_table

    require_ray()
    console, err = consoles()
    out_dir = output or default_output_dir()
    with ExitStack() as stack:
        plan = start_run(stack, plan, live=live, embedded=embedded,
                         mock_ttft_ms=mock_ttft_ms, mock_itl_ms=mock_itl_ms)
        if embedded:
            err.print(f"[bold]No --url given:[/] the embedded mock runs on this machine at "
                      f"{plan.url}; only Ray nodes on this machine can reach it (give --url "
                      "on a real cluster)")
        err.print(f"Ray: {ray.hosts or 'every node as a'} host(s) × {plan.cores} workers, "
                  "starting together")
        line = ProgressLine(plan, err) if progress and err.is_terminal else None
        try:
            summary, interrupted = plan_runner(ray, argv=argv, formats=formats, live=live)(
                plan, Path(out_dir), line)
        finally:
            if line is not None:
                line.close()
    result = summary["scenarios"][0]["results"][0]
    render_table(result, console)
    dist = summary["metadata"]["distributed"]
    for h in dist["host_details"]:
        state = "stopped" if h["index"] in dist["hosts_stopped"] else \
            "lost" if "lost" in h else "ok"
        console.print(f"host {h['index']} {h['hostname']}: {state}, {h.get('sent', 0)} sent, "
                      f"clock offset {h['clock_offset_ms']:+.3f} ± "
                      f"{h['clock_offset_bound_ms']:.3f} ms")
    console.print(f"Clock offset bound between hosts: {dist['clock_offset_bound_ms']:.3f} ms")
    for text in summary["metadata"].get("hosts_lost", []):
        console.print(f"[yellow]{text}[/]")
    show_files(Path(out_dir), formats, console, "; hosts/NN/ per host")
    if interrupted:
        console.print(f"[yellow]Interrupted by {interrupted}: outputs hold what the hosts "
                      "measured until then.[/]")
        return EXIT_SIGNAL.get(interrupted, 130)
    if strict and result["client"]["saturated"]:
        return EXIT_SATURATED
    return EXIT_OK
