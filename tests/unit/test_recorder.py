"""Recorder: in-flight request rows and token stamps, published into two rings."""

import numpy as np
import pytest

from lens._core import (
    FLAG_CANCELLED,
    FLAG_CONN_REUSED,
    FLAG_DROPPED,
    FLAG_TRUNCATED,
    FLAG_USAGE_FROM_STREAM,
    FLAG_WARMUP,
    ROW_DTYPE,
    ROW_FIELDS,
    TOKEN_DTYPE,
    TOKEN_FIELDS,
    UNSET,
    Recorder,
    Ring,
    RowField,
    now_ns,
)

ROW_WORDS = 25
TOKEN_WORDS = 3
TIMES = [f for f in ROW_FIELDS if f.startswith("t_")]


@pytest.fixture
def rings():
    rows = Ring(capacity=64, record_words=ROW_WORDS)
    tokens = Ring(capacity=256, record_words=TOKEN_WORDS)
    yield rows, tokens
    rows.close()
    tokens.close()


@pytest.fixture
def rec(rings):
    return Recorder(*rings, max_slots=4, worker=7)


def drain_rows(ring):
    return ring.drain().view(ROW_DTYPE)[:, 0]


def drain_tokens(ring):
    return ring.drain().view(TOKEN_DTYPE)[:, 0]


### Schema ###


def test_row_schema():
    assert len(ROW_FIELDS) == ROW_WORDS == len(RowField)
    assert ROW_DTYPE.names == ROW_FIELDS
    assert ROW_DTYPE.itemsize == ROW_WORDS * 8
    assert all(ROW_DTYPE[f] == np.int64 for f in ROW_FIELDS)
    assert [RowField[f] for f in ROW_FIELDS] == list(range(ROW_WORDS))
    assert ROW_FIELDS[:7] == ("request_id", "worker", "target", "status", "error", "flags",
                              "attempt")
    # every time carries its unit in its name
    assert TIMES == [f for f in ROW_FIELDS if f.endswith("_ns")]
    assert len(TIMES) == 12
    assert ROW_FIELDS[-1] == "t_attempt_ns"     # appended: older field offsets unchanged


def test_token_schema():
    assert TOKEN_FIELDS == ("request_id", "index", "t_ns")
    assert TOKEN_DTYPE.names == TOKEN_FIELDS
    assert TOKEN_DTYPE.itemsize == TOKEN_WORDS * 8


def test_flags_are_distinct_bits():
    flags = [FLAG_USAGE_FROM_STREAM, FLAG_WARMUP, FLAG_CANCELLED, FLAG_CONN_REUSED,
             FLAG_TRUNCATED, FLAG_DROPPED]
    assert sorted(flags) == [1 << i for i in range(len(flags))]


def test_unset_is_int64_min():
    assert UNSET == np.iinfo(np.int64).min


### Construction ###


@pytest.mark.parametrize(("row_words", "token_words", "which"),
                         [(24, 3, "row ring"), (26, 3, "row ring"), (25, 2, "token ring"),
                          (25, 25, "token ring")])
def test_record_words_mismatch_raises(row_words, token_words, which):
    with Ring(capacity=4, record_words=row_words) as rows, \
            Ring(capacity=4, record_words=token_words) as tokens:
        with pytest.raises(ValueError, match=which):
            Recorder(rows, tokens, max_slots=1)


def test_swapped_rings_raise(rings):
    rows, tokens = rings
    with pytest.raises(ValueError, match="row ring"):
        Recorder(tokens, rows, max_slots=1)


def test_max_slots_must_be_positive(rings):
    with pytest.raises(ValueError, match="max_slots"):
        Recorder(*rings, max_slots=0)


def test_rings_are_required(rings):
    with pytest.raises(TypeError):
        Recorder(None, rings[1], max_slots=1)


def test_attributes(rings, rec):
    assert rec.rows is rings[0]
    assert rec.tokens is rings[1]
    assert rec.worker == 7
    assert rec.max_token_stamps == 1 << 20
    assert rec.in_flight == 0


### begin ###


def test_begin_fills_defaults(rec):
    before = now_ns()
    slot = rec.begin(42, 1234)
    after = now_ns()
    row = rec.row(slot)
    assert row.dtype == ROW_DTYPE
    assert row["request_id"] == 42
    assert row["worker"] == 7
    assert (row["target"], row["status"], row["error"], row["flags"]) == (0, 0, 0, 0)
    assert row["attempt"] == 1
    assert row["t_sched_ns"] == 1234
    assert before <= row["t_start_ns"] <= after
    assert row["t_attempt_ns"] == row["t_start_ns"]    # the first attempt starts the request
    for f in TIMES:
        if f not in ("t_sched_ns", "t_start_ns", "t_attempt_ns"):
            assert row[f] == UNSET, f
    counts = ("output_tokens", "input_tokens", "token_events", "bytes_in", "finish")
    assert [row[f] for f in counts] == [0] * len(counts)
    assert row["conn_id"] == -1


def test_begin_resets_a_reused_slot(rec):
    slot = rec.begin(1, 0)
    rec.stamp(slot, RowField.t_sent_ns)
    rec.set(slot, RowField.flags, FLAG_CONN_REUSED)
    rec.token(slot)
    rec.finish(slot, 200, 0)
    again = [rec.begin(i, 0) for i in range(2, 6)]
    assert slot in again
    row = rec.row(slot)
    assert row["t_sent_ns"] == UNSET
    assert row["t_first_token_ns"] == UNSET
    assert (row["flags"], row["token_events"], row["status"]) == (0, 0, 0)


def test_in_flight_counts_open_slots(rec):
    a = rec.begin(1, 0)
    b = rec.begin(2, 0)
    assert a != b
    assert rec.in_flight == 2
    rec.finish(a, 200, 0)
    assert rec.in_flight == 1
    rec.finish(b, 200, 0)
    assert rec.in_flight == 0


def test_begin_with_all_slots_taken_raises(rec):
    slots = [rec.begin(i, 0) for i in range(4)]
    assert sorted(slots) == [0, 1, 2, 3]
    with pytest.raises(RuntimeError, match="all 4 recorder slots"):
        rec.begin(99, 0)
    assert rec.in_flight == 4
    rec.finish(slots[2], 200, 0)
    assert rec.begin(4, 0) == slots[2]


### stamp / set / get ###


def test_stamp_stores_now(rec):
    slot = rec.begin(1, 0)
    before = now_ns()
    t = rec.stamp(slot, RowField.t_first_byte_ns)
    after = now_ns()
    assert before <= t <= after
    assert rec.get(slot, RowField.t_first_byte_ns) == t
    assert rec.row(slot)["t_first_byte_ns"] == t


def test_set_get_round_trip(rec):
    slot = rec.begin(1, 0)
    for i, value in enumerate([5, -1, 2**62, UNSET]):
        rec.set(slot, RowField.bytes_in, value)
        assert rec.get(slot, RowField.bytes_in) == value
        rec.set(slot, i, value)
        assert rec.get(slot, i) == value


@pytest.mark.parametrize("slot", [-1, 4, 1000])
def test_slot_out_of_range_raises(rec, slot):
    rec.begin(1, 0)
    for call in (lambda: rec.stamp(slot, RowField.t_end_ns),
                 lambda: rec.set(slot, RowField.status, 1),
                 lambda: rec.get(slot, RowField.status),
                 lambda: rec.token(slot),
                 lambda: rec.finish(slot, 200, 0),
                 lambda: rec.row(slot)):
        with pytest.raises(IndexError, match="slot"):
            call()


@pytest.mark.parametrize("field", [-1, ROW_WORDS, 10_000])
def test_field_out_of_range_raises(rec, field):
    slot = rec.begin(1, 0)
    for call in (lambda: rec.stamp(slot, field),
                 lambda: rec.set(slot, field, 1),
                 lambda: rec.get(slot, field)):
        with pytest.raises(IndexError, match="field"):
            call()


### Tokens ###


def test_token_events_fill_row_and_token_ring(rings, rec):
    _, tokens = rings
    slot = rec.begin(42, 0)
    before = now_ns()
    rec.token(slot)
    rec.token(slot, 3)
    rec.token(slot, 0)  # a content event the stream's usage will count later
    after = now_ns()
    row = rec.row(slot)
    assert row["token_events"] == 3
    assert row["output_tokens"] == 4
    toks = drain_tokens(tokens)
    np.testing.assert_array_equal(toks["request_id"], [42, 42, 42])
    np.testing.assert_array_equal(toks["index"], [0, 1, 2])
    assert before <= toks["t_ns"][0] <= toks["t_ns"][1] <= toks["t_ns"][2] <= after
    assert row["t_first_token_ns"] == toks["t_ns"][0]
    assert row["t_last_token_ns"] == toks["t_ns"][2]
    assert row["flags"] & FLAG_TRUNCATED == 0


def test_tokens_of_interleaved_requests(rings, rec):
    _, tokens = rings
    a = rec.begin(10, 0)
    b = rec.begin(11, 0)
    for s in (a, b, b, a, b):
        rec.token(s)
    toks = drain_tokens(tokens)
    assert toks[["request_id", "index"]].tolist() == [(10, 0), (11, 0), (11, 1), (10, 1),
                                                      (11, 2)]
    assert np.all(np.diff(toks["t_ns"]) >= 0)


def test_token_stamps_truncate_at_max_token_stamps(rings, rec):
    _, tokens = rings
    rec.max_token_stamps = 3
    slot = rec.begin(5, 0)
    for _ in range(3):
        rec.token(slot)
    assert rec.row(slot)["flags"] & FLAG_TRUNCATED == 0
    rec.token(slot)
    rec.token(slot, 2)
    row = rec.row(slot)
    assert row["flags"] & FLAG_TRUNCATED
    assert row["token_events"] == 5
    assert row["output_tokens"] == 6
    toks = drain_tokens(tokens)
    np.testing.assert_array_equal(toks["index"], [0, 1, 2])
    # the row still knows when the last, unstored, token came
    assert row["t_last_token_ns"] >= toks["t_ns"][-1]
    rec.finish(slot, 200, 0)
    # the limit is per request
    slot = rec.begin(6, 0)
    rec.token(slot)
    assert rec.row(slot)["flags"] & FLAG_TRUNCATED == 0
    assert drain_tokens(tokens)[["request_id", "index"]].tolist() == [(6, 0)]


def test_zero_max_token_stamps_stores_none(rings, rec):
    rec.max_token_stamps = 0
    slot = rec.begin(5, 0)
    rec.token(slot)
    assert rec.row(slot)["flags"] & FLAG_TRUNCATED
    assert rec.row(slot)["token_events"] == 1
    assert len(rings[1].drain()) == 0


def test_token_on_a_free_slot_raises(rings, rec):
    slot = rec.begin(1, 0)
    rec.finish(slot, 200, 0)
    with pytest.raises(ValueError, match="not in flight"):
        rec.token(slot)
    assert len(rings[1].drain()) == 0


### finish ###


def test_finish_publishes_the_row(rings, rec):
    rows, _ = rings
    slot = rec.begin(42, 1000)
    rec.set(slot, RowField.target, 2)
    rec.set(slot, RowField.flags, FLAG_CONN_REUSED | FLAG_USAGE_FROM_STREAM)
    rec.stamp(slot, RowField.t_sent_ns)
    rec.token(slot, 2)
    snapshot = rec.row(slot)
    rec.finish(slot, 200, 0)
    assert rec.in_flight == 0
    (row,) = drain_rows(rows)
    assert row["status"] == 200
    assert row["error"] == 0
    assert row["t_last_token_ns"] <= row["t_end_ns"] <= now_ns()
    for f in ROW_FIELDS:
        if f not in ("status", "t_end_ns"):
            assert row[f] == snapshot[f], f
    assert row["t_dns_ns"] == UNSET
    assert row["t_end_ns"] >= row["t_sent_ns"] >= row["t_start_ns"]


def test_rows_arrive_in_finish_order(rings, rec):
    rows, _ = rings
    a = rec.begin(1, 0)
    b = rec.begin(2, 0)
    c = rec.begin(3, 0)
    rec.finish(b, 200, 0)
    rec.finish(c, 500, 3)
    rec.finish(a, 0, 1)
    got = drain_rows(rows)
    assert got[["request_id", "status", "error"]].tolist() == [(2, 200, 0), (3, 500, 3),
                                                              (1, 0, 1)]
    assert np.all(np.diff(got["t_end_ns"]) >= 0)


def test_finish_twice_raises_and_keeps_slots_apart(rings, rec):
    rows, _ = rings
    slot = rec.begin(1, 0)
    rec.finish(slot, 200, 0)
    with pytest.raises(ValueError, match="not in flight"):
        rec.finish(slot, 200, 0)
    assert rec.in_flight == 0
    assert len(rows.drain()) == 1
    # each slot is handed out once
    assert sorted(rec.begin(i, 0) for i in range(4)) == [0, 1, 2, 3]


def test_finish_on_never_begun_slot_raises(rec):
    with pytest.raises(ValueError, match="not in flight"):
        rec.finish(3, 200, 0)


def test_row_is_a_snapshot(rec):
    slot = rec.begin(1, 0)
    row = rec.row(slot)
    rec.set(slot, RowField.status, 404)
    assert row["status"] == 0
    assert rec.row(slot)["status"] == 404


def test_full_rings_spill_and_flush():
    with Ring(capacity=2, record_words=ROW_WORDS) as rows, \
            Ring(capacity=4, record_words=TOKEN_WORDS) as tokens:
        rec = Recorder(rows, tokens, max_slots=1)
        for i in range(5):
            slot = rec.begin(i, 0)
            rec.token(slot)
            rec.token(slot)
            rec.finish(slot, 200, 0)
        # 2 rows and 4 token stamps fit; 3 rows and 6 stamps wait
        assert rec.flush() == 3 + 6
        assert (rows.spilled, tokens.spilled) == (3, 6)
        got_rows, got_tokens = [], []
        while True:
            got_rows.append(drain_rows(rows))
            got_tokens.append(drain_tokens(tokens))
            if rec.flush() == 0 and rows.written == rows.consumed \
                    and tokens.written == tokens.consumed:
                break
        np.testing.assert_array_equal(np.concatenate(got_rows)["request_id"], range(5))
        toks = np.concatenate(got_tokens)
        assert toks[["request_id", "index"]].tolist() == [(i, j) for i in range(5)
                                                          for j in range(2)]


def test_finish_on_a_closed_ring_raises(rings):
    rows = Ring(capacity=4, record_words=ROW_WORDS)
    rec = Recorder(rows, rings[1], max_slots=1)
    slot = rec.begin(1, 0)
    rows.close()
    with pytest.raises(ValueError, match="ring is closed"):
        rec.finish(slot, 200, 0)
