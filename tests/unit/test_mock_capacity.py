"""lens.mock.capacity: where the mock saturates."""
from __future__ import annotations

import math

import pytest

from lens.mock.capacity import itl_factor, saturation_rps, slot_time_ms


def test_itl_factor():
    assert itl_factor(1, 0.5) == 1.0
    assert itl_factor(0, 0.5) == 1.0
    assert itl_factor(3, 0.5) == 2.0
    assert itl_factor(64, 0.0) == 1.0


def test_worked_example_of_the_docstring():
    # ttft 20, itl 2, 128 tokens, C = 64, S = 0.01: D = 434.02 ms -> 147.46 req/s
    assert slot_time_ms(20, 2, 128, 64, 0.01) == pytest.approx(434.02)
    assert saturation_rps(20, 2, 128, 64, 0.01) == pytest.approx(147.46, abs=0.01)


def test_without_slowdown_it_is_concurrency_over_duration():
    # one slot, 20 + 9 * 5 = 65 ms per request
    assert saturation_rps(20, 5, 10, 1) == pytest.approx(1000 / 65)
    assert saturation_rps(20, 5, 10, 4) == pytest.approx(4000 / 65)


def test_one_token_holds_the_slot_for_the_ttft_only():
    assert saturation_rps(10, 99, 1, 2, 5.0) == pytest.approx(200.0)


def test_unlimited_concurrency():
    assert saturation_rps(20, 2, 128, 0) == math.inf
    # rate < 1 / ((T - 1) * itl * S) = 1 / (127 * 2 ms * 0.01)
    assert saturation_rps(20, 2, 128, 0, 0.01) == pytest.approx(1000 / 2.54)
    assert saturation_rps(0, 0, 16, 4) == math.inf


def test_negative_settings_are_refused():
    with pytest.raises(ValueError):
        saturation_rps(-1, 2, 16, 4)
