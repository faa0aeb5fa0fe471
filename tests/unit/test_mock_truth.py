"""lens.mock.truth: the ground-truth record and load_truth."""
from __future__ import annotations

import numpy as np
import pytest

from lens.mock.truth import TruthRecorder, load_faults, load_truth, truth_paths


def recorder(worker=0, limit=10):
    rec = TruthRecorder(limit, worker, pid=123)
    row = rec.begin("7", 1000, stream=True, n_tokens=3)
    rec.t_admitted_ns[row] = 1100
    rec.t_headers_ns[row] = 1050
    for i, t in enumerate((2000, 3000, 4000)):
        rec.tokens[rec.token_offset[row] + i] = t
    rec.token_count[row] = 3
    rec.t_done_ns[row] = 4000
    rec.begin(f"w{worker}-2", 5000, stream=False, n_tokens=16)
    return rec


def test_round_trip_through_npz_bytes():
    truth = load_truth(recorder().to_npz())
    assert set(truth) == {"7", "w0-2"}
    r = truth["7"]
    assert (r["t_received_ns"], r["t_admitted_ns"], r["t_headers_ns"], r["t_done_ns"]) == (
        1000, 1100, 1050, 4000)
    assert r["stream"] is True and r["worker"] == 0
    assert r["token_write_ns"].dtype == np.int64
    assert r["token_write_ns"].tolist() == [2000, 3000, 4000]
    assert truth["w0-2"]["token_write_ns"].size == 0  # non-streamed: no token writes


def test_limit_counts_what_it_drops():
    rec = TruthRecorder(1, 0, 1)
    assert rec.begin("a", 1, True, 2) == 0
    assert rec.begin("b", 2, True, 2) == -1
    assert rec.dropped == 1 and len(rec.tokens) == 2
    with np.load(__import__("io").BytesIO(rec.to_npz())) as z:
        assert int(z["dropped"]) == 1


def test_workers_files_are_found_and_merged(tmp_path):
    base = tmp_path / "truth"
    for k in (0, 1, 10):
        recorder(worker=k).dump(f"{base}.{k}")
    (tmp_path / "truth.tmp5").write_bytes(b"junk")  # not a worker file
    assert truth_paths(base) == [f"{base}.{k}" for k in (0, 1, 10)]
    truth = load_truth(base)
    assert set(truth) == {"7", "w0-2", "w1-2", "w10-2"}
    assert truth["w10-2"]["worker"] == 10
    assert load_truth([f"{base}.1"]).keys() == {"7", "w1-2"}


def test_recording_keeps_working_after_a_dump():
    rec = recorder()
    rec.to_npz()
    rec.begin("x", 1, True, 100)  # the array must still be resizable (no exported buffer)
    assert len(rec.tokens) == 103


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing"):
        load_truth(tmp_path / "nothing")


def test_faults_round_trip_in_order_and_within_the_limit(tmp_path):
    rec = TruthRecorder(2, 3, pid=1)
    rec.fault("9", "never_end", 300)
    rec.fault("4", "status", 100)
    rec.fault("5", "status", 200)            # past the limit: counted only
    rec.dump(f"{tmp_path / 't'}.3")
    assert load_faults(tmp_path / "t") == [
        {"request_id": "4", "kind": "status", "t_ns": 100, "worker": 3},
        {"request_id": "9", "kind": "never_end", "t_ns": 300, "worker": 3}]
    with np.load(f"{tmp_path / 't'}.3") as z:
        assert int(z["faults_dropped"]) == 1
    assert load_truth(tmp_path / "t") == {}  # faults are not requests of the record


def test_a_record_without_faults_has_none():
    blob = recorder().to_npz()
    assert load_faults(blob) == []
    with np.load(__import__("io").BytesIO(blob)) as z:
        old = {k: z[k] for k in z.files if not k.startswith("fault")}
    buf = __import__("io").BytesIO()
    np.savez(buf, **old)                       # as written before faults were recorded
    assert load_faults(buf.getvalue()) == [] and set(load_truth(buf.getvalue())) == {"7", "w0-2"}
