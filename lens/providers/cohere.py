"""Cohere v2 Chat, streamed (wire-formats.md §6).

``POST {base}/v2/chat`` with ``Authorization: Bearer`` and ``{"model", "messages",
"stream": true, "max_tokens"}``. Text arrives in ``content-delta`` events; ``message-end``
carries the finish reason and the token usage.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from lens._core.stream import DIALECT_COHERE
from lens.providers.base import (
    NativeAPI,
    base_path,
    json_body,
    stream_headers,
)

if TYPE_CHECKING:  # pragma: no cover
    from lens.engine.plan import RunPlan

__all__ = ["Cohere"]


class Cohere(NativeAPI):
    """Cohere v2 chat stream."""

    name = "cohere"
    default_base_url: str | None = "https://api.cohere.com"
    api_key_env = "COHERE_API_KEY"

    def path(self, plan: RunPlan) -> str:
        base = base_path(plan)
        return base + ("/chat" if base.endswith("/v2") else "/v2/chat")

    def headers(self, plan: RunPlan, api_key: str | None) -> dict[str, str]:
        return stream_headers({"authorization": f"Bearer {api_key}"} if api_key else None)

    def body(self, plan: RunPlan, prompt: str) -> bytes:
        return json_body({"model": plan.model,
                          "messages": [{"role": "user", "content": prompt}],
                          "stream": True, "max_tokens": plan.max_tokens}, plan)

    def dialect(self, plan: RunPlan) -> int:
        return DIALECT_COHERE
