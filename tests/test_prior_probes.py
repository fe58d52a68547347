"""scripts/prior_probes.py: its code lengths against the codec's (its flips probe mirrors with
ensemble.py, tested in test_ensemble.py)."""

import numpy as np
import pytest

from uqdm_codec.codec import Codec, ideal_bits

from .conftest import load_script, synthetic_image


@pytest.fixture(scope="module")
def probes():
    return load_script("prior_probes")


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


def test_display_classes_probe_starts_from_the_images_the_decoder_shows(probes, codec):
    """Its baseline plus the sent filter's gain is the PSNR of the image decoded after that step."""
    from uqdm_codec.progression import psnr

    px = synthetic_image(48, 64, seed=5)
    result = probes.display_classes(codec, [px])
    data = codec.encode(px, seed=0)
    for step, rows in result["images"].items():
        shown = codec.decode(data, steps=int(step)).pixels
        assert rows[0]["network_psnr"] + rows[0]["sent"] == pytest.approx(psnr(px, shown), abs=1e-9)
        assert all(np.isfinite(v) for v in rows[0].values())


def test_head_refit_probe_prices_each_step_as_the_codec_does(probes, codec):
    px = synthetic_image(48, 64, seed=6)
    result = probes.head_refit(codec, [px])
    bits = ideal_bits(codec, px, 0)
    for step, row in result["bits_by_step"].items():
        assert row["step"] == pytest.approx(bits[int(step) - 1], rel=1e-9)
        assert row["D_1 sent"] + row["D_2 sent"] <= row["step"] + 1e-9


def test_intervals_probe_with_clipped_locations_is_what_the_codec_codes(probes, codec):
    """The probe's float64 intervals (kept beside a chain without the codec's) truncating the priors
    and clipping the network's locations give the code length of the codec's own known intervals
    (float32, rounded outward; the codec also clips locations taken from the shown image: equal
    within 1e-4); truncation alone changes no symbol, no image, and no more bits."""
    px = synthetic_image(48, 64, seed=6)
    codec.intervals = False
    try:
        base, _ = probes.interval_curve(codec, px, 0, False, "network")
        truncated, recoded = probes.interval_curve(codec, px, 0, True, "network")
        clipped, _ = probes.interval_curve(codec, px, 0, True, "clip")
    finally:
        codec.intervals = True
    plain = Codec(codec.model, "cpu", intervals=False)
    assert base[-1][0] * 48 * 64 == pytest.approx(sum(ideal_bits(plain, px, 0)), rel=1e-9)
    assert clipped[-1][0] * 48 * 64 == pytest.approx(sum(ideal_bits(codec, px, 0)), rel=1e-4)
    assert truncated[-1][0] <= base[-1][0] and [p[1] for p in truncated[:-1]] == [p[1] for p in base[:-1]]
    assert any(share > 0 for _, share in recoded)
    result = probes.intervals(codec, [px])  # the whole probe, as the command line runs it
    assert codec.intervals and result["truncate+clip"]["lossless_bpp"][1] == pytest.approx(clipped[-1][0])
