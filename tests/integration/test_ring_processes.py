"""The rings across two real processes, started with the spawn context as the engine does.

A child attaches to a row ring and a token ring by name and records requests through a
``Recorder`` while this process drains both rings at the same time. Whatever the drain pace,
every row and every token stamp must arrive once, in the order it was written.
"""

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import lens
from lens._core import ROW_DTYPE, TOKEN_DTYPE, UNSET, Recorder, Ring, now_ns

ROW_WORDS = 25
TOKEN_WORDS = 3
CAPACITY = 4096  # small on purpose: the rings wrap hundreds of times and fill up
WINDOW = 4  # requests in flight at once in the child, so token stamps interleave
WORKER = 3
KEEP = ("request_id", "worker", "status", "token_events", "output_tokens", "t_sched_ns",
        "t_start_ns", "t_first_token_ns", "t_last_token_ns", "t_end_ns")
KEEP_COLS = [ROW_DTYPE.names.index(f) for f in KEEP]


def produce(row_name, token_name, n_rows, conn):
    """Child: record ``n_rows`` requests, flush everything, close, report through ``conn``.

    At step i the child opens request i, gives a token event to the open request
    ``token_target(i)``, a second one (2 tokens) to request i when i % 3 == 0, and finishes
    request i - WINDOW + 1. Rows are therefore finished in request-id order.
    """
    rows = Ring.attach(row_name)
    tokens = Ring.attach(token_name)
    try:
        rec = Recorder(rows, tokens, max_slots=WINDOW, worker=WORKER)
        begin, token, finish = rec.begin, rec.token, rec.finish
        slot_of = [0] * WINDOW
        t_begin_ns = now_ns()
        for i in range(n_rows):
            slot = begin(i, i)
            slot_of[i % WINDOW] = slot
            j = i - (i * 7) % WINDOW
            if j >= 0:
                token(slot_of[j % WINDOW])
            if i % 3 == 0:
                token(slot, 2)
            if i >= WINDOW - 1:
                finish(slot_of[(i - WINDOW + 1) % WINDOW], 200, 0)
        for i in range(max(0, n_rows - WINDOW + 1), n_rows):
            finish(slot_of[i % WINDOW], 200, 0)
        t_written_ns = now_ns()
        # the parent keeps draining while the spill empties
        while rec.flush():
            time.sleep(0.0002)
        rows.close_producer()
        tokens.close_producer()
        conn.send({
            "write_ns": t_written_ns - t_begin_ns,
            "flush_ns": now_ns() - t_written_ns,
            "pending": rows.pending + tokens.pending,
            "in_flight": rec.in_flight,
            "rows_spilled": rows.spilled,
            "tokens_spilled": tokens.spilled,
        })
    finally:
        conn.close()
        rows.close()
        tokens.close()


def expected_tokens(n_rows):
    """Token events and output tokens per request, as ``produce`` writes them."""
    i = np.arange(n_rows)
    j = i - (i * 7) % WINDOW
    events = np.bincount(j[j >= 0], minlength=n_rows)
    extra = (i % 3 == 0).astype(np.int64)
    return events + extra, events + 2 * extra


def run_pair(n_rows, drain_max=-1, drain_sleep_s=0.0, timeout_s=120.0):
    """Run ``produce`` in a spawned child and drain in this process until it closes."""
    ctx = mp.get_context("spawn")
    with Ring(capacity=CAPACITY, record_words=ROW_WORDS) as rows, \
            Ring(capacity=CAPACITY, record_words=TOKEN_WORDS) as tokens:
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=produce, args=(rows.name, tokens.name, n_rows, send))
        proc.start()
        send.close()
        got_rows, got_tokens = [], []
        drains = 0
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                # read closed before draining: a drain after seeing it gets everything
                done = rows.closed and tokens.closed
                r = rows.drain(drain_max)
                t = tokens.drain(drain_max)
                drains += 1
                if len(r):
                    got_rows.append(r[:, KEEP_COLS])
                if len(t):
                    got_tokens.append(t)
                if done and not len(r) and not len(t):
                    break
                assert proc.exitcode in (None, 0), f"producer died: exit {proc.exitcode}"
                assert time.monotonic() < deadline, "producer did not finish in time"
                if drain_sleep_s:
                    time.sleep(drain_sleep_s)
                elif not len(r) and not len(t):
                    time.sleep(0.0002)
            stats = recv.recv()
            proc.join(30)
            assert proc.exitcode == 0
        finally:
            if proc.is_alive():
                proc.kill()
                proc.join()
            recv.close()
        stats.update(
            drains=drains,
            rows_written=rows.written, rows_consumed=rows.consumed,
            tokens_written=tokens.written, tokens_consumed=tokens.consumed,
            rows_header_spilled=rows.spilled, rows_max_pending=rows.max_pending,
            tokens_header_spilled=tokens.spilled, tokens_max_pending=tokens.max_pending,
        )
    row_cols = np.concatenate(got_rows)
    out_rows = {f: row_cols[:, k] for k, f in enumerate(KEEP)}
    out_tokens = np.ascontiguousarray(np.concatenate(got_tokens)).view(TOKEN_DTYPE)[:, 0]
    return out_rows, out_tokens, stats


def check_everything_arrived_in_order(n_rows, rows, tokens, stats):
    # rows: all of them, once each, in the order they were finished
    assert len(rows["request_id"]) == n_rows
    np.testing.assert_array_equal(rows["request_id"], np.arange(n_rows))
    assert np.all(rows["worker"] == WORKER)
    assert np.all(rows["status"] == 200)
    np.testing.assert_array_equal(rows["t_sched_ns"], np.arange(n_rows))
    assert np.all(np.diff(rows["t_end_ns"]) >= 0)
    assert np.all(rows["t_end_ns"] >= rows["t_start_ns"])

    events, output = expected_tokens(n_rows)
    np.testing.assert_array_equal(rows["token_events"], events)
    np.testing.assert_array_equal(rows["output_tokens"], output)

    # tokens: one stamp per event; one producer with one monotonic clock, so ring order is
    # time order
    assert len(tokens) == events.sum()
    assert np.all(np.diff(tokens["t_ns"]) >= 0)
    per_request = np.bincount(tokens["request_id"], minlength=n_rows)
    np.testing.assert_array_equal(per_request, events)
    # within each request, indices 0, 1, 2, ... in ring order
    order = np.argsort(tokens["request_id"], kind="stable")
    by_request = tokens[order]
    starts = np.repeat(np.cumsum(events) - events, events)
    np.testing.assert_array_equal(by_request["index"], np.arange(len(tokens)) - starts)
    same = by_request["request_id"][1:] == by_request["request_id"][:-1]
    assert np.all(np.diff(by_request["t_ns"])[same] >= 0)
    # the row's first and last token times are the first and last stamps
    has = events > 0
    first = by_request["t_ns"][np.cumsum(events)[has] - events[has]]
    last = by_request["t_ns"][np.cumsum(events)[has] - 1]
    np.testing.assert_array_equal(rows["t_first_token_ns"][has], first)
    np.testing.assert_array_equal(rows["t_last_token_ns"][has], last)
    assert np.all(rows["t_first_token_ns"][~has] == UNSET)
    assert np.all(rows["t_last_token_ns"][~has] == UNSET)
    assert np.all(rows["t_first_token_ns"][has] >= rows["t_start_ns"][has])
    assert np.all(rows["t_last_token_ns"][has] <= rows["t_end_ns"][has])

    # counters: everything published and consumed, nothing left behind, spills counted
    assert stats["pending"] == 0
    assert stats["in_flight"] == 0
    assert stats["rows_written"] == stats["rows_consumed"] == n_rows
    assert stats["tokens_written"] == stats["tokens_consumed"] == len(tokens)
    assert stats["rows_header_spilled"] == stats["rows_spilled"]
    assert stats["tokens_header_spilled"] == stats["tokens_spilled"]
    assert 0 <= stats["rows_max_pending"] <= stats["rows_spilled"] <= n_rows
    assert 0 <= stats["tokens_max_pending"] <= stats["tokens_spilled"] <= len(tokens)
    assert (stats["rows_spilled"] == 0) == (stats["rows_max_pending"] == 0)
    assert (stats["tokens_spilled"] == 0) == (stats["tokens_max_pending"] == 0)


@pytest.mark.slow
def test_million_rows_concurrent_drain_lose_and_reorder_nothing():
    n_rows = 1_000_000
    rows, tokens, stats = run_pair(n_rows)
    check_everything_arrived_in_order(n_rows, rows, tokens, stats)
    print(f"\n{n_rows} rows, {len(tokens)} token stamps: "
          f"{stats['write_ns'] / n_rows:.0f} ns/row in the child, "
          f"flush {stats['flush_ns'] / 1e6:.1f} ms, {stats['drains']} drains, "
          f"spilled rows {stats['rows_spilled']} (max {stats['rows_max_pending']}), "
          f"tokens {stats['tokens_spilled']} (max {stats['tokens_max_pending']})")


@pytest.mark.slow
def test_slow_drain_spills_and_keeps_order():
    # the parent takes at most 256 records per ring every 2 ms, far below the producer's
    # pace: most rows wait in the child's spill, which it flushes at the end
    n_rows = 300_000
    rows, tokens, stats = run_pair(n_rows, drain_max=256, drain_sleep_s=0.002)
    check_everything_arrived_in_order(n_rows, rows, tokens, stats)
    assert stats["rows_max_pending"] > 10 * CAPACITY
    assert stats["tokens_max_pending"] > 10 * CAPACITY
    assert stats["rows_spilled"] > n_rows // 2
    print(f"\n{n_rows} rows: flush {stats['flush_ns'] / 1e6:.0f} ms, {stats['drains']} drains, "
          f"spilled rows {stats['rows_spilled']} (max {stats['rows_max_pending']}), "
          f"tokens {stats['tokens_spilled']} (max {stats['tokens_max_pending']})")


def test_spawned_attach_leaks_no_shared_memory(tmp_path):
    # Python 3.11 registers a block with the resource tracker on attach too; with spawn the
    # child shares the parent's tracker, so the owner's unlink must leave nothing to report
    # at exit ("leaked shared_memory objects"). Only a fresh interpreter shows that warning.
    script = tmp_path / "pair.py"
    script.write_text(textwrap.dedent("""
        import multiprocessing as mp
        from lens._core import Recorder, Ring

        def produce(row_name, token_name):
            with Ring.attach(row_name) as rows, Ring.attach(token_name) as tokens:
                rec = Recorder(rows, tokens, max_slots=1)
                for i in range(100):
                    slot = rec.begin(i, 0)
                    rec.token(slot)
                    rec.finish(slot, 200, 0)
                while rec.flush():
                    pass
                rows.close_producer()
                tokens.close_producer()

        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            with Ring(capacity=8, record_words=25) as rows, \\
                    Ring(capacity=8, record_words=3) as tokens:
                proc = ctx.Process(target=produce, args=(rows.name, tokens.name))
                proc.start()
                n = 0
                while not (rows.closed and rows.written == rows.consumed):
                    n += len(rows.drain())
                    tokens.drain()
                proc.join()
                assert proc.exitcode == 0 and n == 100, (proc.exitcode, n)
            print("ok")
    """))
    root = os.path.dirname(os.path.dirname(lens.__file__))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-W", "error", str(script)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "leaked" not in done.stderr
    assert done.stderr == ""
