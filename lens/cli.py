"""The ``lens-fast`` command: run · validate · sweep · report · compare · mock.

Every subcommand lives in its own module and is registered here. ``LensError`` is printed as
``ErrorType: message`` on one line with exit status 1; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import sys

import click

from lens._version import __version__
from lens.errors import LensError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="lens-fast")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """lens-fast: profile LLM inference endpoints and drive them to saturation.

    \b
    Quick start:
      lens-fast run                 profile the embedded mock endpoint
      lens-fast run --url http://localhost:8000/v1 --model M --rps 50 --duration 30s
      lens-fast validate bench.yaml && lens-fast run bench.yaml
      lens-fast sweep --url http://localhost:8000/v1 --model M --rates auto --slo ttft.p99=500ms
      lens-fast report RUN_DIR --html report.html
      lens-fast compare BASELINE_DIR RUN_DIR --max-regression ttft.p99=10%
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register() -> None:
    from lens.engine.command import run_command
    from lens.engine.sweep_command import sweep_command
    from lens.engine.validate_command import validate_command
    from lens.mock.command import mock_command
    from lens.output.compare_command import compare_command
    from lens.output.report_command import report_command

    cli.add_command(run_command, "run")
    cli.add_command(validate_command, "validate")
    cli.add_command(mock_command, "mock")
    cli.add_command(compare_command, "compare")
    cli.add_command(report_command, "report")
    cli.add_command(sweep_command, "sweep")


#: Commands that run load: Ctrl-C/SIGTERM are recorded from the first moment, so that even an
#: early one ends the run with complete (maybe empty) outputs (lens/engine/interrupts.py).
LOAD_COMMANDS = ("run", "sweep")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lens-fast`` and ``python -m lens``."""
    args = argv if argv is not None else sys.argv[1:]
    if next((a for a in args if not a.startswith("-")), None) in LOAD_COMMANDS:
        from lens.engine import interrupts

        interrupts.install()
    _register()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="lens-fast", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except LensError as e:
        if debug:
            raise
        click.echo(f"{type(e).__name__}: {e}", err=True)
        sys.exit(1)
    except SystemExit:
        raise
