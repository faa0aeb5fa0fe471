"""``python -m lens.mock`` is ``lens-fast mock`` without the rest of the CLI (MockProcess uses it)."""
import sys

import click

from lens.errors import LensError
from lens.mock.command import mock_command


def main(argv: list[str] | None = None) -> None:
    """Run ``lens-fast mock`` with ``argv``; print a LensError as one line and exit 1."""
    try:
        mock_command.main(args=argv, prog_name="lens-fast mock", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except LensError as e:
        click.echo(f"{type(e).__name__}: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
