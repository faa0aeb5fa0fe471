"""lens.mock.distributions: the TTFT/ITL draws."""
from __future__ import annotations

import numpy as np
import pytest

from lens.errors import ConfigError
from lens.mock.distributions import BLOCK, DistSpec, Sampler

N = 3 * BLOCK + 17  # crosses block refills


def draws_ms(spec, seed=1):
    s = Sampler(spec, np.random.default_rng(seed))
    return np.array([s.next_ns() for _ in range(N)]) / 1e6


def test_fixed_is_constant_in_integer_ns():
    s = Sampler(DistSpec("fixed", 2.5), np.random.default_rng(0))
    assert s.constant_ns == 2_500_000
    assert {s.next_ns() for _ in range(10)} == {2_500_000}


def test_zero_spread_is_constant_whatever_the_kind():
    for kind in ("uniform", "normal", "lognormal"):
        assert Sampler(DistSpec(kind, 3.0, 0.0), np.random.default_rng(0)).constant_ns == 3_000_000


def test_uniform_mean_and_half_width():
    x = draws_ms(DistSpec("uniform", 10.0, 4.0))
    assert x.min() >= 6.0 and x.max() <= 14.0
    assert abs(x.mean() - 10.0) < 0.1
    assert abs(x.std() - 4.0 / np.sqrt(3)) < 0.05  # std of U[a, b] = (b - a) / sqrt(12)


def test_normal_mean_and_std():
    x = draws_ms(DistSpec("normal", 20.0, 2.0))
    assert abs(x.mean() - 20.0) < 0.1
    assert abs(x.std() - 2.0) < 0.1


def test_normal_is_clipped_at_zero():
    x = draws_ms(DistSpec("normal", 1.0, 2.0))
    assert x.min() == 0.0
    assert (x == 0).mean() == pytest.approx(0.31, abs=0.03)  # P(N(1, 2) < 0) = 0.309


def test_lognormal_has_the_given_mean_and_std():
    x = draws_ms(DistSpec("lognormal", 2.0, 1.0))
    assert x.min() > 0
    assert abs(x.mean() - 2.0) < 0.05
    assert abs(x.std() - 1.0) < 0.1
    # the docstring's worked example: median exp(mu) = 1.79 ms
    assert np.median(x) == pytest.approx(1.79, abs=0.05)


def test_draws_are_reproducible_from_the_seed():
    spec = DistSpec("normal", 5.0, 1.0)
    assert np.array_equal(draws_ms(spec, 7), draws_ms(spec, 7))
    assert not np.array_equal(draws_ms(spec, 7), draws_ms(spec, 8))


@pytest.mark.parametrize(("spec", "words"), [
    (DistSpec("gamma", 1.0), "--itl-dist must be one of"),
    (DistSpec("fixed", -1.0), "--itl-ms must be >= 0 (got -1.0)"),
    (DistSpec("normal", 1.0, -2.0), "--itl-spread-ms must be >= 0"),
    (DistSpec("fixed", 1.0, 0.5), "add --itl-dist uniform, normal or lognormal"),
    (DistSpec("uniform", 1.0, 2.0), "half-width"),
    (DistSpec("lognormal", 0.0, 1.0), "must be > 0 for a lognormal"),
])
def test_bad_specs_say_what_to_change(spec, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        spec.validate("itl")
