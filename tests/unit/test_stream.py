"""The C stream decoder: framing, SSE scanning and token classification, fed any way."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lens._core import ROW_DTYPE, TOKEN_DTYPE, UNSET, Recorder, Ring, now_ns
from lens._core import stream as S

# a copy of shared/fixtures/streams (hand-written transcripts with their expected parse)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "streams"

OPENAI_FIXTURES = {
    "openai_chat_basic": S.DIALECT_OPENAI_CHAT,
    "openai_chat_include_usage": S.DIALECT_OPENAI_CHAT,
    "openai_completions_legacy": S.DIALECT_OPENAI_COMPLETIONS,
    "vllm_chat_include_usage": S.DIALECT_OPENAI_CHAT,
    "azure_chat_basic": S.DIALECT_OPENAI_CHAT,
    "tgi_chat_basic": S.DIALECT_OPENAI_CHAT,
}


class Harness:
    """A recorder with rings, one slot, and a decoder started on it."""

    def __init__(self, framing=S.FRAMING_DECODED, length=-1, dialect=S.DIALECT_OPENAI_CHAT,
                 collect=False, max_event=1 << 20):
        self.rows = Ring(capacity=64, record_words=len(ROW_DTYPE))
        self.tokens = Ring(capacity=1 << 14, record_words=3)
        self.rec = Recorder(self.rows, self.tokens, 4)
        self.slot = self.rec.begin(7, now_ns())
        self.dec = S.StreamDecoder(max_event)
        self.dec.start(self.rec, self.slot, framing, length, dialect, collect)

    def feed_all(self, parts):
        rc = S.NEED_MORE
        for p in parts:
            rc = self.dec.feed(p)
            if rc < 0:
                break
        return rc

    def finish(self):
        self.dec.commit()
        self.rec.finish(self.slot, 200, 0)
        row = self.rows.drain().view(ROW_DTYPE)[0, 0] if False else \
            self.rows.drain().view(ROW_DTYPE).reshape(-1)[0]
        toks = self.tokens.drain().view(TOKEN_DTYPE).reshape(-1)
        self.rows.close()
        self.tokens.close()
        return row, toks


def splits(body: bytes, how: str, rng: random.Random):
    if how == "whole":
        return [body]
    if how == "bytes":
        return [body[i:i + 1] for i in range(len(body))]
    cuts = sorted(rng.sample(range(1, len(body)), min(25, len(body) - 1)))
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


def chunked(body: bytes, sizes) -> bytes:
    out, i = [], 0
    for n in sizes:
        if i >= len(body):
            break
        part = body[i:i + n]
        out.append(b"%x\r\n" % len(part) + part + b"\r\n")
        i += n
    if i < len(body):
        out.append(b"%x\r\n" % (len(body) - i) + body[i:] + b"\r\n")
    out.append(b"0\r\n\r\n")
    return b"".join(out)


@pytest.mark.parametrize("name", sorted(OPENAI_FIXTURES))
@pytest.mark.parametrize("how", ["whole", "bytes", "random"])
def test_fixtures_parse_exactly(name, how):
    body = (FIXTURES / f"{name}.sse").read_bytes()
    exp = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    h = Harness(dialect=OPENAI_FIXTURES[name])
    h.feed_all(splits(body, how, random.Random(name)))
    assert h.dec.end_of_input() == S.COMPLETE
    assert h.dec.token_events == exp["content_events"]
    assert S.FINISH_NAMES[h.dec.finish] == exp["finish_reason"]
    assert h.dec.done_seen
    assert not h.dec.error_seen
    row, toks = h.finish()
    assert row["token_events"] == exp["content_events"]
    if exp["output_tokens"] is not None:
        assert row["output_tokens"] == exp["output_tokens"]
        assert row["flags"] & 1
    else:
        assert row["output_tokens"] == exp["content_events"]
    assert list(toks["index"]) == list(range(exp["content_events"]))
    assert (toks["request_id"] == 7).all()


@pytest.mark.parametrize("seed", range(5))
def test_chunked_framing_at_any_split(seed):
    body = (FIXTURES / "openai_chat_include_usage.sse").read_bytes()
    rng = random.Random(seed)
    wire = chunked(body, [rng.randint(1, 300) for _ in range(100)])
    for how in ("whole", "bytes", "random"):
        h = Harness(framing=S.FRAMING_CHUNKED)
        rc = h.feed_all(splits(wire, how, rng))
        assert rc == S.COMPLETE
        assert h.dec.complete
        assert h.dec.token_events == 4 and h.dec.usage_output_tokens == 4
        assert h.dec.bytes_in == len(wire)
        h.finish()


def test_content_length_framing_and_trailing_bytes_ignored():
    body = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
    h = Harness(framing=S.FRAMING_LENGTH, length=len(body))
    assert h.dec.feed(body[:10]) == S.NEED_MORE
    assert h.dec.feed(body[10:]) == S.COMPLETE
    assert h.dec.token_events == 1
    h.finish()


def test_zero_length_body_is_complete_at_start():
    h = Harness(framing=S.FRAMING_LENGTH, length=0)
    assert h.dec.complete
    h.finish()


def test_until_close_completes_at_end_of_input():
    h = Harness(framing=S.FRAMING_UNTIL_CLOSE)
    assert h.dec.feed(b'data: {"choices":[{"text":"a"}]}\n\n') == S.NEED_MORE
    assert h.dec.end_of_input() == S.COMPLETE
    h.finish()


def test_bad_chunk_size_is_a_framing_error():
    h = Harness(framing=S.FRAMING_CHUNKED)
    assert h.dec.feed(b"zz\r\nhello\r\n") == S.ERR_FRAMING
    h.finish()


def test_missing_crlf_after_chunk_is_a_framing_error():
    h = Harness(framing=S.FRAMING_CHUNKED)
    assert h.dec.feed(b"2\r\nabXY") == S.ERR_FRAMING
    h.finish()


def test_chunk_extensions_and_trailers_are_skipped():
    ev = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    wire = b"%x;ext=1\r\n" % len(ev) + ev + b"\r\n0\r\nx-trailer: 1\r\n\r\n"
    h = Harness(framing=S.FRAMING_CHUNKED)
    assert h.dec.feed(wire) == S.COMPLETE
    assert h.dec.token_events == 1
    h.finish()


def test_event_over_the_size_limit_is_an_error():
    h = Harness(max_event=100)
    assert h.dec.feed(b"data: " + b"x" * 500 + b"\n\n") == S.ERR_EVENT_TOO_LARGE
    h.finish()


def test_line_ends_comments_bom_and_multiline_data():
    ev = b'{"choices":[{"delta":{"content":"a"}}]}'
    body = (b"\xef\xbb\xbf: keep-alive\r\n"
            b"data: " + ev + b"\r\n\r\n"                   # CRLF
            b"data: " + ev + b"\r\r"                       # CR
            b"event: message\nid: 3\nretry: 10\ndata: " + ev + b"\n\n"
            b'data: {"choices":[{"delta":\ndata: {"content":"b"}}]}\n\n'   # multi-line data
            b"data: [DONE]\n\n")
    for how in ("whole", "bytes"):
        h = Harness()
        h.feed_all(splits(body, how, random.Random(1)))
        assert h.dec.token_events == 4
        assert h.dec.done_seen
        h.finish()


def test_cr_at_end_of_read_then_lf_counts_once():
    ev = b'data: {"choices":[{"delta":{"content":"a"}}]}'
    h = Harness()
    h.dec.feed(ev + b"\r")
    h.dec.feed(b"\n\r")
    h.dec.feed(b"\n")
    assert h.dec.token_events == 1
    assert h.dec.events == 1
    h.finish()


def test_partial_event_at_end_is_not_dispatched():
    h = Harness()
    h.dec.feed(b'data: {"choices":[{"delta":{"content":"a"}}]}\n')
    assert h.dec.end_of_input() == S.COMPLETE
    assert h.dec.token_events == 0
    h.finish()


def test_empty_role_and_reasoning_content_are_not_tokens():
    body = (b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
            b'data: {"choices":[{"delta":{"reasoning_content":"think"}}]}\n\n'
            b'data: {"choices":[{"delta":{"content":null}}]}\n\n'
            b'data: {"choices":[{"delta":{"content" : "spaced"}}]}\n\n'
            b'data: {"choices":[{"delta":{"content":"say \\"content\\": \\"x\\""}}]}\n\n')
    h = Harness()
    h.dec.feed(body)
    assert h.dec.token_events == 2
    h.finish()


def test_error_object_in_a_200_stream_is_a_stream_error():
    h = Harness()
    h.dec.feed(b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n')
    assert h.dec.error_seen
    assert b"overloaded" in h.dec.excerpt
    h.finish()


def test_collect_mode_keeps_the_body_start():
    h = Harness(framing=S.FRAMING_LENGTH, length=5000, collect=True)
    h.dec.feed(b'{"error": "nope"}' + b" " * 4983)
    assert h.dec.complete
    assert h.dec.excerpt.startswith(b'{"error": "nope"}')
    assert len(h.dec.excerpt) == 2048
    assert h.dec.token_events == 0
    h.finish()


def test_finish_reasons_and_usage_prompt_tokens():
    h = Harness()
    h.dec.feed(b'data: {"choices":[{"delta":{},"finish_reason":"tool_calls"}]}\n\n'
               b'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3}}\n\n')
    assert h.dec.finish == S.FINISH_OTHER
    row, _ = h.finish()
    assert row["input_tokens"] == 12 and row["output_tokens"] == 3


def test_token_stamps_share_the_read_time():
    ev = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
    h = Harness()
    t = now_ns()
    h.dec.feed(ev * 3)
    row, toks = h.finish()
    assert len(toks) == 3 and len(set(toks["t_ns"])) == 1
    assert toks["t_ns"][0] >= t
    assert row["t_first_token_ns"] == row["t_last_token_ns"] == toks["t_ns"][0]
    assert row["t_first_token_ns"] != UNSET


def reference_events(body: bytes) -> list[bytes]:
    """A plain WHATWG SSE parser: the data of each dispatched event."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    lines, buf, i = [], b"", 0
    while i < len(body):
        c = body[i:i + 1]
        if c in (b"\r", b"\n"):
            lines.append(buf)
            buf = b""
            if c == b"\r" and body[i + 1:i + 2] == b"\n":
                i += 1
        else:
            buf += c
        i += 1
    events, data = [], []
    for line in lines:
        if line == b"":
            if data:
                events.append(b"\n".join(data))
            data = []
        elif line.startswith(b":"):
            continue
        else:
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
    return events


def is_token(data: bytes) -> bool:
    """The rule the decoder implements: the first "content" key holds a non-empty string."""
    i = data.find(b'"content":')
    return i >= 0 and data[i + 10:i + 11] == b'"' and data[i + 11:i + 12] not in (b'"', b"")


_piece = st.sampled_from([
    b"data: ", b"data:", b'{"choices":[{"delta":{"content":"x"}}]}', b'{"content":""}',
    b"\n", b"\r\n", b"\r", b": c\n", b"event: e\n", b"[DONE]", b"data", b"x",
])


@settings(max_examples=200, deadline=None)
@given(st.lists(_piece, max_size=40), st.randoms(use_true_random=False))
def test_scanner_agrees_with_the_reference_parser(pieces, rnd):
    body = b"".join(pieces)
    expected = reference_events(body)
    tokens = sum(1 for e in expected if is_token(e))
    h = Harness()
    h.feed_all(splits(body, "random", rnd) if len(body) > 1 else [body])
    assert h.dec.events == len(expected)
    assert h.dec.token_events == tokens
    h.finish()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([S.FRAMING_CHUNKED, S.FRAMING_DECODED]))
def test_decoder_never_crashes_on_arbitrary_bytes(data, framing):
    h = Harness(framing=framing, max_event=256)
    for i in range(0, len(data), 7):
        if h.dec.feed(data[i:i + 7]) < 0:
            break
    h.dec.end_of_input()
    h.finish()


def test_event_name_resets_at_a_blank_line_even_without_data():
    h = Harness()
    h.dec.feed(b"event: error\n\n" b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n')
    assert not h.dec.error_seen and h.dec.token_events == 1 and h.dec.events == 1
    h.finish()


def test_event_names_longer_than_the_buffer_match_nothing():
    ev = b'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}}\n\n'
    h = Harness(dialect=S.DIALECT_ANTHROPIC)
    h.dec.feed(b"event: content_block_delta" + b"x" * 40 + b"\n" + ev)
    h.dec.feed(b"event: content_block_delta\n" + ev)
    assert h.dec.events == 2 and h.dec.token_events == 1
    h.finish()


@pytest.mark.parametrize("dialect", [S.DIALECT_OPENAI_CHAT, S.DIALECT_OPENAI_COMPLETIONS,
                                     S.DIALECT_ANTHROPIC, S.DIALECT_GEMINI, S.DIALECT_COHERE,
                                     S.DIALECT_TGI, S.DIALECT_LLAMACPP,
                                     S.DIALECT_OPENAI_RESPONSES])
def test_error_field_line_and_error_events_are_stream_errors_in_every_dialect(dialect):
    # llama.cpp's `error:` field is not SSE: a strict parser would drop it
    for body in (b'error: {"code":500,"message":"boom","type":"server_error"}\n\ndata: [DONE]\n\n',
                 b'event: error\ndata: {"message":"boom","type":"server_error"}\n\n'):
        h = Harness(dialect=dialect)
        h.dec.feed(body)
        assert h.dec.error_seen and h.dec.error_message == "boom"
        assert h.dec.error_type == "server_error" and b"boom" in h.dec.excerpt
        h.finish()


def test_lines_split_with_cr_lf_and_crlf_in_one_read_and_across_reads():
    ev = b'{"choices":[{"delta":{"content":"a"}}]}'
    body = b"data: " + ev + b"\r\r\ndata: " + ev + b"\n\r\ndata: " + ev + b"\r\n\n"
    for i in range(len(body)):
        h = Harness()
        h.feed_all([body[:i], body[i:]])
        assert h.dec.token_events == 3 and h.dec.events == 3, i
        h.finish()


def test_partial_line_over_the_size_limit_is_an_error():
    h = Harness(max_event=100)
    assert h.dec.feed(b"data: " + b"x" * 60) == S.NEED_MORE
    assert h.dec.feed(b"x" * 60) == S.ERR_EVENT_TOO_LARGE
    h.finish()


def test_lines_that_are_not_sse_are_counted_and_kept():
    ev = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
    h = Harness()
    h.dec.feed(ev + b"id: 4\nretry: 10\nx-custom.field_1: y\n\n" + ev)
    assert h.dec.bad_lines == 0 and h.dec.bad_excerpt is None
    h.dec.feed(b'{"choices":[{"delta":{"content":"b"}}]}\n\n<html>502</html>\n\n'
               b"not server-sent events\n\n" + ev)
    assert h.dec.bad_lines == 3 and h.dec.bad_events == 0
    assert h.dec.bad_excerpt == b'{"choices":[{"delta":{"content":"b"}}]}'
    assert h.dec.token_events == 3            # the SSE around them still counts
    h.finish()


@pytest.mark.parametrize(("data", "bad"), [
    (b'{"choices":[]}', False), (b'  [1, 2] \t', False), (b"[DONE]", False),
    (b'{"choices":[{"delta":{"content":"cut', True), (b"hello", True), (b"42", True),
    (b'"text"', True), (b"{", True), (b'[{"a":1}', True),
])
def test_event_data_that_is_not_a_json_object_or_array_is_counted(data, bad):
    h = Harness()
    h.dec.feed(b"data: " + data + b"\n\n")
    assert h.dec.bad_events == int(bad) and h.dec.bad_lines == 0
    assert h.dec.bad_excerpt == (data if bad else None)
    h.finish()


def test_bad_counters_reset_per_response_and_skip_the_generic_dialect():
    h = Harness()
    h.dec.feed(b"data: nope\n\n")
    assert h.dec.bad_events == 1
    h.dec.start(h.rec, h.slot, S.FRAMING_DECODED, -1, S.DIALECT_OPENAI_CHAT)
    assert (h.dec.bad_lines, h.dec.bad_events, h.dec.bad_excerpt) == (0, 0, None)
    h.dec.set_classifier(lambda data: (1, -1, None, None))
    h.dec.start(h.rec, h.slot, S.FRAMING_DECODED, -1, S.DIALECT_GENERIC)
    h.dec.feed(b"data: plain text is this API's business\n\n")
    assert h.dec.bad_events == 0 and h.dec.token_events == 1
    h.finish()
