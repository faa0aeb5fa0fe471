"""Ring: the shared-memory SPSC ring of int64 records, in one process.

Every ring a test creates is closed (and so unlinked) before the test ends: a leaked block
would be reported by multiprocessing's resource tracker, and warnings are errors here.
"""

from multiprocessing import shared_memory

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lens._core import Ring


def records(start, stop, words):
    """Records ``start..stop-1``; word j of record i holds ``i * 100 + j``."""
    ids = np.arange(start, stop, dtype=np.int64)[:, None]
    return ids * 100 + np.arange(words, dtype=np.int64)[None, :]


@pytest.fixture
def make_ring():
    made = []

    def make(**kwargs):
        ring = Ring(**kwargs)
        made.append(ring)
        return ring

    yield make
    for ring in made:
        ring.close()


### Construction ###


@pytest.mark.parametrize(
    ("asked", "capacity"), [(1, 1), (2, 2), (3, 4), (5, 8), (4096, 4096), (4097, 8192)]
)
def test_capacity_rounds_up_to_power_of_two(make_ring, asked, capacity):
    ring = make_ring(capacity=asked, record_words=3)
    assert ring.capacity == capacity
    assert ring.record_words == 3


@pytest.mark.parametrize(("kwargs", "word"), [({"capacity": 0}, "capacity"),
                                              ({"capacity": -4}, "capacity"),
                                              ({"record_words": 0}, "record_words")])
def test_bad_sizes_raise(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Ring(**kwargs)


def test_new_ring_is_empty(make_ring):
    ring = make_ring(capacity=8, record_words=2)
    assert (ring.written, ring.consumed, ring.pending) == (0, 0, 0)
    assert (ring.spilled, ring.max_pending) == (0, 0)
    assert ring.closed is False
    out = ring.drain()
    assert out.shape == (0, 2)
    assert out.dtype == np.int64


### Round trip ###


def test_push_drain_round_trip(make_ring):
    ring = make_ring(capacity=16, record_words=4)
    recs = records(0, 10, 4)
    ring.push_records(recs)
    assert ring.written == 10
    out = ring.drain()
    np.testing.assert_array_equal(out, recs)
    assert ring.consumed == 10
    assert ring.drain().shape == (0, 4)


def test_push_one_record_as_flat_array(make_ring):
    ring = make_ring(capacity=4, record_words=3)
    ring.push_records([7, 8, 9])
    ring.push_records(np.array([10, 11, 12], dtype=np.int32))
    np.testing.assert_array_equal(ring.drain(), [[7, 8, 9], [10, 11, 12]])


def test_push_wrong_record_size_raises(make_ring):
    ring = make_ring(capacity=4, record_words=3)
    with pytest.raises(ValueError):
        ring.push_records(np.zeros(4, dtype=np.int64))
    assert ring.written == 0


def test_extreme_values_survive(make_ring):
    ring = make_ring(capacity=4, record_words=2)
    info = np.iinfo(np.int64)
    ring.push_records([[info.min, info.max], [-1, 0]])
    np.testing.assert_array_equal(ring.drain(), [[info.min, info.max], [-1, 0]])


def test_wrap_around_keeps_order(make_ring):
    ring = make_ring(capacity=8, record_words=3)
    ring.push_records(records(0, 5, 3))
    np.testing.assert_array_equal(ring.drain(), records(0, 5, 3))
    # slots 5, 6, 7, 0, 1, 2, 3, 4: the drain copies across the end of the buffer
    ring.push_records(records(5, 13, 3))
    assert ring.pending == 0
    np.testing.assert_array_equal(ring.drain(), records(5, 13, 3))
    for lap in range(20):
        ring.push_records(records(13 + lap * 7, 20 + lap * 7, 3))
        np.testing.assert_array_equal(ring.drain(), records(13 + lap * 7, 20 + lap * 7, 3))
    assert ring.written == ring.consumed == 13 + 20 * 7
    assert ring.spilled == 0


def test_drain_max_records(make_ring):
    ring = make_ring(capacity=8, record_words=2)
    ring.push_records(records(0, 7, 2))
    np.testing.assert_array_equal(ring.drain(3), records(0, 3, 2))
    assert ring.drain(0).shape == (0, 2)
    np.testing.assert_array_equal(ring.drain(max_records=100), records(3, 7, 2))
    assert ring.consumed == 7


def test_drain_max_records_across_wrap(make_ring):
    ring = make_ring(capacity=4, record_words=1)
    ring.push_records(records(0, 3, 1))
    ring.drain()
    ring.push_records(records(3, 7, 1))  # slots 3, 0, 1, 2
    np.testing.assert_array_equal(ring.drain(2), records(3, 5, 1))
    np.testing.assert_array_equal(ring.drain(2), records(5, 7, 1))


def test_attached_producer_and_owner_share_records(make_ring):
    owner = make_ring(capacity=8, record_words=2)
    with Ring.attach(owner.name) as producer:
        assert producer.capacity == 8
        assert producer.record_words == 2
        assert producer.name == owner.name
        producer.push_records(records(0, 5, 2))
        assert owner.written == 5
        np.testing.assert_array_equal(owner.drain(), records(0, 5, 2))
        assert producer.consumed == 5
        producer.close_producer()
        assert owner.closed is True


### Full ring: spill, never lose, never block ###


def test_full_ring_spills_in_order(make_ring):
    ring = make_ring(capacity=4, record_words=2)
    ring.push_records(records(0, 10, 2))  # 4 go in, 6 wait
    assert ring.written == 4
    assert ring.pending == 6
    assert ring.spilled == 6
    assert ring.max_pending == 6
    np.testing.assert_array_equal(ring.drain(), records(0, 4, 2))
    # a push with records still waiting goes behind them, never ahead
    ring.push_records(records(10, 11, 2))
    assert ring.written == 8
    assert ring.pending == 3
    np.testing.assert_array_equal(ring.drain(), records(4, 8, 2))
    assert ring.flush() == 0
    np.testing.assert_array_equal(ring.drain(), records(8, 11, 2))
    assert ring.spilled == 7  # 6, then the one pushed behind them
    assert ring.max_pending == 6


def test_flush_returns_records_still_waiting(make_ring):
    ring = make_ring(capacity=4, record_words=1)
    ring.push_records(records(0, 10, 1))
    assert ring.flush() == 6  # the ring is still full
    ring.drain(1)
    assert ring.flush() == 5
    ring.drain()
    assert ring.flush() == 1
    ring.drain()
    assert ring.flush() == 0
    assert ring.pending == 0
    np.testing.assert_array_equal(ring.drain(), records(9, 10, 1))


def test_flush_with_nothing_waiting(make_ring):
    ring = make_ring(capacity=4, record_words=1)
    assert ring.flush() == 0
    ring.push_records(records(0, 2, 1))
    assert ring.flush() == 0


def test_max_pending_is_the_deepest_spill(make_ring):
    ring = make_ring(capacity=2, record_words=1)
    ring.push_records(records(0, 5, 1))  # 3 wait
    ring.drain()
    ring.flush()  # 1 waits
    ring.push_records(records(5, 6, 1))  # 2 wait
    assert (ring.pending, ring.spilled, ring.max_pending) == (2, 4, 3)
    ring.drain()
    ring.flush()
    ring.drain()
    assert (ring.pending, ring.spilled, ring.max_pending) == (0, 4, 3)
    assert ring.written == ring.consumed == 6


def test_spill_grows_past_its_first_buffer(make_ring):
    # the spill starts at 1024 records and doubles; 5000 waiting records cross three growths
    ring = make_ring(capacity=16, record_words=5)
    ring.push_records(records(0, 5016, 5))
    assert ring.pending == 5000
    got = []
    while ring.pending or ring.written > ring.consumed:
        got.append(ring.drain())
        ring.flush()
    np.testing.assert_array_equal(np.concatenate(got), records(0, 5016, 5))


def test_spill_counters_are_seen_by_the_consumer(make_ring):
    owner = make_ring(capacity=4, record_words=1)
    with Ring.attach(owner.name) as producer:
        producer.push_records(records(0, 7, 1))
        # spilled and max_pending live in the shared header; pending is the producer's own
        assert (owner.spilled, owner.max_pending) == (3, 3)
        assert (producer.pending, owner.pending) == (3, 0)
        owner.drain()
        assert producer.flush() == 0
        np.testing.assert_array_equal(owner.drain(), records(4, 7, 1))


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.sampled_from([1, 2, 4, 8]),
    steps=st.lists(
        st.tuples(st.sampled_from(["push", "drain", "flush"]), st.integers(0, 40)),
        max_size=40,
    ),
)
def test_any_push_drain_sequence_loses_and_reorders_nothing(capacity, steps):
    with Ring(capacity=capacity, record_words=3) as ring:
        sent = 0
        got = []
        for op, n in steps:
            if op == "push":
                ring.push_records(records(sent, sent + n, 3))
                sent += n
            elif op == "drain":
                got.append(ring.drain(n))
            else:
                ring.flush()
            assert 0 <= ring.written - ring.consumed <= ring.capacity
            assert ring.written + ring.pending == sent
        while ring.pending or ring.written > ring.consumed:
            got.append(ring.drain())
            ring.flush()
        out = np.concatenate(got) if got else np.empty((0, 3), dtype=np.int64)
        np.testing.assert_array_equal(out, records(0, sent, 3))
        assert ring.max_pending <= ring.spilled <= sent


### Closing ###


def test_close_producer_sets_closed(make_ring):
    ring = make_ring(capacity=4, record_words=1)
    ring.push_records(records(0, 3, 1))
    ring.close_producer()
    assert ring.closed is True
    # closed only says no more records will come; those published still drain
    np.testing.assert_array_equal(ring.drain(), records(0, 3, 1))


def test_owner_close_unlinks():
    ring = Ring(capacity=4, record_words=1)
    name = ring.name
    ring.close()
    with pytest.raises(FileNotFoundError):
        Ring.attach(name)


def test_attached_close_does_not_unlink(make_ring):
    owner = make_ring(capacity=4, record_words=1)
    Ring.attach(owner.name).close()
    owner.push_records(records(0, 2, 1))
    with Ring.attach(owner.name) as again:
        np.testing.assert_array_equal(again.drain(), records(0, 2, 1))


def test_close_twice_is_harmless():
    ring = Ring(capacity=4, record_words=1)
    ring.close()
    ring.close()


def test_context_manager_closes():
    with Ring(capacity=4, record_words=1) as ring:
        name = ring.name
    with pytest.raises(FileNotFoundError):
        Ring.attach(name)


@pytest.mark.parametrize(
    "use",
    [
        lambda r: r.drain(),
        lambda r: r.push_records([1]),
        lambda r: r.flush(),
        lambda r: r.close_producer(),
        lambda r: r.name,
        lambda r: r.written,
        lambda r: r.consumed,
        lambda r: r.spilled,
        lambda r: r.max_pending,
        lambda r: r.closed,
    ],
    ids=["drain", "push_records", "flush", "close_producer", "name", "written", "consumed",
         "spilled", "max_pending", "closed"],
)
def test_closed_ring_raises_value_error(use):
    ring = Ring(capacity=4, record_words=1)
    ring.close()
    with pytest.raises(ValueError, match="ring is closed"):
        use(ring)


def test_closed_attachment_raises_value_error(make_ring):
    owner = make_ring(capacity=4, record_words=1)
    producer = Ring.attach(owner.name)
    producer.close()
    with pytest.raises(ValueError, match="ring is closed"):
        producer.push_records([1])
    assert owner.written == 0


### Attaching ###


def test_attach_needs_a_name():
    with pytest.raises(ValueError, match="name"):
        Ring.attach(None)
    with pytest.raises(ValueError, match="name"):
        Ring(create=False)


def test_attach_to_missing_block_raises():
    with pytest.raises(FileNotFoundError):
        Ring.attach("lens_test_no_such_ring")


@pytest.mark.parametrize("size", [8, 100, 4096])
def test_attach_to_non_ring_block_raises(size):
    block = shared_memory.SharedMemory(create=True, size=size)
    try:
        block.buf[:size] = b"\x07" * size
        with pytest.raises(ValueError, match="not a lens ring"):
            Ring.attach(block.name)
    finally:
        block.close()
        block.unlink()


def test_attach_to_truncated_ring_raises():
    # a valid ring header (magic "LENSRING", capacity 64, 4 words) over a block too small
    # for its records
    block = shared_memory.SharedMemory(create=True, size=16 * 8)
    try:
        header = np.frombuffer(block.buf, dtype=np.int64)
        header[1:4] = [0x4C454E5352494E47, 64, 4]
        del header  # release the buffer so the block can close
        with pytest.raises(ValueError, match="not a lens ring"):
            Ring.attach(block.name)
    finally:
        block.close()
        block.unlink()


def test_create_with_taken_name_raises(make_ring):
    ring = make_ring(capacity=4, record_words=1)
    with pytest.raises(FileExistsError):
        Ring(ring.name, capacity=4, record_words=1)


def test_counters_are_published_to_the_consumer():
    with Ring(capacity=8, record_words=1) as r:
        assert r.counter(0) == 0
        r.set_counter(0, 41)
        r.set_counter(6, -3)
        assert (r.counter(0), r.counter(6)) == (41, -3)
        with pytest.raises(IndexError):
            r.set_counter(7, 1)
        with pytest.raises(IndexError):
            r.counter(-1)
