"""Anthropic Messages API (wire-formats.md §4).

``POST {base}/v1/messages`` with ``x-api-key`` and ``anthropic-version`` headers and
``{"model", "max_tokens", "messages", "stream": true}`` (``max_tokens`` is required). The
stream is named SSE events; text arrives in ``content_block_delta`` events and the output
token count in the last ``message_delta``'s ``usage``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from lens._core.stream import DIALECT_ANTHROPIC
from lens.providers.base import (
    NativeAPI,
    base_path,
    json_body,
    stream_headers,
)

if TYPE_CHECKING:  # pragma: no cover
    from lens.engine.plan import RunPlan

__all__ = ["ANTHROPIC_VERSION", "Anthropic"]

#: The ``anthropic-version`` header value (Anthropic API reference, "Versions": the only
#: current version).
ANTHROPIC_VERSION = "2023-06-01"


class Anthropic(NativeAPI):
    """Anthropic Messages API."""

    name = "anthropic"
    default_base_url: str | None = "https://api.anthropic.com"
    api_key_env = "ANTHROPIC_API_KEY"

    def path(self, plan: RunPlan) -> str:
        base = base_path(plan)
        return base + ("/messages" if base.endswith("/v1") else "/v1/messages")

    def headers(self, plan: RunPlan, api_key: str | None) -> dict[str, str]:
        auth = {"anthropic-version": plan.anthropic_version or ANTHROPIC_VERSION}
        if api_key:
            auth["x-api-key"] = api_key
        return stream_headers(auth)

    def body(self, plan: RunPlan, prompt: str) -> bytes:
        return json_body({"model": plan.model, "max_tokens": plan.max_tokens,
                          "messages": [{"role": "user", "content": prompt}],
                          "stream": True}, plan)

    def dialect(self, plan: RunPlan) -> int:
        return DIALECT_ANTHROPIC
