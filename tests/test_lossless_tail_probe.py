"""scripts/lossless_tail_probe.py: its interlaced coder's code lengths are those of a real code."""

import numpy as np
import pytest

from .conftest import load_script, synthetic_image


@pytest.fixture(scope="module")
def probe():
    return load_script("lossless_tail_probe")


@pytest.mark.parametrize("m, s", [(0.0, 0.3), (17.4, 2.0), (254.9, 9.0), (128.0, 60.0)])
def test_discretised_logistic_sums_to_one_over_the_levels(probe, m, s):
    """Kraft: the 256 levels' probabilities, tails folded into the end levels, sum to 1."""
    v = np.arange(256, dtype=np.float64)
    bits = probe.logistic_bits(v, np.full(256, m), s)
    assert np.sum(2.0**-bits) == pytest.approx(1.0, abs=1e-9)
    if s < 10:  # a narrow one is most probable at its location's level
        assert np.argmin(bits) == int(np.clip(np.round(m), 0, 255))


@pytest.mark.parametrize("rich", [False, True])
@pytest.mark.parametrize("h, w", [(37, 53), (9, 130)])
def test_every_pixel_is_coded_once_at_any_size(probe, h, w, rich):
    """interlaced_bits asserts that each pass codes only pixels not yet known, and all of them."""
    px = synthetic_image(h, w, seed=h)
    assert 0 < probe.interlaced_bits(px, rich=rich) < 8 * px.size + 12 * 3 * 16 * (17 + 31)


def test_noise_costs_about_eight_bits_a_value(probe):
    """Uniform noise cannot be predicted: 8 bits a value, plus the counted side information
    (per pass and colour: 16 bits for each of at most 9 coefficients, 31 bin edges and scales),
    plus the price of a logistic (at most s = 60) standing in for a uniform over the levels."""
    noise = np.random.default_rng(5).integers(0, 256, (192, 192, 3), dtype=np.uint8)
    side = (192 // 64) ** 2 * 3 * 8 + 12 * 3 * 16 * (9 + 31)  # the raw 64-pixel lattice, the passes
    per_value = (probe.interlaced_bits(noise) - side) / noise.size
    assert 7.95 < per_value < 8.4


def test_structure_and_side_information_make_it_cheaper(probe):
    px = synthetic_image(96, 128, seed=11)
    alone = probe.interlaced_bits(px)
    assert alone < 0.8 * 8 * px.size  # a smooth synthetic image is far below 8 bits per value
    noisy_side = np.clip(px.astype(int) + np.random.default_rng(0).integers(-2, 3, px.shape), 0, 255)
    assert probe.interlaced_bits(px, noisy_side.astype(np.uint8)) < alone
