"""Request bytes: built once per prompt, with only the request id spliced in per request.

``RequestFactory.build(rid, j)`` returns ``pre[j] + b"%d" % rid + post[j]``: the complete
HTTP/1.1 request for prompt ``j`` (round-robin over the prompt pool) with the id in an
``x-request-id`` header, so that a server's logs (and lens' mock's ground truth) name it.
The path, headers and body come from the plan's provider (``lens.providers``).
"""
from __future__ import annotations

import numpy as np

from lens.engine.plan import RunPlan
from lens.providers import get_provider

# Common English words; each is about one token in GPT-style and Llama-style vocabularies.
_WORDS = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force "
    "education"
).split()

PROMPT_POOL = 64


def synthetic_prompts(input_tokens: int, seed: int, n: int = PROMPT_POOL) -> list[str]:
    """Return ``n`` seeded prompts of about ``input_tokens`` tokens (one common word each)."""
    rng = np.random.default_rng(seed)
    words = np.array(_WORDS)
    return [" ".join(words[rng.integers(0, len(words), size=max(1, input_tokens))])
            for _ in range(n)]


def estimate_tokens(text: str) -> int:
    """Approximate a prompt's token count (4 characters a token, the usual rule of thumb)."""
    return max(1, (len(text) + 3) // 4)


def request_body(plan: RunPlan, prompt: str) -> bytes:
    """Return the JSON body of one streaming request for ``prompt`` (the provider's shape)."""
    return get_provider(plan.provider).body(plan, prompt)


def prompts_for(plan: RunPlan) -> list[str]:
    """Return the prompt pool of a plan: the fixed prompt, or seeded synthetic ones."""
    if plan.prompt is not None:
        return [plan.prompt]
    return synthetic_prompts(plan.input_tokens or 32, plan.seed)


def headers_for(plan: RunPlan) -> dict[str, str]:
    """Return the request headers (auth included) besides Host, length and request id."""
    return get_provider(plan.provider).headers(plan, plan.api_key)


class RequestFactory:
    """Pre-built request bytes for a plan's prompt pool."""

    def __init__(self, plan: RunPlan):
        provider = get_provider(plan.provider)
        self.prompts = prompts_for(plan)
        self.bodies = [provider.body(plan, p) for p in self.prompts]
        self.input_tokens = [estimate_tokens(p) for p in self.prompts]
        host = plan.host if plan.port in (80, 443) else f"{plan.host}:{plan.port}"
        if ":" in plan.host and not plan.host.startswith("["):
            host = f"[{plan.host}]:{plan.port}"
        common = "".join(f"{k}: {v}\r\n"
                         for k, v in provider.headers(plan, plan.api_key).items())
        self.pre = [
            (f"POST {plan.path} HTTP/1.1\r\nhost: {host}\r\n{common}"
             f"content-length: {len(b)}\r\nx-request-id: ").encode("latin-1")
            for b in self.bodies
        ]
        self.post = [b"\r\n\r\n" + b for b in self.bodies]
        self.n = len(self.bodies)

    def build(self, rid: int, j: int) -> bytes:
        """Return the full request bytes for request id ``rid`` using prompt ``j % n``."""
        j %= self.n
        return self.pre[j] + b"%d" % rid + self.post[j]
