"""simulate: the seed's gen_data, with R's stream (RRandom) or a numpy Generator."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from emsim.rrandom import RRandom
from emsim.simulate import simulate, simulate_labelled

_DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def seed_data() -> tuple[np.ndarray, np.ndarray]:
    return simulate_labelled(500_000, (0.0, 2.0), 1.0, 0.8, RRandom(1))


def test_seed_table_head(seed_data: tuple[np.ndarray, np.ndarray]) -> None:
    # The seed document's pander table prints four significant digits.
    y = seed_data[0]
    printed = [0.2415, -0.4071, 0.01312, 2.756, -0.4597, 1.505]
    assert [float(f"{v:.4g}") for v in y[:6]] == printed
    # Full-precision values from R 4.2.2: set.seed(1); gen_data(500000)$Y
    np.testing.assert_array_equal(
        y[:6],
        [
            0.24146353066965501,
            -0.40706885718679087,
            0.013117203915118052,
            2.7556843943534743,
            -0.45968816209836594,
            1.5048095016817229,
        ],
    )


def test_seed_data_tail_and_labels(seed_data: tuple[np.ndarray, np.ndarray]) -> None:
    y, z = seed_data
    assert y.shape == (500_000,) and y.dtype == np.float64
    np.testing.assert_array_equal(
        y[-3:], [-0.086105032463005493, -1.2354757965140581, -0.59862998762028496]
    )
    assert int((z == 1).sum()) == 400_158  # R: sum(Z == 1)


def test_seed_data_gives_the_seed_initial_loglik(seed_data: tuple[np.ndarray, np.ndarray]) -> None:
    # Iteration 0 of the seed's fit (pi = 0.5) depends on every one of the 500000 values.
    path = _DATA / "seed_progress_R.csv"
    if not path.exists():
        pytest.skip("tests/data/seed_progress_R.csv not present")
    with path.open() as fh:
        row0 = next(csv.DictReader(fh))
    y = seed_data[0]
    dens = lambda m: np.exp(-0.5 * (y - m) ** 2) / np.sqrt(2 * np.pi)  # noqa: E731
    loglik = float(np.log(0.5 * dens(0.0) + 0.5 * dens(2.0)).sum())
    assert loglik == pytest.approx(float(row0["loglik"]), abs=1e-6)


def test_two_sigmas_match_r() -> None:
    # R: set.seed(11); Z <- (runif(10) > 0.3) + 1; rnorm(10, c(-1, 4)[Z], c(0.5, 2)[Z])
    y, z = simulate_labelled(10, [-1.0, 4.0], [0.5, 2.0], 0.3, RRandom(11))
    np.testing.assert_array_equal(z, [1, 1, 2, 1, 1, 2, 1, 1, 2, 1])
    np.testing.assert_array_equal(
        y,
        [
            -1.4670756598366825,
            -0.33819717689399087,
            5.2498355798894272,
            -1.0228614778530474,
            -1.50206028783614,
            2.3431335266720845,
            -1.1741758625864904,
            -1.7691466985435245,
            3.4888695090700934,
            -1.5749725163537769,
        ],
    )


def test_rrandom_path_is_runif_then_rnorm() -> None:
    r = RRandom(3)
    u = r.runif(50)
    z = np.where(u > 0.4, 2, 1)
    expected = r.rnorm(50, np.array([1.0, -1.0])[z - 1], np.array([1.0, 3.0])[z - 1])
    np.testing.assert_array_equal(simulate(50, [1.0, -1.0], [1.0, 3.0], 0.4, RRandom(3)), expected)


def test_numpy_generator_path() -> None:
    def draw(seed: int) -> np.ndarray:
        return simulate(1000, [0.0, 2.0], [1.0, 0.5], 0.7, np.random.default_rng(seed))

    np.testing.assert_array_equal(draw(5), draw(5))
    assert not np.array_equal(draw(5), draw(6))
    # Labels from the first n uniforms, then n standard normals, as documented.
    g = np.random.default_rng(5)
    z = np.where(g.random(1000) > 0.7, 1, 0)
    expected = np.array([0.0, 2.0])[z] + np.array([1.0, 0.5])[z] * g.standard_normal(1000)
    np.testing.assert_array_equal(draw(5), expected)


@pytest.mark.parametrize("rng_factory", [lambda: np.random.default_rng(1), lambda: RRandom(1)])
@pytest.mark.parametrize("pi", [0.05, 0.3, 0.8])
def test_label_fraction_near_pi(rng_factory, pi: float) -> None:
    n = 200_000
    _, z = simulate_labelled(n, [0.0, 3.0], 1.0, pi, rng_factory())
    frac = float((z == 1).mean())
    assert abs(frac - pi) < 5 * np.sqrt(pi * (1 - pi) / n)


def test_component_moments() -> None:
    y, z = simulate_labelled(200_000, [-2.0, 5.0], [0.5, 2.0], 0.4, np.random.default_rng(7))
    for k, (m, s) in enumerate([(-2.0, 0.5), (5.0, 2.0)], start=1):
        yk = y[z == k]
        assert abs(yk.mean() - m) < 5 * s / np.sqrt(yk.size)
        assert abs(yk.std() / s - 1) < 0.02


@pytest.mark.parametrize(("pi", "label"), [(0.0, 2), (1.0, 1)])
def test_pi_at_the_boundary_gives_one_component(pi: float, label: int) -> None:
    _, z = simulate_labelled(100, [0.0, 2.0], 1.0, pi, RRandom(1))
    assert (z == label).all()


def test_simulate_is_first_part_of_simulate_labelled() -> None:
    y = simulate(20, [0.0, 2.0], 1.0, 0.5, np.random.default_rng(0))
    y2, _ = simulate_labelled(20, [0.0, 2.0], 1.0, 0.5, np.random.default_rng(0))
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 0}, "n"),
        ({"n": -3}, "n"),
        ({"n": 2.5}, "n"),
        ({"n": True}, "n"),
        ({"mu": [0.0, 1.0, 2.0]}, "mu"),
        ({"mu": 1.0}, "mu"),
        ({"mu": [0.0, np.nan]}, "mu"),
        ({"mu": ["a", "b"]}, "mu"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": [1.0, -1.0]}, "sigma"),
        ({"sigma": np.inf}, "sigma"),
        ({"sigma": [1.0, 1.0, 1.0]}, "sigma"),
        ({"pi": -0.1}, "pi"),
        ({"pi": 1.5}, "pi"),
        ({"pi": np.nan}, "pi"),
        ({"pi": "0.5"}, "pi"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    args = {"n": 10, "mu": [0.0, 2.0], "sigma": 1.0, "pi": 0.5, "rng": RRandom(1)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"^{name} "):
        simulate(**args)


def test_bad_rng() -> None:
    with pytest.raises(TypeError, match="rng"):
        simulate(10, [0.0, 2.0], 1.0, 0.5, np.random.RandomState(1))  # type: ignore[arg-type]
