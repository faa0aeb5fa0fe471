"""Providers: request bytes per API, defaults, keys, option checks, the generic provider."""
from __future__ import annotations

import os
import subprocess
import sys

import httptools
import orjson
import pytest

from lens._core import stream
from lens.engine.plan import RunPlan
from lens.engine.requests import RequestFactory, headers_for
from lens.engine.worker import set_classifier
from lens.errors import ConfigError
from lens.providers import PROVIDERS, check_plan, get_provider, key_needed
from lens.providers.generic import make_classifier, parse_pointer, render_template, resolve_pointer

KEY = "sk-lens-secret-0123456789"


class _Req:
    def __init__(self):
        self.headers, self.body, self.url = {}, b"", b""

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body):
        self.body += body


def sent(plan: RunPlan, rid: int = 7) -> tuple[str, str, dict, dict]:
    """Return (method, path+query, headers, body JSON) of a plan's first request on the wire."""
    data = RequestFactory(plan).build(rid, 0)
    req = _Req()
    p = httptools.HttpRequestParser(req)
    p.feed_data(data)
    assert int(req.headers["content-length"]) == len(req.body)
    assert req.headers["x-request-id"] == str(rid)
    return p.get_method().decode(), req.url.decode(), req.headers, orjson.loads(req.body)


def plan_of(provider: str, url: str, **kw) -> RunPlan:
    kw.setdefault("prompt", 'say "hi"\nplease')
    kw.setdefault("max_tokens", 33)
    return RunPlan(url=url, provider=provider, rps=1, requests=1, **kw)


def test_provider_names_and_unknown_name():
    assert list(PROVIDERS) == ["openai", "azure", "anthropic", "gemini", "cohere", "tgi",
                               "vllm", "sglang", "llamacpp", "generic"]
    for name, cls in PROVIDERS.items():
        assert cls.name == name
    with pytest.raises(ConfigError, match="--provider must be one of openai, azure, .*generic "
                                          r"\(got 'bedrock'\)"):
        get_provider("bedrock")


@pytest.mark.parametrize("name,url,env,required", [
    ("openai", "https://api.openai.com/v1", "OPENAI_API_KEY", False),
    ("azure", None, "AZURE_OPENAI_API_KEY", True),
    ("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY", True),
    ("gemini", "https://generativelanguage.googleapis.com", "GEMINI_API_KEY", True),
    ("cohere", "https://api.cohere.com", "COHERE_API_KEY", True),
    ("tgi", "http://localhost:8080", "HF_TOKEN", False),
    ("vllm", "http://localhost:8000/v1", "OPENAI_API_KEY", False),
    ("sglang", "http://localhost:30000/v1", "OPENAI_API_KEY", False),
    ("llamacpp", "http://localhost:8080/v1", "OPENAI_API_KEY", False),
    ("generic", None, "LENS_API_KEY", False),
])
def test_default_urls_and_key_variables(name, url, env, required):
    p = get_provider(name)
    assert (p.default_base_url, p.api_key_env, p.key_required) == (url, env, required)


def test_a_key_is_needed_by_hosted_apis_only():
    openai = get_provider("openai")
    assert key_needed(openai, "https://api.openai.com/v1")
    assert not key_needed(openai, "http://127.0.0.1:8000/v1")     # any compatible server
    assert key_needed(get_provider("anthropic"), "http://127.0.0.1:9/")
    assert not key_needed(get_provider("vllm"), "http://localhost:8000/v1")
    assert not key_needed(get_provider("tgi"), "https://my-endpoint.endpoints.huggingface.cloud")


def test_openai_public_api_request():
    method, path, h, body = sent(plan_of("openai", "https://api.openai.com/v1", model="gpt-4o",
                                         api_key=KEY))
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert h["authorization"] == f"Bearer {KEY}" and h["host"] == "api.openai.com"
    assert h["content-type"] == "application/json" and h["accept"] == "text/event-stream"
    assert body == {"model": "gpt-4o",
                    "messages": [{"role": "user", "content": 'say "hi"\nplease'}],
                    "max_completion_tokens": 33, "stream": True,
                    "stream_options": {"include_usage": True}}


def test_openai_compatible_server_gets_max_tokens_and_no_auth_without_key():
    _, path, h, body = sent(plan_of("openai", "http://127.0.0.1:8000/v1", endpoint="completions",
                                    include_usage=False))
    assert path == "/v1/completions" and "authorization" not in h
    assert body["prompt"] == 'say "hi"\nplease' and body["max_tokens"] == 33
    assert "stream_options" not in body and "max_completion_tokens" not in body


@pytest.mark.parametrize("url,kw,path", [
    ("https://res.openai.azure.com", {"deployment": "prod-4o"},
     "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"),
    ("https://res.openai.azure.com", {"api_version": "2025-04-01-preview"},
     "/openai/deployments/gpt-4o/chat/completions?api-version=2025-04-01-preview"),
    ("https://res.openai.azure.com/openai/deployments/d1", {},
     "/openai/deployments/d1/chat/completions?api-version=2024-10-21"),
    ("https://res.openai.azure.com/openai/v1", {}, "/openai/v1/chat/completions"),
    ("https://res.openai.azure.com", {"endpoint": "completions"},
     "/openai/deployments/gpt-4o/completions?api-version=2024-10-21"),
])
def test_azure_request(url, kw, path):
    plan = plan_of("azure", url, model="gpt-4o", api_key=KEY, **kw)
    check_plan(plan)
    _, got, h, body = sent(plan)
    assert got == path
    assert h["api-key"] == KEY and "authorization" not in h
    key = "max_completion_tokens" if plan.endpoint == "chat" else "max_tokens"
    assert body[key] == 33 and body["stream_options"] == {"include_usage": True}
    assert plan.request_url == "https://res.openai.azure.com" + path


def test_anthropic_request():
    _, path, h, body = sent(plan_of("anthropic", "https://api.anthropic.com",
                                    model="claude-haiku-4-5", api_key=KEY))
    assert path == "/v1/messages"
    assert h["x-api-key"] == KEY and h["anthropic-version"] == "2023-06-01"
    assert "authorization" not in h
    assert body == {"model": "claude-haiku-4-5", "max_tokens": 33, "stream": True,
                    "messages": [{"role": "user", "content": 'say "hi"\nplease'}]}
    plan = plan_of("anthropic", "http://127.0.0.1:9/v1", anthropic_version="2024-01-01")
    assert sent(plan)[1] == "/v1/messages"
    assert sent(plan)[2]["anthropic-version"] == "2024-01-01"


def test_gemini_request_keeps_the_key_out_of_the_url():
    _, path, h, body = sent(plan_of("gemini", "https://generativelanguage.googleapis.com",
                                    model="models/gemini-2.5-flash", api_key=KEY))
    assert path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert KEY not in path and h["x-goog-api-key"] == KEY
    assert body == {"contents": [{"role": "user", "parts": [{"text": 'say "hi"\nplease'}]}],
                    "generationConfig": {"maxOutputTokens": 33}}
    assert sent(plan_of("gemini", "http://h:1/v1", model="g"))[1] == \
        "/v1/models/g:streamGenerateContent?alt=sse"


def test_cohere_request():
    _, path, h, body = sent(plan_of("cohere", "https://api.cohere.com", model="command-a",
                                    api_key=KEY))
    assert path == "/v2/chat" and h["authorization"] == f"Bearer {KEY}"
    assert body == {"model": "command-a", "stream": True, "max_tokens": 33,
                    "messages": [{"role": "user", "content": 'say "hi"\nplease'}]}


def test_tgi_native_request():
    _, path, h, body = sent(plan_of("tgi", "http://localhost:8080"))
    assert path == "/generate_stream" and "authorization" not in h
    assert body == {"inputs": 'say "hi"\nplease',
                    "parameters": {"max_new_tokens": 33, "details": True}}
    assert sent(plan_of("tgi", "http://h:1", api_key=KEY))[2]["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("name,extra", [
    ("vllm", {"ignore_eos": True, "min_tokens": 33}),
    ("sglang", {"ignore_eos": True, "min_tokens": 33}),
    ("llamacpp", {"ignore_eos": True}),
])
def test_self_hosted_flavours_add_their_extras(name, extra):
    url = get_provider(name).default_base_url
    _, path, _, body = sent(plan_of(name, url, model="m", ignore_eos=True))
    assert path == "/v1/chat/completions"
    assert {k: body[k] for k in extra} == extra
    assert body["max_tokens"] == 33 and body["stream_options"] == {"include_usage": True}
    _, _, _, plain = sent(plan_of(name, url, model="m"))
    assert not set(extra) & set(plain)


def test_generic_request_fills_the_template():
    tpl = '{"inputs": "{{prompt}}", "model": "{{ model }}", "params": {"n": {{max_tokens}}}}'
    plan = plan_of("generic", "http://h:9/api/stream", model='m"1', body_template=tpl,
                   token_pointer="/token/text")
    check_plan(plan)
    _, path, h, body = sent(plan)
    assert path == "/api/stream" and h["content-type"] == "application/json"
    assert body == {"inputs": 'say "hi"\nplease', "model": 'm"1', "params": {"n": 33}}


def test_extra_fields_are_merged_into_json_bodies():
    plan = plan_of("anthropic", "http://h:1", extra={"temperature": 0, "max_tokens": 5})
    assert sent(plan)[3]["temperature"] == 0 and sent(plan)[3]["max_tokens"] == 5


@pytest.mark.parametrize("name,endpoint,dialect", [
    ("openai", "chat", stream.DIALECT_OPENAI_CHAT),
    ("openai", "completions", stream.DIALECT_OPENAI_COMPLETIONS),
    ("azure", "chat", stream.DIALECT_OPENAI_CHAT),
    ("vllm", "completions", stream.DIALECT_OPENAI_COMPLETIONS),
    ("sglang", "chat", stream.DIALECT_OPENAI_CHAT),
    ("llamacpp", "chat", stream.DIALECT_OPENAI_CHAT),
    ("anthropic", "chat", stream.DIALECT_ANTHROPIC),
    ("gemini", "chat", stream.DIALECT_GEMINI),
    ("cohere", "chat", stream.DIALECT_COHERE),
    ("tgi", "chat", stream.DIALECT_TGI),
    ("generic", "chat", stream.DIALECT_GENERIC),
])
def test_dialects(name, endpoint, dialect):
    plan = plan_of(name, "http://h:1", endpoint=endpoint, token_pointer="/t")
    p = get_provider(name)
    assert p.dialect(plan) == dialect
    assert (p.classifier(plan) is not None) == (name == "generic")


def test_the_key_stays_out_of_public_views_and_reprs():
    for name in PROVIDERS:
        plan = plan_of(name, "http://h:1", api_key=KEY, token_pointer="/t",
                       body_template='{"p": "{{prompt}}"}')
        pub = plan.public()
        assert KEY not in repr(pub) and KEY not in repr(plan) and KEY not in str(plan)
        assert pub["api_key_set"] is True and "api_key" not in pub
        assert KEY not in plan.path and KEY not in plan.request_url
        assert KEY in "".join(headers_for(plan).values())        # but it is sent


@pytest.mark.parametrize("kw,words", [
    (dict(provider="anthropic", endpoint="completions"),
     "--endpoint completions applies to --provider openai, azure, vllm, sglang, llamacpp"),
    (dict(provider="openai", body_template='{"a": "{{prompt}}"}'),
     "--body-template applies to --provider generic only"),
    (dict(provider="vllm", token_pointer="/x"), "--token-pointer applies to --provider generic"),
    (dict(provider="openai", api_version="2024-10-21"),
     "--api-version applies to --provider azure"),
    (dict(provider="gemini", deployment="d"), "--deployment applies to --provider azure"),
    (dict(provider="cohere", anthropic_version="2023-06-01"),
     "--anthropic-version applies to --provider anthropic"),
    (dict(provider="openai", ignore_eos=True), "--ignore-eos is a self-hosted server's option"),
    (dict(provider="tgi", ignore_eos=True), "--ignore-eos applies to --provider vllm, sglang"),
    (dict(provider="anthropic", include_usage=False), "--no-usage applies to the OpenAI-style"),
    (dict(provider="generic"), "--provider generic needs --body-template"),
    (dict(provider="generic", body_template='{"a": "{{prompt}}"}'),
     "--provider generic needs --token-pointer"),
    (dict(provider="generic", body_template='{"a": "{{prompt}}"}', token_pointer="x"),
     "--token-pointer must be a JSON pointer starting with /"),
    (dict(provider="azure", url="https://r.openai.azure.com/openai/deployments/a",
          deployment="b"), "both name the deployment"),
    (dict(provider="azure", url="https://r.openai.azure.com/openai/v1", api_version="x"),
     "--api-version does not apply to the Azure v1 API"),
])
def test_options_that_do_not_fit_the_provider_are_refused(kw, words):
    kw.setdefault("url", "http://h:1/v1")
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        check_plan(RunPlan(**kw))


@pytest.mark.parametrize("template,words", [
    ('{"a": "x"}', "must contain {{prompt}}"),
    ('{"a": "{{prompt}}", "b": {{temperature}}}', "unknown placeholders {{temperature}}"),
    ('{"a": {{prompt}}}', "not valid JSON once filled in"),
    ('{"a": "{{prompt}}",}', "not valid JSON once filled in"),
])
def test_bad_templates_are_refused(template, words):
    plan = RunPlan(url="http://h:1/x", provider="generic", body_template=template,
                   token_pointer="/t")
    with pytest.raises(ConfigError, match=words.replace("{", r"\{").replace("}", r"\}")):
        check_plan(plan)


def test_template_escapes_every_json_special_character():
    prompt = 'quote " backslash \\ newline \n tab \t unicode é \u2028 ctrl \x01'
    body = render_template('{"p": "{{prompt}}", "m": "{{model}}"}', prompt, "a\\b", 1)
    assert orjson.loads(body) == {"p": prompt, "m": "a\\b"}


def test_json_pointer_rfc6901_examples():
    # the document of RFC 6901 §5
    doc = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4, "i\\j": 5,
           'k"l': 6, " ": 7, "m~n": 8}
    cases = {"": doc, "/foo": ["bar", "baz"], "/foo/0": "bar", "/": 0, "/a~1b": 1, "/c%d": 2,
             "/e^f": 3, "/g|h": 4, "/i\\j": 5, '/k"l': 6, "/ ": 7, "/m~0n": 8}
    for pointer, want in cases.items():
        assert resolve_pointer(doc, parse_pointer(pointer)) == want, pointer
    # ~01 is "~1" (decode ~1 first, then ~0), not "/"
    assert parse_pointer("/~01") == ("~1",)
    assert resolve_pointer({"~1": "x", "/": "y"}, parse_pointer("/~01")) == "x"


def test_json_pointer_misses_and_array_indices():
    doc = {"a": [10, 20, {"b": "c"}]}
    assert resolve_pointer(doc, parse_pointer("/a/1")) == 20
    assert resolve_pointer(doc, parse_pointer("/a/2/b")) == "c"
    for missing in ("/a/3", "/a/-", "/a/01", "/a/x", "/z", "/a/1/q", "/a/-1"):
        assert resolve_pointer(doc, parse_pointer(missing), "none") == "none", missing
    for bad in ("a/b", "/a~2", "/~"):
        with pytest.raises(ConfigError):
            parse_pointer(bad)


def test_generic_classifier():
    c = make_classifier("/choices/0/delta/content")
    assert c(b'{"choices":[{"delta":{"content":"Hi"}}]}') == (1, -1, None, None)
    assert c(b'{"choices":[{"delta":{"content":""}}]}') == (0, -1, None, None)
    assert c(b'{"choices":[{"delta":{"role":"assistant"}}]}') == (0, -1, None, None)
    assert c(b'{"choices":[]}') == (0, -1, None, None)
    assert c(b"[DONE]") == (0, -1, None, None)
    assert c(b"not json") == (0, -1, None, None)
    err = b'{"error":{"message":"overloaded"}}'
    assert c(err) == (0, -1, None, err)
    assert make_classifier("/token/text")(b'{"token":{"text":" a"}}')[0] == 1
    assert make_classifier("")(b'"bare string event"')[0] == 1


def test_set_classifier_waits_for_the_decoder_method():
    class Old:
        pass

    class New:
        fn = None

        def set_classifier(self, fn):
            self.fn = fn

    set_classifier(Old(), len)                 # no method yet: nothing happens
    d = New()
    set_classifier(d, len)
    assert d.fn is len


# ---- the command line: bad input is one line, exit status 1, nothing sent ----

def lens_fast(*args, env=None):
    e = {k: v for k, v in os.environ.items()
         if not k.endswith(("_API_KEY", "HF_TOKEN"))}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "lens", "run", "--no-progress", *args],
                          capture_output=True, text=True, timeout=60, env=e)


@pytest.mark.parametrize("args,env,message", [
    (["--provider", "anthropic", "--model", "claude-haiku-4-5"], {},
     "ConfigError: --provider anthropic needs an API key for https://api.anthropic.com: "
     "set ANTHROPIC_API_KEY"),
    (["--provider", "gemini", "--model", "g", "--api-key-env", "MY_GEMINI"], {},
     "set MY_GEMINI"),
    (["--provider", "cohere"], {"COHERE_API_KEY": KEY}, "--provider cohere needs --model"),
    (["--provider", "azure", "--model", "gpt-4o"], {},
     "--provider azure has no default URL; give --url (https://<resource>.openai.azure.com)"),
    (["--provider", "generic", "--url", "http://127.0.0.1:9/x", "--token-pointer", "/t"], {},
     "--provider generic needs --body-template"),
    (["--provider", "anthropic", "--url", "http://127.0.0.1:9", "--model", "m", "--endpoint",
      "completions"], {"ANTHROPIC_API_KEY": KEY}, "--endpoint completions applies to"),
    (["--url", "http://127.0.0.1:9/v1", "--ignore-eos"], {},
     "--ignore-eos is a self-hosted server's option"),
    (["--url", "http://127.0.0.1:9/v1", "--price", "gpt-4o"], {},
     "--price must be MODEL=IN/OUT"),
    (["--url", "http://127.0.0.1:9/v1", "--model", "m", "--price", "other=1/2"], {},
     "--price names other, but the run's model is 'm'"),
    (["--url", "http://127.0.0.1:9/v1", "--pricing", "/nonexistent/p.json"], {},
     "--pricing cannot read '/nonexistent/p.json'"),
    (["--provider", "openai", "--model", "gpt-4o"], {"OPENAI_API_KEY": "sk-bad\x01key"},
     "the API key in OPENAI_API_KEY has control or non-ASCII characters"),
])
def test_bad_provider_input_gets_one_clear_line(args, env, message):
    r = lens_fast(*args, env=env)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ConfigError: ") and message in lines[0]
    assert KEY not in r.stderr + r.stdout
