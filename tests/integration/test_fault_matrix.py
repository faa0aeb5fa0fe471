"""The fault matrix: every fault kind, injected by the mock at a known rate, lands in exactly one
row with its error code, is counted in the summary, and leaves the other requests' timings alone.

Which request ids the mock breaks follows from its seed (``lens.mock.faults.fault_of``); the
mock also records every fault it injected (``MockProcess.faults()``), and both must agree
with what lens-fast wrote. Faults the mock cannot make (refused, DNS, TLS, connect timeout)
come from a closed port, an unresolvable name, a self-signed TLS proxy and a full backlog.
"""
from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
from collections import Counter

import pyarrow.parquet as pq
import pytest

from lens.engine.plan import RunPlan, Timeouts
from lens.engine.runner import execute
from lens.errors import EndpointError
from lens.mock.faults import FAULT_KINDS, fault_of
from lens.mock.process import MockProcess

TTFT_MS = 10.0
SEED = 1
KEY = "sk-lens-fault-0123456789abcdef"   # the mock echoes it in its injected 500s
#: first token 0.3 s (a stall, or a first token 1 s late, times out), total 1 s (a stream
#: that never ends); a healthy request takes TTFT + 8 ITL = 18 ms
TIMEOUTS = Timeouts(connect_s=2.0, first_token_s=0.3, total_s=1.0)
#: The error code each kind must get (lens/engine/errors.py; docs/faults.md)
EXPECTED = {
    "status": "http_status",
    "reset_before_headers": "reset",
    "reset_mid_stream": "reset",
    "malformed_sse": "protocol",
    "invalid_json": "protocol",
    "oversized_event": "protocol",
    "stream_error": "stream_error",
    "stall_after_headers": "timeout_first_token",
    "slow_first_token": "timeout_first_token",
    "never_end": "timeout_total",
}


def run(url, out, on_tick=None, **kw):
    """Run lens-fast against ``url``; return (summary result, measured rows)."""
    kw.setdefault("cores", 1)
    kw.setdefault("max_tokens", 8)
    kw.setdefault("rps", 200)
    kw.setdefault("timeouts", TIMEOUTS)
    s, _, _ = execute(RunPlan(url=url, **kw), out, on_tick=on_tick)
    rows = pq.read_table(out / "requests.parquet").to_pandas()
    return s["scenarios"][0]["results"][0], rows[~rows["warmup"]]


def assert_no_key_in(out):
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def check_matrix(rates, res, rows, faults, requests):
    """Every request one row; failed rows = the predicted and recorded faults, by code."""
    assert len(rows) == requests and rows["request_id"].is_unique
    predicted = {str(r): fault_of(SEED, str(r), rates) for r in rows["request_id"]}
    recorded = {f["request_id"]: f["kind"] for f in faults}
    assert recorded == {r: k for r, k in predicted.items() if k is not None}
    got = dict(zip(rows["request_id"].astype(str), rows["error"], strict=True))
    for rid, kind in predicted.items():
        assert got[rid] == (EXPECTED[kind] if kind else "ok"), (rid, kind)
    want = Counter(EXPECTED[k] for k in recorded.values())
    assert res["errors"] == dict(want)
    assert res["counts"]["failed"] == sum(want.values())
    assert res["counts"]["ok"] == requests - sum(want.values())


def check_ok_timings(rows, slack_ms=3.0):
    ok = rows[rows["ok"]]
    assert len(ok) > 0 and (ok["output_tokens"] == 8).all()
    # the healthy requests' TTFT is the mock's, whatever happened to their neighbours
    assert TTFT_MS <= ok["ttft_ms"].median() < TTFT_MS + slack_ms


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_is_one_row_with_its_code_and_counted(kind, tmp_path, untraced):
    rates = {kind: 0.2}
    with MockProcess(ttft_ms=TTFT_MS, itl_ms=1.0, output_tokens=8, seed=SEED, faults=rates,
                     fault_delay_ms=1000.0) as m:
        res, rows = run(m.url, tmp_path, requests=100, api_key=KEY)
    faults = m.faults()
    check_matrix(rates, res, rows, faults, 100)
    check_ok_timings(rows)
    bad = rows[~rows["ok"]]
    if kind == "status":
        assert (bad["status"] == 500).all()
        sample = res["client"]["error_samples"]["http_500"][0]
        assert "injected fault" in sample and "***" in sample and KEY not in sample
    elif kind == "reset_before_headers":
        assert (bad["status"] == 0).all()
    else:
        assert (bad["status"] == 200).all()
    if kind in ("reset_mid_stream", "malformed_sse", "invalid_json", "oversized_event",
                "stream_error"):
        # the fault came after the first half of the tokens
        assert (bad["token_events"] >= 4).all()
    if kind == "never_end":
        assert (bad["token_events"] > 100).all()
    samples = res["client"]["error_samples"]
    assert EXPECTED[kind] in samples or kind == "status"
    assert_no_key_in(tmp_path)


@pytest.mark.parametrize("client", ["fast", "httpx"])
def test_every_fault_at_once(client, tmp_path, untraced):
    rates = dict.fromkeys(FAULT_KINDS, 0.04)
    # httpx (a Python task per request, its own pool) at half the rate: it is the slow client
    n, rps = (200, 200) if client == "fast" else (100, 100)
    with MockProcess(ttft_ms=TTFT_MS, itl_ms=1.0, output_tokens=8, seed=SEED, faults=rates,
                     fault_delay_ms=1000.0) as m:
        res, rows = run(m.url, tmp_path, requests=n, rps=rps, client=client, api_key=KEY)
    check_matrix(rates, res, rows, m.faults(), n)
    # httpx runs Python per chunk and a task per request: on 2 busy cores its own delays
    # reach several ms (not the faults': see the fast client's bound)
    check_ok_timings(rows, 3.0 if client == "fast" else 12.0)
    assert_no_key_in(tmp_path)


def test_a_slow_first_token_within_the_timeout_is_measured_not_failed(tmp_path, untraced):
    rates = {"slow_first_token": 0.2}
    with MockProcess(ttft_ms=TTFT_MS, itl_ms=1.0, output_tokens=8, seed=SEED, faults=rates,
                     fault_delay_ms=150.0) as m:
        res, rows = run(m.url, tmp_path, requests=50, timeouts=Timeouts(2.0, 1.0, 2.0))
    slow = {f["request_id"] for f in m.faults()}
    assert len(rows) == 50 and rows["ok"].all() and res["errors"] == {}
    is_slow = rows["request_id"].astype(str).isin(slow)
    assert 0 < is_slow.sum() < 50
    assert (rows[is_slow]["ttft_ms"] >= TTFT_MS + 150).all()
    assert rows[is_slow]["ttft_ms"].median() < TTFT_MS + 150 + 5
    assert rows[~is_slow]["ttft_ms"].median() < TTFT_MS + 3


# ------------------------------------------------------- faults before any byte of HTTP

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_ends_the_run_before_any_load(tmp_path):
    with pytest.raises(EndpointError, match=r"cannot connect to http://127\.0\.0\.1:\d+/v1: "):
        run(f"http://127.0.0.1:{free_port()}/v1", tmp_path, requests=10)


def test_dns_failure_ends_the_run_before_any_load(tmp_path):
    with pytest.raises(EndpointError, match="cannot resolve 'nonexistent.invalid'"):
        run("http://nonexistent.invalid:8000/v1", tmp_path, requests=10)


def test_connect_timeout_ends_the_run_before_any_load(tmp_path):
    # a listener that never accepts, its backlog (0) filled: the kernel drops further SYNs,
    # so connect() hangs
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        with socket.create_connection(srv.getsockname()), pytest.raises(
                EndpointError, match=r"no connection within the connect timeout \(0\.3 s\)"):
            run(f"http://127.0.0.1:{srv.getsockname()[1]}/v1", tmp_path, requests=10,
                timeouts=Timeouts(0.3, 1.0, 2.0))


def test_an_endpoint_that_goes_away_mid_run_leaves_one_row_per_request(tmp_path, untraced):
    # in-flight streams end as resets, later requests as refused connections: all counted
    with MockProcess(ttft_ms=TTFT_MS, itl_ms=1.0, output_tokens=8) as m:
        stopper = threading.Thread(target=m.stop)

        def tick(elapsed_s, results, sup):      # about 0.4 s into the load: stop the mock
            if elapsed_s >= 0.4 and not stopper.is_alive() and m.returncode is None:
                stopper.start()

        res, rows = run(m.url, tmp_path, requests=200, on_tick=tick)
        stopper.join()
    assert len(rows) == 200 and rows["request_id"].is_unique
    errors = Counter(rows["error"])
    assert set(errors) <= {"ok", "connect", "reset"}
    assert errors["ok"] > 0 and errors["connect"] > 0
    assert res["errors"] == {k: n for k, n in errors.items() if k != "ok"}
    assert "refused" in res["client"]["error_samples"]["connect"][0]


# ------------------------------------------------------------------------------ TLS

@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (cert, key), made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a self-signed certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class TlsProxy:
    """Terminate TLS with a self-signed certificate and relay to a plain HTTP endpoint."""

    def __init__(self, cert, key, target_port: int):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, ctx: None)   # failed handshakes: expected
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        loop = self.loop
        asyncio.set_event_loop(loop)
        self.server = loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self.ctx))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        loop.run_forever()
        self.server.close()
        tasks = asyncio.all_tasks(loop)
        for t in tasks:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(self.server.wait_closed())
        loop.close()

    async def _relay(self, reader, writer):
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                w.close()

        try:
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        finally:
            for w in (up_w, writer):
                w.close()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def tls_endpoint(self_signed):
    cert, key = self_signed
    with MockProcess(ttft_ms=TTFT_MS, itl_ms=1.0, output_tokens=8) as m, \
            TlsProxy(cert, key, m.port) as proxy:
        yield f"https://127.0.0.1:{proxy.port}/v1", cert


def test_tls_verification_is_on_and_a_self_signed_endpoint_says_what_to_do(tls_endpoint,
                                                                           tmp_path):
    url, _ = tls_endpoint
    with pytest.raises(EndpointError) as e:
        run(url, tmp_path, requests=10)
    text = str(e.value)
    assert "CERTIFICATE_VERIFY_FAILED" in text
    assert "--ca-cert FILE" in text and "--insecure" in text


@pytest.mark.parametrize("how", ["ca_cert", "insecure"])
def test_tls_with_the_ca_cert_or_insecure_measures(tls_endpoint, tmp_path, how):
    url, cert = tls_endpoint
    kw = {"ca_cert": str(cert)} if how == "ca_cert" else {"insecure": True}
    res, rows = run(url, tmp_path, requests=20, **kw)
    assert len(rows) == 20 and rows["ok"].all() and res["errors"] == {}
