"""Bit accounting: per (step, band) bits add up to the codec's own code lengths, errors chain up."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uqdm_codec import accounting
from uqdm_codec.codec import ideal_bits

from .conftest import synthetic_image


@pytest.fixture(scope="module")
def account(codec):
    return accounting.account_image(codec, synthetic_image(32, 48, seed=4), seed=7)


def test_bits_match_the_codec_and_split_over_bands(codec, account):
    T = codec.num_steps
    expected = ideal_bits(codec, synthetic_image(32, 48, seed=4), seed=7)
    assert [layer.step for layer in account.layers] == list(range(1, T + 2))
    np.testing.assert_allclose([layer.ideal_bits for layer in account.layers], expected, rtol=1e-9)
    for layer in account.layers:
        rows = [b for b in account.bands if b.step == layer.step]
        assert abs(sum(b.bits for b in rows) - layer.ideal_bits) < 1e-6 * max(1.0, layer.ideal_bits)
        assert all(0 <= b.coded <= b.coefficients for b in rows)
        if layer.ideal_bits > 64:  # real ANS bytes: the ideal length plus a few words of flush
            assert 0.9 < 8 * layer.real_bytes / layer.ideal_bits < 1.5
    assert all(b.recoded == 0 for b in account.bands if b.step == 1)
    assert all(0 <= b.recoded <= b.coded for b in account.bands)
    haar_rows = [b for b in account.bands if b.step == 1]
    assert [b.band for b in haar_rows] == accounting.band_names(codec.net.levels)
    assert sum(b.coefficients for b in haar_rows) == 3 * 32 * 48
    # the scale oracle includes factor 1, so it never costs more than the real scales
    one = accounting.SCALE_FACTORS.index(1.0)
    for b in account.bands:
        assert abs(b.bits_by_factor[one] - b.bits) < 1e-6 * max(1.0, b.bits)
        assert b.best_factor()[1] <= b.bits + 1e-9


def test_errors_chain_from_step_to_step(codec, account):
    T = codec.num_steps
    names = accounting.band_names(codec.net.levels)
    by_key = {(b.step, b.band): b for b in account.bands}
    for i in range(1, T - 1):  # a Haar band's estimate after step i is its estimate before step i+1
        for name in names:
            assert by_key[(i, name)].sse_after == pytest.approx(by_key[(i + 1, name)].sse_before)
    # the pixel step starts from the last Haar step's display (clipped to the data range: no worse)
    last = sum(by_key[(T - 1, n)].sse_after for n in names)
    assert by_key[(T, "pixel")].sse_before <= last * (1 + 1e-9)
    assert by_key[(T + 1, "lossless")].sse_after == 0 and account.layers[-1].sse_shown == 0


def test_combine_and_markdown(codec, account):
    both = accounting.combine([account, account])
    assert both.images == 2 and both.pixels == 2 * account.pixels
    assert both.bands[0].bits == pytest.approx(2 * account.bands[0].bits)
    text = accounting.to_markdown(both, codec.num_steps)
    assert "| 1 | LL_4 |" in text and "| lossless | lossless |" in text and "| pixel | pixel |" in text


def test_account_script(tmp_path, tiny_model_path, monkeypatch, capsys):
    path = tmp_path / "a.png"
    Image.fromarray(synthetic_image(40, 52, seed=1)).save(path)  # cropped to 32 x 48
    out = tmp_path / "table.md"
    script = Path(__file__).resolve().parent.parent / "scripts" / "account.py"
    argv = [
        str(script),
        str(path),
        "--model",
        tiny_model_path,
        "--out",
        str(out),
        "--json",
        str(tmp_path / "a.json"),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(script), run_name="__main__")
    assert "48x32" in capsys.readouterr().err  # width x height after the crop
    assert "| 1 | LL_4 |" in out.read_text() and (tmp_path / "a.json").exists()


def test_direct_level_bits_is_a_distribution_over_the_256_levels():
    levels = np.arange(256)
    for loc, scale in [(0.0, 0.01), (0.97, 0.003), (-1.3, 0.05), (0.2, 2.0)]:
        bits = accounting.direct_level_bits(levels, np.full(256, loc), np.full(256, scale))
        assert abs(np.sum(2.0**-bits) - 1.0) < 1e-9, (loc, scale)
