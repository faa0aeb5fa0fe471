"""The lens exception tree.

    LensError                    anything lens reports as a one-line message (CLI exit status 1)
    ├── ConfigError              a bad flag, config key, URL or dataset, found before any load
    ├── EndpointError            the target cannot be used at all (refused, TLS, DNS) at start-up
    └── RunError                 the run itself failed (a worker could not start, outputs unwritable)

Faults of single requests during a run are never exceptions: they are error codes in rows
(``lens.engine.errors``).
"""

__all__ = ["ConfigError", "EndpointError", "LensError", "RunError"]


class LensError(Exception):
    """Base of every error lens reports to the user as one line."""


class ConfigError(LensError):
    """A flag, config value, URL or dataset is invalid; nothing was sent."""


class EndpointError(LensError):
    """The endpoint cannot be used (connection refused, TLS or DNS failure at start-up)."""


class RunError(LensError):
    """The run could not be carried out (worker start-up, output files)."""
