"""Hugging Face Text Generation Inference, native ``/generate_stream`` (wire-formats.md §7).

``POST {base}/generate_stream`` with ``{"inputs", "parameters": {"max_new_tokens",
"details": true}}``; a bearer token only where a proxy or Inference Endpoints wants one
(``HF_TOKEN``). One ``data:`` event per token; the last carries ``details.generated_tokens``.
TGI's OpenAI-compatible route is ``--provider openai --url http://HOST/v1``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from lens._core.stream import DIALECT_TGI
from lens.providers.base import (
    NativeAPI,
    base_path,
    json_body,
    stream_headers,
)

if TYPE_CHECKING:  # pragma: no cover
    from lens.engine.plan import RunPlan

__all__ = ["TGI"]


class TGI(NativeAPI):
    """TGI's native streaming API (one model per server: no model field)."""

    name = "tgi"
    default_base_url: str | None = "http://localhost:8080"
    api_key_env = "HF_TOKEN"
    key_required = False

    def path(self, plan: RunPlan) -> str:
        return base_path(plan) + "/generate_stream"

    def headers(self, plan: RunPlan, api_key: str | None) -> dict[str, str]:
        return stream_headers({"authorization": f"Bearer {api_key}"} if api_key else None)

    def body(self, plan: RunPlan, prompt: str) -> bytes:
        return json_body({"inputs": prompt,
                          "parameters": {"max_new_tokens": plan.max_tokens, "details": True}},
                         plan)

    def dialect(self, plan: RunPlan) -> int:
        return DIALECT_TGI
