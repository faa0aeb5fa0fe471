"""Every provider's stream through the C decoder: fixtures, hand-made transcripts, and
random valid streams checked against a pure-Python reference (SSE parser + orjson)."""
from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lens._core import ROW_DTYPE, TOKEN_DTYPE, Recorder, Ring, now_ns
from lens._core import stream as S

# a copy of shared/fixtures/streams (hand-written transcripts with their expected parse)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "streams"
FIXTURE_NAMES = sorted(p.name[:-len(".expected.json")] for p in FIXTURES.glob("*.expected.json"))
BOM = b"\xef\xbb\xbf"


# ------------------------------------------------------------------------------------ harness

_RINGS: list = []


def recorder() -> Recorder:
    """One recorder (and its two rings) for the whole module; each Run drains what it wrote."""
    if not _RINGS:
        _RINGS.extend([Ring(capacity=16, record_words=len(ROW_DTYPE)),
                       Ring(capacity=1 << 14, record_words=3)])
        _RINGS.append(Recorder(_RINGS[0], _RINGS[1], 2))
    return _RINGS[2]


def teardown_module():
    for ring in _RINGS[:2]:
        ring.close()
    _RINGS.clear()


class Run:
    """One decoder on a recorder slot, fed a list of reads; the row is finished at once."""

    def __init__(self, dialect, reads, *, framing=S.FRAMING_DECODED, classifier=None,
                 max_event=1 << 20, capture=True, scan_only=False):
        rec = recorder()
        slot = rec.begin(11, now_ns())
        self.dec = S.StreamDecoder(max_event)
        if classifier is not None:
            self.dec.set_classifier(classifier)
        self.dec.start(rec, slot, framing, -1, dialect, False, capture_text=capture)
        self.dec.scan_only = scan_only
        self.rc = S.NEED_MORE
        for r in reads:
            self.rc = self.dec.feed(r)
            if self.rc < 0:
                break
        self.end = self.dec.end_of_input()
        self.dec.commit()
        rec.finish(slot, 200, 0)
        self.row = rec.rows.drain().view(ROW_DTYPE).reshape(-1)[0].copy()
        self.toks = rec.tokens.drain().view(TOKEN_DTYPE).reshape(-1).copy()

    def result(self) -> dict:
        d = self.dec
        return {
            "content_events": d.token_events,
            "text": d.captured_text(),
            "output_tokens": None if d.usage_output_tokens < 0 else d.usage_output_tokens,
            "finish_reason": d.finish_reason,
            "error": ({"type": d.error_type, "message": d.error_message}
                      if d.error_seen else None),
        }


def deliveries(name: str, body: bytes, splits=None):
    """Every way the harness rule asks for: whole, byte by byte, random cuts, given cuts."""
    out = [("whole", [body]), ("bytes", [body[i:i + 1] for i in range(len(body))])]
    for seed in range(3):
        rng = random.Random(f"{name}/{seed}")
        cuts = sorted(rng.sample(range(1, len(body)), min(rng.randint(1, 40), len(body) - 1)))
        out.append((f"random{seed}", cut(body, cuts)))
    if splits:
        out.append(("splits", cut(body, splits)))
    return out


def cut(body: bytes, cuts) -> list[bytes]:
    cuts = [0, *sorted({c for c in cuts if 0 < c < len(body)}), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(cuts)]


def chunked(body: bytes, rng: random.Random) -> bytes:
    out, i = [], 0
    while i < len(body):
        n = rng.randint(1, 200)
        out.append(b"%x\r\n" % len(body[i:i + n]) + body[i:i + n] + b"\r\n")
        i += n
    return b"".join(out) + b"0\r\n\r\n"


def check(name, dialect, body, exp, splits=None):
    for how, reads in deliveries(name, body, splits):
        run = Run(dialect, reads)
        assert run.rc >= 0, (how, run.rc)
        assert run.result() == {k: exp[k] for k in run.result()}, how
        # real servers' streams are SSE with JSON data: nothing for the malformed counters
        assert (run.dec.bad_lines, run.dec.bad_events) == (0, 0), (how, run.dec.bad_excerpt)
    wire = chunked(body, random.Random(name))
    run = Run(dialect, [wire], framing=S.FRAMING_CHUNKED)
    assert run.rc == S.COMPLETE
    assert run.result()["content_events"] == exp["content_events"]
    row, toks = run.row, run.toks
    assert row["token_events"] == exp["content_events"] == len(toks)
    assert (toks["request_id"] == 11).all() and list(toks["index"]) == list(range(len(toks)))
    if exp["output_tokens"] is None:
        assert row["output_tokens"] == exp["content_events"] and not row["flags"] & 1
    else:
        assert row["output_tokens"] == exp["output_tokens"] and row["flags"] & 1


# ----------------------------------------------------------------------------- the fixtures

@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_parses_exactly_however_it_is_read(name):
    exp = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    body = (FIXTURES / f"{name}.sse").read_bytes()
    sp = FIXTURES / f"{name}.splits.json"
    splits = json.loads(sp.read_text())["read_boundaries"] if sp.exists() else None
    check(name, S.API_DIALECTS[exp["api"]], body, exp, splits)


def test_every_fixture_api_has_a_dialect():
    apis = {json.loads(p.read_text())["api"] for p in FIXTURES.glob("*.expected.json")}
    assert apis <= set(S.API_DIALECTS)


# ------------------------------------------------------- transcripts the fixtures do not have

def sse(*events, eol=b"\n"):
    """Build SSE bytes from (event name or None, data str/bytes/obj) pairs."""
    out = []
    for name, data in events:
        if name is not None:
            out.append(b"event: " + name.encode() + eol)
        if not isinstance(data, (str, bytes)):
            data = json.dumps(data, separators=(",", ":"))
        if isinstance(data, str):
            data = data.encode()
        out.append(b"data: " + data + eol + eol)
    return b"".join(out)


def exp(n, text, out, finish, error=None):
    return {"content_events": n, "text": text, "output_tokens": out, "finish_reason": finish,
            "error": None if error is None else {"type": error[0], "message": error[1]}}


def anthropic_delta(text, kind="text_delta", key="text"):
    return ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": kind, key: text}})


MSG_START = ("message_start", {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "content": [], "stop_reason": None,
    "usage": {"input_tokens": 25, "output_tokens": 1}}})

_thinking = (
    b'event: message_start\r\ndata: {"type":"message_start","message":{"usage":'
    b'{"input_tokens":9,"output_tokens":1}}}\r\n\r\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"thinking","thinking":""}}\n\n'
    b'event: content_block_delta\rdata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"thinking_delta","thinking":"Let me think: \\"text\\": no."}}\r\r'
    b'event: content_block_delta\r\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"signature_delta","signature":"EqQB"}}\r\n\r\n'
    b'event: ping\r\ndata: {"type": "ping"}\r\n\r\n'
    b'event: content_block_delta\r\ndata: {"type":"content_block_delta","index":1,"delta":'
    b'{"type":"text_delta","text":"Caf\\u00e9 \\ud83d\\ude00"}}\r\n\r\n'
    b': keep-alive\r'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,\n'
    b'data: "delta":{"type":"text_delta","text":" \\"done\\"\\n"}}\r\n\r\n'
    b'event: message_delta\r\ndata: {"type":"message_delta","delta":{"stop_reason":'
    b'"max_tokens","stop_sequence":null},"usage":{"output_tokens":31}}\r\n\r\n'
    b'event: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n')

_gemini_array = (
    b'[{\n  "candidates": [\n    {\n      "content": {\n        "parts": [\n          {\n'
    b'            "text": "Plan: {not} [json] \\"quoted\\" \\\\",\n            "thought": true\n'
    b'          }\n        ],\n        "role": "model"\n      },\n      "index": 0\n    }\n  ],\n'
    b'  "usageMetadata": {\n    "promptTokenCount": 7,\n    "totalTokenCount": 7\n  }\n}\n'
    b',\r\n{\n  "candidates": [\n    {\n      "content": {\n        "parts": [\n          {\n'
    b'            "text": "Brace } and ] inside"\n          },\n          {\n'
    b'            "text": ", two parts."\n          }\n        ],\n        "role": "model"\n'
    b'      },\n      "index": 0\n    }\n  ],\n  "usageMetadata": {\n'
    b'    "promptTokenCount": 7,\n    "totalTokenCount": 7\n  }\n}\n'
    b',\r\n{\n  "candidates": [\n    {\n      "content": {\n        "parts": [\n          {\n'
    b'            "text": "",\n            "thoughtSignature": "c2ln"\n          }\n        ],\n'
    b'        "role": "model"\n      },\n      "finishReason": "STOP",\n      "index": 0\n'
    b'    }\n  ],\n  "usageMetadata": {\n    "promptTokenCount": 7,\n'
    b'    "candidatesTokenCount": 6,\n    "totalTokenCount": 25,\n'
    b'    "thoughtsTokenCount": 12\n  }\n}\n]')


def _gemini_chunk(parts, finish=None, usage=None):
    cand = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return (None, {"candidates": [cand], "usageMetadata": usage or {"promptTokenCount": 3},
                   "modelVersion": "gemini-2.5-flash"})


def _openai_chunk(content=None, finish=None, **extra):
    delta = {} if content is None else {"content": content}
    return (None, {"id": "c1", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra})


TGI_FINAL = {"index": 4, "token": {"id": 2, "text": "</s>", "logprob": -0.1, "special": True},
             "generated_text": "Hi there", "details": {
                 "finish_reason": "eos_token", "generated_tokens": 4, "seed": None,
                 "input_length": 5}}

EXTRA = {
    # Anthropic: overloaded_error inside a 200 stream; no message_delta, so no output count
    "anthropic_error_overloaded": (S.DIALECT_ANTHROPIC, sse(
        MSG_START, ("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}}),
        anthropic_delta("Hi"), ("error", {"type": "error", "error": {
            "type": "overloaded_error", "message": "Overloaded"}})),
        exp(1, "Hi", None, None, ("overloaded_error", "Overloaded")), None),
    # thinking deltas are not content; CRLF, LF and CR mixed; cuts between CR and LF
    "anthropic_thinking_mixed_eol": (S.DIALECT_ANTHROPIC, _thinking,
                                     exp(2, 'Café 😀 "done"\n', 31, "max_tokens"),
                                     [i + 1 for i in range(len(_thinking)) if
                                      _thinking[i:i + 2] == b"\r\n"] + [7, 333, 334]),
    # Anthropic through a proxy that drops `event:` lines: the JSON type names the event
    "anthropic_without_event_lines": (S.DIALECT_ANTHROPIC, sse(
        (None, MSG_START[1]), (None, anthropic_delta("a")[1]),
        (None, {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 2}}), (None, {"type": "message_stop"})),
        exp(1, "a", 2, "end_turn"), None),
    # Gemini without alt=sse: a pretty-printed JSON array, elements joined by ",\r\n"
    "gemini_json_array": (S.DIALECT_GEMINI_ARRAY, _gemini_array,
                          exp(1, "Brace } and ] inside, two parts.", 18, "STOP"),
                          [_gemini_array.index(b"\\\\") + 1, _gemini_array.index(b"} and") + 1,
                           _gemini_array.index(b",\r\n") + 1, len(_gemini_array) - 1]),
    "gemini_json_array_error": (S.DIALECT_GEMINI_ARRAY, (b'[{\n  "error": {\n    "code": 503,\n'
                                b'    "message": "The model is overloaded.",\n'
                                b'    "status": "UNAVAILABLE"\n  }\n}\n]'),
                                exp(0, "", None, None, ("UNAVAILABLE", "The model is overloaded.")),
                                None),
    # Gemini SSE with CRLF (as the cookbook's raw output), thought parts, an empty last text
    "gemini_sse_thoughts_crlf": (S.DIALECT_GEMINI, sse(
        _gemini_chunk([{"text": "**Thinking**", "thought": True}]),
        _gemini_chunk([{"thought": True, "text": "more"}, {"text": "Answer"}]),
        _gemini_chunk([{"text": "", "thoughtSignature": "c2ln"}], "MAX_TOKENS",
                      {"promptTokenCount": 3, "candidatesTokenCount": 1,
                       "thoughtsTokenCount": 40}), eol=b"\r\n"),
        exp(1, "Answer", 41, "MAX_TOKENS"), None),
    # OpenAI: an error object after content, then [DONE]
    "openai_chat_midstream_error": (S.DIALECT_OPENAI_CHAT, sse(
        _openai_chunk("Hel"), (None, {"error": {"message": "The server had an error",
                                               "type": "server_error", "param": None,
                                               "code": None}}), (None, "[DONE]")),
        exp(1, "Hel", None, None, ("server_error", "The server had an error")), None),
    # SGLang (and older vLLM): the flat error shape
    "sglang_flat_error": (S.DIALECT_OPENAI_CHAT, sse(
        (None, {"object": "error", "message": "bad thing", "type": "BadRequestError",
                "param": None, "code": 400})),
        exp(0, "", None, None, ("BadRequestError", "bad thing")), None),
    # llama.cpp: the non-standard `error:` field, then [DONE]
    "llamacpp_chat_error_field": (S.DIALECT_OPENAI_CHAT, sse(_openai_chunk("x"))
                                  + b'error: {"code":400,"message":"context too long",'
                                  b'"type":"exceed_context_size_error"}\n\ndata: [DONE]\n\n',
                                  exp(1, "x", None, None,
                                      ("exceed_context_size_error", "context too long")), None),
    # Azure's asynchronous filter: an annotation chunk with finish_reason null after "stop"
    "azure_annotation_after_stop": (S.DIALECT_OPENAI_CHAT, sse(
        (None, {"choices": [], "id": "", "prompt_filter_results": [{"prompt_index": 0}]}),
        _openai_chunk("Hi"), _openai_chunk(None, "stop"),
        (None, {"choices": [{"index": 0, "finish_reason": None, "content_filter_results": {},
                             "content_filter_offsets": {"check_offset": 0}}], "id": ""}),
        (None, "[DONE]")),
        exp(1, "Hi", None, "stop"), None),
    # vLLM continuous_usage_stats: cumulative usage on every chunk; 3 tokens in one chunk
    "vllm_continuous_usage": (S.DIALECT_OPENAI_CHAT, sse(
        _openai_chunk("", usage={"prompt_tokens": 4, "completion_tokens": 0}),
        _openai_chunk("one two three", usage={"prompt_tokens": 4, "completion_tokens": 3}),
        _openai_chunk("!", "length", usage={"prompt_tokens": 4, "completion_tokens": 4}),
        (None, {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 4}}),
        (None, "[DONE]")),
        exp(2, "one two three!", 4, "length"), None),
    # escapes, key-like text, a BOM, comments and multi-line data
    "openai_chat_escapes": (S.DIALECT_OPENAI_CHAT, BOM + b": hi\n" + sse(
        _openai_chunk('say "content": "x" \\ {}\n\u2028')) + b'data: {"choices":[{"delta":\n'
        b'data: {"content" : "\\ud83d\\ude00\\u00e9"}}]}\n\n',
        exp(2, 'say "content": "x" \\ {}\n\u2028😀é', None, None), None),
    # TGI: the final EOS token is special (not text) but generated_tokens counts it
    "tgi_eos_special": (S.DIALECT_TGI, b"".join(
        b"data:" + json.dumps(o).encode() + b"\n\n" for o in [
            {"index": i + 1, "token": {"id": i, "text": t, "logprob": -0.5, "special": False},
             "top_tokens": [{"id": 9, "text": "zz", "special": False}],
             "generated_text": None, "details": None}
            for i, t in enumerate(["Hi", " there", ""])] + [TGI_FINAL]),
        exp(2, "Hi there", 4, "eos_token"), None),
    "tgi_generation_error": (S.DIALECT_TGI, (b'data:{"index":1,"token":{"id":1,"text":"A",'
                             b'"logprob":0,"special":false},"generated_text":null,"details":null}'
                             b'\n\ndata:{"error":"Request failed during generation: OOM",'
                             b'"error_type":"generation"}\n\n'),
                             exp(1, "A", None, None,
                                 ("generation", "Request failed during generation: OOM")), None),
    # Cohere: usage in billed_units only; finish_reason ERROR is a stream error
    "cohere_billed_only_error": (S.DIALECT_COHERE, sse(
        ("content-delta", {"type": "content-delta", "index": 0,
                           "delta": {"message": {"content": {"text": "Bon"}}}}),
        ("message-end", {"type": "message-end", "delta": {
            "finish_reason": "ERROR", "error": "internal",
            "usage": {"billed_units": {"input_tokens": 2, "output_tokens": 7}}}})),
        exp(1, "Bon", 7, "ERROR", ("ERROR", "internal")), None),
    # Cohere as bare NDJSON lines (seen in captures; unverified which servers send it)
    "cohere_ndjson": (S.DIALECT_COHERE,
                      (b'{"type":"message-start","delta":{"message":{"role":"assistant"}}}\n'
                       b'{"type":"content-delta","index":0,"delta":{"message":{"content":'
                       b'{"text":"Hola"}}}}\n{"type":"message-end","delta":{"finish_reason":'
                       b'"MAX_TOKENS","usage":{"tokens":{"input_tokens":1,"output_tokens":1}}}}\n'),
                      exp(1, "Hola", 1, "MAX_TOKENS"), None),
    # llama.cpp native final object (real-capture shape: generation_settings has "stop": [])
    "llamacpp_native_real_shape": (S.DIALECT_LLAMACPP, sse(
        (None, {"index": 0, "content": " with", "tokens": [607], "stop": False, "id_slot": -1,
                "tokens_predicted": 1, "tokens_evaluated": 9}),
        (None, {"index": 0, "content": "", "tokens": [], "id_slot": 3, "stop": True,
                "tokens_predicted": 24, "tokens_evaluated": 9, "generation_settings": {
                    "dry_sequence_breakers": ["\n", ":", "\"", "*"], "stop": []},
                "prompt": 'The "content": x', "stop_type": "limit", "stopping_word": ""})),
        exp(1, " with", 24, "limit"), None),
    # Responses: length limit, and a failed response
    "responses_incomplete": (S.DIALECT_OPENAI_RESPONSES, sse(
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi"}),
        ("response.reasoning_summary_text.delta",
         {"type": "response.reasoning_summary_text.delta", "delta": "hmm"}),
        ("response.incomplete", {"type": "response.incomplete", "response": {
            "status": "incomplete", "error": None,
            "incomplete_details": {"reason": "max_output_tokens"},
            "usage": {"input_tokens": 5, "output_tokens": 16,
                      "output_tokens_details": {"reasoning_tokens": 15}}}})),
        exp(1, "Hi", 16, "incomplete"), None),
    "responses_failed": (S.DIALECT_OPENAI_RESPONSES, sse(
        ("response.failed", {"type": "response.failed", "response": {
            "status": "failed", "error": {"code": "server_error", "message": "boom"},
            "usage": None}})),
        exp(0, "", None, "failed", ("server_error", "boom")), None),
    "responses_error_event": (S.DIALECT_OPENAI_RESPONSES, sse(
        ("error", {"type": "error", "code": "rate_limit_exceeded", "message": "slow down",
                   "param": None})),
        exp(0, "", None, None, ("rate_limit_exceeded", "slow down")), None),
}


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_transcript_parses_exactly_however_it_is_read(name):
    dialect, body, expected, splits = EXTRA[name]
    check(name, dialect, body, expected, splits)


@pytest.mark.parametrize(("raw", "code"), [
    *[(r, S.FINISH_STOP) for r in ("stop", "end_turn", "STOP", "COMPLETE", "eos_token",
                                   "stop_sequence", "STOP_SEQUENCE", "eos", "word")],
    *[(r, S.FINISH_LENGTH) for r in ("length", "max_tokens", "MAX_TOKENS", "limit")],
    *[(r, S.FINISH_OTHER) for r in ("tool_calls", "content_filter", "SAFETY", "refusal",
                                    "TOOL_CALL", "stopp", "")],
])
def test_finish_reasons_map_to_stop_length_or_other(raw, code):
    run = Run(S.DIALECT_OPENAI_CHAT, [sse(_openai_chunk(None, raw))])
    assert run.dec.finish == (code if raw else S.FINISH_NONE)
    assert run.dec.finish_reason == (raw or None)


def test_responses_finish_codes():
    r = Run(S.DIALECT_OPENAI_RESPONSES, [EXTRA["responses_incomplete"][1]])
    assert r.dec.finish == S.FINISH_LENGTH and r.dec.done_seen
    body = (FIXTURES / "openai_responses_basic.sse").read_bytes()
    assert Run(S.DIALECT_OPENAI_RESPONSES, [body]).dec.finish == S.FINISH_STOP


def test_done_markers_per_dialect():
    for name in FIXTURE_NAMES:
        api = json.loads((FIXTURES / f"{name}.expected.json").read_text())["api"]
        body = (FIXTURES / f"{name}.sse").read_bytes()
        assert Run(S.API_DIALECTS[api], [body]).dec.done_seen, name
    body = b'[{"candidates": [{"content": {"parts": [{"text": "a"}]}}]}\n]'
    run = Run(S.DIALECT_GEMINI_ARRAY, [body[:-1]])
    assert not run.dec.done_seen and run.dec.events == 1 and run.dec.token_events == 1
    assert Run(S.DIALECT_GEMINI_ARRAY, [body]).dec.done_seen


def test_usage_input_tokens_per_dialect():
    cases = {"anthropic_messages_basic": 25, "gemini_sse_basic": 8, "cohere_chat_v2_basic": 71,
             "tgi_generate_stream_basic": 7, "llamacpp_completion_native": 6,
             "openai_chat_include_usage": 12}
    for name, n in cases.items():
        api = json.loads((FIXTURES / f"{name}.expected.json").read_text())["api"]
        run = Run(S.API_DIALECTS[api], [(FIXTURES / f"{name}.sse").read_bytes()])
        assert run.dec.usage_input_tokens == n, name


def test_error_excerpt_keeps_the_first_error():
    run = Run(S.DIALECT_OPENAI_CHAT, [sse((None, {"error": {"message": "first"}}),
                                          (None, {"error": {"message": "second"}}))])
    assert b"first" in run.dec.excerpt and run.dec.error_message == "first"
    assert run.dec.error_data.startswith(b'{"error"')


def test_gemini_array_element_over_the_limit_is_an_error():
    run = Run(S.DIALECT_GEMINI_ARRAY, [b'[{"a": "', b"x" * 300, b'"}]'], max_event=100)
    assert run.rc == S.ERR_EVENT_TOO_LARGE


def test_capture_is_off_by_default():
    run = Run(S.DIALECT_OPENAI_CHAT, [sse(_openai_chunk("x"))], capture=False)
    assert run.dec.token_events == 1
    with pytest.raises(ValueError, match="capture_text=True"):
        run.dec.captured_text()


def test_scan_only_counts_events_without_classifying():
    body = (FIXTURES / "anthropic_messages_basic.sse").read_bytes()
    run = Run(S.DIALECT_ANTHROPIC, [body], capture=False, scan_only=True)
    assert run.dec.events == 10 and run.dec.token_events == 0 and run.dec.finish_reason is None


def test_unknown_dialect_is_refused():
    dec = S.StreamDecoder()
    with pytest.raises(ValueError, match=r"DIALECT_\* constants, 0..9 \(got 12\)"):
        dec.start(recorder(), 0, S.FRAMING_DECODED, -1, 12)


# ------------------------------------------------------------------------- generic dialect

def pointer_classifier(data: bytes):
    """What the generic provider passes: orjson + a fixed path (here /out/text)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return 0, -1, None, None
    if doc.get("error"):
        return 0, -1, None, data
    text = (doc.get("out") or {}).get("text")
    return (doc.get("n", 1) if isinstance(text, str) and text else 0,
            doc.get("usage", -1), (doc.get("end") or "").encode() or None, None)


def test_generic_dialect_calls_the_classifier_per_event():
    body = sse((None, {"out": {"text": "a"}}), (None, {"out": {"text": "bc"}, "n": 2}),
               (None, {"out": {"text": ""}, "end": "stop", "usage": 3}), (None, "[DONE]"))
    run = Run(S.DIALECT_GENERIC, [body[i:i + 5] for i in range(0, len(body), 5)],
              classifier=pointer_classifier)
    assert run.dec.token_events == 2 and run.dec.usage_output_tokens == 3
    assert run.dec.finish == S.FINISH_STOP and run.dec.finish_reason == "stop"
    assert run.dec.done_seen and not run.dec.error_seen
    assert run.row["output_tokens"] == 3 and len(run.toks) == 2


def test_generic_counts_tokens_per_event_without_usage():
    body = sse((None, {"out": {"text": "bc"}, "n": 2}), (None, {"out": {"text": "d"}}))
    row = Run(S.DIALECT_GENERIC, [body], classifier=pointer_classifier).row
    assert row["output_tokens"] == 3 and row["token_events"] == 2 and not row["flags"] & 1


def test_generic_error_and_classifier_failure():
    run = Run(S.DIALECT_GENERIC, [sse((None, {"error": {"type": "t", "message": "m"}}))],
              classifier=pointer_classifier)
    assert run.dec.error_seen and (run.dec.error_type, run.dec.error_message) == ("t", "m")

    def broken(data):
        raise KeyError("nope")

    run = Run(S.DIALECT_GENERIC, [sse((None, {"x": 1}), (None, {"x": 2}))], classifier=broken)
    assert run.rc == S.ERR_CLASSIFIER and isinstance(run.dec.classifier_error, KeyError)
    assert run.dec.events == 1
    run = Run(S.DIALECT_GENERIC, [sse((None, {"x": 1}))], classifier=lambda d: (1, 2))
    assert run.rc == S.ERR_CLASSIFIER and isinstance(run.dec.classifier_error, ValueError)


def test_generic_needs_a_classifier():
    dec = S.StreamDecoder()
    with pytest.raises(ValueError, match="set_classifier"):
        dec.start(recorder(), 0, S.FRAMING_DECODED, -1, S.DIALECT_GENERIC)
    with pytest.raises(TypeError, match="callable"):
        dec.set_classifier(3)


# ------------------------------------------- a pure-Python reference, and random valid streams

def ref_sse(body: bytes, ndjson: bool = False):
    """WHATWG SSE: [(kind, event name, data)]; kind "error" for llama.cpp's `error:` field."""
    if body.startswith(BOM):
        body = body[3:]
    lines, i, start = [], 0, 0
    while i < len(body):
        c = body[i:i + 1]
        if c in (b"\r", b"\n"):
            lines.append(body[start:i])
            if c == b"\r" and body[i + 1:i + 2] == b"\n":
                i += 1
            start = i + 1
        i += 1
    out, data, name = [], [], b""
    for line in lines:
        if line == b"":
            if data:
                out.append(("event", name, b"\n".join(data)))
            data, name = [], b""
        elif line.startswith(b":"):
            continue
        elif ndjson and line.startswith(b"{") and not data:
            out.append(("event", b"", line))
        else:
            field, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = value
            elif field == b"error":
                out.append(("error", b"", value))
    return out


class Ref:
    """The expected parse, from full JSON documents (orjson), rule by rule as documented."""

    def __init__(self):
        self.n, self.text, self.out, self.finish, self.error = 0, [], None, None, None

    def token(self, text):
        if isinstance(text, str) and text:
            self.n += 1
            self.text.append(text)

    def err(self, kind, message):
        if self.error is None:
            self.error = {"type": kind, "message": message}

    def fin(self, v):
        if isinstance(v, str) and v:
            self.finish = v

    def result(self):
        return {"content_events": self.n, "text": "".join(self.text), "output_tokens": self.out,
                "finish_reason": self.finish, "error": self.error}


def ref_openai(ref, name, doc, completions=False):
    if name == b"error" or isinstance(doc.get("error"), (dict, str)) or doc.get("object") == "error":
        e = doc.get("error") if isinstance(doc.get("error"), dict) else doc
        ref.err(e.get("type"), e.get("message"))
    choices = doc.get("choices") or []
    if choices:
        c = choices[0]
        ref.token(c.get("text") if completions else (c.get("delta") or {}).get("content"))
        ref.fin(c.get("finish_reason"))
    if isinstance(doc.get("usage"), dict) and "completion_tokens" in doc["usage"]:
        ref.out = doc["usage"]["completion_tokens"]


def ref_anthropic(ref, name, doc):
    kind = name.decode() or doc.get("type")
    if kind == "content_block_delta" and doc["delta"]["type"] == "text_delta":
        ref.token(doc["delta"]["text"])
    elif kind == "message_delta":
        ref.fin(doc["delta"].get("stop_reason"))
        ref.out = doc["usage"]["output_tokens"]
    elif kind == "error":
        ref.err(doc["error"]["type"], doc["error"]["message"])


def ref_gemini(ref, name, doc):
    if "error" in doc:
        ref.err(doc["error"]["status"], doc["error"]["message"])
        return
    cand = doc["candidates"][0]
    texts = [p["text"] for p in cand["content"]["parts"] if p.get("text") and not p.get("thought")]
    if texts:
        ref.n += 1
        ref.text.extend(texts)
    ref.fin(cand.get("finishReason"))
    u = doc.get("usageMetadata") or {}
    if "candidatesTokenCount" in u or "thoughtsTokenCount" in u:
        ref.out = u.get("candidatesTokenCount", 0) + u.get("thoughtsTokenCount", 0)


def ref_cohere(ref, name, doc):
    kind = name.decode() or doc.get("type")
    if kind == "content-delta":
        ref.token(doc["delta"]["message"]["content"]["text"])
    elif kind == "message-end":
        d = doc["delta"]
        ref.fin(d["finish_reason"])
        if d["finish_reason"] == "ERROR":
            ref.err("ERROR", d.get("error"))
        u = d.get("usage") or {}
        t = (u.get("tokens") or {}).get("output_tokens")
        ref.out = t if t is not None else (u.get("billed_units") or {}).get("output_tokens", ref.out)


def ref_tgi(ref, name, doc):
    if "error" in doc:
        ref.err(doc.get("error_type"), doc["error"])
        return
    if not doc["token"]["special"]:
        ref.token(doc["token"]["text"])
    if doc.get("details"):
        ref.fin(doc["details"]["finish_reason"])
        ref.out = doc["details"]["generated_tokens"]


def ref_llamacpp(ref, name, doc):
    if "error" in doc:
        ref.err(doc["error"].get("type"), doc["error"].get("message"))
        return
    ref.token(doc.get("content"))
    if "tokens_predicted" in doc:
        ref.out = doc["tokens_predicted"]
    ref.fin(doc.get("stop_type"))


def ref_responses(ref, name, doc):
    kind = name.decode() or doc.get("type")
    if kind == "response.output_text.delta":
        ref.token(doc["delta"])
    elif kind in ("response.completed", "response.incomplete", "response.failed"):
        r = doc["response"]
        ref.fin(r["status"])
        if kind == "response.failed":
            ref.err(r["error"]["code"], r["error"]["message"])
        if r.get("usage"):
            ref.out = r["usage"]["output_tokens"]
    elif kind == "error":
        ref.err(doc["code"], doc["message"])


REF = {S.DIALECT_OPENAI_CHAT: ref_openai,
       S.DIALECT_OPENAI_COMPLETIONS: lambda r, n, d: ref_openai(r, n, d, completions=True),
       S.DIALECT_ANTHROPIC: ref_anthropic, S.DIALECT_GEMINI: ref_gemini,
       S.DIALECT_GEMINI_ARRAY: ref_gemini, S.DIALECT_COHERE: ref_cohere,
       S.DIALECT_TGI: ref_tgi, S.DIALECT_LLAMACPP: ref_llamacpp,
       S.DIALECT_OPENAI_RESPONSES: ref_responses}


def reference(dialect, body):
    ref = Ref()
    if dialect == S.DIALECT_GEMINI_ARRAY:
        items = [(b"", json.dumps(o).encode()) for o in json.loads(body)]
    else:
        items = []
        for kind, name, data in ref_sse(body, ndjson=dialect == S.DIALECT_COHERE):
            if kind == "error":
                e = orjson.loads(data)
                ref.err(e.get("type"), e.get("message"))
            elif data != b"[DONE]":
                items.append((name, data))
    for name, data in items:
        REF[dialect](ref, name, orjson.loads(data))
    return ref.result()


def test_reference_agrees_with_every_fixture():
    for name in FIXTURE_NAMES:
        exp_ = json.loads((FIXTURES / f"{name}.expected.json").read_text())
        got = reference(S.API_DIALECTS[exp_["api"]], (FIXTURES / f"{name}.sse").read_bytes())
        assert got == {k: exp_[k] for k in got}, name


_text = st.lists(st.sampled_from([
    "a", " ", "é", "😀", '"', "\\", "\n", "\r", "{", "}", "[", "]", ":", ",", "\u2028", "\x00",
    '"content":"x"', '"text": "y"', '"error":{"a":1}', "data: ", "[DONE]", '\\"', '"delta"',
    '"type":"error"', "</s>", "\ufeff"]), max_size=6).map("".join)


@st.composite
def streams(draw, dialect):
    """A valid stream of the dialect: (body bytes). Texts and formatting are random."""
    def t():
        return draw(_text)

    n = draw(st.integers(0, 6))
    ev = []   # (event name or None, JSON object or raw string)
    if dialect in (S.DIALECT_OPENAI_CHAT, S.DIALECT_OPENAI_COMPLETIONS):
        chat = dialect == S.DIALECT_OPENAI_CHAT
        usage = draw(st.booleans())

        def chunk(text=None, finish=None, **kw):
            c = {"index": 0}
            if chat:
                c["delta"] = {} if text is None else {"content": text}
            else:
                c["text"] = text or ""
            c.update(logprobs=None, finish_reason=finish)
            doc = {"id": "c", "object": "x", "choices": [c], **kw}
            if usage:
                doc["usage"] = None
            return (None, doc)
        if chat:
            ev.append((None, {"choices": [{"index": 0, "delta": {"role": "assistant",
                                                                  "content": ""}}]}))
        for _ in range(n):
            ev.append(draw(st.sampled_from([
                chunk(t()), chunk(t()),
                (None, {"choices": [{"delta": {"reasoning_content": t()}}]}),
                (None, {"choices": [{"delta": {"tool_calls": [{"function": {"arguments": t()}}]}}]}),
            ])))
        ev.append(chunk(None, draw(st.sampled_from(["stop", "length", "tool_calls"]))))
        if usage:
            ev.append((None, {"choices": [], "usage": {"prompt_tokens": 3,
                                                       "completion_tokens": draw(st.integers(0, 99))}}))
        if draw(st.booleans()):
            ev.append(draw(st.sampled_from([
                (None, {"error": {"message": t(), "type": "server_error"}}),
                (None, {"object": "error", "message": t(), "type": "BadRequest", "code": 400}),
                ("error", {"message": t(), "type": "sse_error"}),
                (b"error", {"code": 400, "message": t(), "type": "exceed_context_size_error"}),
            ])))
        ev.append((None, "[DONE]"))
    elif dialect == S.DIALECT_ANTHROPIC:
        ev.append(MSG_START)
        for _ in range(n):
            ev.append(draw(st.sampled_from([
                anthropic_delta(t()), anthropic_delta(t()),
                anthropic_delta(t(), "thinking_delta", "thinking"),
                anthropic_delta(t(), "input_json_delta", "partial_json"),
                ("ping", {"type": "ping"}),
            ])))
        if draw(st.booleans()):
            ev.append(("error", {"type": "error", "error": {"type": "overloaded_error",
                                                            "message": t()}}))
        else:
            ev.append(("message_delta", {"type": "message_delta", "delta": {
                "stop_reason": draw(st.sampled_from(["end_turn", "max_tokens", None])),
                "stop_sequence": None}, "usage": {"output_tokens": draw(st.integers(0, 999))}}))
            ev.append(("message_stop", {"type": "message_stop"}))
        if draw(st.booleans()):   # a proxy that drops event lines
            ev = [(None, d) for _, d in ev]
    elif dialect in (S.DIALECT_GEMINI, S.DIALECT_GEMINI_ARRAY):
        for _i in range(n + 1):
            parts = []
            for _ in range(draw(st.integers(1, 3))):
                p = draw(st.sampled_from([{"text": t()}, {"text": t(), "thought": True},
                                          {"thought": True, "text": t()},
                                          {"text": t(), "thoughtSignature": "c2ln"}]))
                parts.append(p)
            usage = {"promptTokenCount": 4}
            if draw(st.booleans()):
                usage["candidatesTokenCount"] = draw(st.integers(0, 99))
            if draw(st.booleans()):
                usage["thoughtsTokenCount"] = draw(st.integers(0, 99))
            ev.append(_gemini_chunk(parts, draw(st.sampled_from([None, "STOP", "MAX_TOKENS"])),
                                    usage))
        if draw(st.booleans()):
            ev.append((None, {"error": {"code": 500, "message": t(), "status": "INTERNAL"}}))
    elif dialect == S.DIALECT_COHERE:
        ev.append(("message-start", {"id": "x", "type": "message-start", "delta": {
            "message": {"role": "assistant", "content": [], "tool_plan": ""}}}))
        ev.append(("content-start", {"type": "content-start", "index": 0, "delta": {
            "message": {"content": {"type": "text", "text": ""}}}}))
        for _ in range(n):
            ev.append(draw(st.sampled_from([
                ("content-delta", {"type": "content-delta", "index": 0, "delta": {
                    "message": {"content": {"text": t()}}}}),
                ("tool-plan-delta", {"type": "tool-plan-delta", "delta": {
                    "message": {"tool_plan": t()}}}),
            ])))
        finish = draw(st.sampled_from(["COMPLETE", "MAX_TOKENS", "ERROR"]))
        usage = {}
        if draw(st.booleans()):
            usage["billed_units"] = {"input_tokens": 1, "output_tokens": draw(st.integers(0, 99))}
        if draw(st.booleans()):
            usage["tokens"] = {"input_tokens": 2, "output_tokens": draw(st.integers(0, 99))}
        end = {"finish_reason": finish, "usage": usage}
        if finish == "ERROR":
            end["error"] = t()
        ev.append(("message-end", {"type": "message-end", "delta": end}))
        if draw(st.booleans()):
            ev = [(None, d) for _, d in ev]
    elif dialect == S.DIALECT_TGI:
        for i in range(n):
            ev.append((None, {"index": i, "token": draw(st.sampled_from([
                {"id": i, "text": t(), "logprob": -0.5, "special": False},
                {"id": i, "special": True, "text": t(), "logprob": 0.0}])),
                "generated_text": None, "details": None}))
        if draw(st.booleans()):
            ev.append((None, {"error": t(), "error_type": "generation"}))
        else:
            ev.append((None, {"index": n, "token": {"id": 2, "text": t(), "logprob": 0,
                                                    "special": draw(st.booleans())},
                              "generated_text": t(), "details": {
                                  "finish_reason": draw(st.sampled_from(["length", "eos_token"])),
                                  "generated_tokens": draw(st.integers(0, 99)), "seed": None}}))
    elif dialect == S.DIALECT_LLAMACPP:
        for i in range(n):
            ev.append((None, {"index": 0, "content": t(), "tokens": [i], "stop": False,
                              "id_slot": 0, "tokens_predicted": i + 1, "tokens_evaluated": 3}))
        if draw(st.booleans()):
            ev.append((b"error", {"code": 500, "message": t(), "type": "server_error"}))
        ev.append((None, {"index": 0, "content": "", "id_slot": 0, "stop": True,
                          "tokens_predicted": n + 1, "generation_settings": {
                              "stop": [t()], "dry_sequence_breakers": ["\"", t()]},
                          "prompt": t(), "stop_type": draw(st.sampled_from(["eos", "limit"]))}))
    elif dialect == S.DIALECT_OPENAI_RESPONSES:
        ev.append(("response.created", {"type": "response.created", "response": {
            "status": "in_progress", "error": None, "usage": None}}))
        for _ in range(n):
            ev.append(draw(st.sampled_from([
                ("response.output_text.delta", {"type": "response.output_text.delta",
                                                "item_id": "m", "delta": t()}),
                ("response.reasoning_summary_text.delta",
                 {"type": "response.reasoning_summary_text.delta", "delta": t()}),
                ("response.output_text.done", {"type": "response.output_text.done", "text": t()}),
            ])))
        status = draw(st.sampled_from(["completed", "incomplete", "failed", "error"]))
        if status == "error":
            ev.append(("error", {"type": "error", "code": "server_error", "message": t()}))
        else:
            ev.append((f"response.{status}", {"type": f"response.{status}", "response": {
                "status": status, "output": [{"content": [{"text": t()}]}],
                "error": {"code": "server_error", "message": t()} if status == "failed" else None,
                "usage": {"input_tokens": 1, "output_tokens": draw(st.integers(0, 99))}}}))
        if draw(st.booleans()):
            ev = [(None, d) for _, d in ev]
    return serialize(draw, dialect, ev)


def serialize(draw, dialect, ev):
    compact = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    ascii_ = draw(st.booleans())
    if dialect == S.DIALECT_GEMINI_ARRAY:
        docs = [json.dumps(d, indent=draw(st.sampled_from([None, 2])), ensure_ascii=ascii_)
                for _, d in ev]
        return ("[" + draw(st.sampled_from([",", ",\r\n", "\n,\r\n"])).join(docs) + "]").encode()
    if dialect == S.DIALECT_COHERE and draw(st.integers(0, 4)) == 0:   # bare NDJSON
        return b"".join(json.dumps(d, separators=(",", ":"), ensure_ascii=ascii_).encode()
                        + b"\n" for _, d in ev)
    lines = []   # (line bytes) – each gets its own line end below
    if draw(st.booleans()):
        lines.append(BOM + b": comment")
    for name, doc in ev:
        if name == b"error":                         # llama.cpp's error field
            lines += [b"error: " + json.dumps(doc).encode(), b""]
            continue
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from([b": ping", b"id: 7", b"retry: 100", b"x-y: z"])))
        if name:
            lines.append(b"event: " + name.encode())
        raw = doc if isinstance(doc, str) else json.dumps(
            doc, separators=compact, ensure_ascii=ascii_,
            indent=2 if draw(st.integers(0, 5)) == 0 else None)
        sep = draw(st.sampled_from([b"data: ", b"data:"]))
        lines += [sep + part.encode() for part in raw.split("\n")]
        lines.append(b"")
    out, prev = [], b""
    for line in lines:
        eols = [b"\n", b"\r\n", b"\r"]
        if prev == b"\r" and line == b"":
            eols = [b"\r\n", b"\r"]                   # a lone CR then LF would read as CRLF
        prev = draw(st.sampled_from(eols))
        out.append(line + prev)
    return b"".join(out)


DIALECTS = sorted(REF)


@pytest.mark.parametrize("dialect", DIALECTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decoder_agrees_with_the_reference_on_valid_streams(dialect, data):
    body = data.draw(streams(dialect))
    expected = reference(dialect, body)
    rnd = data.draw(st.randoms(use_true_random=False))
    cuts = [rnd.randint(1, max(1, len(body) - 1)) for _ in range(rnd.randint(0, 30))]
    run = Run(dialect, cut(body, cuts))
    assert run.rc >= 0
    assert run.result() == expected


@pytest.mark.parametrize("dialect", [*DIALECTS, S.DIALECT_GENERIC])
@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=400), step=st.integers(1, 9),
       framing=st.sampled_from([S.FRAMING_CHUNKED, S.FRAMING_DECODED]))
def test_decoder_never_crashes_on_arbitrary_bytes(dialect, data, step, framing):
    run = Run(dialect, [data[i:i + step] for i in range(0, len(data), step)], framing=framing,
              classifier=pointer_classifier, max_event=128)
    run.result()


_json_ish = st.lists(st.sampled_from([
    b"data: ", b"data:", b"event: content_block_delta\n", b"event: error\n", b"error: x\n",
    b'{"candidates":[{"content":{"parts":[{"text":"a', b'"}]}}]}', b'{"token":{"text":"',
    b'","special":false},"details":{"finish_reason":"', b'"delta":{"type":"text_delta","text":"',
    b'"usage":{', b'"output_tokens":', b"12", b"}", b"{", b"[", b"]", b",", b'"', b"\\",
    b"\n", b"\r\n", b"\r", b"\n\n", b'"error":', b'"content":"', b"x"]), max_size=60).map(b"".join)


@pytest.mark.parametrize("dialect", [*DIALECTS, S.DIALECT_GENERIC])
@settings(max_examples=40, deadline=None)
@given(data=_json_ish, step=st.integers(1, 40))
def test_decoder_never_crashes_on_broken_json(dialect, data, step):
    run = Run(dialect, [data[i:i + step] for i in range(0, len(data), step)],
              classifier=pointer_classifier)
    run.result()
