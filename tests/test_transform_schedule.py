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
    assert [b for b, _ in s.band_steps(1)] == [0]  # step 1 codes only the coarsest band
    active = [len(s.band_steps(i)) for i in range(1, s.num_steps)]
    assert active == sorted(active)  # bands join, never leave
    assert s.is_pixel_step(s.num_steps) and not s.is_pixel_step(s.num_steps - 1)
    assert all(not math.isinf(n) for n in s.band_noise(s.num_steps - 1))


def test_step_coefficients_match_the_diffusion_posterior():
    c = coefficients(0.5, 0.2)
    # posterior variance sigma_s^2 * (1 - SNR_t / SNR_s) equals delta^2 / 12
    g_t, g_s = math.log(0.25), math.log(0.04)
    sig_s2 = 1 / (1 + math.exp(-g_s))
    assert math.isclose(c.delta**2 / 12, sig_s2 * -math.expm1(g_s - g_t), rel_tol=1e-12)
    assert math.isclose(c.quant_step, c.delta / c.coef_x)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError):
        Schedule(levels=(8.0, 16.0))
    with pytest.raises(ValueError):
        Schedule(levels=(128.0, 64.0), activation=(math.inf, 1.0, 1.0, 1.0, 1.0))


def test_receptive_radius_is_an_upper_bound(tiny_model):
    torch.manual_seed(0)
    net = tiny_model.denoiser
    image = torch.randn(1, 3, 256, 256)
    g = torch.zeros(1)
    with torch.no_grad():
        a = net(image, g)[1]
        image[0, :, 128, 128] += 1.0
        b = net(image, g)[1]
    changed = torch.nonzero((a - b).abs().sum(1)[0])
    reach = (changed - 128).abs().max().item()
    assert 0 < reach <= receptive_radius(tiny_model.config.network)


def test_tiles_join_without_seams(tiny_model):
    """Tiled evaluation agrees with one whole-image pass to float rounding (bit equality is not
    guaranteed across tensor shapes, which is why a file records its tile size)."""
    rng = np.random.default_rng(3)
    z = haar.forward(rng.normal(size=(3, 208, 240)), 4)
    net = PriorNetwork(tiny_model, "cpu")
    whole, tiled = net.predict(z, 4, tile=1024), net.predict(z, 4, tile=64)
    assert np.allclose(whole.display, tiled.display, atol=1e-5, rtol=0)
    for a, b in zip(whole.locs, tiled.locs):
        assert np.allclose(a, b, atol=1e-5, rtol=0)


def test_thread_count_does_not_change_predictions(tiny_model):
    rng = np.random.default_rng(4)
    z = haar.forward(rng.normal(size=(3, 96, 160)), 4)
    net = PriorNetwork(tiny_model, "cpu")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = net.predict(z, 3)
        torch.set_num_threads(1)
        one = net.predict(z, 3)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(two.locs + two.scales + [two.display], one.locs + one.scales + [one.display]):
        assert np.array_equal(a, b)
