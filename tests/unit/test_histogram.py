"""LogLinearHistogram: accuracy against numpy and HdrHistogram_py, layout, merge, encoding."""
import math
import pickle
import struct
import zlib
from fractions import Fraction

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from lens._core import LogLinearHistogram

HOUR_NS = 3_600_000_000_000
QS = [0.0, 0.5, 0.9, 0.99, 0.999, 1.0]
BUCKET_ERROR = 2.0**-10  # midpoint reporting with 1024 sub-buckets (< 0.1 %)


def _uniform(rng, n):
    return rng.integers(1_000, HOUR_NS, n, endpoint=True)


def _lognormal_heavy_tail(rng, n):
    # median 50 ms, sigma 2.5: spans 1 µs .. 1 h with a heavy upper tail
    x = rng.lognormal(mean=math.log(50e6), sigma=2.5, size=n).astype(np.int64)
    return x[(x >= 1_000) & (x <= HOUR_NS)]


def _bimodal(rng, n):
    # 70 % fast (200 µs ± 20 µs, say cache hits), 30 % slow (30 s ± 3 s, long generations)
    fast = rng.normal(200e3, 20e3, int(n * 0.7))
    slow = rng.normal(30e9, 3e9, n - fast.size)
    x = np.concatenate([fast, slow]).astype(np.int64)
    rng.shuffle(x)
    return x[x >= 1_000]


DISTRIBUTIONS = {"uniform": _uniform, "lognormal": _lognormal_heavy_tail, "bimodal": _bimodal}


@pytest.fixture(scope="module", params=sorted(DISTRIBUTIONS))
def sample(request):
    rng = np.random.default_rng(20240601 + sorted(DISTRIBUTIONS).index(request.param))
    x = DISTRIBUTIONS[request.param](rng, 1_000_000)
    assert x.size > 990_000
    h = LogLinearHistogram()
    assert h.record_many(x) == 0
    return x, h


def _at_rank(x, qs):
    """Return the exact value of rank max(1, ceil(q * n)) for each decimal q (numpy's
    inverted_cdf, minus its float rounding of q * n)."""
    s = np.sort(x)
    return np.array([s[max(1, math.ceil(Fraction(str(q)) * s.size)) - 1] for q in qs])


def _rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / b


### Accuracy ###


def test_quantiles_within_01_percent_of_numpy(sample):
    x, h = sample
    got = h.quantiles(QS)
    assert np.all(_rel(got, np.quantile(x, QS)) <= 1e-3)
    # against the rank the histogram defines (numpy's inverted_cdf), the bound is the bucket's
    assert np.all(_rel(got, _at_rank(x, QS)) <= BUCKET_ERROR)
    assert got[0] == x.min() and got[-1] == x.max()


def test_exact_stats(sample):
    x, h = sample
    assert h.count == h.total_count == x.size
    assert (h.min, h.max) == (x.min(), x.max())
    assert h.sum == int(x.sum())
    assert h.mean == int(x.sum()) / x.size


def test_scalar_quantile_equals_vectorised(sample):
    _, h = sample
    assert [h.quantile(q) for q in QS] == list(h.quantiles(QS))


def test_agrees_with_hdrhistogram(sample):
    x, _ = sample
    x = x[:100_000]  # HdrHistogram_py records in pure Python (~1 µs a value)
    ours = LogLinearHistogram()
    ours.record_many(x)
    ref = HdrHistogram(1, HOUR_NS, 3)
    for v in x.tolist():
        assert ref.record_value(v)
    assert ref.get_total_count() == ours.count
    inner = [0.5, 0.9, 0.99, 0.999]
    theirs = ref.get_percentile_to_value_dict([q * 100 for q in inner])
    # HdrHistogram reports the bucket's upper edge (error < 1/1024 with 2048 sub-buckets),
    # we report the midpoint (error < 1/1024): they agree within the sum of both
    for q in inner:
        assert _rel(ours.quantile(q), theirs[q * 100]) <= 2 * BUCKET_ERROR
    assert _rel(ours.max, ref.get_max_value()) <= BUCKET_ERROR


def test_hdrhistogram_fixed_distribution_raw_and_corrected():
    # HdrHistogram's test data: 10,000 x 1000 µs and one 100 s stall (1e8 µs), here in ns
    raw = np.array([1_000_000] * 10_000 + [100_000_000_000], dtype=np.int64)
    h = LogLinearHistogram()
    h.record_many(raw)
    expect_raw = {0.3: 1e6, 0.99: 1e6, 0.9999: 1e6, 0.99999: 1e11, 1.0: 1e11}
    for q, v in expect_raw.items():
        assert _rel(h.quantile(q), v) <= 1e-3, q
    assert h.count == 10_001
    assert h.mean == (10_000 * 1e6 + 1e11) / 10_001
    # "corrected" for coordinated omission at a 10 ms expected interval, as HdrHistogram's
    # record_corrected_value does; lens measures from t_sched instead, so the data is built here
    stall = np.arange(100_000_000_000, 0, -10_000_000, dtype=np.int64)
    h.record_many(stall[1:])
    ref = HdrHistogram(1, HOUR_NS, 3)
    ref.record_value(1_000_000, 10_000)
    ref.record_corrected_value(100_000_000_000, 10_000_000)
    assert h.count == ref.get_total_count() == 20_000
    expect_corrected = {0.3: 1e6, 0.5: 1e6, 0.75: 5e10, 0.9: 8e10, 0.99: 9.8e10,
                        0.99999: 1e11, 1.0: 1e11}
    for q, v in expect_corrected.items():
        assert _rel(h.quantile(q), v) <= 1e-3, q
        assert _rel(h.quantile(q), ref.get_value_at_percentile(q * 100)) <= 2 * BUCKET_ERROR, q


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, HOUR_NS), min_size=1, max_size=300),
    permille=st.lists(st.integers(0, 1000), min_size=1, max_size=8),
)
def test_property_any_values(values, permille):
    h = LogLinearHistogram()
    for v in values:
        assert h.record(v)
    s = sorted(values)
    assert (h.count, h.min, h.max, h.sum) == (len(s), s[0], s[-1], sum(s))
    for p in permille:
        got = h.quantile(p / 1000)
        k = max(1, math.ceil(Fraction(p, 1000) * len(s)))  # 1-based rank, exact arithmetic
        exact = s[k - 1]
        assert abs(got - exact) <= exact * BUCKET_ERROR, (p, k, exact, got)
        assert abs(got - exact) <= exact * 1e-3


@pytest.mark.parametrize(
    ("lowest_ns", "highest_ns", "sigfigs"),
    [(1_000, HOUR_NS, 2), (1_000_000, 10**13, 3), (1, 10**9, 4), (1_000, HOUR_NS, 1)],
)
def test_relative_error_bound_for_other_layouts(lowest_ns, highest_ns, sigfigs):
    rng = np.random.default_rng(7)
    x = np.exp(rng.uniform(math.log(lowest_ns), math.log(highest_ns), 20_000)).astype(np.int64)
    h = LogLinearHistogram(lowest_ns, highest_ns, sigfigs)
    h.record_many(x)
    qs = [i / 200 for i in range(201)]
    got = h.quantiles(qs)
    assert np.all(_rel(got, _at_rank(x, qs)) < 10.0**-sigfigs)


### Layout ###


def test_counts_len_pinned_for_defaults():
    h = LogLinearHistogram()
    assert (h.lowest_ns, h.highest_ns, h.sigfigs) == (1_000, HOUR_NS, 3)
    assert (h.sub_bucket_count, h.unit_magnitude, h.counts_len) == (1024, 0, 17_408)
    assert h.counts.dtype == np.int64 and h.counts.shape == (17_408,)
    assert 17_408 * 8 < h.nbytes <= 256 * 1024


def test_counts_len_pinned_for_other_layouts():
    h = LogLinearHistogram(1_000, HOUR_NS, 2)
    assert (h.sub_bucket_count, h.unit_magnitude, h.counts_len) == (128, 3, 2_176)
    h = LogLinearHistogram(1_000_000, HOUR_NS, 3)
    assert (h.sub_bucket_count, h.unit_magnitude, h.counts_len) == (1024, 10, 12_288)


@pytest.mark.parametrize(
    ("value", "index", "lowest", "highest"),
    [
        (0, 0, 0, 0),
        (1, 1, 1, 1),
        (1_023, 1_023, 1_023, 1_023),        # last value of bucket 0 (width 1)
        (1_024, 1_024, 1_024, 1_025),        # first of bucket 1 (width 2)
        (1_025, 1_024, 1_024, 1_025),
        (1_026, 1_025, 1_026, 1_027),
        (2_047, 1_535, 2_046, 2_047),        # last of bucket 1
        (2_048, 1_536, 2_048, 2_051),        # first of bucket 2 (width 4)
        (1_234_567, 6_234, 1_232_896, 1_234_943),  # the module docstring's worked example
        (HOUR_NS, 17_222, 3_599_182_594_048, 3_603_477_561_343),
    ],
)
def test_bucket_edges(value, index, lowest, highest):
    h = LogLinearHistogram()
    assert h.record(value)
    assert list(np.flatnonzero(h.counts)) == [index]
    lo, hi, counts = h.bucket_bounds()
    assert (list(lo), list(hi), list(counts)) == ([lowest], [highest], [1])


def test_buckets_tile_the_range_without_gaps():
    h = LogLinearHistogram()
    # every bucket is hit: all values below 4096, then steps of 1/7000 relative (< 1/1024)
    dense = np.arange(4_096)
    geometric = np.unique(np.geomspace(4_096, HOUR_NS, 210_000).astype(np.int64))
    h.record_many(np.concatenate([dense, geometric, [HOUR_NS]]))
    lo, hi, _ = h.bucket_bounds()
    assert lo[0] == 0 and hi[-1] >= HOUR_NS and lo[-1] <= HOUR_NS
    assert np.array_equal(hi[:-1] + 1, lo[1:])  # contiguous
    width = hi - lo + 1
    assert np.all((width & (width - 1)) == 0)  # powers of two
    assert np.all(width[lo >= 512] / lo[lo >= 512] <= 1 / 512)  # midpoint error < 1/1024
    assert np.array_equal(np.flatnonzero(h.counts), np.arange(17_223))
    # both edges of every bucket land in that bucket
    g = LogLinearHistogram()
    g.record_many(np.concatenate([lo, hi[:-1]]))
    assert np.array_equal(g.counts[:17_222], np.full(17_222, 2))


### Range ###


def test_out_of_range_counted_not_clamped():
    h = LogLinearHistogram()
    assert h.record(-1) is False
    assert h.record(HOUR_NS + 1) is False
    assert h.record(2**63 - 1) is False
    assert h.record(-(2**63)) is False
    assert h.record(0) is True and h.record(HOUR_NS) is True
    assert (h.count, h.underflow, h.overflow, h.total_count) == (2, 2, 2, 6)
    assert (h.min, h.max, h.sum) == (0, HOUR_NS, HOUR_NS)
    assert h.quantile(1.0) == HOUR_NS
    assert h.counts.sum() == 2
    out = h.record_many(np.array([-5, 5, HOUR_NS + 5, 2**62], dtype=np.int64))
    assert out == 3
    assert (h.count, h.underflow, h.overflow) == (3, 3, 4)
    with pytest.raises(OverflowError):
        h.record(2**63)


def test_values_below_lowest_are_recorded():
    h = LogLinearHistogram(lowest_ns=1_000_000)
    assert h.record(3)
    assert (h.count, h.min, h.underflow) == (1, 3, 0)


def test_empty():
    h = LogLinearHistogram()
    assert (h.count, h.total_count, h.min, h.max, h.sum) == (0, 0, 0, 0, 0)
    assert math.isnan(h.mean) and math.isnan(h.quantile(0.5))
    assert np.isnan(h.quantiles(QS)).all()
    assert [a.size for a in h.bucket_bounds()] == [0, 0, 0]


### Recording ###


def test_record_and_record_many_agree():
    rng = np.random.default_rng(3)
    x = rng.integers(-10**6, HOUR_NS + 10**9, 20_000)
    one, many = LogLinearHistogram(), LogLinearHistogram()
    ok = sum(one.record(v) for v in x.tolist())
    assert many.record_many(x) == x.size - ok
    assert one == many
    assert one.encode() == many.encode()


def test_record_many_dtypes():
    h = LogLinearHistogram()
    assert h.record_many(np.array([], dtype=np.int64)) == 0
    assert h.record_many(np.array([5, 6], dtype=np.int32)) == 0
    assert h.record_many(np.array([7], dtype=np.uint32)) == 0
    assert h.record_many(np.arange(10, dtype=np.int64)[::2]) == 0  # not contiguous
    assert h.record_many([8, 9]) == 0
    assert h.count == 10
    for bad in (np.array([1.5]), np.array([2**63], dtype=np.uint64)):
        with pytest.raises(TypeError, match="int64"):
            h.record_many(bad)
    assert h.count == 10


def test_sum_and_mean_exact_past_int64():
    h = LogLinearHistogram()
    n = 3_000_000
    block = np.full(n, HOUR_NS, dtype=np.int64)
    h.record_many(block)
    h.record_many(block)
    h.record(1)
    assert h.sum == 2 * n * HOUR_NS + 1 > 2**64
    assert h.mean == (2 * n * HOUR_NS + 1) / (2 * n + 1)
    assert LogLinearHistogram.decode(h.encode()).sum == h.sum


### Quantiles ###


def test_quantiles_shape_order_and_validation():
    h = LogLinearHistogram()
    h.record_many(np.arange(1, 1001) * 1_000)
    got = h.quantiles([[0.99, 0.5], [0.0, 1.0]])
    assert got.shape == (2, 2)
    assert got[1].tolist() == [1_000.0, 1_000_000.0]
    assert got[0, 1] == h.quantile(0.5)
    assert h.quantile(0.07) == h.quantiles([0.07])[0]
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            h.quantile(bad)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            h.quantiles([0.5, bad])


def test_decimal_quantile_ranks():
    # 0.07 * 100 is 7.000000000000001 in floats: the rank must still be 7, not 8
    h = LogLinearHistogram()
    h.record_many(np.arange(1, 101))
    assert h.quantile(0.07) == 7.0
    assert h.quantile(0.29) == 29.0
    assert h.quantile(0.5) == 50.0
    assert h.quantile(0.505) == 51.0


### Merge, copy, reset ###


def test_merge_of_shards_equals_one_histogram():
    rng = np.random.default_rng(11)
    x = np.concatenate([_lognormal_heavy_tail(rng, 200_000), [-3, HOUR_NS + 1]])
    whole = LogLinearHistogram()
    whole.record_many(x)
    merged = LogLinearHistogram()
    for shard in np.array_split(x, 7):
        part = LogLinearHistogram()
        part.record_many(shard)
        merged.merge(LogLinearHistogram.decode(part.encode()))  # as shipped by a worker
    assert merged == whole
    assert merged.encode() == whole.encode()
    assert np.array_equal(merged.quantiles(QS), whole.quantiles(QS))


def test_merge_layout_mismatch_names_both():
    a = LogLinearHistogram()
    b = LogLinearHistogram(sigfigs=2)
    with pytest.raises(ValueError) as e:
        a.merge(b)
    msg = str(e.value)
    assert "sigfigs=3" in msg and "sigfigs=2" in msg and "lowest_ns=1000" in msg
    with pytest.raises(ValueError, match="highest_ns=7200000000000"):
        a.merge(LogLinearHistogram(highest_ns=2 * HOUR_NS))
    with pytest.raises(TypeError):
        a.merge(None)


def test_merge_into_empty_and_self():
    a = LogLinearHistogram()
    a.record_many(np.array([5_000, 7_000]))
    empty = LogLinearHistogram()
    empty.merge(a)
    assert empty == a
    a.merge(a)
    assert (a.count, a.min, a.max, a.sum) == (4, 5_000, 7_000, 24_000)


def test_copy_and_reset():
    a = LogLinearHistogram()
    a.record_many(np.array([-1, 5_000, HOUR_NS * 2]))
    b = a.copy()
    assert b == a
    b.record(6_000)
    assert b != a and a.count == 1
    a.reset()
    assert a == LogLinearHistogram()
    assert b.count == 2


def test_counts_is_a_read_only_live_view():
    h = LogLinearHistogram()
    c = h.counts
    h.record(5)
    assert c[5] == 1
    with pytest.raises(ValueError):
        c[5] = 0


def test_layout_validation():
    with pytest.raises(ValueError, match="lowest_ns must be >= 1"):
        LogLinearHistogram(lowest_ns=0)
    with pytest.raises(ValueError, match="highest_ns must be >= 2 \\* lowest_ns"):
        LogLinearHistogram(lowest_ns=1_000, highest_ns=1_999)
    for s in (0, 6):
        with pytest.raises(ValueError, match="sigfigs must be in 1..5"):
            LogLinearHistogram(sigfigs=s)
    h = LogLinearHistogram(1, 2**63 - 1, 5)  # widest layout works end to end
    assert h.record(2**63 - 1) and h.quantile(1.0) == 2.0**63


### Encoding ###


def _roundtrip(h):
    data = h.encode()
    back = LogLinearHistogram.decode(data)
    assert back == h
    assert (back.count, back.min, back.max, back.sum, back.underflow, back.overflow) == (
        h.count, h.min, h.max, h.sum, h.underflow, h.overflow)
    assert back.mean == h.mean or (math.isnan(back.mean) and math.isnan(h.mean))
    assert np.array_equal(back.counts, h.counts)
    assert back.encode() == data
    return data


def test_encode_decode_round_trip_exact(sample):
    _, h = sample
    h = h.copy()
    h.record_many(np.array([-7, HOUR_NS + 7, HOUR_NS + 8]))
    data = _roundtrip(h)
    assert len(data) < h.counts_len * 8


def test_encode_decode_edge_cases():
    _roundtrip(LogLinearHistogram())
    for values in ([0], [HOUR_NS], [-1], [0, HOUR_NS], [1_000] * 5):
        h = LogLinearHistogram()
        h.record_many(np.array(values))
        _roundtrip(h)
    h = LogLinearHistogram(1_000_000, 10**13, 2)
    h.record_many(np.array([1, 10**12]))
    _roundtrip(h)
    assert LogLinearHistogram.decode(bytearray(h.encode())) == h
    assert LogLinearHistogram.decode(memoryview(h.encode())) == h


def test_pickle():
    h = LogLinearHistogram()
    h.record_many(np.array([-1, 3, 4_000_000]))
    assert pickle.loads(pickle.dumps(h)) == h


def _payload(data):
    return zlib.decompress(data[8:])


def _wrap(payload):
    body = zlib.compress(payload)
    return b"LNSZ" + struct.pack(">I", len(body)) + body


def _sample_encoding():
    h = LogLinearHistogram()
    h.record_many(np.array([1_000, 1_000, 5_000_000, 7_000_000_000]))
    return h.encode()


def test_decode_garbage_raises_value_error():
    good = _sample_encoding()
    bad = [b"", b"LNS", b"garbage!", b"\x00" * 100, good[:-1], good + b"\x00",
           b"LNSZ" + good[4:8] + bytes(len(good) - 8),          # right envelope, no zlib
           np.random.default_rng(0).bytes(200)]
    for cut in range(len(good)):
        bad.append(good[:cut])
    for data in bad:
        with pytest.raises(ValueError):
            LogLinearHistogram.decode(data)
    with pytest.raises(TypeError):
        LogLinearHistogram.decode("LNSZ")


def test_decode_rejects_inconsistent_payloads():
    p = _payload(_sample_encoding())
    header, counts = p[:84], p[84:]
    fields = list(struct.unpack(">4sBBHqqqqqqqqQI", header))

    def with_fields(**changes):
        f = list(fields)
        names = ["magic", "version", "sigfigs", "reserved", "lowest", "highest", "count",
                 "under", "over", "min", "max", "sum_hi", "sum_lo", "n_bytes"]
        for k, v in changes.items():
            f[names.index(k)] = v
        return struct.pack(">4sBBHqqqqqqqqQI", *f)

    cases = {
        "header magic": with_fields(magic=b"XXXX") + counts,
        "version": with_fields(version=9) + counts,
        "invalid layout": with_fields(sigfigs=9) + counts,
        "count": with_fields(count=5) + counts,
        "min": with_fields(min=2_000) + counts,
        "max": with_fields(max=1) + counts,
        "sum": with_fields(sum_lo=1) + counts,
        "truncated": header + counts[:-1],
        "padded": header + counts + b"\x00",
        # a zero run to the last bucket, then one count more: 17,408 (as ZigZag 34,815) + 1
        "bucket": with_fields(n_bytes=4, count=1, min=0, max=0, sum_lo=0) + b"\xff\x8f\x02\x02",
        "varint": with_fields(n_bytes=10) + b"\xff" * 9 + b"\x02",  # 65 bits
        "long varint": with_fields(n_bytes=11) + b"\xff" * 10 + b"\x01",
        "zero run": with_fields(n_bytes=3) + b"\xff\xff\x03",  # run of 32768 zeros
        "short header": header[:50],
    }
    for name, payload in cases.items():
        with pytest.raises(ValueError):
            LogLinearHistogram.decode(_wrap(payload))
        assert name
    assert LogLinearHistogram.decode(_wrap(p)).count == 4  # the untouched payload is fine
