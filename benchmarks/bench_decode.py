"""CPU cost per event of decoding each provider's stream, next to a pure-Python baseline.

    python benchmarks/bench_decode.py [--repeat 5] [--streams 20000] [--ref GITREF] [--json F]

For every stream fixture (``tests/fixtures/streams``, plus a Gemini JSON-array body built from
the Gemini SSE fixture, since the fixtures have none, and a 128-token OpenAI chat stream built
from ``openai_chat_include_usage`` by repeating its content chunk), the body is cut into one read per event
(each token arrives in its own packet on a real connection) and decoded many times over:

* **baseline**: what most peer clients do, in pure Python: per read, append to a buffer, split
  lines, ``json.loads`` each event's data, look up the fields of the dialect, one
  ``time.perf_counter_ns()`` per read for the token stamps (kept in a list). Gemini's JSON array
  is decoded with ``json.JSONDecoder.raw_decode`` on the buffered text;
* **scan**: ``StreamDecoder`` with ``scan_only = True``: framing, line splitting and event
  assembly in C, no classification;
* **scan+classify**: ``StreamDecoder`` as the engine runs it;
* **before** (``--ref``): the decoder of that git revision (``lens/_core/stream.pyx`` and
  ``.pxd``), compiled into ``build/bench_decode/`` — only for the dialects it knew.

Every decoder run includes, per stream, ``Recorder.begin``, ``start()``, one ``feed()`` per read
from Python, ``end_of_input()``, ``commit()`` and ``Recorder.finish`` (its rings are drained
between batches, outside the timing), so the C figures carry the per-request row cost too.
Figures are CPU time (``time.process_time_ns``) per dispatched event, best of ``--repeat``
runs, garbage collector off; "per token" divides the same time by the token events instead.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(REPO, "build", "bench_decode")
FIXTURES = os.path.join(REPO, "tests", "fixtures", "streams")
sys.path.insert(0, REPO)

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

from lens._core import ROW_FIELDS, TOKEN_FIELDS, Recorder, Ring  # noqa: E402
from lens._core import stream as S  # noqa: E402

perf_counter_ns = time.perf_counter_ns
loads = json.loads


# ------------------------------------------------------------------ the pure-Python baseline

class Seen:
    __slots__ = ("done", "error", "finish", "out", "stamps")

    def __init__(self):
        self.stamps, self.out, self.finish, self.error, self.done = [], None, None, None, False


def py_openai(chat):
    key = "content" if chat else "text"

    def classify(st, event, data, t):
        if data == b"[DONE]":
            st.done = True
            return
        obj = loads(data)
        if obj.get("error"):
            st.error = obj["error"]
        choices = obj.get("choices")
        if choices:
            c = choices[0]
            text = (c.get("delta") or {}).get(key) if chat else c.get(key)
            if text:
                st.stamps.append(t)
            if c.get("finish_reason"):
                st.finish = c["finish_reason"]
        usage = obj.get("usage")
        if usage:
            st.out = usage.get("completion_tokens")
    return classify


def py_anthropic(st, event, data, t):
    obj = loads(data)
    kind = event or obj.get("type")
    if kind == "content_block_delta":
        d = obj["delta"]
        if d.get("type") == "text_delta" and d.get("text"):
            st.stamps.append(t)
    elif kind == "message_delta":
        st.finish = obj["delta"].get("stop_reason") or st.finish
        st.out = obj.get("usage", {}).get("output_tokens")
    elif kind == "message_stop":
        st.done = True
    elif kind == "error":
        st.error = obj.get("error")


def py_gemini(st, event, data, t):
    obj = loads(data) if isinstance(data, (bytes, str)) else data
    if "error" in obj:
        st.error = obj["error"]
        return
    cand = (obj.get("candidates") or [{}])[0]
    parts = (cand.get("content") or {}).get("parts") or []
    if any(p.get("text") and not p.get("thought") for p in parts):
        st.stamps.append(t)
    if cand.get("finishReason"):
        st.finish = cand["finishReason"]
    u = obj.get("usageMetadata") or {}
    if "candidatesTokenCount" in u or "thoughtsTokenCount" in u:
        st.out = u.get("candidatesTokenCount", 0) + u.get("thoughtsTokenCount", 0)


def py_cohere(st, event, data, t):
    obj = loads(data)
    kind = event or obj.get("type")
    if kind == "content-delta":
        if obj["delta"]["message"]["content"].get("text"):
            st.stamps.append(t)
    elif kind == "message-end":
        d = obj["delta"]
        st.finish = d.get("finish_reason")
        u = d.get("usage") or {}
        st.out = (u.get("tokens") or u.get("billed_units") or {}).get("output_tokens")
        st.done = True


def py_tgi(st, event, data, t):
    obj = loads(data)
    if "error" in obj:
        st.error = obj["error"]
        return
    tok = obj.get("token") or {}
    if tok.get("text") and not tok.get("special"):
        st.stamps.append(t)
    if obj.get("details"):
        st.finish = obj["details"]["finish_reason"]
        st.out = obj["details"]["generated_tokens"]


def py_llamacpp(st, event, data, t):
    obj = loads(data)
    if obj.get("content"):
        st.stamps.append(t)
    st.out = obj.get("tokens_predicted", st.out)
    if obj.get("stop"):
        st.finish = obj.get("stop_type")
        st.done = True


def py_responses(st, event, data, t):
    obj = loads(data)
    kind = event or obj.get("type")
    if kind == "response.output_text.delta":
        if obj.get("delta"):
            st.stamps.append(t)
    elif kind in ("response.completed", "response.incomplete", "response.failed"):
        r = obj["response"]
        st.finish = r["status"]
        st.out = (r.get("usage") or {}).get("output_tokens")
        st.done = True
    elif kind == "error":
        st.error = obj


PY_CLASSIFY = {
    S.DIALECT_OPENAI_CHAT: py_openai(True), S.DIALECT_OPENAI_COMPLETIONS: py_openai(False),
    S.DIALECT_ANTHROPIC: py_anthropic, S.DIALECT_GEMINI: py_gemini, S.DIALECT_COHERE: py_cohere,
    S.DIALECT_TGI: py_tgi, S.DIALECT_LLAMACPP: py_llamacpp,
    S.DIALECT_OPENAI_RESPONSES: py_responses,
}


class PySSE:
    """Buffer, split lines (LF, CRLF), join ``data:`` lines, classify on the blank line."""

    def __init__(self, dialect):
        self.classify = PY_CLASSIFY[dialect]

    def start(self):
        self.buf, self.data, self.event, self.st = b"", [], b"", Seen()

    def feed(self, chunk):
        t = perf_counter_ns()
        *lines, self.buf = (self.buf + chunk).split(b"\n")
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if self.data:
                    self.classify(self.st, self.event.decode(), b"\n".join(self.data), t)
                    self.data = []
                self.event = b""
            elif line.startswith(b"data:"):
                v = line[5:]
                self.data.append(v[1:] if v[:1] == b" " else v)
            elif line.startswith(b"event:"):
                self.event = line[6:].strip()


class PyArray:
    """A streamed JSON array: decode each complete element with raw_decode."""

    def __init__(self, dialect):
        self.dec = json.JSONDecoder()

    def start(self):
        self.buf, self.st = b"", Seen()

    def feed(self, chunk):
        t = perf_counter_ns()
        self.buf += chunk
        text = self.buf.decode()
        i, n = 0, len(text)
        while True:
            while i < n and text[i] in "[,] \r\n\t":
                i += 1
            if i >= n:
                break
            try:
                obj, j = self.dec.raw_decode(text, i)
            except ValueError:
                break
            py_gemini(self.st, "", obj, t)
            i = j
        self.buf = text[i:].encode()


# ------------------------------------------------------------------------------- the inputs

def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def event_reads(body: bytes, dialect: int) -> list[bytes]:
    """Cut a body after each event (blank line; array element) — one read per event."""
    if dialect == S.DIALECT_GEMINI_ARRAY:
        return [p if i == 0 else b"," + p for i, p in enumerate(body.split(b"\n,"))]
    reads, start, i = [], 0, 0
    for sep in (b"\r\n\r\n", b"\n\n", b"\r\r"):
        if sep in body:
            break
    while True:
        i = body.find(sep, start)
        if i < 0:
            break
        reads.append(body[start:i + len(sep)])
        start = i + len(sep)
    if start < len(body):
        reads.append(body[start:])
    return reads


def gemini_array_body() -> bytes:
    """The Gemini SSE fixture's chunks as the non-SSE API streams them: a pretty JSON array."""
    body = read(os.path.join(FIXTURES, "gemini_sse_basic.sse"))
    docs = [json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]
    return ("[" + "\n,\r\n".join(json.dumps(d, indent=2) for d in docs) + "\n]").encode()


def long_openai_body(tokens: int = 128) -> bytes:
    """openai_chat_include_usage with its content chunk repeated: a stream of realistic length."""
    events = read(os.path.join(FIXTURES, "openai_chat_include_usage.sse")).split(b"\n\n")
    return b"\n\n".join([events[0], *[events[1]] * tokens, *events[5:]])


def cases():
    out = []
    for fn in sorted(os.listdir(FIXTURES)):
        if fn.endswith(".expected.json"):
            name = fn[:-len(".expected.json")]
            api = json.loads(read(os.path.join(FIXTURES, fn)))["api"]
            body = read(os.path.join(FIXTURES, name + ".sse"))
            out.append((name, S.API_DIALECTS[api], body))
    out.append(("gemini_json_array (built)", S.DIALECT_GEMINI_ARRAY, gemini_array_body()))
    out.append(("openai_chat_128_tokens (built)", S.DIALECT_OPENAI_CHAT, long_openai_body()))
    return out


# ------------------------------------------------------------------------------- the timing

class Rings:
    def __init__(self, batch, tokens_per_stream):
        self.rows = Ring(capacity=2 * batch, record_words=len(ROW_FIELDS))
        self.tokens = Ring(capacity=2 * batch * max(1, tokens_per_stream),
                           record_words=len(TOKEN_FIELDS))
        self.rec = Recorder(self.rows, self.tokens, max_slots=4)

    def close(self):
        spilled = self.rows.spilled + self.tokens.spilled
        self.rows.close()
        self.tokens.close()
        if spilled:
            raise RuntimeError(f"{spilled} records spilled: the figures include spill costs")


def time_c(cls, dialect, reads, streams, repeat, scan_only, batch=2048):
    """Best CPU ns per stream of decoding ``reads`` with StreamDecoder class ``cls``."""
    rings = Rings(batch, len(reads))
    rec = rings.rec
    dec = cls()
    if scan_only:
        dec.scan_only = True
    start, feed, end, commit = dec.start, dec.feed, dec.end_of_input, dec.commit
    begin, finish = rec.begin, rec.finish
    decoded = S.FRAMING_DECODED
    best = float("inf")
    try:
        for _ in range(repeat):
            total = done = 0
            while done < streams:
                k = min(batch, streams - done)
                t = time.process_time_ns()
                for i in range(k):
                    slot = begin(i, 0)
                    start(rec, slot, decoded, -1, dialect)
                    for r in reads:
                        feed(r)
                    end()
                    commit()
                    finish(slot, 200, 0)
                total += time.process_time_ns() - t
                rings.rows.drain()
                rings.tokens.drain()
                done += k
            best = min(best, total / streams)
    finally:
        rings.close()
    return best


def time_py(dialect, reads, streams, repeat):
    dec = (PyArray if dialect == S.DIALECT_GEMINI_ARRAY else PySSE)(dialect)
    start, feed = dec.start, dec.feed
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time_ns()
        for _ in range(streams):
            start()
            for r in reads:
                feed(r)
        best = min(best, (time.process_time_ns() - t) / streams)
    return best, dec.st


def counts(dialect, reads):
    """Events and token events of one decode (and a check that the baseline agrees)."""
    rings = Rings(4, len(reads))
    try:
        slot = rings.rec.begin(0, 0)
        dec = S.StreamDecoder()
        dec.start(rings.rec, slot, S.FRAMING_DECODED, -1, dialect)
        for r in reads:
            dec.feed(r)
        rings.rec.finish(slot, 200, 0)
        return dec.events, dec.token_events
    finally:
        rings.close()


# ---------------------------------------------------------------------- the "before" build

def build_ref(ref: str):
    """Compile lens/_core/stream.pyx/.pxd of git revision ``ref`` as a module; import it."""
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    mod = f"_stream_ref_{sha}"
    os.makedirs(BUILD, exist_ok=True)
    for ext in ("pyx", "pxd"):
        src = subprocess.run(["git", "show", f"{sha}:lens/_core/stream.{ext}"], cwd=REPO,
                             check=True, capture_output=True).stdout
        path = os.path.join(BUILD, f"{mod}.{ext}")
        if not os.path.exists(path) or read(path) != src:
            with open(path, "wb") as f:
                f.write(src)
    import numpy as np
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    ext = Extension(mod, [os.path.join(BUILD, f"{mod}.pyx")],
                    include_dirs=[np.get_include(), os.path.join(REPO, "lens", "_core", "includes")],
                    extra_compile_args=os.environ.get("LENS_OPT_CFLAGS", "-O2").split())
    dist = Distribution({"ext_modules": cythonize([ext], include_path=[REPO], quiet=True,
                                                  language_level=3,
                                                  compiler_directives={"boundscheck": False,
                                                                       "wraparound": False,
                                                                       "cdivision": True}),
                         "script_name": "bench_decode.py"})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = BUILD
    cmd.build_temp = os.path.join(BUILD, "tmp")
    dist.run_command("build_ext")
    sys.path.insert(0, BUILD)
    return sha, importlib.import_module(mod)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=20000,
                   help="streams decoded per timed run by the C decoders (baseline: a tenth)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs; the best is reported")
    p.add_argument("--ref", help="git revision whose stream decoder is timed as 'before'")
    p.add_argument("--only", help="only fixtures whose name contains this")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    before = build_ref(args.ref) if args.ref else None
    print(f"lens-fast decode benchmark: Python {platform.python_version()}, {cpu_model()}, "
          f"nproc {os.cpu_count()}; best of {args.repeat}, {args.streams:,} streams per C run,"
          f" {args.streams // 10:,} per baseline run; CPU ns per event (one read per event)")
    if before:
        print(f"'before' = lens/_core/stream.pyx at {before[0]}")
    head = (f"{'fixture':<34}{'dialect':>7}{'events':>7}{'tokens':>7}{'baseline':>10}"
            f"{'scan':>8}{'full':>8}{'x base':>8}{'/token':>8}{'before':>8}")
    print(head)
    print("-" * len(head))
    rows = []
    gc.disable()
    try:
        for name, dialect, body in cases():
            if args.only and args.only not in name:
                continue
            reads = event_reads(body, dialect)
            events, tokens = counts(dialect, reads)
            base, st = time_py(dialect, reads, max(1, args.streams // 10), args.repeat)
            if len(st.stamps) != tokens:
                raise RuntimeError(f"{name}: the baseline saw {len(st.stamps)} token events, "
                                   f"the decoder {tokens}")
            scan = time_c(S.StreamDecoder, dialect, reads, args.streams, args.repeat, True)
            full = time_c(S.StreamDecoder, dialect, reads, args.streams, args.repeat, False)
            old = None
            if before and dialect <= S.DIALECT_OPENAI_COMPLETIONS:
                old = time_c(before[1].StreamDecoder, dialect, reads, args.streams,
                             args.repeat, False)
            r = {"fixture": name, "dialect": dialect, "events": events, "tokens": tokens,
                 "reads": len(reads), "baseline_ns_per_event": base / events,
                 "scan_ns_per_event": scan / events, "full_ns_per_event": full / events,
                 "baseline_over_full": base / full,
                 "full_ns_per_token_event": full / tokens if tokens else None,
                 "before_ns_per_event": old / events if old else None}
            rows.append(r)
            print(f"{name:<34}{dialect:>7}{events:>7}{tokens:>7}{base / events:>10.0f}"
                  f"{scan / events:>8.0f}{full / events:>8.0f}{base / full:>7.1f}x"
                  + (f"{full / tokens:>8.0f}" if tokens else f"{'-':>8}")
                  + (f"{old / events:>8.0f}" if old else f"{'-':>8}"))
    finally:
        gc.enable()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": platform.python_version(), "cpu": cpu_model(),
                       "nproc": os.cpu_count(), "repeat": args.repeat,
                       "streams": args.streams, "ref": before[0] if before else None,
                       "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
