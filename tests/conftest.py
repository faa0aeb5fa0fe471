"""Shared fixtures: lens' mock endpoint on a free loopback port."""
from __future__ import annotations

import pytest

from lens.mock.process import MockProcess


@pytest.fixture(scope="session")
def mock_endpoint():
    """A session-wide mock: TTFT 20 ms, ITL 2 ms, OpenAI chat and completions."""
    with MockProcess(ttft_ms=20.0, itl_ms=2.0) as mock:
        yield mock


@pytest.fixture
def untraced(monkeypatch):
    """Keep coverage out of the processes a timing test starts (tracing slows Python down)."""
    monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)
