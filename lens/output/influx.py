"""InfluxDB output of live metrics: line protocol, per-second points, a background writer.

``LiveMetrics`` (``live.py``) owns the run's figures and decides when to write; this module
turns them into points and posts them. ``InfluxTarget`` says where (1.x ``db`` or 2.x
``bucket`` and ``org``); ``_InfluxSeries`` remembers, per plan, what each second last queued;
``_InfluxWriter`` posts batches of lines from a bounded queue in its own thread:

    main thread:    update() ─ every influx_interval_s ─→ _InfluxSeries.lines() ─┐
                                                         queue (bounded, put_nowait) ←┘
    influx thread:  queue → batches of ≤ MAX_BATCH_LINES lines → POST /write (or /api/v2/write)

One point per second k of a plan at ``t0_unix + k s`` in measurement ``lens`` (tags
``run_id``, ``scenario``, ``provider``, ``model``; fields ``started``, ``requests_ok``,
``errors``, ``output_tokens``, ``token_events`` as integers and ``ttft_p50_ms`` as a float
where known). A second is written once the wall clock has passed it; rows that arrive later
(a request that started in it and ends minutes after) change it, and then it is written
again: InfluxDB keeps the last write of a (measurement, tags, time) point, so the stored
series ends exact. Batches go through a bounded queue to a background thread: a full queue
never blocks the drain loop; the seconds not queued are offered again on the next update.

Example: second 3 of a plan whose t0 is Unix 1700000000.123 s is the point at
1700000003123000000 ns, ``lens,model=m,provider=openai,run_id=r1,scenario=chat started=12i,…``;
when a request that started in second 3 ends later, the next update writes that line again
with the new counts, and InfluxDB keeps the later one.

The writer retries connection errors, 429 and 5xx with backoff (0.5 s doubling to 30 s;
``CLOSING_TRIES`` quick tries once closing) and drops a batch refused by any other 4xx; both
are counted (``failures``, ``lost``) for the warning ``LiveMetrics`` prints. The URL helpers
at the end (``public_url``, ``_check_url``, ``_describe``) serve the Pushgateway side too.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from lens.errors import ConfigError

if TYPE_CHECKING:
    from lens.output.results import RunResults

__all__ = [
    "INFLUX_FIELDS",
    "INFLUX_MEASUREMENT",
    "InfluxTarget",
    "escape_tag",
    "line_protocol",
    "public_url",
]

#: Influx fields from ``TargetResults.series`` (integers), then ``ttft_p50_ms`` (float).
INFLUX_FIELDS = ("started", "requests_ok", "errors", "output_tokens", "token_events")
INFLUX_MEASUREMENT = "lens"
NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class InfluxTarget:
    """Where ``--influx`` writes: InfluxDB 1.x (``db``) or 2.x (``bucket`` and ``org``).

    ``url`` is the server's base URL (``http://host:8086``). ``token`` goes into the
    ``Authorization: Token …`` header only (2.x, or 1.8+ with ``user:password``); it is never
    logged, printed nor written to an output.
    """

    url: str
    db: str | None = None
    bucket: str | None = None
    org: str | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def version(self) -> int:
        """1 for the ``/write?db=`` API, 2 for ``/api/v2/write?org=&bucket=``."""
        return 1 if self.db else 2

    def check(self) -> None:
        """Raise ConfigError unless the URL is http(s) and exactly one of db / bucket is set."""
        _check_url("--influx", self.url)
        if self.db and self.bucket:
            raise ConfigError(f"--influx {public_url(self.url)}: give --influx-db (InfluxDB 1.x) "
                              "or --influx-bucket (2.x), not both")
        if not self.db and not self.bucket:
            raise ConfigError(f"--influx {public_url(self.url)} needs --influx-db DB "
                              "(InfluxDB 1.x) or --influx-bucket BUCKET with --influx-org ORG "
                              "(2.x)")
        if self.bucket and not self.org:
            raise ConfigError(f"--influx-bucket {self.bucket}: InfluxDB 2.x also needs "
                              "--influx-org ORG")

    def endpoint(self) -> tuple[str, dict[str, str], dict[str, str]]:
        """Return ``(url, query params, headers)`` of a write."""
        base = self.url.rstrip("/")
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        if self.version == 1:
            return f"{base}/write", {"db": str(self.db), "precision": "ns"}, headers
        return (f"{base}/api/v2/write",
                {"org": str(self.org), "bucket": str(self.bucket), "precision": "ns"}, headers)


def escape_tag(s: str) -> str:
    """Escape a tag key or value (also a field key) for line protocol: ``,``, ``=`` and space.

    Line protocol cannot carry a newline in a tag; one becomes a space. Backslashes are left
    as they are (InfluxDB 1.x stores them literally).
    """
    return (str(s).replace(",", r"\,").replace("=", r"\=")
            .replace(" ", r"\ ").replace("\n", r"\ "))


def _field_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return f"{int(v)}i"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def line_protocol(measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any],
                  t_ns: int) -> str:
    """Return one point in InfluxDB line protocol (tags sorted; empty tags and NaN fields left out).

    ``line_protocol("lens", {"scenario": "chat a,b"}, {"requests_ok": 3}, 5)`` is
    ``lens,scenario=chat\\ a\\,b requests_ok=3i 5``.
    """
    m = str(measurement).replace(",", r"\,").replace(" ", r"\ ")
    tag = "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items())
                  if v not in (None, ""))
    fld = ",".join(f"{escape_tag(k)}={_field_value(v)}" for k, v in fields.items()
                   if not (isinstance(v, float) and math.isnan(v)))
    if not fld:
        raise ValueError(f"a point needs at least one field (got {dict(fields)!r})")
    return f"{m}{tag} {fld} {int(t_ns)}"


class _InfluxSeries:
    """What one plan has queued to InfluxDB, per second, to queue only what changed."""

    def __init__(self, tags: Mapping[str, str], t0_unix_ns: int):
        self.tags = dict(tags)
        self.t0_unix_ns = int(t0_unix_ns)
        self.sent = np.zeros((0, len(INFLUX_FIELDS)), np.int64)
        self.sent_p50 = np.zeros(0, np.float64)
        self.written = np.zeros(0, bool)

    def lines(self, results: RunResults, upto_s: int | None) -> tuple[list[str], Any]:
        """Return the lines of seconds < ``upto_s`` (all when None) that are new or changed,
        and what to ``commit`` once they are queued."""
        ts = results.targets
        n = max([len(t.series[f]) for t in ts for f in INFLUX_FIELDS] + [0])
        vals = np.zeros((n, len(INFLUX_FIELDS)), np.int64)
        for t in ts:
            for j, f in enumerate(INFLUX_FIELDS):
                a = t.series[f]
                vals[:len(a), j] += a
        p50 = np.full(n, np.nan)
        if len(ts) == 1:                       # a median of several targets is not theirs
            a = ts[0].ttft_p50_ms[:n]
            p50[:len(a)] = a
        m = n if upto_s is None else max(0, min(n, upto_s))
        if m > len(self.written):
            grow = m - len(self.written)
            self.sent = np.concatenate([self.sent, np.zeros((grow, len(INFLUX_FIELDS)),
                                                            np.int64)])
            self.sent_p50 = np.concatenate([self.sent_p50, np.full(grow, np.nan)])
            self.written = np.concatenate([self.written, np.zeros(grow, bool)])
        v, p = vals[:m], p50[:m]
        same_p50 = (p == self.sent_p50[:m]) | (np.isnan(p) & np.isnan(self.sent_p50[:m]))
        todo = np.flatnonzero(~self.written[:m] | (v != self.sent[:m]).any(axis=1) | ~same_p50)
        out = []
        for k in todo.tolist():
            fields: dict[str, Any] = dict(zip(INFLUX_FIELDS, v[k].tolist(), strict=True))
            fields["ttft_p50_ms"] = float(p[k])
            out.append(line_protocol(INFLUX_MEASUREMENT, self.tags, fields,
                                     self.t0_unix_ns + k * NS_PER_S))
        return out, (todo, v[todo], p[todo])

    def commit(self, done: Any) -> None:
        todo, v, p = done
        self.sent[todo] = v
        self.sent_p50[todo] = p
        self.written[todo] = True


_STOP = object()
MAX_BATCH_LINES = 5000
CLOSING_TRIES = 3


class _InfluxWriter:
    """Post batches of lines from a bounded queue in a background thread, retrying on
    connection errors, 429 and 5xx with backoff; a 4xx answer drops the batch (counted)."""

    def __init__(self, target: InfluxTarget, timeout_s: float = 5.0, maxsize: int = 256):
        self.target = target
        self.timeout_s = timeout_s
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.thread = threading.Thread(target=self._loop, name="lens-influx", daemon=True)
        self.wake = threading.Event()
        self.deadline: float | None = None
        self.batches = 0              # posted and accepted
        self.points = 0
        self.failures = 0             # failed posts (each retry counts)
        self.lost = 0                 # points given up on
        self.last_error: str | None = None

    def start(self) -> None:
        self.thread.start()

    def put(self, lines: list[str], timeout_s: float | None = None) -> bool:
        """Queue lines; False when the queue is full (after ``timeout_s``, or at once)."""
        try:
            if timeout_s is None:
                self.queue.put_nowait(lines)
            else:
                self.queue.put(lines, timeout=timeout_s)
            return True
        except queue.Full:
            return False

    def close(self, timeout_s: float) -> None:
        """Write what is queued within ``timeout_s``, then stop the thread."""
        self.deadline = time.monotonic() + timeout_s
        self.wake.set()
        try:
            self.queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            pass
        self.thread.join(timeout_s + 1.0)
        while True:                   # whatever the thread left (only when it timed out)
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self.lost += len(item)

    def _loop(self) -> None:
        import httpx

        url, params, headers = self.target.endpoint()
        pending: list[str] = []
        stop = False
        backoff_s = 0.5
        tries_closing = 0
        with httpx.Client(timeout=self.timeout_s) as client:
            while True:
                if not pending and not stop:
                    item = self.queue.get()
                    if item is _STOP:
                        break
                    pending = list(item)
                while not stop and len(pending) < MAX_BATCH_LINES:
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                    else:
                        pending.extend(item)
                if not pending:
                    break
                if not self._post(client, url, params, headers, pending[:MAX_BATCH_LINES]):
                    pending, backoff_s = pending[MAX_BATCH_LINES:], 0.5
                    continue
                if self.deadline is not None:
                    # closing: a few quick tries, then give up (the run's files matter more)
                    tries_closing += 1
                    if tries_closing >= CLOSING_TRIES or time.monotonic() >= self.deadline:
                        self.lost += len(pending)
                        break
                    time.sleep(0.25)
                else:
                    self.wake.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, 30.0)

    def _post(self, client: Any, url: str, params: dict, headers: dict, batch: list[str]
              ) -> bool:
        """Post one batch; return True when it should be retried."""
        import httpx

        body = ("\n".join(batch) + "\n").encode()
        try:
            r = client.post(url, params=params, headers=headers, content=body)
        except httpx.HTTPError as e:
            self.failures += 1
            self.last_error = _describe(e)
            return True
        if r.status_code < 300:
            self.batches += 1
            self.points += len(batch)
            return False
        self.failures += 1
        msg = " ".join(r.text.split())[:200]
        self.last_error = f"HTTP {r.status_code}" + (f": {msg}" if msg else "")
        if r.status_code == 429 or r.status_code >= 500:
            return True
        self.lost += len(batch)
        return False


# ------------------------------------------------------------------ URLs and errors
def public_url(url: str) -> str:
    """Return ``url`` without user:password and query (safe for messages)."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{p.port}" if p.port else "")
        return urlunsplit((p.scheme, netloc, p.path, "", ""))
    except ValueError:
        return "<invalid URL>"


def _check_url(flag: str, url: str) -> None:
    try:
        p = urlsplit(url)
        ok = p.scheme in ("http", "https") and bool(p.hostname)
        _ = p.port                          # raises on a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"{flag}: {public_url(url) if '://' in url else url!r} is not an "
                          f"http(s) URL; e.g. {flag} http://127.0.0.1:"
                          f"{9091 if flag == '--pushgateway' else 8086}")


def _describe(e: BaseException) -> str:
    """A short reason for a network error, without URLs or headers."""
    cause = e
    for _ in range(10):
        nxt = cause.__cause__ or cause.__context__
        if nxt is None:
            break
        cause = nxt
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    text = str(e) or type(e).__name__
    return text.split(" for url")[0][:200]
