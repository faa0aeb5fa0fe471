"""Record when the mock really did things, and read the record back.

Each worker keeps one row per served completion request (up to ``--truth-limit`` rows; later
requests are counted in ``dropped``) and one int64 per written token, in flat ``array('q')``
buffers: no Python object per token. All times are CLOCK_MONOTONIC ns, the clock of
``lens._core.now_ns``, so they compare directly with the client's stamps.

A worker writes its record as an uncompressed ``.npz`` (``numpy.load``-able, no pickle) to
``<truth-file>.<k>`` (k = worker index, 0-based) when it stops, and serves the same bytes at
``GET /lens/truth``. Arrays in the file:

    request_id     <U..  [n]  the request's ``x-request-id`` header, else "w<k>-<seq>"
    t_received_ns  int64 [n]  the request was fully read
    t_admitted_ns  int64 [n]  it got a concurrency slot (later if it queued; 0: left before)
    t_headers_ns   int64 [n]  streamed: headers (+ opening events, e.g. chat's role) written;
                              non-streamed: the whole response written
    t_done_ns      int64 [n]  the last byte was handed to the kernel; 0 if the client left first
    stream         bool  [n]  streamed (SSE) or not
    token_offset   int64 [n]  first index of the request's tokens in token_write_ns
    token_count    int64 [n]  tokens written (non-streamed requests write none)
    token_write_ns int64 [m]  the time just before each token's write() call
    worker, pid, dropped  int64 scalars
    fault_request_id <U.. [f] each injected fault (``lens.mock.faults``) in order: the
    fault_kind     <U..  [f]  request's id, the fault kind, and when it was decided
    fault_t_ns     int64 [f]  (the request was read); up to ``--truth-limit`` faults
    faults_dropped int64 scalar  faults past that limit (counted, not recorded)

Every stamp is taken just before the write it describes, so it precedes the client's
receive time of the same bytes.
"""
from __future__ import annotations

import glob
import io
import os
from array import array
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["TruthRecorder", "load_faults", "load_truth", "truth_paths"]

_ROW_FIELDS = ("t_received_ns", "t_admitted_ns", "t_headers_ns", "t_done_ns",
               "token_offset", "token_count")


class TruthRecorder:
    """Keep the per-request and per-token stamps of one worker."""

    def __init__(self, limit: int, worker: int, pid: int) -> None:
        self.limit = limit
        self.worker = worker
        self.pid = pid
        self.dropped = 0
        self.request_id: list[str] = []
        self.stream = array("b")
        self.t_received_ns = array("q")
        self.t_admitted_ns = array("q")
        self.t_headers_ns = array("q")
        self.t_done_ns = array("q")
        self.token_offset = array("q")
        self.token_count = array("q")
        self.tokens = array("q")
        self.fault_request_id: list[str] = []
        self.fault_kind: list[str] = []
        self.fault_t_ns = array("q")
        self.faults_dropped = 0

    def begin(self, request_id: str, t_received_ns: int, stream: bool, n_tokens: int) -> int:
        """Open a row and reserve ``n_tokens`` token slots; return the row, or -1 when full."""
        if len(self.request_id) >= self.limit:
            self.dropped += 1
            return -1
        row = len(self.request_id)
        self.request_id.append(request_id)
        self.stream.append(stream)
        self.t_received_ns.append(t_received_ns)
        self.t_admitted_ns.append(0)
        self.t_headers_ns.append(0)
        self.t_done_ns.append(0)
        self.token_offset.append(len(self.tokens))
        self.token_count.append(0)
        if stream:
            self.tokens.frombytes(bytes(8 * n_tokens))
        return row

    def fault(self, request_id: str, kind: str, t_ns: int) -> None:
        """Record that request ``request_id`` was given fault ``kind`` at ``t_ns``."""
        if len(self.fault_kind) >= self.limit:
            self.faults_dropped += 1
            return
        self.fault_request_id.append(request_id)
        self.fault_kind.append(kind)
        self.fault_t_ns.append(t_ns)

    def to_npz(self) -> bytes:
        """Return the record as ``.npz`` bytes (format in the module docstring)."""
        buf = io.BytesIO()
        np.savez(
            buf,
            request_id=np.array(self.request_id, dtype=str),
            stream=_copy(self.stream, np.int8).astype(bool),
            token_write_ns=_copy(self.tokens, np.int64),
            worker=np.int64(self.worker), pid=np.int64(self.pid), dropped=np.int64(self.dropped),
            fault_request_id=np.array(self.fault_request_id, dtype=str),
            fault_kind=np.array(self.fault_kind, dtype=str),
            fault_t_ns=_copy(self.fault_t_ns, np.int64),
            faults_dropped=np.int64(self.faults_dropped),
            **{f: _copy(getattr(self, f), np.int64) for f in _ROW_FIELDS},
        )
        return buf.getvalue()

    def dump(self, path: str) -> str:
        """Write the record to ``path`` atomically (temp file + rename); return ``path``."""
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(self.to_npz())
        os.replace(tmp, path)
        return path


def _copy(buf: array, dtype: type) -> np.ndarray:
    # A copy, so no numpy view keeps exporting the array's buffer (which blocks resizing it).
    return np.frombuffer(buf, dtype=dtype).copy()


def truth_paths(path: str | os.PathLike[str]) -> list[str]:
    """Return the per-worker files ``<path>.<k>`` in worker order, or ``[path]`` if it is a file."""
    path = os.fspath(path)
    found = [p for p in glob.glob(glob.escape(path) + ".*") if p.rsplit(".", 1)[1].isdigit()]
    if found:
        return sorted(found, key=lambda p: int(p.rsplit(".", 1)[1]))
    if os.path.isfile(path):
        return [path]
    raise FileNotFoundError(f"no mock truth file {path} or {path}.<k>; did the mock stop cleanly?")


def load_truth(source: str | os.PathLike[str] | bytes | Iterable[str | os.PathLike[str] | bytes],
               ) -> dict[str, dict[str, Any]]:
    """Load mock truth records and return them keyed by request id.

    ``source`` is a ``--truth-file`` value (every ``<path>.<k>`` is read), one file, the bytes
    of ``GET /lens/truth``, or a list of those. Each value is a dict with ``t_received_ns``,
    ``t_admitted_ns``, ``t_headers_ns``, ``t_done_ns`` (int), ``stream`` (bool), ``worker``
    (int) and ``token_write_ns`` (int64 numpy array). A request id seen twice keeps its last
    record. Raise FileNotFoundError when no file matches.
    """
    out: dict[str, dict[str, Any]] = {}
    for z in _records(source):
        _merge(out, z)
    return out


def load_faults(source: str | os.PathLike[str] | bytes
                | Iterable[str | os.PathLike[str] | bytes]) -> list[dict[str, Any]]:
    """Load the faults mock workers injected (``lens.mock.faults``), oldest first.

    ``source`` is what ``load_truth`` takes. Each entry is a dict with ``request_id`` (str),
    ``kind`` (a ``FAULT_KINDS`` name), ``t_ns`` (when the request was read) and ``worker``.
    A request retried into the same fault appears once per attempt. A record written before
    faults were recorded has none.
    """
    out: list[dict[str, Any]] = []
    for z in _records(source):
        if "fault_kind" not in z:
            continue
        worker = int(z["worker"])
        out.extend({"request_id": rid, "kind": kind, "t_ns": t, "worker": worker}
                   for rid, kind, t in zip(z["fault_request_id"].tolist(),
                                           z["fault_kind"].tolist(), z["fault_t_ns"].tolist(),
                                           strict=True))
    return sorted(out, key=lambda f: f["t_ns"])


def _records(source: str | os.PathLike[str] | bytes
             | Iterable[str | os.PathLike[str] | bytes]) -> Iterable[dict[str, np.ndarray]]:
    if isinstance(source, bytes | str | os.PathLike):
        source = [source]
    for item in source:
        blobs = [io.BytesIO(item)] if isinstance(item, bytes) else truth_paths(item)
        for blob in blobs:
            with np.load(blob, allow_pickle=False) as z:
                yield {k: z[k] for k in z.files}


def _merge(out: dict[str, dict[str, Any]], z: dict[str, np.ndarray]) -> None:
    tokens = z["token_write_ns"]
    worker = int(z["worker"])
    rows = zip(z["request_id"].tolist(), z["stream"].tolist(),
               *(z[f].tolist() for f in _ROW_FIELDS), strict=True)
    for rid, stream, t_recv, t_adm, t_head, t_done, off, count in rows:
        out[rid] = {
            "t_received_ns": t_recv, "t_admitted_ns": t_adm, "t_headers_ns": t_head,
            "t_done_ns": t_done, "stream": stream, "worker": worker,
            "token_write_ns": tokens[off:off + count],
        }
