"""The provider protocol: how one API's streaming request is built and its stream is read.

A provider is a small stateless class. Given the run's plan it says where requests go
(``path``), how they authenticate (``headers``), what they carry (``body``), and which of the
C decoder's dialects reads the stream (``dialect``; the generic provider also hands the
decoder a Python ``classifier``). Everything here runs once per prompt when the request
bytes are built, never per request or per token.

    provider = get_provider(plan.provider)
    provider.path(plan)                  # "/v1/messages"
    provider.headers(plan, api_key)      # {"x-api-key": ..., "anthropic-version": ...}
    provider.body(plan, prompt)          # b'{"model":...,"stream":true}'
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import orjson

if TYPE_CHECKING:  # pragma: no cover
    from lens.engine.plan import RunPlan

__all__ = ["Classifier", "NativeAPI", "Provider", "base_path", "json_body",
           "refuse_openai_options", "stream_headers"]

#: ``fn(data) -> (n_tokens, usage_output_tokens or -1, finish or None, error or None)``,
#: called by the decoder with each event's data (DIALECT_GENERIC only).
Classifier = Callable[[bytes], tuple[int, int, bytes | None, bytes | None]]

USER_AGENT = "lens-fast"


class Provider(Protocol):
    """One API. Class attributes describe it; methods build its requests."""

    #: The ``--provider`` name.
    name: str
    #: Base URL used when ``--url`` is not given; None when there is none.
    default_base_url: str | None
    #: Environment variable the API key is read from by default.
    api_key_env: str
    #: True when requests without a key cannot work (hosted APIs).
    key_required: bool
    #: ``--endpoint`` values this API has (empty: the option does not apply).
    endpoints: tuple[str, ...]

    def path(self, plan: RunPlan) -> str:
        """Return the request target: the path under the base URL, with any query."""
        ...

    def headers(self, plan: RunPlan, api_key: str | None) -> dict[str, str]:
        """Return the request headers (auth included), besides host, length and request id."""
        ...

    def body(self, plan: RunPlan, prompt: str) -> bytes:
        """Return the JSON body of one streaming request for ``prompt``."""
        ...

    def dialect(self, plan: RunPlan) -> int:
        """Return the ``lens._core.stream`` DIALECT_* that reads this API's stream."""
        ...

    def classifier(self, plan: RunPlan) -> Classifier | None:
        """Return the per-event classifier for DIALECT_GENERIC, else None."""
        ...

    def check(self, plan: RunPlan) -> None:
        """Raise ConfigError when the plan does not fit this API (bad option combinations)."""
        ...


def base_path(plan: RunPlan) -> str:
    """Return the base URL's path without a trailing slash ("" for a bare host)."""
    return urlsplit(plan.url).path.rstrip("/")


def stream_headers(auth: dict[str, str] | None = None) -> dict[str, str]:
    """Return the headers every streaming JSON request carries, plus ``auth``."""
    h = {"content-type": "application/json", "accept": "text/event-stream",
         "user-agent": USER_AGENT}
    if auth:
        h.update(auth)
    return h


def json_body(body: dict, plan: RunPlan) -> bytes:
    """Serialise a request body after merging the plan's ``extra`` fields (they win)."""
    if plan.extra:
        body.update(plan.extra)
    return orjson.dumps(body)


def refuse_openai_options(plan: RunPlan, name: str) -> None:
    """Raise ConfigError for the OpenAI-only request options on a non-OpenAI provider."""
    from lens.errors import ConfigError

    if plan.ignore_eos:
        raise ConfigError(f"--ignore-eos applies to --provider vllm, sglang or llamacpp, not "
                          f"{name}")
    if not plan.include_usage:
        raise ConfigError(f"--no-usage applies to the OpenAI-style providers (openai, azure, "
                          f"vllm, sglang, llamacpp); {name} streams its token counts anyway")


class NativeAPI:
    """What the providers with an API of their own (anthropic, gemini, cohere, tgi) share:
    no ``--endpoint`` choice, no per-event classifier, and no OpenAI-only options."""

    name: str
    key_required = True
    endpoints: tuple[str, ...] = ()

    def classifier(self, plan: RunPlan) -> Classifier | None:
        return None

    def check(self, plan: RunPlan) -> None:
        refuse_openai_options(plan, self.name)
