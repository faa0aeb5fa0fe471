"""lens.mock.apis: routes, request bodies, key checks and error shapes of each --api."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from lens.mock import dialects, wire
from lens.mock.apis import APIS, BadRequest, header
from lens.mock.config import API_NAMES


def test_one_api_per_name():
    assert tuple(APIS) == API_NAMES


def req(**headers):
    return SimpleNamespace(headers=[(k.replace("_", "-").encode(), v.encode())
                                    for k, v in headers.items()])


def test_header_lookup_ignores_case():
    h = [(b"X-Api-Key", b"a"), (b"x-api-key", b"b")]
    assert header(h, b"x-api-key") == b"a"
    assert header(h, b"x-goog-api-key") is None and header(None, b"x") is None


@pytest.mark.parametrize(("api", "path", "arg"), [
    ("gemini", b"/v1beta/models/gemini-2.0-flash:streamGenerateContent", "gemini-2.0-flash"),
    ("gemini", b"/v1/models/g:generateContent", "g"),
    ("openai", b"/openai/deployments/gpt4o/chat/completions", "gpt4o"),
    ("openai", b"/openai/deployments/d1/completions", "d1"),
])
def test_path_routes(api, path, arg):
    ep, got = APIS[api].match(path)
    assert got == arg and ep.method == b"POST"


@pytest.mark.parametrize(("api", "path"), [
    ("gemini", b"/v1beta/models/g:countTokens"),
    ("gemini", b"/v1beta/models/:streamGenerateContent"),
    ("gemini", b"/v1beta/tunedModels/x/y:generateContent"),
    ("openai", b"/openai/deployments//chat/completions"),
    ("openai", b"/openai/deployments/d/embeddings"),
    ("anthropic", b"/v1/chat/completions"),
])
def test_unknown_paths(api, path):
    assert APIS[api].routes.get(path) is None and APIS[api].match(path) is None


KEY = b"sk-secret-123"


@pytest.mark.parametrize(("api", "good", "query"), [
    ("openai", {"Authorization": "Bearer sk-secret-123"}, b""),
    ("openai", {"api-key": "sk-secret-123"}, b""),  # Azure
    ("anthropic", {"x-api-key": "sk-secret-123"}, b""),
    ("gemini", {"x-goog-api-key": "sk-secret-123"}, b""),
    ("gemini", {}, b"alt=sse&key=sk-secret-123"),
    ("cohere", {"Authorization": "bearer sk-secret-123"}, b""),  # the scheme is case-insensitive
    ("tgi", {"Authorization": "Bearer sk-secret-123"}, b""),
])
def test_key_checks(api, good, query):
    a = APIS[api]
    headers = [(k.encode(), v.encode()) for k, v in good.items()]
    assert a.check_key(headers, query, KEY) is None
    missing = a.check_key([(b"x-other", b"sk-secret-123")], b"", KEY)
    assert missing.startswith("no API key")
    wrong = a.check_key([(k, v + b"x") for k, v in headers], query.replace(b"123", b"124"), KEY)
    assert wrong.startswith("invalid API key")
    for message in (missing, wrong):
        assert "secret" not in message
    if "Authorization" in good:
        assert a.check_key([(b"Authorization", b"Basic " + KEY)], b"", KEY).startswith("invalid")


@pytest.mark.parametrize(("api", "shape"), [
    ("openai", lambda b: set(b["error"]) == {"message", "type", "param", "code"}),
    ("anthropic", lambda b: b["type"] == "error" and set(b["error"]) == {"type", "message"}),
    ("gemini", lambda b: set(b["error"]) == {"code", "message", "status"}),
    ("cohere", lambda b: set(b) == {"message"}),
    ("tgi", lambda b: set(b) == {"error", "error_type"}),
])
@pytest.mark.parametrize("status", [400, 401, 404, 405, 422])
def test_error_shapes(api, shape, status):
    body = json.loads(APIS[api].error(status, "nope"))
    assert shape(body)
    assert "nope" in json.dumps(body)


def test_error_kinds():
    assert json.loads(APIS["anthropic"].error(401, "x"))["error"]["type"] == "authentication_error"
    assert json.loads(APIS["anthropic"].error(404, "x"))["error"]["type"] == "not_found_error"
    assert json.loads(APIS["anthropic"].error(400, "x"))["error"]["type"] == "invalid_request_error"
    assert json.loads(APIS["gemini"].error(401, "x"))["error"] == {
        "code": 401, "message": "x", "status": "UNAUTHENTICATED"}
    assert json.loads(APIS["openai"].error(401, "x"))["error"]["code"] == "invalid_api_key"
    assert json.loads(APIS["tgi"].error(422, "x")) == {"error": "x", "error_type": "validation"}


def parse(api, path, body, headers=None, query=b""):
    a = APIS[api]
    ep, arg = (a.routes[path], None) if path in a.routes else a.match(path)
    return ep.parse(body, headers or req(), arg, query)


def test_parse_openai():
    p = parse("openai", b"/v1/chat/completions", {
        "model": "m", "messages": [{"role": "user", "content": "abcd"},
                                   {"role": "user", "content": [{"type": "text", "text": "ef"}]}],
        "max_tokens": 9, "max_completion_tokens": 5, "stream": True,
        "stream_options": {"include_usage": True}})
    assert (p.dialect, p.model, p.max_tokens, p.prompt_chars, p.stream, p.include_usage) == (
        wire.CHAT, "m", 5, 6, True, True)
    p = parse("openai", b"/openai/deployments/dep/chat/completions",
              {"messages": [], "model": "ignored"}, query=b"api-version=2024-10-21")
    assert p.model == "dep" and p.max_tokens is None and p.stream is False
    with pytest.raises(BadRequest, match="api-version"):
        parse("openai", b"/openai/deployments/dep/chat/completions", {"messages": []})


def test_parse_anthropic():
    ok = req(anthropic_version="2023-06-01")
    p = parse("anthropic", b"/v1/messages", {
        "model": "claude", "max_tokens": 7, "stream": True, "system": "sys",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}, ok)
    assert (p.dialect, p.model, p.max_tokens, p.prompt_chars, p.stream) == (
        dialects.ANTHROPIC, "claude", 7, 8, True)
    with pytest.raises(BadRequest, match="anthropic-version: header is required"):
        parse("anthropic", b"/v1/messages", {"model": "c", "max_tokens": 1, "messages": []})
    with pytest.raises(BadRequest, match="max_tokens: Field required"):
        parse("anthropic", b"/v1/messages", {"model": "c", "messages": []}, ok)
    with pytest.raises(BadRequest, match="model: Field required"):
        parse("anthropic", b"/v1/messages", {"max_tokens": 1, "messages": []}, ok)


def test_parse_gemini():
    body = {"contents": [{"role": "user", "parts": [{"text": "abc"}, {"text": "de"}]}],
            "systemInstruction": {"parts": [{"text": "xyz"}]},
            "generationConfig": {"maxOutputTokens": 4}}
    path = b"/v1beta/models/gem:streamGenerateContent"
    p = parse("gemini", path, body, query=b"alt=sse")
    assert (p.dialect, p.model, p.max_tokens, p.prompt_chars, p.stream) == (
        dialects.GEMINI_SSE, "gem", 4, 8, True)
    assert parse("gemini", path, body).dialect is dialects.GEMINI_ARRAY
    p = parse("gemini", b"/v1beta/models/gem:generateContent", body)
    assert p.stream is False
    with pytest.raises(BadRequest, match="contents is not specified"):
        parse("gemini", path, {"contents": []})
    with pytest.raises(BadRequest, match="maxOutputTokens"):
        parse("gemini", path, {**body, "generationConfig": {"maxOutputTokens": 0}})


def test_parse_cohere_and_tgi():
    p = parse("cohere", b"/v2/chat", {"model": "command-r", "stream": True, "max_tokens": 3,
                                      "messages": [{"role": "user", "content": "hey"}]})
    assert (p.dialect, p.model, p.max_tokens, p.prompt_chars) == (dialects.COHERE, "command-r",
                                                                  3, 3)
    with pytest.raises(BadRequest, match="'model' is a required"):
        parse("cohere", b"/v2/chat", {"messages": []})
    p = parse("tgi", b"/generate_stream", {"inputs": "hello",
                                           "parameters": {"max_new_tokens": 6, "details": True}})
    assert (p.dialect, p.model, p.max_tokens, p.prompt_chars, p.stream, p.details) == (
        dialects.TGI, None, 6, 5, True, True)
    assert parse("tgi", b"/generate", {"inputs": ""}).stream is False
    with pytest.raises(BadRequest, match="missing field `inputs`"):
        parse("tgi", b"/generate_stream", {"parameters": {}})
    with pytest.raises(BadRequest) as e:
        parse("tgi", b"/generate_stream", {"inputs": "", "parameters": {"max_new_tokens": 0}})
    assert e.value.status == 422
    p = parse("tgi", b"/v1/chat/completions", {"model": "x", "messages": [], "stream": True})
    assert p.dialect is dialects.TGI_CHAT and p.model is None  # TGI names its own model
