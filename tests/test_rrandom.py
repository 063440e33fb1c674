"""RRandom against values printed by R 4.2.2 (Linux x86-64) with `sprintf("%.17g", x)`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emsim.rrandom import RRandom, qnorm


def test_runif_seed1_matches_r() -> None:
    u = RRandom(1).runif(3)
    np.testing.assert_allclose(u, [0.2655086631, 0.3721238996, 0.5728533633], rtol=0, atol=1e-10)
    # Uniforms are integer arithmetic times a constant, so they must agree with R exactly.
    np.testing.assert_array_equal(
        u, [0.26550866314209998, 0.37212389963679016, 0.57285336335189641]
    )


def test_rnorm_seed1_matches_r() -> None:
    z = RRandom(1).rnorm(3)
    np.testing.assert_allclose(z, [-0.6264538107, 0.1836433242, -0.8356286124], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(
        z, [-0.62645381074233242, 0.18364332422208224, -0.83562861241004716]
    )


def test_long_rnorm_stream_matches_r_bit_for_bit() -> None:
    # 1e5 draws reach the far tails, where the log in qnorm decides the last bits.
    x = RRandom(42).rnorm(100_000)
    np.testing.assert_array_equal(
        x[[0, 1, 99_998, 99_999]],
        [1.3709584471466685, -0.56469817139608869, 1.08850351143039, -1.0203730991117475],
    )
    assert x.max() == 4.3280912738529089
    assert x.min() == -4.0432763494616015
    assert (int(x.argmax()), int(x.argmin())) == (8584, 6947)


def test_interleaved_calls_follow_r_stream_order() -> None:
    # R: set.seed(-7); runif(2); rnorm(2, c(10, -10), c(2, 0.5)); runif(2, -1, 3)
    r = RRandom(-7)
    np.testing.assert_array_equal(r.runif(2), [0.32649485557340086, 0.53986111702397466])
    np.testing.assert_array_equal(
        r.rnorm(2, [10.0, -10.0], [2.0, 0.5]), [8.6806812197903316, -10.003344722080451]
    )
    np.testing.assert_array_equal(r.runif(2, -1, 3), [0.47724167071282864, -0.39008289854973555])


def test_largest_seed() -> None:
    np.testing.assert_array_equal(
        RRandom(2147483647).rnorm(3),
        [0.49490790107688132, -0.85323596952647529, 1.5923866380039915],
    )


def test_sd_zero_draws_nothing_as_in_r() -> None:
    # R: set.seed(5); c(rnorm(2, 0, c(1, 0)), runif(1))
    r = RRandom(5)
    got = np.concatenate([r.rnorm(2, 0.0, [1.0, 0.0]), r.runif(1)])
    np.testing.assert_array_equal(got, [-0.84085548078629846, 0.0, 0.9168757745064795])


def test_same_seed_same_stream_and_fresh_instances_are_independent() -> None:
    a, b = RRandom(123), RRandom(123)
    np.testing.assert_array_equal(a.rnorm(1000), b.rnorm(1000))
    assert not np.array_equal(RRandom(123).runif(10), RRandom(124).runif(10))


def test_generator_lookalikes_share_the_stream() -> None:
    ref = RRandom(9)
    u, z = ref.runif(6), ref.rnorm(4)
    r = RRandom(9)
    np.testing.assert_array_equal(r.random((2, 3)), u.reshape(2, 3))
    np.testing.assert_array_equal(r.standard_normal(4), z)
    r = RRandom(9)
    np.testing.assert_array_equal(r.uniform(2.0, 5.0, size=6), 2.0 + 3.0 * u)
    first = RRandom(9).random()
    assert isinstance(first, float) and first == u[0]
    assert RRandom(9).standard_normal(size=0).shape == (0,)


def test_uniforms_stay_inside_the_open_interval() -> None:
    u = RRandom(2).runif(200_000)
    assert u.dtype == np.float64
    assert ((u > 0.0) & (u < 1.0)).all()


@pytest.mark.parametrize("seed", [1.5, "1", None, True])
def test_bad_seed(seed: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        RRandom(seed)  # type: ignore[arg-type]


def test_bad_rnorm_arguments() -> None:
    r = RRandom(1)
    with pytest.raises(ValueError, match="mean"):
        r.rnorm(3, mean=[0.0, 1.0])
    with pytest.raises(ValueError, match="sd"):
        r.rnorm(3, sd=-1.0)
    with pytest.raises(ValueError, match="n"):
        r.runif(-1)
    with pytest.raises(ValueError, match="min"):
        r.runif(2, 3.0, 1.0)


# R 4.2.2: qnorm(p) for p in _Q_P; these cover all three branches of AS 241 and their edges.
_Q_P = [0.975, 1e-10, 0.5, 0.02, 0.07, 0.075, 0.925, 0.93, 1e-12, 1e-300, 1 - 1e-12, 0.3, 1.5e-11]
_Q_R = [
    1.9599639845400536,
    -6.3613409024040557,
    0.0,
    -2.0537489106318225,
    -1.4757910281791702,
    -1.4395314709384557,
    1.4395314709384559,
    1.4757910281791708,
    -7.0344838253011321,
    -37.047096299361201,
    7.0344869100478356,
    -0.52440051270804067,
    -6.6465708874771119,
]


def test_qnorm_reference_points() -> None:
    assert qnorm(0.975) == pytest.approx(1.959963984540054, abs=1e-15)
    assert qnorm(1e-10) == pytest.approx(-6.361340902404056, abs=1e-14)
    np.testing.assert_array_equal(qnorm(_Q_P), _Q_R)


def test_qnorm_symmetry() -> None:
    # Dyadic p make 1 - p exact, so the two tails must mirror exactly.
    p = np.ldexp(np.arange(1, 2**12), -12)
    np.testing.assert_array_equal(qnorm(p), -qnorm(1.0 - p))
    assert qnorm(0.5) == 0.0


def test_qnorm_inverts_the_normal_cdf() -> None:
    p = np.concatenate([np.linspace(1e-6, 1 - 1e-6, 2001), np.logspace(-300, -7, 200)])
    x = qnorm(p)
    back = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    # In the tail dp/p ~ x^2 * dx/x, so a last-bit error in x grows like x^2 in p.
    rel = np.abs(back / p - 1.0)
    assert (rel <= 4e-15 * np.maximum(x * x, 1.0)).all()


def test_qnorm_boundaries_and_shape() -> None:
    got = qnorm([[0.0, 1.0], [-0.1, np.nan]])
    assert got.shape == (2, 2)
    assert got[0, 0] == -np.inf and got[0, 1] == np.inf
    assert np.isnan(got[1]).all()
