"""Google Gemini API, ``streamGenerateContent`` with ``alt=sse`` (wire-formats.md §5).

``POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse`` with an
``x-goog-api-key`` header (never ``?key=``: the key would end up in URLs and logs) and
``{"contents": [{"role": "user", "parts": [{"text"}]}], "generationConfig":
{"maxOutputTokens"}}``. The stream is ``data:`` events of GenerateContentResponse JSON with
no terminator; the last one carries ``finishReason`` and ``usageMetadata``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from lens._core.stream import DIALECT_GEMINI
from lens.providers.base import (
    NativeAPI,
    base_path,
    json_body,
    stream_headers,
)

if TYPE_CHECKING:  # pragma: no cover
    from lens.engine.plan import RunPlan

__all__ = ["Gemini"]


class Gemini(NativeAPI):
    """Google Gemini API (Generative Language API)."""

    name = "gemini"
    default_base_url: str | None = "https://generativelanguage.googleapis.com"
    api_key_env = "GEMINI_API_KEY"

    def path(self, plan: RunPlan) -> str:
        base = base_path(plan)
        if not base.endswith(("/v1beta", "/v1")):
            base += "/v1beta"
        model = plan.model.removeprefix("models/")
        return f"{base}/models/{quote(model, safe='')}:streamGenerateContent?alt=sse"

    def headers(self, plan: RunPlan, api_key: str | None) -> dict[str, str]:
        return stream_headers({"x-goog-api-key": api_key} if api_key else None)

    def body(self, plan: RunPlan, prompt: str) -> bytes:
        return json_body({"contents": [{"role": "user", "parts": [{"text": prompt}]}],
                          "generationConfig": {"maxOutputTokens": plan.max_tokens}}, plan)

    def dialect(self, plan: RunPlan) -> int:
        return DIALECT_GEMINI
