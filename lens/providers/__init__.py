"""Providers: one small class per streaming API, chosen by name with ``--provider``.

    PROVIDERS["anthropic"]            # the class
    get_provider("anthropic")         # an instance (ConfigError for an unknown name)

Each class follows the ``Provider`` protocol (``lens.providers.base``): where requests go,
their headers and body, and which decoder dialect reads the stream. ``pricing`` holds the
model prices. The wire formats are in ``shared/reference/wire-formats.md``; each provider's
defaults and an example command are in ``docs/providers.md``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lens.errors import ConfigError
from lens.providers.anthropic import Anthropic
from lens.providers.base import Provider
from lens.providers.cohere import Cohere
from lens.providers.gemini import Gemini
from lens.providers.generic import Generic
from lens.providers.openai import Azure, OpenAI
from lens.providers.openai_compat import VLLM, LlamaCpp, SGLang
from lens.providers.tgi import TGI

if TYPE_CHECKING:  # pragma: no cover
    from lens.engine.plan import RunPlan

__all__ = ["PROVIDERS", "Provider", "check_plan", "get_provider", "key_needed"]

PROVIDERS: dict[str, type] = {
    "openai": OpenAI,
    "azure": Azure,
    "anthropic": Anthropic,
    "gemini": Gemini,
    "cohere": Cohere,
    "tgi": TGI,
    "vllm": VLLM,
    "sglang": SGLang,
    "llamacpp": LlamaCpp,
    "generic": Generic,
}


def get_provider(name: str) -> Provider:
    """Return the provider called ``name``; ConfigError naming the valid ones otherwise."""
    cls = PROVIDERS.get(name)
    if cls is None:
        raise ConfigError(f"--provider must be one of {', '.join(PROVIDERS)} (got {name!r})")
    return cls()


def key_needed(provider: Provider, url: str) -> bool:
    """True when requests to ``url`` cannot work without an API key.

    Hosted-only APIs always need one; OpenAI needs one at its own host, not at the
    OpenAI-compatible servers ``--provider openai`` also reaches.
    """
    if provider.key_required:
        return True
    default = provider.default_base_url
    return default is not None and default.startswith("https://") and \
        urlsplit(url).hostname == urlsplit(default).hostname


def check_plan(plan: RunPlan) -> None:
    """Raise ConfigError when an option does not apply to the plan's provider."""
    p = get_provider(plan.provider)
    name = plan.provider
    if plan.endpoint != "chat" and plan.endpoint not in p.endpoints:
        which = ", ".join(n for n, c in PROVIDERS.items() if "completions" in c.endpoints)
        raise ConfigError(f"--endpoint {plan.endpoint} applies to --provider {which}; "
                          f"--provider {name} has one streaming API (leave --endpoint out)")
    if name != "generic":
        for value, flag in ((plan.body_template, "--body-template"),
                            (plan.token_pointer, "--token-pointer")):
            if value is not None:
                raise ConfigError(f"{flag} applies to --provider generic only (got "
                                  f"--provider {name})")
    if name != "azure":
        for value, flag in ((plan.api_version, "--api-version"),
                            (plan.deployment, "--deployment")):
            if value is not None:
                raise ConfigError(f"{flag} applies to --provider azure only (got "
                                  f"--provider {name})")
    if name != "anthropic" and plan.anthropic_version is not None:
        raise ConfigError(f"--anthropic-version applies to --provider anthropic only (got "
                          f"--provider {name})")
    p.check(plan)
