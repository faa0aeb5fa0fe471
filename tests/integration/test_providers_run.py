"""Every provider end to end: the engine's requests as a server sees them, the run's figures.

A small capturing server answers each request with a stream fixture of the provider's API
(``tests/fixtures/streams``) and keeps what it received, so the request shape (method, path,
query, headers, body) is asserted on the server side and counts, token counts and cost on
the client side. (lens' mock learns each dialect separately; it is the timing reference.)
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lens.engine.plan import RunPlan
from lens.engine.runner import execute

FIXTURES = Path(__file__).parent.parent / "fixtures" / "streams"
KEY = "sk-lens-e2e-secret-42"
N = 6


class Capture(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.reply = b""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.requests.append({"path": self.path, "body": json.loads(body),
                                     "headers": {k.lower(): v for k, v in self.headers.items()}})
        data = self.server.reply
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    srv = Capture()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


PROMPT = 'Say "hi".'
# provider, fixture, url suffix, plan options, path, auth header, body fields, output tokens
CASES = [
    ("openai", "openai_chat_include_usage", "/v1", {}, "/v1/chat/completions",
     ("authorization", f"Bearer {KEY}"),
     {"max_tokens": 8, "stream": True, "stream_options": {"include_usage": True}}, 4),
    ("openai", "openai_completions_legacy", "/v1", {"endpoint": "completions"},
     "/v1/completions", ("authorization", f"Bearer {KEY}"), {"prompt": PROMPT}, 5),
    ("azure", "azure_chat_basic", "", {"deployment": "dep-1"},
     "/openai/deployments/dep-1/chat/completions?api-version=2024-10-21", ("api-key", KEY),
     {"max_completion_tokens": 8, "messages": [{"role": "user", "content": PROMPT}]}, 3),
    ("anthropic", "anthropic_messages_basic", "", {}, "/v1/messages", ("x-api-key", KEY),
     {"max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}, 5),
    ("gemini", "gemini_sse_basic", "", {},
     "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", ("x-goog-api-key", KEY),
     {"generationConfig": {"maxOutputTokens": 8}}, 5),
    ("cohere", "cohere_chat_v2_basic", "", {}, "/v2/chat", ("authorization", f"Bearer {KEY}"),
     {"max_tokens": 8, "stream": True}, 3),
    ("tgi", "tgi_generate_stream_basic", "", {}, "/generate_stream",
     ("authorization", f"Bearer {KEY}"),
     {"inputs": PROMPT, "parameters": {"max_new_tokens": 8, "details": True}}, 5),
    ("vllm", "vllm_chat_include_usage", "/v1", {"ignore_eos": True}, "/v1/chat/completions",
     ("authorization", f"Bearer {KEY}"), {"ignore_eos": True, "min_tokens": 8}, 5),
    ("sglang", "openai_chat_include_usage", "/v1", {}, "/v1/chat/completions",
     ("authorization", f"Bearer {KEY}"), {"stream_options": {"include_usage": True}}, 4),
    ("llamacpp", "openai_chat_basic", "/v1", {"ignore_eos": True}, "/v1/chat/completions",
     ("authorization", f"Bearer {KEY}"), {"ignore_eos": True}, 7),
    ("generic", "openai_chat_basic", "/v1/chat/completions",
     {"body_template": '{"model": "{{model}}", "stream": true, "n": {{max_tokens}}, '
                       '"messages": [{"role": "user", "content": "{{prompt}}"}]}',
      "token_pointer": "/choices/0/delta/content"},
     "/v1/chat/completions", ("authorization", f"Bearer {KEY}"),
     {"n": 8, "messages": [{"role": "user", "content": PROMPT}]}, 7),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_provider_end_to_end(server, tmp_path, case):
    name, fixture, suffix, options, path, (auth, auth_value), fields, out_tokens = case
    server.reply = (FIXTURES / f"{fixture}.sse").read_bytes()
    server.requests.clear()
    model = {"gemini": "gemini-2.5-flash", "azure": "gpt-4o"}.get(name, "m-1")
    plan = RunPlan(url=server.base + suffix, provider=name, model=model, api_key=KEY,
                   prompt=PROMPT, max_tokens=8, concurrency=2, requests=N, cores=1,
                   price={"input_per_mtok": 1.0, "output_per_mtok": 2.0, "source": "test"},
                   **options)
    summary, _, _ = execute(plan, tmp_path / "out")

    # server side: every request (probe included) has the provider's shape
    assert len(server.requests) == N + 1
    for req in server.requests:
        assert req["path"] == path
        assert req["headers"][auth] == auth_value
        assert req["headers"]["content-type"] == "application/json"
        for k, v in fields.items():
            assert req["body"][k] == v, k
    assert sorted(int(r["headers"]["x-request-id"]) for r in server.requests)[1:] == \
        list(range(N))

    # client side: counts, tokens from the stream, cost
    res = summary["scenarios"][0]["results"][0]
    assert res["provider"] == name and res["model"] == model
    assert res["counts"]["ok"] == N and res["counts"]["failed"] == 0, res["errors"]
    assert res["counts"]["output_tokens"] == N * out_tokens
    assert res["metrics"]["ttft"]["count"] == N
    rows = pq.read_table(tmp_path / "out" / "requests.parquet").to_pandas()
    rows = rows[~rows["warmup"]]
    assert (rows["output_tokens"] == out_tokens).all()
    cost = res["cost"]
    want = (rows["input_tokens"].sum() * 1.0 + N * out_tokens * 2.0) / 1e6
    assert cost["usd_total"] == pytest.approx(want) == rows["cost_usd"].sum()
    for f in (tmp_path / "out").iterdir():
        assert KEY.encode() not in f.read_bytes(), f.name
