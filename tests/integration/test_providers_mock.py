"""Every provider end to end against lens' mock speaking that provider's dialect.

Server side: the mock requires the key in the API's own auth header (a wrong or missing key
would be a 401) and keeps every request, so the path, headers and body are asserted as the
server saw them. Client side: exact counts, output tokens from the stream's own usage, and
TTFT/ITL against the mock's configured timing.
"""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from lens.engine.plan import RunPlan
from lens.engine.runner import execute
from lens.mock.process import MockProcess

KEY = "sk-lens-dialect-0123456789"
N = 12
TOKENS = 8

# provider → (mock api, plan options, (path check, auth header name, body check))
CASES = {
    "openai": ("openai", {}, "/v1/chat/completions", "authorization",
               lambda b: b["messages"][0]["role"] == "user" and b["stream"] is True),
    "openai-completions": ("openai", {"endpoint": "completions"}, "/v1/completions",
                           "authorization", lambda b: isinstance(b["prompt"], str)),
    "vllm": ("openai", {}, "/v1/chat/completions", "authorization",
             lambda b: b["stream_options"] == {"include_usage": True}),
    "sglang": ("openai", {}, "/v1/chat/completions", "authorization",
               lambda b: b["stream"] is True),
    "llamacpp": ("openai", {}, "/v1/chat/completions", "authorization",
                 lambda b: b["stream"] is True),
    "azure": ("openai", {"deployment": "dep1", "api_version": "2024-10-21"},
              "/openai/deployments/dep1/chat/completions?api-version=2024-10-21", "api-key",
              lambda b: b["stream"] is True),
    "anthropic": ("anthropic", {}, "/v1/messages", "x-api-key",
                  lambda b: b["max_tokens"] == TOKENS and b["stream"] is True),
    "gemini": ("gemini", {}, "/v1beta/models/lens-mock:streamGenerateContent?alt=sse",
               "x-goog-api-key",
               lambda b: b["generationConfig"]["maxOutputTokens"] == TOKENS),
    "cohere": ("cohere", {}, "/v2/chat", "authorization",
               lambda b: b["stream"] is True and b["max_tokens"] == TOKENS),
    "tgi": ("tgi", {}, "/generate_stream", "authorization",
            lambda b: b["parameters"]["max_new_tokens"] == TOKENS),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_provider_against_its_dialect(case, tmp_path, monkeypatch):
    api, opts, path, auth_header, body_ok = CASES[case]
    provider = case.split("-")[0]
    with MockProcess(api=api, require_key=KEY, ttft_ms=15.0, itl_ms=2.0) as mock:
        url = mock.url if provider not in ("azure",) else mock.base_url
        plan = RunPlan(url=url, provider=provider, model="lens-mock", api_key=KEY, cores=1,
                       concurrency=3, requests=N, max_tokens=TOKENS, **opts)
        summary, _, _ = execute(plan, tmp_path)
        seen = mock.requests()
    res = summary["scenarios"][0]["results"][0]
    assert res["counts"]["ok"] == N, res["errors"]
    rows = pq.read_table(tmp_path / "requests.parquet").to_pandas()
    m = rows[~rows["warmup"]]
    assert len(m) == N and (m["error"] == "ok").all()
    assert (m["token_events"] == TOKENS).all()
    assert (m["output_tokens"] == TOKENS).all()
    assert m["tokens_from_usage"].all()
    assert 13.0 < res["metrics"]["ttft"]["p50"] < 25.0
    assert 1.0 < res["metrics"]["itl"]["p50"] < 4.0
    # server side: every request (probe included) had the right shape and the key
    assert len(seen) >= N
    for req in seen:
        assert req["method"] == "POST"
        assert req["path"] == path
        value = req["headers"][auth_header]
        assert KEY in value
        assert body_ok(req["json"]), req["json"]
    # and the key went nowhere else
    for f in tmp_path.iterdir():
        assert KEY.encode() not in f.read_bytes()
