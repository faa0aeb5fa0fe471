"""Request bytes: built once per prompt, with only the request id spliced in per request.

``RequestFactory.build(rid, j)`` returns ``pre[j] + b"%d" % rid + post[j]``: the complete
HTTP/1.1 request for prompt ``j`` (round-robin over the prompt pool) with the id in an
``x-request-id`` header, so that a server's logs (and lens' mock's ground truth) name it.
The path, headers and body come from the plan's provider (``lens.providers``).
"""
from __future__ import annotations

import dataclasses
from urllib.parse import quote

import numpy as np
import orjson

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


#: Where each provider's body takes ``temperature`` (a path of keys); top level otherwise.
TEMPERATURE_AT = {"tgi": ("parameters",), "gemini": ("generationConfig",)}


def request_body(plan: RunPlan, prompt: str, max_tokens: int | None = None) -> bytes:
    """Return the JSON body of one streaming request for ``prompt`` (the provider's shape).

    ``max_tokens`` (a per-prompt output length) replaces the plan's; ``plan.temperature``
    goes where the provider's API takes it.
    """
    if max_tokens is not None and max_tokens != plan.max_tokens:
        plan = dataclasses.replace(plan, max_tokens=max_tokens)
    body = get_provider(plan.provider).body(plan, prompt)
    if plan.temperature is None:
        return body
    obj = orjson.loads(body)
    at = obj
    for k in TEMPERATURE_AT.get(plan.provider, ()):
        at = at.setdefault(k, {})
    at["temperature"] = plan.temperature
    return orjson.dumps(obj)


def prompts_for(plan: RunPlan) -> list[str]:
    """Return the prompt pool of a plan: its pool, the fixed prompt, or seeded synthetic ones."""
    if plan.prompts:
        return list(plan.prompts)
    if plan.prompt is not None:
        return [plan.prompt]
    return synthetic_prompts(plan.input_tokens or 32, plan.seed)


def headers_for(plan: RunPlan) -> dict[str, str]:
    """Return the request headers (auth included) besides Host, length and request id.

    With a config's ``auth`` the key goes where it says (a bearer token, a named header, or
    the query: see ``path_for``) instead of the provider's own place.
    """
    provider = get_provider(plan.provider)
    if plan.auth is None or plan.api_key is None:
        return provider.headers(plan, plan.api_key)
    h = provider.headers(plan, None)
    kind = plan.auth.get("type")
    if kind == "bearer":
        h["authorization"] = f"Bearer {plan.api_key}"
    elif kind == "header":
        h[plan.auth["header"].lower()] = plan.api_key
    return h


def path_for(plan: RunPlan) -> str:
    """Return the request target: the provider's path, plus the key for ``auth: query``."""
    path = plan.path
    if plan.auth is not None and plan.auth.get("type") == "query" and plan.api_key:
        sep = "&" if "?" in path else "?"
        path += f"{sep}{quote(plan.auth['param'], safe='')}={quote(plan.api_key, safe='')}"
    return path


class RequestFactory:
    """Pre-built request bytes for a plan's prompt pool."""

    def __init__(self, plan: RunPlan):
        self.prompts = prompts_for(plan)
        outs = plan.prompt_max_tokens if plan.prompts else None
        self.bodies = [request_body(plan, p, outs[i] if outs else None)
                       for i, p in enumerate(self.prompts)]
        #: each prompt's max_tokens (the plan's, unless the workload gives lengths per prompt)
        self.max_tokens = [int(outs[i]) if outs else plan.max_tokens
                           for i in range(len(self.prompts))]
        if plan.prompts and plan.prompt_tokens:
            self.input_tokens = list(plan.prompt_tokens)    # counted by the parent
        else:
            self.input_tokens = [estimate_tokens(p) for p in self.prompts]
        host = plan.host if plan.port in (80, 443) else f"{plan.host}:{plan.port}"
        if ":" in plan.host and not plan.host.startswith("["):
            host = f"[{plan.host}]:{plan.port}"
        common = "".join(f"{k}: {v}\r\n" for k, v in headers_for(plan).items())
        path = path_for(plan)
        self.pre = [
            (f"POST {path} HTTP/1.1\r\nhost: {host}\r\n{common}"
             f"content-length: {len(b)}\r\nx-request-id: ").encode("latin-1")
            for b in self.bodies
        ]
        self.post = [b"\r\n\r\n" + b for b in self.bodies]
        self.n = len(self.bodies)

    def build(self, rid: int, j: int) -> bytes:
        """Return the full request bytes for request id ``rid`` using prompt ``j % n``."""
        j %= self.n
        return self.pre[j] + b"%d" % rid + self.post[j]
