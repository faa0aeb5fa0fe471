"""OpenAI Chat Completions (and legacy Completions), and Azure OpenAI.

Wire format: ``shared/reference/wire-formats.md`` §1 (OpenAI) and §3 (Azure).

OpenAI: ``POST {base}/chat/completions`` (or ``/completions``), ``Authorization: Bearer``,
``{"model", "messages", "max_completion_tokens" | "max_tokens", "stream": true,
"stream_options": {"include_usage": true}}``. The public API wants ``max_completion_tokens``
for chat (reasoning models refuse ``max_tokens``); OpenAI-compatible servers reached with
``--provider openai --url ...`` get ``max_tokens``, which every one of them accepts.

Azure: ``POST {resource}/openai/deployments/{deployment}/chat/completions?api-version=V`` with
an ``api-key`` header, or the newer ``{resource}/openai/v1/chat/completions`` (the model in
the body, no api-version) when ``--url`` ends in ``/openai/v1``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from lens._core.stream import DIALECT_OPENAI_CHAT, DIALECT_OPENAI_COMPLETIONS
from lens.errors import ConfigError
from lens.providers.base import Classifier, base_path, json_body, stream_headers

if TYPE_CHECKING:  # pragma: no cover
    from lens.engine.plan import RunPlan

__all__ = ["AZURE_API_VERSION", "ENDPOINT_PATHS", "Azure", "OpenAI"]

ENDPOINT_PATHS = {"chat": "/chat/completions", "completions": "/completions"}
#: The last dated GA version of Azure OpenAI's data-plane inference API (learn.microsoft.com,
#: "Azure OpenAI REST API reference", API specs table).
AZURE_API_VERSION = "2024-10-21"
OPENAI_HOST = "api.openai.com"


class OpenAI:
    """OpenAI Chat Completions / Completions; the base of the OpenAI-compatible flavours."""

    name = "openai"
    default_base_url: str | None = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"
    key_required = False          # required only for api.openai.com (see providers.key_needed)
    endpoints: tuple[str, ...] = ("chat", "completions")

    def path(self, plan: RunPlan) -> str:
        return base_path(plan) + ENDPOINT_PATHS[plan.endpoint]

    def headers(self, plan: RunPlan, api_key: str | None) -> dict[str, str]:
        return stream_headers({"authorization": f"Bearer {api_key}"} if api_key else None)

    def length_key(self, plan: RunPlan) -> str:
        """Return the body field that limits the output length."""
        if plan.endpoint == "chat" and urlsplit(plan.url).hostname == OPENAI_HOST:
            return "max_completion_tokens"
        return "max_tokens"

    def extras(self, plan: RunPlan) -> dict:
        """Return the flavour's extra body fields (none for OpenAI itself)."""
        return {}

    def body(self, plan: RunPlan, prompt: str) -> bytes:
        body: dict = {"model": plan.model}
        if plan.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        body[self.length_key(plan)] = plan.max_tokens
        body["stream"] = True
        if plan.include_usage:
            body["stream_options"] = {"include_usage": True}
        body.update(self.extras(plan))
        return json_body(body, plan)

    def dialect(self, plan: RunPlan) -> int:
        return DIALECT_OPENAI_CHAT if plan.endpoint == "chat" else DIALECT_OPENAI_COMPLETIONS

    def classifier(self, plan: RunPlan) -> Classifier | None:
        return None

    def check(self, plan: RunPlan) -> None:
        if plan.ignore_eos:
            raise ConfigError(f"--ignore-eos is a self-hosted server's option; --provider "
                              f"{self.name} has no such field. Use --provider vllm, sglang or "
                              "llamacpp for the server you run")


class Azure(OpenAI):
    """Azure OpenAI: a deployment URL, ``api-version`` and the ``api-key`` header."""

    name = "azure"
    default_base_url = None       # https://<resource>.openai.azure.com: one per customer
    api_key_env = "AZURE_OPENAI_API_KEY"
    key_required = True

    def deployment(self, plan: RunPlan) -> str:
        """Return the deployment the requests go to: --deployment, else --model."""
        return plan.deployment or plan.model

    def path(self, plan: RunPlan) -> str:
        base = base_path(plan)
        tail = ENDPOINT_PATHS[plan.endpoint]
        if base.endswith("/openai/v1"):                     # the v1 surface: no api-version
            return base + tail
        if "/openai/deployments/" not in base:
            base += "/openai/deployments/" + quote(self.deployment(plan), safe="")
        return f"{base}{tail}?api-version={quote(plan.api_version or AZURE_API_VERSION)}"

    def headers(self, plan: RunPlan, api_key: str | None) -> dict[str, str]:
        return stream_headers({"api-key": api_key} if api_key else None)

    def length_key(self, plan: RunPlan) -> str:
        # Azure's reasoning deployments refuse max_tokens; every current api-version takes
        # max_completion_tokens on chat.
        return "max_completion_tokens" if plan.endpoint == "chat" else "max_tokens"

    def check(self, plan: RunPlan) -> None:
        super().check(plan)
        base = base_path(plan)
        if plan.deployment and "/openai/deployments/" in base:
            raise ConfigError(f"--deployment {plan.deployment!r} and a deployment in --url "
                              f"({plan.url}) both name the deployment; give one of them")
        if plan.api_version and base.endswith("/openai/v1"):
            raise ConfigError("--api-version does not apply to the Azure v1 API (--url ending "
                              "in /openai/v1); leave it out, or use the resource URL "
                              "https://<resource>.openai.azure.com")
