"""Haar transform, schedule and network invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from uqdm_codec import haar
from uqdm_codec.inference import PriorNetwork
from uqdm_codec.network import receptive_radius
from uqdm_codec.schedule import Schedule, coefficients


def test_haar_is_orthonormal_and_invertible():
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 48))
    bands = haar.forward(x, 4)
    assert [b.shape for b in bands] == [(3, 2, 3), (3, 3, 2, 3), (3, 3, 4, 6), (3, 3, 8, 12), (3, 3, 16, 24)]
    assert np.allclose(haar.inverse(bands), x, atol=1e-14)
    assert math.isclose(sum(float((b**2).sum()) for b in bands), float((x**2).sum()), rel_tol=1e-12)


def test_haar_numpy_and_torch_agree():
    x = np.random.default_rng(1).normal(size=(2, 3, 16, 16))
    for a, b in zip(haar.forward(x, 4), haar.forward(torch.from_numpy(x), 4)):
        assert np.array_equal(a, b.numpy())


def test_haar_bounds_hold_for_extreme_images():
    rng = np.random.default_rng(2)
    x = np.sign(rng.uniform(-1, 1, (3, 32, 32)))
    for i, band in enumerate(haar.forward(x, 4)):
        assert np.abs(band).max() <= haar.band_bound(i, 4)


def test_schedule_structure():
    s = Schedule()
    assert s.num_steps == len(s.levels) + 1 and s.is_pixel_step(s.num_steps)
    table = s.jump_table()
    for i in range(1, s.haar_steps + 1):
        for j in range(i):
            c = s.jump(j, i)
            assert table["quant_step"][j][i] == c.quant_step > 0
            # a longer jump needs a finer quantiser: it must carry more information
            if j > 0:
                assert c.quant_step > s.jump(j - 1, i).quant_step
    assert s.noise(0) == math.inf and s.noise(1) == s.levels[0] / 127.5


def test_step_coefficients_match_the_diffusion_posterior():
    c = coefficients(0.5, 0.2)
    # posterior variance sigma_s^2 * (1 - SNR_t / SNR_s) equals delta^2 / 12
    g_t, g_s = math.log(0.25), math.log(0.04)
    sig_s2 = 1 / (1 + math.exp(-g_s))
    assert math.isclose(c.delta**2 / 12, sig_s2 * -math.expm1(g_s - g_t), rel_tol=1e-12)
    assert math.isclose(c.quant_step, c.delta / c.coef_x)
    # precision-weighted averaging: the combined noise after the jump is exactly n_s
    obs_var = c.quant_step**2 / 12
    assert math.isclose(1 / (1 / 0.25 + 1 / obs_var), 0.04, rel_tol=1e-12)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError):
        Schedule(levels=(8.0, 16.0))
    with pytest.raises(ValueError):
        Schedule(levels=(8.0, -1.0))
    with pytest.raises(ValueError):
        Schedule(pixel_step=0.0)
    with pytest.raises(IndexError):
        Schedule().jump(3, 2)


def test_receptive_radius_is_an_upper_bound():
    from .conftest import make_tiny_model

    torch.manual_seed(0)
    float_model = make_tiny_model()
    net = float_model.denoiser
    image = torch.randn(1, 3, 256, 256)
    g = torch.zeros(1)
    with torch.no_grad():
        maps = [torch.rand(1, 9 if lv < 3 else 12, 128 // 2**lv, 128 // 2**lv) for lv in range(4)]
        a = net(image, g, maps)[1]
        image[0, :, 128, 128] += 1.0
        b = net(image, g, maps)[1]
    changed = torch.nonzero((a - b).abs().sum(1)[0])
    reach = (changed - 128).abs().max().item()
    assert 0 < reach <= receptive_radius(float_model.config.network)


def test_tiles_join_without_seams(tiny_model):
    """Tiled evaluation gives exactly what one whole-image pass gives (the integer network's sums
    are exact whatever the tensor shapes), so decoders may tile as they like."""
    rng = np.random.default_rng(3)
    z = haar.forward(rng.normal(size=(3, 208, 240)), 4)
    net = PriorNetwork(tiny_model, "cpu")
    states = [np.full(b.shape, 4) for b in z]
    whole, tiled = net.predict(z, states, 4, tile=1024), net.predict(z, states, 4, tile=64)
    assert np.array_equal(whole.display, tiled.display)
    for a, b in zip(whole.locs + whole.scales, tiled.locs + tiled.scales):
        assert np.array_equal(a, b)


def test_thread_count_does_not_change_predictions(tiny_model):
    rng = np.random.default_rng(4)
    z = haar.forward(rng.normal(size=(3, 96, 160)), 4)
    states = [rng.integers(0, 4, b.shape) for b in z]
    net = PriorNetwork(tiny_model, "cpu")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = net.predict(z, states, 3)
        torch.set_num_threads(1)
        one = net.predict(z, states, 3)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(two.locs + two.scales + [two.display], one.locs + one.scales + [one.display]):
        assert np.array_equal(a, b)
