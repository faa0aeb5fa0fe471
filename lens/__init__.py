"""lens-fast: latency profiler and load generator for LLM inference endpoints.

    import lens
    plan = lens.RunPlan(url="http://localhost:8000/v1", model="M", rps=20, duration_s=30)
    summary = lens.run(plan, output="results/")
"""
import typing as _typing

from lens._version import __version__
from lens.errors import ConfigError, EndpointError, LensError, RunError

if _typing.TYPE_CHECKING:
    from lens.engine.plan import RunPlan, Timeouts

__all__ = [
    "ConfigError",
    "EndpointError",
    "LensError",
    "RunError",
    "RunPlan",
    "Timeouts",
    "__version__",
    "run",
]


def __getattr__(name: str) -> _typing.Any:
    # RunPlan and Timeouts load the Cython core and numpy: only when asked for, so that
    # `lens-fast` reaches its signal handlers (lens/engine/interrupts.py) within ~50 ms
    if name in ("RunPlan", "Timeouts"):
        from lens.engine import plan

        return getattr(plan, name)
    raise AttributeError(f"module 'lens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"RunPlan", "Timeouts"})


def run(plan: "RunPlan", output: str | None = None) -> dict:
    """Run a plan and return its summary (the content of summary.json).

    With ``output``, requests.parquet, tokens.parquet and summary.json are written there.
    Call it under ``if __name__ == "__main__":``: workers are spawned processes.
    """
    from lens.engine.runner import execute

    summary, _, _ = execute(plan, output)
    return summary
