"""Any JSON-over-SSE streaming API: a request body template and a JSON pointer to the token.

``--url`` is the full endpoint URL (it is not a base: nothing is appended). The body is
``--body-template`` with three placeholders filled in:

=================  ==================================================================
``{{prompt}}``     the prompt, JSON-escaped without quotes: write ``"{{prompt}}"``
``{{model}}``      ``--model``, JSON-escaped without quotes: write ``"{{model}}"``
``{{max_tokens}}`` ``--max-tokens`` as a bare integer: write ``{{max_tokens}}``
=================  ==================================================================

Each event's data is parsed as JSON (``orjson``) and ``--token-pointer`` (an RFC 6901 JSON
pointer) is resolved in it: a non-empty string there is one token event. An event whose
object has a non-empty top-level ``"error"`` is a stream error; data that is not JSON (a
``[DONE]`` marker, a keep-alive) counts as nothing. Example, TGI's native API::

    --body-template '{"inputs": "{{prompt}}", "parameters": {"max_new_tokens": {{max_tokens}}}}'
    --token-pointer /token/text

JSON pointer in one example: in ``{"a/b": {"m~n": ["x", "y"]}}`` the pointer
``/a~1b/m~0n/1`` names ``"y"`` (``~1`` is ``/``, ``~0`` is ``~``, decoded in that order; an
array index is ``0`` or a number without leading zeros).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from lens._core.stream import DIALECT_GENERIC
from lens.errors import ConfigError
from lens.providers.base import Classifier, refuse_openai_options, stream_headers

if TYPE_CHECKING:  # pragma: no cover
    from lens.engine.plan import RunPlan

__all__ = ["Generic", "make_classifier", "parse_pointer", "render_template", "resolve_pointer"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]*)\s*\}\}")
_INDEX = re.compile(r"0|[1-9][0-9]*")
_MISSING = object()
EXCERPT_MAX = 2048


def parse_pointer(text: str) -> tuple[str, ...]:
    """Split an RFC 6901 JSON pointer into its reference tokens (ConfigError when malformed)."""
    if text == "":
        return ()
    if not text.startswith("/"):
        raise ConfigError(f"--token-pointer must be a JSON pointer starting with / such as "
                          f"/choices/0/delta/content (got {text!r})")
    if re.search(r"~(?![01])", text):
        raise ConfigError(f"--token-pointer has a ~ not followed by 0 or 1 (got {text!r}); "
                          "write ~0 for ~ and ~1 for /")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in text[1:].split("/"))


def resolve_pointer(doc: Any, tokens: tuple[str, ...], default: Any = None) -> Any:
    """Return the value ``tokens`` point to in ``doc``, or ``default`` when there is none."""
    for t in tokens:
        if isinstance(doc, dict):
            doc = doc.get(t, _MISSING)
            if doc is _MISSING:
                return default
        elif isinstance(doc, list):
            if not _INDEX.fullmatch(t) or int(t) >= len(doc):
                return default          # "-" and out-of-range indices name no element
            doc = doc[int(t)]
        else:
            return default
    return doc


def make_classifier(pointer: str) -> Classifier:
    """Return the decoder's per-event classifier for a token pointer."""
    tokens = parse_pointer(pointer)
    loads, decode_error = orjson.loads, orjson.JSONDecodeError

    def classify(data: bytes) -> tuple[int, int, bytes | None, bytes | None]:
        try:
            doc = loads(data)
        except decode_error:
            return 0, -1, None, None
        if isinstance(doc, dict) and doc.get("error"):
            return 0, -1, None, data[:EXCERPT_MAX]
        v = resolve_pointer(doc, tokens)
        return (1 if isinstance(v, str) and v else 0), -1, None, None

    return classify


def _json_string_content(s: str) -> str:
    return orjson.dumps(s).decode()[1:-1]


def render_template(template: str, prompt: str, model: str, max_tokens: int) -> bytes:
    """Fill in ``{{prompt}}``, ``{{model}}`` and ``{{max_tokens}}`` (see the module docstring)."""
    values = {"prompt": _json_string_content(prompt), "model": _json_string_content(model),
              "max_tokens": str(max_tokens)}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template).encode()


def check_template(template: str | None) -> None:
    """Raise ConfigError unless the template fills in to valid JSON with a prompt in it."""
    if not template:
        raise ConfigError("--provider generic needs --body-template, e.g. "
                          "'{\"inputs\": \"{{prompt}}\", \"max_tokens\": {{max_tokens}}}'")
    unknown = sorted({m.group(1) for m in _PLACEHOLDER.finditer(template)}
                     - {"prompt", "model", "max_tokens"})
    if unknown:
        raise ConfigError(f"--body-template has unknown placeholders "
                          f"{', '.join('{{' + u + '}}' for u in unknown)}; it knows "
                          "{{prompt}}, {{model}} and {{max_tokens}}")
    if not any(m.group(1) == "prompt" for m in _PLACEHOLDER.finditer(template)):
        raise ConfigError("--body-template must contain {{prompt}} (inside a JSON string: "
                          "\"{{prompt}}\")")
    probe = render_template(template, 'a "quoted"\nline \\ ~', "m", 16)
    try:
        orjson.loads(probe)
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"--body-template is not valid JSON once filled in ({e}); put "
                          "{{prompt}} and {{model}} inside quotes and {{max_tokens}} outside "
                          "them") from None


class Generic:
    """A request body template plus a JSON pointer to the token text in each event."""

    name = "generic"
    default_base_url: str | None = None
    api_key_env = "LENS_API_KEY"
    key_required = False
    endpoints: tuple[str, ...] = ()

    def path(self, plan: RunPlan) -> str:
        from urllib.parse import urlsplit

        return urlsplit(plan.url).path or "/"

    def headers(self, plan: RunPlan, api_key: str | None) -> dict[str, str]:
        return stream_headers({"authorization": f"Bearer {api_key}"} if api_key else None)

    def body(self, plan: RunPlan, prompt: str) -> bytes:
        return render_template(plan.body_template or "", prompt, plan.model, plan.max_tokens)

    def dialect(self, plan: RunPlan) -> int:
        return DIALECT_GENERIC

    def classifier(self, plan: RunPlan) -> Classifier | None:
        return make_classifier(plan.token_pointer or "")

    def check(self, plan: RunPlan) -> None:
        refuse_openai_options(plan, self.name)
        check_template(plan.body_template)
        if plan.token_pointer is None:
            raise ConfigError("--provider generic needs --token-pointer, the JSON pointer to "
                              "the token text in each event, e.g. /choices/0/delta/content")
        parse_pointer(plan.token_pointer)
        if plan.extra:
            raise ConfigError("--provider generic takes its whole body from --body-template; "
                              "put extra fields there")
