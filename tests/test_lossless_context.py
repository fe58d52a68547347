"""Spatial context of the lossless layer (lossless_context.py, FORMAT.md 6.2): the header block,
the neighbours' residuals, the moving arithmetic, the encoder's fit, and files made with it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from uqdm_codec import codec as codec_module
from uqdm_codec import container, entropy, files
from uqdm_codec import lossless_context as lc
from uqdm_codec.codec import Codec
from uqdm_codec.errors import FormatError, SyncError
from uqdm_codec.lossless_context import LosslessContext

from .test_portability import SAMPLE

CTX = LosslessContext(
    (tuple(range(-6, 6)), tuple(range(0, 12)), (127, -127, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)), (64, 1, 255)
)


def test_block_round_trip_and_errors():
    assert lc.to_bytes(None) == b"\x00"
    assert lc.parse(b"\x07\x00", 1) == (None, 2)
    block = lc.to_bytes(CTX)
    assert len(block) == lc.SIZE == 40
    assert lc.parse(b"ab" + block + b"z", 2) == (CTX, 2 + lc.SIZE)
    assert lc.parse(block[:-1], 0) is None  # the data ends inside it
    assert lc.parse(b"", 0) is None
    with pytest.raises(FormatError, match="flag"):
        lc.parse(b"\x02" + block[1:], 0)
    bad = bytearray(block)
    bad[1 + lc.TAPS] = 0  # colour 0's factor code
    with pytest.raises(FormatError, match="factor"):
        lc.parse(bytes(bad), 0)


def test_halves_and_groups():
    second = lc.second_half(3, 4)
    assert second.reshape(3, 3, 4)[0].tolist() == [[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]
    assert np.array_equal(second.reshape(3, 12)[1], second.reshape(3, 12)[2])
    order = np.array([5, 0, 1, 4, 2, 3])  # positions of a 2x1 image's elements (colours x 2 rows)
    sec = lc.second_half(2, 1)  # row 1 is half B: elements 1, 3, 5
    assert lc.halves(order, sec).tolist() == [0, 4, 2, 5, 1, 3]
    a, b = lc.groups(order, sec)
    assert order[a].tolist() == [0, 4, 2] and order[b].tolist() == [5, 1, 3]


def test_features_are_the_known_neighbours_residuals():
    h, w, n = 4, 5, 20
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, 3 * n).astype(np.uint8)
    loc = rng.uniform(-1, 1, 3 * n)
    scale = rng.uniform(0.001, 0.05, 3 * n)
    known = rng.random(3 * n) < 0.7
    at = np.arange(3 * n)
    got = lc.features(at, levels, known, loc, scale, h, w)
    r = np.clip((entropy.pixels_to_data(levels) - loc) / scale, -8, 8)
    for e in at:
        c0, y, x = e // n, (e % n) // w, e % w
        for j, (dy, dx) in enumerate(((-1, 0), (1, 0), (0, -1), (0, 1))):
            for c in range(3):
                yy, xx = y + dy, x + dx
                inside = 0 <= yy < h and 0 <= xx < w
                f = c * n + yy * w + xx
                want = r[f] if inside and known[f] else 0.0
                assert got[e, 3 * j + c] == want, (c0, y, x, j, c)


def test_moved_follows_the_formula():
    rng = np.random.default_rng(1)
    n = 10
    loc, scale = rng.uniform(-1, 1, 3 * n), rng.uniform(0.001, 0.05, 3 * n)
    at = np.array([3, n + 4, 2 * n + 9])
    feats = rng.uniform(-8, 8, (3, lc.TAPS))
    m, s = lc.moved(CTX, at, feats, loc, scale, n)
    for row, e in enumerate(at):
        c = e // n
        t = 0.0
        for k in range(lc.TAPS):
            t = t + (CTX.betas[c][k] / 64.0) * feats[row, k]
        assert m[row] == loc[e] + scale[e] * t
        assert s[row] == scale[e] * (CTX.factors[c] / 64.0)


def _layer_inputs(h: int, w: int, coupling: float, seed: int = 0):
    """Pixels whose residual from a flat prior is a smooth field (coupling 1) or white noise (0)."""
    rng = np.random.default_rng(seed)
    n = h * w
    white = rng.normal(0, 1, (3, h, w))
    smooth = (white + np.roll(white, 1, 1) + np.roll(white, 1, 2) + np.roll(white, (1, 1), (1, 2))) / 2
    field = coupling * smooth + (1 - coupling) * white
    scale = np.full(3 * n, 1.5 / 128)  # logistic scale 1.5 levels: the pixel step's typical one
    loc = np.zeros(3 * n)
    x = np.clip(loc + scale * field.ravel(), -1, 1)
    levels = entropy.data_to_pixels(x).astype(np.int64)
    q = 3.0 / 128
    x_tilde = entropy.pixels_to_data(levels) + rng.uniform(-0.4, 0.4, 3 * n) * q
    return levels, x_tilde, loc, scale, q


def test_fit_finds_spatial_structure_and_ignores_white_noise():
    h, w = 40, 48
    levels, x_tilde, loc, scale, q = _layer_inputs(h, w, 1.0)
    ctx, m, s = lc.encoder_prior(levels, x_tilde, loc, scale, q, h, w)
    assert ctx is not None and all(f < 64 for f in ctx.factors)  # neighbours narrow the prior
    assert all(max(b) > 10 for b in ctx.betas)
    before = entropy.levels_ideal_bits(levels, x_tilde, loc, scale, q)
    after = entropy.levels_ideal_bits(levels, x_tilde, m, s, q)
    assert after < 0.95 * before  # half B alone pays: about 18 % of its bits here
    first = ~lc.second_half(h, w)
    assert np.array_equal(m[first], loc[first]) and np.array_equal(s[first], scale[first])

    levels, x_tilde, loc, scale, q = _layer_inputs(h, w, 0.0)
    assert lc.encoder_prior(levels, x_tilde, loc, scale, q, h, w)[0] is None
    assert lc.encoder_prior(levels[:12], x_tilde[:12], loc[:12], scale[:12], q, 2, 2)[0] is None  # too few


def _rebuilt(data: bytes, parsed, layer) -> bytes:
    return data[: parsed.header_size] + b"".join(la.to_bytes() for la in [*parsed.layers[:-1], layer])


@pytest.fixture(scope="module")
def shipped():
    """The shipped model: a random tiny model's pixel scales are too wide for any context to pay."""
    return Codec(None, device="cpu")


@pytest.fixture(scope="module")
def spatial_file(shipped):
    with Image.open(SAMPLE) as im:
        img = np.asarray(im.convert("RGB"))[:48, :64].copy()
    return img, shipped.encode(img, seed=9)


def test_files_carry_a_context_and_it_saves_bytes(spatial_file, shipped):
    img, data = spatial_file
    codec = shipped
    parsed = container.parse(data)
    assert parsed.layers[-1].lossless_context is not None
    assert all(layer.lossless_context is None for layer in parsed.layers[:-1])
    assert np.array_equal(codec.decode(data).pixels, img)
    plain = Codec(shipped.model, device="cpu", lossless_context=False).encode(img, seed=9)
    assert container.parse(plain).layers[-1].lossless_context is None
    assert np.array_equal(codec.decode(plain).pixels, img)
    # the steps are the same; only the lossless layer differs
    assert data[: parsed.layer_offsets[-2]] == plain[: parsed.layer_offsets[-2]]
    assert len(data) < len(plain)


def test_small_chunks_and_cut_files_decode(spatial_file, shipped):
    img = spatial_file[0]
    small = Codec(shipped.model, device="cpu", chunking=codec_module.ChunkPolicy(min_bytes=32, min_floor=32))
    fine = small.encode(img, seed=9)
    parsed = container.parse(fine)
    assert len(parsed.layers[-1].chunks) > 4
    levels = list(small.iter_decode(fine, every_chunk=True))
    assert np.array_equal(levels[-1].pixels, img)
    start, end = parsed.layer_offsets[-2], len(fine)
    exact = []
    for budget in np.linspace(start + 8, end - 1, 13).astype(int):
        cut = files.truncate(fine, max_bytes=int(budget))
        shown = small.decode(cut)  # chunks cut inside a half decode what they hold
        assert not shown.lossless
        exact.append(int((shown.pixels == img).sum()))
    assert exact == sorted(exact) and exact[0] < exact[-1] < img.size  # more bytes, more exact values


def test_altered_or_corrupted_contexts_are_refused(spatial_file, shipped):
    img, data = spatial_file
    codec = shipped
    parsed = container.parse(data)
    layer = parsed.layers[-1]
    ctx = layer.lossless_context
    other = LosslessContext(ctx.betas, tuple(f + 1 for f in ctx.factors))
    layer.lossless_context = other
    with pytest.raises(SyncError):
        codec.decode(_rebuilt(data, parsed, layer))
    layer.lossless_context = ctx
    at = parsed.layer_offsets[-2] + 8  # the block follows the 8 fixed bytes of the layer header
    assert data[at] == 1
    with pytest.raises(FormatError):
        container.parse(data[:at] + b"\x03" + data[at + 1 :])
