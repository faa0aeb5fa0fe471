"""Keep the last N requests a worker received, for tests to assert what a client really sent.

The server appends each request object (``server._Request``: method, URL, raw header list,
body bytes, receive time) to a ``deque(maxlen=N)``; nothing is copied or decoded until
``GET /lens/requests`` asks, when ``to_json`` turns them into a JSON list, oldest first::

    [{"worker": 0, "request_id": "42", "t_received_ns": 123, "method": "POST",
      "path": "/v1/messages?beta=true", "headers": {"x-api-key": "k", ...},
      "raw_headers": [["x-api-key", "k"], ...], "body": "{...}", "json": {...}}]

``headers`` has lower-case names (repeats joined by ", "), ``raw_headers`` the names as sent
and in order; ``body`` is the body as text (UTF-8, bad bytes replaced), ``json`` the body
parsed (null when it is not JSON). ``request_id`` is the truth record's key of a completion
request (its ``x-request-id``, else ``w<k>-<seq>``), null for other requests. The mock's own
routes (``/lens/*``, ``/health``) are not kept.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

__all__ = ["to_json"]


def _entry(req: Any, worker: int) -> dict[str, Any]:
    headers: dict[str, str] = {}
    raw = []
    for n, v in req.headers or ():
        name, value = n.decode("latin-1"), v.decode("latin-1")
        raw.append([name, value])
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    try:
        parsed = orjson.loads(req.body) if req.body else None
    except orjson.JSONDecodeError:
        parsed = None
    return {"worker": worker, "request_id": req.request_id, "t_received_ns": req.t_received_ns,
            "method": req.method.decode("latin-1"), "path": req.url.decode("latin-1"),
            "headers": headers, "raw_headers": raw,
            "body": req.body.decode("utf-8", "replace"), "json": parsed}


def to_json(requests: Iterable[Any], worker: int) -> bytes:
    """Return the kept requests as the JSON list of ``GET /lens/requests``."""
    return orjson.dumps([_entry(r, worker) for r in requests])
