"""Cost per operation of lens._core's hot paths, each next to a baseline measured in the same run.

    python benchmarks/bench_core.py [--n 1000000] [--repeat 5]

Measures, in ns per operation (best of ``--repeat`` runs of ``--n`` operations):

* the clock: ``lens._core.now_ns()`` vs ``time.perf_counter_ns()`` called from Python, and
  ``lens_now_ns()`` inlined in C;
* one token timestamp: ``Recorder.token(slot)`` from Python, and ``Recorder.token_event`` from C
  (clock read + row update + push into the shared-memory token ring);
* one request row: ``begin`` + 4 ``stamp`` + ``finish`` (6 clock reads and a row push), from
  Python and from C;
* one histogram record: ``LogLinearHistogram.record_c`` in a C loop, ``record_many`` per value,
  ``record()`` from Python, vs HdrHistogram_py's ``record_value`` (the baseline);
* the memory of one default histogram.

The C-side loops are not part of lens: they are the Cython source ``C_LOOPS`` below, compiled
on first use with the flags of setup.py (-O2) into ``build/bench_core/`` and importing the same
compiled lens._core modules through their ``.pxd`` files, exactly as the engine's Cython code
calls them. Rings are drained between timed batches, outside the timing, so nothing spills.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(REPO, "build", "bench_core")
sys.path.insert(0, REPO)

from lens._core.recorder import ROW_FIELDS, TOKEN_FIELDS  # noqa: E402
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

from lens._core import LogLinearHistogram, Recorder, Ring, RowField, now_ns  # noqa: E402

C_LOOPS = '''
# cython: language_level=3, boundscheck=False, wraparound=False
from libc.stdint cimport int64_t

from lens._core.clock cimport lens_now_ns
from lens._core.hist cimport LogLinearHistogram
from lens._core.recorder cimport F_T_CONNECT, F_T_FIRST_BYTE, F_T_HEADERS, F_T_SENT, Recorder


def clock_reads(int64_t n):
    cdef int64_t i, acc = 0
    for i in range(n):
        acc += lens_now_ns()
    return acc


def token_events(Recorder rec, int slot, int64_t n):
    cdef int64_t i
    for i in range(n):
        rec.token_event(slot, lens_now_ns(), 1)


def token_events_no_clock(Recorder rec, int slot, int64_t n):
    cdef int64_t i
    for i in range(n):
        rec.token_event(slot, i, 1)


def rows(Recorder rec, int64_t first_id, int64_t n):
    cdef int64_t i
    cdef int slot
    for i in range(first_id, first_id + n):
        slot = rec.begin(i, 0)
        rec.stamp(slot, F_T_CONNECT)
        rec.stamp(slot, F_T_SENT)
        rec.stamp(slot, F_T_FIRST_BYTE)
        rec.stamp(slot, F_T_HEADERS)
        rec.finish(slot, 200, 0)


def hist_records(LogLinearHistogram h, const int64_t[::1] values):
    cdef Py_ssize_t i
    cdef int64_t out = 0
    for i in range(values.shape[0]):
        out += not h.record_c(values[i])
    return out
'''


def build_c_loops():
    """Compile C_LOOPS (once; rebuilt when it or a lens .pxd changes) and import it."""
    os.makedirs(BUILD, exist_ok=True)
    src = os.path.join(BUILD, "_lens_bench_core.pyx")
    old = open(src).read() if os.path.exists(src) else None
    if old != C_LOOPS:
        with open(src, "w") as f:
            f.write(C_LOOPS)
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    ext = Extension(
        "_lens_bench_core", [src],
        include_dirs=[np.get_include(), os.path.join(REPO, "lens", "_core", "includes")],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=os.environ.get("LENS_OPT_CFLAGS", "-O2").split(),
    )
    dist = Distribution({"ext_modules": cythonize([ext], include_path=[REPO], quiet=True),
                         "script_name": "bench_core.py"})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = BUILD
    cmd.build_temp = os.path.join(BUILD, "tmp")
    dist.run_command("build_ext")
    sys.path.insert(0, BUILD)
    return importlib.import_module("_lens_bench_core")


def best_ns(fn, n, repeat):
    """Return the best time per operation (ns) of fn(), which performs n operations."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t) / n)
    return best


class Rings:
    """A recorder over fresh rings, drained outside the timed batches."""

    def __init__(self, batch):
        self.rows = Ring(capacity=2 * batch, record_words=len(ROW_FIELDS))
        self.tokens = Ring(capacity=2 * batch, record_words=len(TOKEN_FIELDS))
        self.rec = Recorder(self.rows, self.tokens, max_slots=16)

    def drain(self):
        self.rows.drain()
        self.tokens.drain()

    def close(self):
        spilled = self.rows.spilled + self.tokens.spilled
        self.rows.close()
        self.tokens.close()
        if spilled:
            raise RuntimeError(f"{spilled} records spilled: the figures include spill costs")


def batched(rings, n, batch, run_batch):
    """Return a callable doing n operations in batches, draining the rings between batches;
    the time spent draining is subtracted, so only the producer's cost is counted."""

    def go():
        done = 0
        drain_ns = 0
        while done < n:
            k = min(batch, n - done)
            run_batch(done, k)
            t = time.perf_counter_ns()
            rings.drain()
            drain_ns += time.perf_counter_ns() - t
            done += k
        go.drain_ns = drain_ns

    return go


def best_batched_ns(rings, n, batch, run_batch, repeat):
    best = float("inf")
    fn = batched(rings, n, batch, run_batch)
    for _ in range(repeat):
        t = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t - fn.drain_ns) / n)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="operations per timed run")
    p.add_argument("--repeat", type=int, default=5, help="timed runs; the best is reported")
    p.add_argument("--hdrh-n", type=int, default=200_000,
                   help="values for the (slow, pure-Python) HdrHistogram baseline")
    args = p.parse_args(argv)
    n, repeat = args.n, args.repeat
    c = build_c_loops()
    batch = 1 << 16
    rows_out = []

    def row(label, ns, note=""):
        rows_out.append((label, ns, note))
        print(f"  {label:<46} {ns:8.1f} ns  {note}".rstrip())

    print(f"lens-fast core benchmark: Python {platform.python_version()}, {cpu_model()}, "
          f"nproc {os.cpu_count()}; n={n:,}, best of {repeat}")

    print("clock")
    pc = time.perf_counter_ns
    ln = now_ns

    def loop_pc():
        for _ in range(n):
            pc()

    def loop_ln():
        for _ in range(n):
            ln()

    def loop_empty():
        for _ in range(n):
            pass

    base = best_ns(loop_pc, n, repeat)
    row("time.perf_counter_ns() from Python", base, "(baseline, loop included)")
    t = best_ns(loop_ln, n, repeat)
    row("lens._core.now_ns() from Python", t, f"{base / t:.2f}x the baseline's speed")
    row("empty Python for-loop, per iteration", best_ns(loop_empty, n, repeat))
    row("lens_now_ns() inlined in C", best_ns(lambda: c.clock_reads(n), n, repeat))

    print("token timestamp: clock read + row update + token-ring push")
    rings = Rings(batch)
    try:
        bench_recorder(c, rings, n, batch, repeat, row)
    finally:
        rings.close()
    bench_histogram(c, n, repeat, args.hdrh_n, row)
    return rows_out


def bench_recorder(c, rings, n, batch, repeat, row):
    rec = rings.rec

    def tok_py(first, k):
        slot = rec.begin(first, 0)
        token = rec.token
        for _ in range(k):
            token(slot)
        rec.finish(slot, 200, 0)

    def tok_c(first, k):
        slot = rec.begin(first, 0)
        c.token_events(rec, slot, k)
        rec.finish(slot, 200, 0)

    def tok_c_no_clock(first, k):
        slot = rec.begin(first, 0)
        c.token_events_no_clock(rec, slot, k)
        rec.finish(slot, 200, 0)

    t_py = best_batched_ns(rings, n, batch, tok_py, repeat)
    row("Recorder.token(slot) from Python", t_py)
    t_c = best_batched_ns(rings, n, batch, tok_c, repeat)
    row("Recorder.token_event() from C", t_c,
        f"{t_py / t_c:.1f}x faster than from Python; target <= 30 ns: "
        f"{'met' if t_c <= 30 else 'MISSED'}")
    row("  the same without the clock read (t given)",
        best_batched_ns(rings, n, batch, tok_c_no_clock, repeat))

    print("request row: begin + 4 stamps + finish (6 clock reads, one row-ring push)")
    fields = [int(RowField.t_connect_ns), int(RowField.t_sent_ns),
              int(RowField.t_first_byte_ns), int(RowField.t_headers_ns)]

    def rows_py(first, k):
        begin, stamp, finish = rec.begin, rec.stamp, rec.finish
        f0, f1, f2, f3 = fields
        for i in range(first, first + k):
            slot = begin(i, 0)
            stamp(slot, f0)
            stamp(slot, f1)
            stamp(slot, f2)
            stamp(slot, f3)
            finish(slot, 200, 0)

    r_py = best_batched_ns(rings, n, batch, rows_py, repeat)
    row("one row from Python", r_py)
    r_c = best_batched_ns(rings, n, batch, lambda first, k: c.rows(rec, first, k), repeat)
    row("one row from C", r_c, f"{r_py / r_c:.1f}x faster than from Python; target <= 300 ns: "
        f"{'met' if r_c <= 300 else 'MISSED'}")


def bench_histogram(c, n, repeat, hdrh_n, row):
    print("histogram record (lognormal latencies, median 50 ms, within 1 us .. 1 h)")
    from hdrh.histogram import HdrHistogram

    rng = np.random.default_rng(1)
    values = np.clip(rng.lognormal(np.log(50e6), 2.0, n), 1_000, 3_600_000_000_000).astype(np.int64)
    as_list = values.tolist()
    hdr_values = as_list[:hdrh_n]

    def hdr_loop():
        h = HdrHistogram(1, 3_600_000_000_000, 3)
        rv = h.record_value
        for v in hdr_values:
            rv(v)

    def py_loop():
        h = LogLinearHistogram()
        rv = h.record
        for v in as_list:
            rv(v)

    hists = [LogLinearHistogram() for _ in range(repeat)]
    hdr = best_ns(hdr_loop, len(hdr_values), min(repeat, 3))
    row("hdrh HdrHistogram.record_value() from Python", hdr, "(baseline)")
    t = best_ns(py_loop, n, repeat)
    row("LogLinearHistogram.record() from Python", t, f"{hdr / t:.0f}x faster")
    t = best_ns(lambda: hists.pop().record_many(values), n, repeat)
    row("LogLinearHistogram.record_many(), per value", t, f"{hdr / t:.0f}x faster")
    hists = [LogLinearHistogram() for _ in range(repeat)]
    t = best_ns(lambda: c.hist_records(hists.pop(), values), n, repeat)
    row("LogLinearHistogram.record_c() in a C loop", t,
        f"{hdr / t:.0f}x faster; targets <= 20 ns and >= 20x: "
        f"{'met' if t <= 20 and hdr / t >= 20 else 'MISSED'}")

    h = LogLinearHistogram()
    print(f"memory of one default histogram (1 us .. 1 h, 3 digits): {h.nbytes:,} bytes "
          f"(counts_len {h.counts_len:,}); target <= 262,144: "
          f"{'met' if h.nbytes <= 262_144 else 'MISSED'}")
    ref = HdrHistogram(1, 3_600_000_000_000, 3)
    print(f"  for reference, HdrHistogram_py's counts at 1 ns resolution: "
          f"{ref.counts_len * 8:,} bytes (counts_len {ref.counts_len:,})")


if __name__ == "__main__":
    main()
