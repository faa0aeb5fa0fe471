"""The APIs the mock speaks (``--api``): routes, request bodies, keys and error shapes.

    --api      completion routes                     key (--require-key)      error body
    openai     POST /v1/chat/completions,            Authorization: Bearer K  {"error": {"message",
               /v1/completions; Azure's              (or Azure's api-key: K)   "type", "param",
               /openai/deployments/{d}/chat/                                   "code"}}
               completions?api-version=..
               (and .../completions) and
               /openai/v1/...; GET /v1/models
    anthropic  POST /v1/messages (needs an           x-api-key: K             {"type": "error",
               anthropic-version header)                                       "error": {"type",
                                                                               "message"}}
    gemini     POST /v1beta/models/{m}:stream-       x-goog-api-key: K,       {"error": {"code",
               GenerateContent[?alt=sse],            or ?key=K                 "message",
               :generateContent (also under /v1/)                              "status"}}
    cohere     POST /v2/chat                         Authorization: Bearer K  {"message"}
    tgi        POST /generate_stream, /generate,     Authorization: Bearer K  {"error",
               /v1/chat/completions; GET /v1/models                            "error_type"}

An endpoint's ``parse(body, req, arg, query)`` reads a request body (a dict) into a
``wire.Plan``, or raises ``BadRequest`` with the API's wording; ``arg`` is what the path held
(Gemini's model, Azure's deployment). Length: the API's limit field (or 16 when it has none),
capped by ``--output-tokens`` in the server. Prompt size: the characters of every text part.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, ClassVar

import orjson

from lens.mock import dialects, wire
from lens.mock.wire import Plan

__all__ = ["APIS", "Api", "BadRequest", "Endpoint", "header"]


class BadRequest(Exception):
    """A request the API would refuse: ``status`` (400, or TGI's 422) and the offending field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


Parse = Callable[[dict[str, Any], Any, "str | None", bytes], Plan]


class Endpoint:
    """One route: its HTTP method and its body parser (None: the model list)."""

    __slots__ = ("method", "parse")

    def __init__(self, method: bytes, parse: Parse | None) -> None:
        self.method = method
        self.parse = parse


def header(headers: list[tuple[bytes, bytes]] | None, name: bytes) -> bytes | None:
    """Return the value of header ``name`` (lower case) in a raw header list, or None."""
    for n, v in headers or ():
        if len(n) == len(name) and n.lower() == name:
            return v
    return None


def _bearer(headers: list[tuple[bytes, bytes]] | None) -> bytes | None:
    value = header(headers, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else b""


# request fields


def _positive(value: object, name: str, status: int = 400) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise BadRequest(f"'{name}' must be an integer >= 1 (got {value!r}).", name, status)
    return value


def _model(body: dict[str, Any], required: bool = False) -> str | None:
    model = body.get("model")
    if model is None and not required:
        return None
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a string." if model is not None
                         else "'model' is a required property.", "model")
    return model


def _text_chars(content: object) -> int:
    """Return the characters of a message content: a string, or a list of ``{"text": ..}`` parts."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p["text"]) for p in content
                   if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def _messages_chars(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise BadRequest("'messages' is a required property and must be an array.", "messages")
    return sum(_text_chars(m.get("content")) for m in messages if isinstance(m, dict))


def _prompt_chars(body: dict[str, Any]) -> int:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return len(prompt)
    if isinstance(prompt, list):
        # a list of strings, or token ids (4 characters each, so one id counts one token)
        return sum(len(p) if isinstance(p, str) else 4 for p in prompt)
    raise BadRequest("'prompt' is a required property and must be a string or an array.", "prompt")


# OpenAI (and Azure)


def _openai(dialect: wire.Dialect) -> Parse:
    chat = dialect.is_chat

    def parse(body: dict[str, Any], req: Any, arg: str | None, query: bytes) -> Plan:
        model = _model(body) if arg is None else arg
        chars = _messages_chars(body) if chat else _prompt_chars(body)
        key = "max_tokens"
        if chat and body.get("max_completion_tokens") is not None:
            key = "max_completion_tokens"
        max_tokens = _positive(body.get(key), key)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return Plan(dialect, body.get("stream") is True, model, max_tokens, chars, include_usage)

    return parse


def _azure(dialect: wire.Dialect) -> Parse:
    parse = _openai(dialect)

    def parse_azure(body: dict[str, Any], req: Any, arg: str | None, query: bytes) -> Plan:
        if not any(p.startswith(b"api-version=") and len(p) > 12 for p in query.split(b"&")):
            raise BadRequest("the api-version query parameter is required "
                             "(e.g. ?api-version=2024-10-21).", "api-version")
        return parse(body, req, arg, query)  # the model is the deployment

    return parse_azure


# Anthropic


def _anthropic(body: dict[str, Any], req: Any, arg: str | None, query: bytes) -> Plan:
    if header(req.headers, b"anthropic-version") is None:
        raise BadRequest("anthropic-version: header is required")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: Field required" if model is None else "model: Input should be "
                         "a valid string", "model")
    if body.get("max_tokens") is None:
        raise BadRequest("max_tokens: Field required", "max_tokens")
    max_tokens = _positive(body["max_tokens"], "max_tokens")
    chars = _messages_chars(body) + _text_chars(body.get("system"))
    return Plan(dialects.ANTHROPIC, body.get("stream") is True, model, max_tokens, chars)


# Gemini


def _gemini(stream: bool) -> Parse:
    def parse(body: dict[str, Any], req: Any, arg: str | None, query: bytes) -> Plan:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified",
                             "contents")
        system = body.get("systemInstruction", body.get("system_instruction"))
        chars = sum(_text_chars(c.get("parts")) for c in [*contents, system]
                    if isinstance(c, dict))
        config = body.get("generationConfig", body.get("generation_config")) or {}
        if not isinstance(config, dict):
            raise BadRequest("Invalid value at 'generation_config': not an object",
                             "generationConfig")
        limit = config.get("maxOutputTokens", config.get("max_output_tokens"))
        max_tokens = _positive(limit, "generationConfig.maxOutputTokens")
        sse = b"alt=sse" in query.split(b"&")
        dialect = dialects.GEMINI_SSE if sse or not stream else dialects.GEMINI_ARRAY
        return Plan(dialect, stream, arg, max_tokens, chars)  # type: ignore[arg-type]

    return parse


# Cohere


def _cohere(body: dict[str, Any], req: Any, arg: str | None, query: bytes) -> Plan:
    model = _model(body, required=True)
    chars = _messages_chars(body)
    max_tokens = _positive(body.get("max_tokens"), "max_tokens")
    return Plan(dialects.COHERE, body.get("stream") is True, model, max_tokens, chars)


# TGI


def _tgi(stream: bool) -> Parse:
    def parse(body: dict[str, Any], req: Any, arg: str | None, query: bytes) -> Plan:
        inputs = body.get("inputs")
        if not isinstance(inputs, str):
            raise BadRequest("Failed to deserialize the JSON body into the target type: "
                             "missing field `inputs`", "inputs")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise BadRequest("'parameters' must be an object", "parameters", 422)
        max_tokens = _positive(params.get("max_new_tokens"), "max_new_tokens", 422)
        return Plan(dialects.TGI, stream, None, max_tokens, len(inputs),
                    details=params.get("details") is True)

    return parse


def _tgi_chat(body: dict[str, Any], req: Any, arg: str | None, query: bytes) -> Plan:
    plan = _openai(dialects.TGI_CHAT)(body, req, arg, query)
    plan.model = None  # TGI answers with the model it serves (--model), whatever was asked
    return plan


# the APIs


class Api:
    """One ``--api``: exact routes, path patterns, key check and error body."""

    name = ""
    routes: ClassVar[dict[bytes, Endpoint]] = {}
    served = ""
    #: Where the key goes, for messages (never the key itself).
    key_hint = "an Authorization: Bearer header"
    #: Whether the parser reads headers (then the server keeps them even without capture).
    needs_headers = False

    def match(self, path: bytes) -> tuple[Endpoint, str] | None:
        """Return the endpoint of a path that is not an exact route, with what the path held."""
        return None

    def key(self, headers: list[tuple[bytes, bytes]] | None, query: bytes) -> bytes | None:
        """Return the key the request carries (b"" for a malformed one, None for none)."""
        return _bearer(headers)

    def check_key(self, headers: list[tuple[bytes, bytes]] | None, query: bytes,
                  expected: bytes) -> str | None:
        """Return why the request's key is refused (never the key), or None if it matches."""
        got = self.key(headers, query)
        if got is None:
            return f"no API key: send it in {self.key_hint}"
        if not hmac.compare_digest(got, expected):
            return f"invalid API key in {self.key_hint}"
        return None

    def error(self, status: int, message: str, param: str | None = None) -> bytes:
        """Return the API's error body."""
        raise NotImplementedError


class OpenAI(Api):
    name = "openai"
    routes: ClassVar[dict[bytes, Endpoint]] = {
        b"/v1/chat/completions": Endpoint(b"POST", _openai(wire.CHAT)),
        b"/v1/completions": Endpoint(b"POST", _openai(wire.COMPLETIONS)),
        b"/v1/models": Endpoint(b"GET", None),
        # Azure's v1 surface: model in the body, no api-version
        b"/openai/v1/chat/completions": Endpoint(b"POST", _openai(wire.CHAT)),
        b"/openai/v1/completions": Endpoint(b"POST", _openai(wire.COMPLETIONS)),
    }
    served = ("/v1/chat/completions, /v1/completions and /v1/models "
              "(and Azure's /openai/deployments/{deployment}/... and /openai/v1/...)")
    key_hint = "an Authorization: Bearer header (or api-key)"
    _AZURE = b"/openai/deployments/"
    _azure: ClassVar[dict[bytes, Endpoint]] = {
        b"chat/completions": Endpoint(b"POST", _azure(wire.CHAT)),
        b"completions": Endpoint(b"POST", _azure(wire.COMPLETIONS)),
    }

    def match(self, path: bytes) -> tuple[Endpoint, str] | None:
        if path.startswith(self._AZURE):
            deployment, _, rest = path[len(self._AZURE):].partition(b"/")
            ep = self._azure.get(rest)
            if ep is not None and deployment:
                return ep, deployment.decode("latin-1")
        return None

    def key(self, headers: list[tuple[bytes, bytes]] | None, query: bytes) -> bytes | None:
        key = header(headers, b"api-key")  # Azure
        return key.strip() if key is not None else _bearer(headers)

    def error(self, status: int, message: str, param: str | None = None) -> bytes:
        code = {401: "invalid_api_key", 404: "not_found"}.get(status)
        return wire.error_body(message, param=param, code=code)


class Anthropic(Api):
    name = "anthropic"
    routes: ClassVar[dict[bytes, Endpoint]] = {b"/v1/messages": Endpoint(b"POST", _anthropic)}
    served = "POST /v1/messages"
    key_hint = "an x-api-key header"
    needs_headers = True
    _TYPES: ClassVar[dict[int, str]] = {
        401: "authentication_error", 403: "permission_error", 404: "not_found_error",
        413: "request_too_large"}

    def key(self, headers: list[tuple[bytes, bytes]] | None, query: bytes) -> bytes | None:
        key = header(headers, b"x-api-key")
        return key.strip() if key is not None else None

    def error(self, status: int, message: str, param: str | None = None) -> bytes:
        kind = self._TYPES.get(status, "invalid_request_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


class Gemini(Api):
    name = "gemini"
    routes: ClassVar[dict[bytes, Endpoint]] = {}
    served = ("POST /v1beta/models/{model}:streamGenerateContent (?alt=sse for SSE) and "
              ":generateContent")
    key_hint = "an x-goog-api-key header (or ?key=)"
    _METHODS: ClassVar[dict[bytes, Endpoint]] = {
        b"streamGenerateContent": Endpoint(b"POST", _gemini(True)),
        b"generateContent": Endpoint(b"POST", _gemini(False))}
    _STATUS: ClassVar[dict[int, str]] = {
        400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
        404: "NOT_FOUND", 405: "INVALID_ARGUMENT", 413: "INVALID_ARGUMENT"}

    def match(self, path: bytes) -> tuple[Endpoint, str] | None:
        for prefix in (b"/v1beta/models/", b"/v1/models/"):
            if path.startswith(prefix):
                model, _, method = path[len(prefix):].rpartition(b":")
                ep = self._METHODS.get(method)
                if ep is not None and model and b"/" not in model:
                    return ep, model.decode("latin-1")
        return None

    def key(self, headers: list[tuple[bytes, bytes]] | None, query: bytes) -> bytes | None:
        key = header(headers, b"x-goog-api-key")
        if key is not None:
            return key.strip()
        for p in query.split(b"&"):
            if p.startswith(b"key="):
                return p[4:]
        return None

    def error(self, status: int, message: str, param: str | None = None) -> bytes:
        return orjson.dumps({"error": {"code": status, "message": message,
                                       "status": self._STATUS.get(status, "UNKNOWN")}})


class Cohere(Api):
    name = "cohere"
    routes: ClassVar[dict[bytes, Endpoint]] = {b"/v2/chat": Endpoint(b"POST", _cohere)}
    served = "POST /v2/chat"

    def error(self, status: int, message: str, param: str | None = None) -> bytes:
        return orjson.dumps({"message": message})


class Tgi(Api):
    name = "tgi"
    routes: ClassVar[dict[bytes, Endpoint]] = {
        b"/generate_stream": Endpoint(b"POST", _tgi(True)),
        b"/generate": Endpoint(b"POST", _tgi(False)),
        b"/v1/chat/completions": Endpoint(b"POST", _tgi_chat),
        b"/v1/models": Endpoint(b"GET", None),
    }
    served = "POST /generate_stream, /generate, /v1/chat/completions and GET /v1/models"
    _TYPES: ClassVar[dict[int, str]] = {
        401: "authentication", 404: "not_found", 405: "method_not_allowed", 413: "validation",
        422: "validation"}

    def error(self, status: int, message: str, param: str | None = None) -> bytes:
        return orjson.dumps({"error": message, "error_type": self._TYPES.get(status, "validation")})


APIS: dict[str, Api] = {a.name: a for a in (OpenAI(), Anthropic(), Gemini(), Cohere(), Tgi())}
