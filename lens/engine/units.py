"""Parsing of durations and timeouts given on the command line."""
from __future__ import annotations

import re

from lens.engine.plan import Timeouts
from lens.errors import ConfigError

_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "": 1.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m|h|)\s*$")


def parse_duration(text: str, what: str = "--duration") -> float:
    """Parse ``500ms``, ``30s``, ``2m``, ``1h`` or a plain number of seconds; return seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(f"{what} must be a duration like 30s, 500ms, 2m or 1h (got {text!r})")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if value <= 0:
        raise ConfigError(f"{what} must be > 0 (got {text!r})")
    return value


def parse_timeouts(text: str | None) -> Timeouts:
    """Parse ``--timeout``: ``TOTAL`` or ``CONNECT/FIRST_TOKEN/TOTAL`` (durations)."""
    if text is None:
        return Timeouts()
    parts = [p for p in re.split(r"[/,]", text)]
    if len(parts) == 1:
        total = parse_duration(parts[0], "--timeout")
        d = Timeouts()
        return Timeouts(min(d.connect_s, total), min(d.first_token_s, total), total)
    if len(parts) != 3:
        raise ConfigError("--timeout must be TOTAL or CONNECT/FIRST_TOKEN/TOTAL, e.g. "
                          f"10s/60s/600s (got {text!r})")
    c, f, t = (parse_duration(p, "--timeout") for p in parts)
    if not (c <= t and f <= t):
        raise ConfigError(f"--timeout: connect and first-token limits must not exceed the total "
                          f"(got {text!r})")
    return Timeouts(c, f, t)
