"""The worker's idle pool follows recent demand: connections idle for 15 s are closed."""
from __future__ import annotations

from types import SimpleNamespace

from lens.engine.worker import IDLE_CLOSE_NS, Worker

S = 1_000_000_000


class FakeConn:
    def __init__(self, t_idle_ns: int):
        self.t_idle_ns = t_idle_ns
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_only_connections_idle_past_the_limit_are_closed():
    # LIFO pool: the oldest idle connections are in front
    conns = [FakeConn(t) for t in (1 * S, 2 * S, 10 * S, 20 * S, 30 * S)]
    w = SimpleNamespace(idle=list(conns), idle_closed=0)
    Worker._trim_idle(w, 2 * S + IDLE_CLOSE_NS + 1)       # 1 s and 2 s are over 15 s idle
    assert [c.closed for c in conns] == [True, True, False, False, False]
    assert w.idle == conns[2:] and w.idle_closed == 2
    Worker._trim_idle(w, 10 * S + IDLE_CLOSE_NS)          # exactly 15 s: kept
    assert w.idle == conns[2:] and w.idle_closed == 2
    Worker._trim_idle(w, 100 * S)
    assert w.idle == [] and w.idle_closed == 5 and all(c.closed for c in conns)


def test_an_empty_pool_is_left_alone():
    w = SimpleNamespace(idle=[], idle_closed=0)
    Worker._trim_idle(w, 100 * S)
    assert w.idle == [] and w.idle_closed == 0
