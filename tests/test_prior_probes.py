"""scripts/prior_probes.py: the mirrored state it feeds the network, and its code lengths."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from uqdm_codec import haar
from uqdm_codec.codec import ideal_bits

from .conftest import synthetic_image


@pytest.fixture(scope="module")
def probes():
    path = Path(__file__).resolve().parent.parent / "scripts" / "prior_probes.py"
    spec = importlib.util.spec_from_file_location("prior_probes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("axis", ["h", "v"])
def test_flipped_bands_are_the_bands_of_the_mirrored_image(probes, axis):
    x = np.random.default_rng(0).normal(size=(3, 32, 48))
    mirrored = x[..., ::-1] if axis == "h" else x[..., ::-1, :]
    bands = probes._flip_bands(haar.forward(x, 4), axis, True)
    for got, want in zip(bands, haar.forward(mirrored, 4)):
        np.testing.assert_allclose(got, want, atol=1e-12)
    back = probes._flip_bands(bands, axis, True)
    for got, want in zip(back, haar.forward(x, 4)):
        np.testing.assert_array_equal(got, want)


def test_shape_probe_prices_the_logistic_as_the_codec_does(probes, codec):
    px = synthetic_image(32, 48, seed=3)
    result = probes.shape(codec, [px])
    total = result["total_bits"]
    steps = sum(ideal_bits(codec, px, 0)[:-1])  # every step's symbols; the lossless layer apart
    assert total["logistic"] == pytest.approx(steps, rel=1e-9)
    # the plain logistic is among the candidates, and on so few elements every one is looked at
    assert total["scale"] <= total["logistic"] + 1e-6
    assert total["mixture"] <= total["logistic"] + 1e-6


@pytest.mark.parametrize("spatial", [False, True])
def test_lossless_probe_prices_the_lossless_layer_as_the_codec_does(probes, codec, spatial):
    px = synthetic_image(32, 48, seed=4)
    result = probes.lossless_colour(codec, [px], spatial=spatial)
    layer = ideal_bits(codec, px, 0)[-1]  # the lossless layer's bits as the encoder codes them
    assert result["lossless_layer_bpp"] == pytest.approx(layer / (32 * 48), rel=1e-9)
    assert np.isfinite(result["saving_bpp"])
