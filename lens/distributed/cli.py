"""``lens-fast run --ray ADDRESS --hosts N``: the console side of a distributed run."""
from __future__ import annotations

import dataclasses
from contextlib import ExitStack

from lens.engine.plan import RunPlan

__all__ = ["run_on_ray"]


def run_on_ray(plan: RunPlan, *, address: str, hosts: int | None, embedded: bool,
               output: str | None, strict: bool, mock_ttft_ms: float = 20.0,
               mock_itl_ms: float = 2.0, argv: list[str] | None = None) -> int:
    """Run ``plan`` on ``hosts`` Ray nodes; print the merged table; return the exit status."""
    from rich.console import Console

    from lens.distributed.driver import require_ray, run_distributed
    from lens.engine.runner import EXIT_OK, EXIT_SATURATED, default_output_dir
    from lens.output.table import render_table

    require_ray()
    console = Console(stderr=False)
    if not console.is_terminal:
        console = Console(stderr=False, width=120)
    err = Console(stderr=True)
    out_dir = output or default_output_dir()
    with ExitStack() as stack:
        if embedded:
            from lens.mock.process import MockProcess

            mock = stack.enter_context(MockProcess(ttft_ms=mock_ttft_ms, itl_ms=mock_itl_ms))
            plan = dataclasses.replace(plan, url=mock.url)
            err.print(f"[bold]No --url given:[/] the embedded mock runs on this machine at "
                      f"{mock.url}; only Ray nodes on this machine can reach it (give --url "
                      "on a real cluster)")
        err.print(f"Ray: {hosts or 'every node as a'} host(s) × {plan.cores} workers, "
                  "starting together (no live progress for distributed runs)")
        summary = run_distributed(plan, address=address, hosts=hosts, out_dir=out_dir,
                                  argv=argv)
    result = summary["scenarios"][0]["results"][0]
    render_table(result, console)
    dist = summary["metadata"]["distributed"]
    for h in dist["host_details"]:
        state = "lost" if "lost" in h else "ok"
        console.print(f"host {h['index']} {h['hostname']}: {state}, {h.get('sent', 0)} sent, "
                      f"clock offset {h['clock_offset_ms']:+.3f} ± "
                      f"{h['clock_offset_bound_ms']:.3f} ms")
    console.print(f"Clock offset bound between hosts: {dist['clock_offset_bound_ms']:.3f} ms")
    for line in summary["metadata"].get("hosts_lost", []):
        console.print(f"[yellow]{line}[/]")
    console.print(f"Results: {out_dir}/ (requests.parquet, tokens.parquet, summary.json; "
                  "hosts/NN/ per host)")
    if strict and result["client"]["saturated"]:
        return EXIT_SATURATED
    return EXIT_OK
