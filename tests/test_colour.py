"""Colour context (colour.py, FORMAT.md 6.4): parameters in the layer header, partners, the
conditioning arithmetic, the encoder's fit, and what a file made with it looks like."""

from __future__ import annotations

import numpy as np
import pytest

from uqdm_codec import codec as codec_module
from uqdm_codec import colour, container, entropy, files
from uqdm_codec.codec import Codec
from uqdm_codec.colour import BandContext
from uqdm_codec.errors import FormatError

from .conftest import synthetic_image


def tinted(h: int, w: int, seed: int = 0) -> np.ndarray:
    """One texture in three colours (a tint of a grey image): colours 1 and 2 follow colour 0."""
    grey = synthetic_image(h, w, seed)[..., 0].astype(float)
    rng = np.random.default_rng(seed)
    img = grey[..., None] * np.array([1.0, 0.85, 0.7]) + 20 + rng.normal(0, 1.0, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_block_round_trip_and_errors():
    ctx = (BandContext(0, 57, 40, -3, 20, 64), BandContext(4, -128, 1, 127, 0, 255))
    block = colour.to_bytes(ctx)
    assert block[0] == 0b10001 and len(block) == 1 + 2 * colour.ENTRY.size
    assert colour.parse(b"xx" + block, 2) == (ctx, 2 + len(block))
    assert colour.parse(block[:-1], 0) is None and colour.parse(b"", 0) is None
    assert colour.to_bytes(()) == b"\0" and colour.parse(b"\0", 0) == ((), 1)
    with pytest.raises(FormatError, match="scale factor 0"):
        colour.parse(bytes([1, 10, 0, 0, 0, 64]), 0)
    with pytest.raises(FormatError, match="band 4"):
        colour.check(ctx, 4)
    colour.check(ctx, 5)
    assert ctx[0].beta(1) == (57 / 64, 0.0) and ctx[0].beta(2) == (-3 / 64, 20 / 64)
    assert ctx[0].factor(1) == 40 / 64 and ctx[1].factor(2) == 255 / 64


def coded_layout(seed: int, shapes: list[tuple[int, ...]], share: float):
    """A step's coded elements over bands of these shapes (LL: colours, rows, columns; detail:
    orientations, colours, rows, columns), each coded with probability `share`: (colour, band,
    flat index, plane sizes) in natural order."""
    rng = np.random.default_rng(seed)
    coded = [np.flatnonzero(rng.random(int(np.prod(s))) < share) for s in shapes]
    band = np.concatenate([np.full(c.size, b, np.int8) for b, c in enumerate(coded)])
    flat = np.concatenate(coded).astype(np.int32)
    sizes = [s[-1] * s[-2] for s in shapes]
    colours = np.concatenate([(c // sizes[b]) % 3 for b, c in enumerate(coded)]).astype(np.uint8)
    return colours, band, flat, sizes


def test_partners_match_a_brute_force_search():
    colours, band, flat, sizes = coded_layout(1, [(3, 2, 3), (3, 3, 4, 4)], 0.6)
    pairs = colour.partners(colours, band, flat, sizes)
    place = [
        (int(band[e]), int(flat[e] // sizes[band[e]] // 3), int(flat[e] % sizes[band[e]]))
        for e in range(flat.size)
    ]
    for e in range(flat.size):
        for p in (0, 1):
            want = [
                j for j in range(flat.size) if place[j] == place[e] and colours[j] == p and p < colours[e]
            ]
            assert pairs[p, e] == (want[0] if want else -1)
    px = colour.pixel_partners(12)
    assert px[0].tolist() == [-1] * 4 + [0, 1, 2, 3] * 2
    assert px[1].tolist() == [-1] * 8 + [4, 5, 6, 7]


def test_condition_follows_the_formula():
    colours = np.array([0, 1, 2, 1, 2], np.uint8)
    band = np.zeros(5, np.int8)
    pairs = np.array([[-1, 0, 0, -1, -1], [-1, -1, 1, -1, 3]])  # elements 3 and 4: partner 3 only
    tilde = np.array([0.5, 0.3, 0.0, 0.2, 0.0])
    loc = np.array([0.1, 0.2, -0.1, 0.1, 0.0])
    scale = np.array([0.1, 0.2, 0.4, 0.05, 0.3])
    ctx = (BandContext(0, b10=32, f1=48, b20=16, b21=-8, f2=80),)
    l1, s1 = loc.copy(), scale.copy()
    colour.condition(1, ctx, colours, band, pairs, tilde, l1, s1)
    r0 = (0.5 - 0.1) / 0.1
    assert l1[1] == 0.2 + 0.2 * (0.5 * r0) and s1[1] == 0.2 * 0.75
    assert l1[3] == loc[3] and s1[3] == scale[3]  # element 3 has no colour-0 partner
    assert np.array_equal(l1[[0, 2, 4]], loc[[0, 2, 4]])
    colour.condition(2, ctx, colours, band, pairs, tilde, l1, s1, at=np.array([4, 0, 1]))  # 4 only
    r1_of_3 = max(min((0.2 - 0.1) / 0.05, 8.0), -8.0)
    assert l1[4] == 0.0 + 0.3 * ((0.25 * 0.0) + (-0.125 * r1_of_3)) and s1[4] == 0.3 * 1.25
    assert l1[2] == loc[2]
    colour.condition(2, ctx, colours, band, pairs, tilde, l1, s1, at=np.array([2]))
    r1 = min((0.3 - l1[1]) / s1[1], 8.0)
    assert l1[2] == -0.1 + 0.4 * ((0.25 * r0) + (-0.125 * r1)) and s1[2] == 0.4 * 1.25
    before = l1.copy()
    colour.condition(1, (), colours, band, pairs, tilde, l1, s1)
    assert np.array_equal(before, l1)


def test_places_and_orders_put_partners_first():
    colours, band, flat, sizes = coded_layout(4, [(3, 2, 2), (3, 3, 2, 2), (3, 3, 4, 4)], 0.7)
    rng = np.random.default_rng(4)
    places = colour.places(colours, band, flat, sizes)
    pairs = colour.partners(colours, band, flat, sizes)
    for e in range(flat.size):
        for p in pairs[:, e]:
            if p >= 0:
                assert places[p] == places[e] and colours[p] < colours[e]
    scale = rng.random(flat.size)
    prior = entropy.StepPrior(
        np.zeros(flat.size), scale, np.zeros(flat.size), np.ones(flat.size), np.ones(flat.size)
    )
    for order in (
        codec_module.importance_order(prior, colours, places),
        codec_module.natural_order(colours, places),
    ):
        rank = np.empty(order.size, np.int64)
        rank[order] = np.arange(order.size)
        assert sorted(order.tolist()) == list(range(flat.size))
        for e in range(flat.size):
            assert all(rank[p] < rank[e] for p in pairs[:, e] if p >= 0)
    natural = codec_module.natural_order(colours, places)
    assert np.all(np.diff(places[natural]) >= 0)
    important = codec_module.importance_order(prior, colours, places)
    best = {pl: scale[places == pl].max() for pl in np.unique(places)}
    keys = [best[pl] for pl in places[important]]
    assert all(a >= b for a, b in zip(keys, keys[1:]))
    assert colour.pixel_places(6).tolist() == [0, 1, 0, 1, 0, 1]


def test_fit_finds_correlated_colours_and_ignores_independent_ones():
    rng = np.random.default_rng(2)
    n = 3000
    colours = np.repeat(np.arange(3, dtype=np.uint8), n)
    pairs = colour.pixel_partners(3 * n)
    common = rng.logistic(0, 1, n)
    q = np.full(3 * n, 1.0)

    def prior_and_x(own: float):
        x = np.concatenate([common + own * rng.logistic(0, 1, n) for _ in range(3)]) * 0.05
        scale = np.full(3 * n, 0.05 * (1 + own))
        prior = entropy.StepPrior(np.zeros(3 * n), scale, rng.random(3 * n) - 0.5, q * 0.05, np.ones(3 * n))
        return x, prior

    x, prior = prior_and_x(0.15)
    ctx = colour.fit(x, prior, colours, np.zeros(3 * n, np.int8), pairs, 1)
    assert len(ctx) == 1 and ctx[0].b10 > 40 and ctx[0].f1 < 40
    loc, scale = prior.loc.copy(), prior.scale.copy()
    k0 = entropy.quantise(x, prior)
    tilde = entropy.reconstruct(k0, prior)
    colour.condition(1, ctx, colours, np.zeros(3 * n, np.int8), pairs, tilde, loc, scale)
    after = entropy.StepPrior(loc, scale, prior.dither, prior.quant_step, prior.bound)
    one = slice(n, 2 * n)
    before_bits = entropy.step_element_bits(k0[one], prior.part(one)).sum()
    after_bits = entropy.step_element_bits(entropy.quantise(x[one], after.part(one)), after.part(one)).sum()
    assert after_bits < 0.7 * before_bits

    rng = np.random.default_rng(3)
    x = rng.logistic(0, 0.05, 3 * n)
    prior = entropy.StepPrior(
        np.zeros(3 * n), np.full(3 * n, 0.05), rng.random(3 * n) - 0.5, q * 0.05, np.ones(3 * n)
    )
    assert colour.fit(x, prior, colours, np.zeros(3 * n, np.int8), pairs, 1) == ()


@pytest.fixture(scope="module")
def tinted_file(codec):
    img = tinted(48, 64)
    return img, codec.encode(img, seed=5)


def test_files_carry_a_context_and_it_saves_bytes(tinted_file, codec, tiny_model):
    img, data = tinted_file
    parsed = container.parse(data)
    assert any(layer.context for layer in parsed.layers)
    assert not parsed.layers[-1].context  # the lossless layer has none
    assert np.array_equal(codec.decode(data).pixels, img)
    plain = Codec(tiny_model, device="cpu", colour_context=False).encode(img, seed=5)
    assert np.array_equal(codec.decode(plain).pixels, img)
    assert not any(layer.context for layer in container.parse(plain).layers)
    assert len(data) < 0.97 * len(plain)


def test_small_chunks_and_cut_files_decode(tinted_file, tiny_model):
    img, data = tinted_file
    small = Codec(tiny_model, device="cpu", chunking=codec_module.ChunkPolicy(min_bytes=32, min_floor=32))
    fine = small.encode(img, seed=5)
    levels = list(small.iter_decode(fine, every_chunk=True))
    assert len(levels) > 20 and np.array_equal(levels[-1].pixels, img)
    info = files.info(fine)
    for budget in np.linspace(info.header_bytes + 8, len(fine) - 1, 17).astype(int):
        cut = files.truncate(fine, max_bytes=int(budget))
        small.decode(cut)  # chunks cut inside a colour group decode what they hold


def test_a_context_for_a_band_the_step_lacks_is_refused(tinted_file, codec):
    img, data = tinted_file
    parsed = container.parse(data)
    layer = parsed.layers[-2]  # the pixel step: band 0 only
    layer.context = (BandContext(1),)
    rebuilt = data[: parsed.header_size] + b"".join(la.to_bytes() for la in parsed.layers)
    with pytest.raises(FormatError, match="band 1"):
        codec.decode(rebuilt)
