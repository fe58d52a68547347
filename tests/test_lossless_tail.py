"""The lossless tail (lossless_tail.py, FORMAT.md 6.6): the interlaced coder on its own, and files
whose layer T is a tail (the TAIL header flag) through the codec, truncation, tiling and the CLI."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from uqdm_codec import container, files, get_codec, haar, lossless_tail, tail_green
from uqdm_codec.codec import Codec, model_for_file
from uqdm_codec.errors import FormatError, SyncError
from uqdm_codec.image_io import load_image
from uqdm_codec.progression import level_name

from .conftest import synthetic_image
from .test_cli import assert_one_line_error, run

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
DATA = Path(__file__).resolve().parent / "data"


def _near(img: np.ndarray, seed: int = 0, spread: int = 3) -> np.ndarray:
    """A side image the decoder might have: the image with small errors."""
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.int64) + rng.integers(-spread, spread + 1, img.shape), 0, 255).astype(
        np.uint8
    )


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (5, 3), (64, 65), (130, 67)])
def test_passes_cover_every_pixel_once(shape):
    seen = np.zeros(shape, np.int64)
    for p in lossless_tail.passes(*shape):
        seen[p.rows, p.cols] += 1
    assert (seen == 1).all()


@pytest.mark.parametrize("form", lossless_tail.FORMS)
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (17, 33), (64, 80)])
def test_round_trip_with_and_without_a_side_image(shape, form):
    img = synthetic_image(*shape, seed=3)
    for side in (None, _near(img)):
        data = lossless_tail.encode(img, side, form)
        assert np.array_equal(lossless_tail.decode(data, *shape, side, form), img)


def _photo_crop() -> np.ndarray:
    return np.ascontiguousarray(load_image(SAMPLES / "kodim23.png").pixels[:256, :256])


def _blurred(img: np.ndarray) -> np.ndarray:
    """A 256 x 256 side image like an early step's: img box-filtered to 32 x 32 and upsampled."""
    return np.asarray(Image.fromarray(img).resize((32, 32), Image.BOX).resize((256, 256), Image.BILINEAR))


def test_form_2_sees_the_earlier_colours_and_codes_a_photo_in_fewer_bytes():
    """Form 2 (uqdm 0.26) against form 1 (0.23-0.25) on a crop of the sample photo, alone and given
    a blurred side image like an early step's: measured 2.6 % and 3.5 % smaller (MODEL.md 30)."""
    img = _photo_crop()
    blurred = _blurred(img)
    for side in (None, blurred):
        one, two = (lossless_tail.encode(img, side, form) for form in (1, 2))
        assert len(two) < 0.985 * len(one)
        assert np.array_equal(lossless_tail.decode(two, 256, 256, side, 2), img)
        # each form's parameters have their own length: a decoder of the other form refuses them
        with pytest.raises(FormatError):
            lossless_tail.decode(one, 256, 256, side, 2)
    with pytest.raises(ValueError, match="form"):
        lossless_tail.encode(img, None, max(lossless_tail.FORMS) + 1)


def test_form_3_sees_the_neighbours_signed_errors_and_codes_a_photo_in_fewer_bytes():
    """Form 3 (uqdm 0.27) against form 2 on the same crop: 0.12 % and 0.04 % smaller here (a smooth
    photo; 0.6 % and 1.0 % on the held-aside and PNG photos, MODEL.md 31)."""
    img = _photo_crop()
    blurred = _blurred(img)
    for side in (None, blurred):
        two, three = (lossless_tail.encode(img, side, form) for form in (2, 3))
        assert len(three) < len(two)
        assert np.array_equal(lossless_tail.decode(three, 256, 256, side, 3), img)
        with pytest.raises(FormatError):
            lossless_tail.decode(two, 256, 256, side, 3)


def _sharp_shapes(n: int = 256, seed: int = 0) -> np.ndarray:
    """Filled triangles with hard edges over a flat ground, and a little noise."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (n, n), (120, 130, 140))
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        draw.polygon(
            [tuple(rng.integers(0, n, 2).tolist()) for _ in range(3)],
            fill=tuple(rng.integers(0, 256, 3).tolist()),
        )
    return np.clip(np.asarray(im) + rng.normal(0, 2, (n, n, 3)), 0, 255).astype(np.uint8)


def test_form_4_follows_edges_and_codes_sharp_shapes_in_fewer_bytes():
    """Form 4 (uqdm 0.28) adds the neighbours' medians, which a linear mix cannot form: across a
    hard edge the median keeps to one side. On sharp shapes 2.9 % smaller than form 3 (measured);
    on the smooth sample crop it costs its extra coefficients (+0.02 %), on the decision sets it
    took 0.1 % and 0.9 % off (MODEL.md 32)."""
    img = _sharp_shapes()
    three, four = (lossless_tail.encode(img, None, form) for form in (3, 4))
    assert len(four) < 0.98 * len(three)
    assert np.array_equal(lossless_tail.decode(four, 256, 256, None, 4), img)
    with pytest.raises(FormatError):
        lossless_tail.decode(three, 256, 256, None, 4)


def test_form_5_codes_photos_and_shapes_in_fewer_bytes():
    """Form 5 (uqdm 0.29): large edge passes in two halves, the second seeing 8 neighbours; the
    activity's weights fitted per pass and colour; the busy and the quiet half of a large pass with
    predictors of their own; coefficients sent with fewer bits where that pays. Measured against
    form 4: 2.7 % smaller on sharp shapes in noise, 1.1 % and 1.2 % on the sample crop alone and
    with a blurred side image (on the decision sets ~2 % and ~3 %, MODEL.md 33)."""
    shapes, img = _sharp_shapes(), _photo_crop()
    four, five = (lossless_tail.encode(shapes, None, form) for form in (4, 5))
    assert len(five) < 0.98 * len(four)
    assert np.array_equal(lossless_tail.decode(five, 256, 256, None, 5), shapes)
    with pytest.raises(FormatError):
        lossless_tail.decode(four, 256, 256, None, 5)
    blurred = _blurred(img)
    for side in (None, blurred):
        coded = lossless_tail.encode_passes(img, side, 5)
        assert len(coded.to_bytes()) < 0.995 * len(lossless_tail.encode(img, side, 4))
        dec = lossless_tail.TailDecoder(coded.params, 256, 256, side, 5)
        last = dec.params[-1]  # the largest pass: two classes in every colour, weights that are used
        assert all(len(colour.coefs) == 2 and colour.weights.any() for colour in last)
        assert all(len(colour.coefs) == 1 for colour in dec.params[0])  # a small pass: one


def _subsampled_chroma(img: np.ndarray) -> np.ndarray:
    """img as a JPEG decoder shows it with 4:2:0 chroma: YCbCr, the chroma halved and doubled."""
    h, w = img.shape[:2]
    y, cb, cr = Image.fromarray(img).convert("YCbCr").split()
    half = [c.resize((w // 2, h // 2), Image.BOX).resize((w, h), Image.BILINEAR) for c in (cb, cr)]
    return np.asarray(Image.merge("YCbCr", (y, *half)).convert("RGB"))


def test_form_6_sees_colour_differences_and_codes_photos_in_fewer_bytes():
    """Form 6 (uqdm 0.30): the activity's terms and the features include the neighbours' differences
    to the colours coded before, and the encoder's scales go down to 0.022, in bins of 1024 pixels.
    Measured against form 5: 3.5 % and 3.2 % smaller on the sample crop alone and with a blurred side
    image, 5.1 % with its chroma subsampled as in a JPEG (MODEL.md 34)."""
    img = _photo_crop()
    blurred = _blurred(img)
    for side in (None, blurred):
        six = lossless_tail.encode(img, side, 6)
        assert len(six) < 0.98 * len(lossless_tail.encode(img, side, 5))
        assert np.array_equal(lossless_tail.decode(six, 256, 256, side, 6), img)
    sub = _subsampled_chroma(img)
    coded = lossless_tail.encode_passes(sub, None, 6)
    assert len(coded.to_bytes()) < 0.96 * len(lossless_tail.encode(sub, None, 5))
    # where R - G is smooth and R is not, R's activity drops its own spread for the difference's
    red = lossless_tail.TailDecoder(coded.params, 256, 256, None, 6).params[-1][1]
    assert len(red.weights) == lossless_tail._num_terms(lossless_tail.passes(256, 256)[-1], False, 1, 6) == 5
    assert red.weights[0] == 0 < red.weights[-1]
    with pytest.raises(FormatError):
        lossless_tail.decode(lossless_tail.encode(sub, None, 5), 256, 256, None, 6)


def test_form_7_codes_green_in_raster_order_where_that_is_smaller():
    """Form 7 (uqdm 0.31): green in wavefronts of raster order (tail_green.py), red and blue
    interlaced after it; the encoder keeps the interlaced green where that is estimated smaller, and
    says which in the parameters' first varint. Measured on the sample crop: 0.6 % smaller than
    form 6 alone, 2.0 % with a blurred side image; on an upsampled image, whose pixels are
    interpolations of their neighbours, the interlaced passes win (MODEL.md 35)."""
    img = _photo_crop()
    blurred = _blurred(img)
    for side, gain in ((None, 0.996), (blurred, 0.985)):
        coded = lossless_tail.encode_passes(img, side, 7)
        data = coded.to_bytes()
        assert coded.params[0] == lossless_tail.GREEN_ORDERS.index("raster")
        assert len(data) < gain * len(lossless_tail.encode(img, side, 6))
        dec = lossless_tail.TailDecoder(coded.params, 256, 256, side, 7)
        assert dec.green is not None and dec.counts() == [256 * 256] + [2 * p.rows.size for p in dec.passes]
        assert np.array_equal(lossless_tail.decode(data, 256, 256, side, 7), img)
    base = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    upsampled = np.asarray(Image.fromarray(base).resize((64, 64), Image.BILINEAR))
    coded = lossless_tail.encode_passes(upsampled, None, 7)
    six = lossless_tail.encode_passes(upsampled, None, 6)
    assert coded.params[0] == lossless_tail.GREEN_ORDERS.index("interlaced")
    assert [n for n, _ in coded.chunks] == [n for n, _ in six.chunks]  # form 6's passes, G, R, B each
    assert np.array_equal(lossless_tail.decode(coded.to_bytes(), 64, 64, None, 7), upsampled)
    forged = b"\x02" + coded.params[1:]
    with pytest.raises(FormatError, match="out of range"):
        lossless_tail.TailDecoder(forged, 64, 64, None, 7)


def test_the_guided_feature_follows_the_earlier_colours_edge():
    """Form 7's guided mean: at a pixel on the dark side of an edge in G, the neighbours across the
    edge weigh 1 / 100 of those on its side, where the median of the 4 differences is split."""
    level, ev, nv = np.array([100]), np.array([[100, 100, 200, 200]]), np.array([[110, 110, 150, 150]])
    assert lossless_tail._guided(level, ev, nv)[0] == 2 * 100 + (2 * (1024 * 20 - 10 * 100)) // 2068 == 218
    assert lossless_tail._middle_sum(nv - ev)[0] + 2 * 100 == 160


def test_form_8_adds_a_weighted_predictor_and_codes_green_in_fewer_bytes():
    """Form 8 (uqdm 0.32): raster green also sees a weighted mean of sub-predictors, each weighed
    by its errors at the 8 causal neighbours, and the one of least error. Measured on the sample
    crop against form 7: 2.0 % smaller alone, 1.0 % with a blurred side image (MODEL.md 36)."""
    img = _photo_crop()
    blurred = _blurred(img)
    for side, gain in ((None, 0.985), (blurred, 0.994)):
        coded = lossless_tail.encode_passes(img, side, 8)
        data = coded.to_bytes()
        assert coded.params[0] == lossless_tail.GREEN_ORDERS.index("raster")
        assert len(data) < gain * len(lossless_tail.encode(img, side, 7))
        dec = lossless_tail.TailDecoder(coded.params, 256, 256, side, 8)
        assert dec.green is not None and dec.green.grid.form == 8
        assert np.array_equal(lossless_tail.decode(data, 256, 256, side, 8), img)
    with pytest.raises(FormatError):  # a form-7 tail read as form 8 has too few coefficients
        lossless_tail.decode(lossless_tail.encode(img, None, 7), 256, 256, None, 8)


def test_form_8_may_code_red_and_blue_in_raster_order_too():
    """Form 8's colour order "all raster": red and blue each in raster order with green as their
    side image, where the encoder finds that smaller than the passes (on this crop of the sample
    photo); three chunks of H x W, no passes. A cut red chunk gives exact green everywhere and exact
    red where it arrived."""
    img = _photo_crop()[:96, :128]
    coded = lossless_tail.encode_passes(img, None, 8)
    assert coded.params[0] == lossless_tail.GREEN_ORDERS.index("all raster") == 2
    assert [n for n, _ in coded.chunks] == [96 * 128] * 3
    data = coded.to_bytes()
    assert len(data) < len(lossless_tail.encode(img, None, 7))
    assert np.array_equal(lossless_tail.decode(data, 96, 128, None, 8), img)
    dec = lossless_tail.TailDecoder(coded.params, 96, 128, None, 8)
    assert dec.counts() == [96 * 128] * 3 and dec.passes == [] and dec.colours == ()
    red = coded.chunks[1][1]
    assert dec.decode_pass(coded.chunks[0][1]) and not dec.decode_pass(red[: 4 * (len(red) // 8)], cut=True)
    shown, have = dec.image(), dec.decoded
    assert have[..., 1].all() and 0 < have[..., 0].sum() < 96 * 128 and not have[..., 2].any()
    assert np.array_equal(shown[have], img[have]) and (shown[~have] == 128).all()
    for order, form in ((3, 8), (2, 7)):  # beyond the orders of the form
        with pytest.raises(FormatError, match="out of range"):
            lossless_tail.TailDecoder(bytes([order]) + coded.params[1:], 96, 128, None, form)


def test_form_9_codes_blue_in_raster_order_guided_by_red_too():
    """Form 9 (uqdm 0.33): in colour order 2 blue's raster coder sees the decoded red beside green
    (its levels around the pixel, the differences to it, 4 more sub-predictions). A crop whose blue
    follows red and not green (and 1 level of noise): blue alone in raster order takes 31 % fewer bytes,
    so form 9 codes all three in raster order where form 8 keeps red and blue in the passes; a cut
    blue chunk gives exact blue where it arrived."""
    img = _photo_crop()[:96, :128].copy()
    rng = np.random.default_rng(5)
    img[..., 2] = np.clip(255 - img[..., 0].astype(np.int64) + rng.integers(-1, 2, (96, 128)), 0, 255)
    eight, nine = (lossless_tail.encode_passes(img, None, form) for form in (8, 9))
    assert (eight.params[0], nine.params[0]) == (1, lossless_tail.GREEN_ORDERS.index("all raster"))
    assert len(nine.to_bytes()) < len(eight.to_bytes())
    alone = [
        tail_green.encode(img[..., 2], img[..., 1], *guided).payload for guided in ((8,), (9, img[..., 0]))
    ]
    assert len(alone[1]) < 0.75 * len(alone[0]) and nine.chunks[2][1] == alone[1]
    assert np.array_equal(lossless_tail.decode(nine.to_bytes(), 96, 128, None, 9), img)
    dec = lossless_tail.TailDecoder(nine.params, 96, 128, None, 9)
    assert len(dec.raster) == 2 and len(dec.raster[1].coefs[0]) == tail_green.num_features(True, 9, True)
    blue = nine.chunks[2][1]
    assert dec.decode_pass(nine.chunks[0][1]) and dec.decode_pass(nine.chunks[1][1])
    assert not dec.decode_pass(blue[: 4 * (len(blue) // 8)], cut=True)
    have = dec.decoded
    assert have[..., :2].all() and 0 < have[..., 2].sum() < 96 * 128
    assert np.array_equal(dec.image()[have], img[have])
    plain = lossless_tail.encode_passes(_photo_crop()[:96, :128], None, 8)  # order 2 in form 8 too
    assert plain.params[0] == 2
    with pytest.raises(FormatError):  # a form-8 tail read as form 9: blue's parameters differ
        lossless_tail.decode(plain.to_bytes(), 96, 128, None, 9)
    with pytest.raises(ValueError, match="form 9"):
        tail_green.Grid(4, 4, img[:4, :4, 1], 8, img[:4, :4, 0])


def test_form_8_scale_search_finds_the_grid_best():
    """Form 8 on, the encoder's scale per bin comes from every third scale and then the best one's
    neighbours: on bins from sure symbols to wide noise, saturated levels included, it is the
    scale an exhaustive search of the 63 picks (and so the same file)."""
    rng = np.random.default_rng(9)
    scales = lossless_tail.FINE_SCALES
    for spread in (0.0, 0.02, 0.3, 1.0, 4.0, 30.0):
        v = np.clip(rng.integers(0, 256, 2000) + np.rint(rng.normal(0, spread, 2000)), 0, 255)
        v[:200] = 255
        mu = np.clip(v + rng.normal(0, spread, 2000) + rng.uniform(-0.5, 0.5, 2000), 0, 255)
        full = [float(lossless_tail.logistic_bits(v, mu, s).sum()) for s in scales]
        assert lossless_tail._best_scale(v, mu, scales) == int(np.argmin(full)), spread


def test_the_weighted_predictor_trusts_the_sub_predictors_that_were_right_nearby():
    """Columns of levels j^2 + 7: N, N + W - NW and 2 N - NN are exact everywhere, W + NE - N is
    2 levels high, 2 W - WW 2 levels low, the others further off; at an inner pixel the weighted
    predictor is within half a level of the truth, the best sub-predictor exact, and the least
    error sum 0."""
    plane = np.tile((np.arange(12) ** 2 + 7)[None, :], (6, 1)).astype(np.uint8)
    grid = tail_green.Grid(6, 12, None, 8)
    grid.set_levels(plane)
    at = np.array([(3 + tail_green.PAD) * grid.stride + 5 + tail_green.PAD])
    sub = grid.sub_predictions(at)[0]
    assert list(sub) == [64, 68, 64, 46, 75, 86, 46, 60, 64, 55]  # half levels; the truth is 2 x 32
    feats, terms = grid.features(at)
    n = tail_green.num_features(False, 8)
    assert feats.shape == (1, n) and terms.shape == (1, tail_green.num_terms(False, 8)) and n == 16
    weighted, best = feats[0, n - 7], feats[0, n - 6]
    assert abs(weighted - 64) <= 1 and best == 64 and terms[0, -1] == 0
    assert grid.sub_error[at].tolist() == [[0, 4, 0, 18, 11, 22, 18, 4, 0, 9]]


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (5, 9)])
def test_green_wavefronts_hold_every_pixel_once_and_see_only_earlier_ones(shape):
    assert all(2 * di + dj < 0 for di, dj in tail_green.CAUSAL)
    grid = tail_green.Grid(*shape, None)
    rows, cols = np.divmod(grid.order, shape[1])
    assert sorted(grid.order) == list(range(shape[0] * shape[1]))
    t = 2 * rows + cols
    for sl in grid.fronts:
        assert len(set(t[sl])) == 1 and (np.diff(rows[sl]) > 0).all()
    assert (np.diff([t[sl][0] for sl in grid.fronts]) > 0).all()


@pytest.mark.parametrize("form, guided", [(7, False), (8, False), (9, True), (10, True)])
def test_the_encoders_known_levels_give_every_wavefront_the_decoders_features(form, guided):
    """Grid.run with `known` (the encoder's: features computed at once, then only the symbols'
    columns brought up to date) hands predict the same integers as features() on a decoder's planes,
    filled wavefront by wavefront."""
    img = _photo_crop()[:24, :40]
    side = _near(img, spread=5)
    green = img[..., 1].ravel().astype(np.int64)
    seen: dict[str, list] = {"known": [], "decoder": []}

    def run(name: str, grid: tail_green.Grid, known=None) -> None:
        def predict(f: np.ndarray, t: np.ndarray):
            seen[name].append((f, t))
            return (f[:, 0] + f[:, 1]) / 2.0, None  # the mean of W and N as the location

        def take(sl: slice, mu: np.ndarray, _, bounds):
            seen[name].append(bounds)
            return green[grid.order[sl]] - np.rint(mu).astype(np.int64), np.ones(mu.size, bool)

        assert grid.run(predict, take, known)

    intervals = _block_intervals(img, np.random.default_rng(2)) if form >= 10 else None
    encoder = tail_green.Grid(24, 40, side[..., 1], form, img[..., 0] if guided else None, intervals)
    encoder.set_levels(img[..., 1])
    run("known", encoder, encoder.features(encoder.at))
    decoder = tail_green.Grid(24, 40, side[..., 1], form, img[..., 0] if guided else None, intervals)
    run("decoder", decoder)
    assert len(seen["known"]) == len(seen["decoder"]) == 2 * len(encoder.fronts)
    for (f0, t0), (f1, t1), b0, b1 in zip(
        seen["known"][::2], seen["decoder"][::2], seen["known"][1::2], seen["decoder"][1::2]
    ):
        assert np.array_equal(f0, f1) and np.array_equal(t0, t1)
        assert (
            (b0 is None and b1 is None) if intervals is None else np.array_equal(np.stack(b0), np.stack(b1))
        )
    assert np.array_equal(decoder.levels(), img[..., 1]) and np.array_equal(encoder.error, decoder.error)
    assert any(f[:, -5:-1].any() for f, _ in seen["known"][::2])  # the symbols' columns did change
    if intervals is not None:  # and the bounds narrowed some levels
        assert any((b[1] - b[0] < 255).any() for b in seen["known"][1::2])


def _block_intervals(
    img: np.ndarray, rng: np.random.Generator, widest: float = 6.0
) -> lossless_tail.Intervals:
    """Known intervals of an image's finest Haar band as a chain might leave them: each of width
    0.5 to `widest` levels around the true coefficient, a third of them the whole band."""
    x = img.astype(np.float64).transpose(2, 0, 1)
    a, b, c, d = x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]
    true = np.stack([(a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2])
    width = rng.uniform(0.5, widest, true.shape)
    lower = true - rng.uniform(0, 1, true.shape) * width
    upper = lower + width
    wide = rng.random(true.shape) < 1 / 3
    return lossless_tail.Intervals(np.where(wide, -256.0, lower), np.where(wide, 256.0, upper))


def test_block_bounds_hold_the_truth_and_are_exact_once_three_pixels_are_known():
    """Every pixel lies within its bounds whatever mates of its 2 x 2 block are known; with all
    three known the bounds are the integers the three intervals allow (a brute-force check)."""
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (10, 12, 3)).astype(np.uint8)
    intervals = _block_intervals(img, rng)
    rows, cols = np.divmod(np.arange(120), 12)
    for c in range(3):
        level = img[..., c].astype(np.int64)
        for trial in range(8):
            known = rng.random((10, 12)) < trial / 7
            low, high = intervals.bounds(rows, cols, c, level, known)
            assert (low <= level.ravel()).all() and (level.ravel() <= high).all()
        low, high = intervals.bounds(rows, cols, c, level, np.ones((10, 12), bool))
        for i in rng.choice(120, 20, replace=False):
            r, q = rows[i], cols[i]
            block = level[r - r % 2 : r - r % 2 + 2, q - q % 2 : q - q % 2 + 2].astype(np.float64)
            allowed = []
            for v in range(256):
                block[r % 2, q % 2] = v
                (a, b), (cc, d) = block
                coefs = ((a - b + cc - d) / 2, (a + b - cc - d) / 2, (a - b - cc + d) / 2)
                lo, hi = intervals.lower[:, c, r // 2, q // 2], intervals.upper[:, c, r // 2, q // 2]
                if all(lo[j] <= coefs[j] <= hi[j] for j in range(3)):
                    allowed.append(v)
            assert (low[i], high[i]) == (min(allowed), max(allowed))
    # intervals that are still the whole band (nothing coded) bound nothing: a tail may skip them
    whole = lossless_tail.Intervals(np.full((3, 3, 5, 6), -256.0), np.full((3, 3, 5, 6), 256.0))
    assert intervals.can_bound() and not whole.can_bound()
    for trial in range(8):
        extreme = rng.choice(np.array([0, 255]), (10, 12)) if trial % 2 else rng.integers(0, 256, (10, 12))
        low, high = whole.bounds(rows, cols, 1, extreme, rng.random((10, 12)) < trial / 7)
        assert (low == 0).all() and (high == 255).all()
    # a block that reaches past an odd edge bounds nothing
    low, high = intervals.bounds(
        np.array([9]), np.array([11]), 0, img[..., 0][:9, :11].astype(np.int64), np.ones((9, 11), bool)
    )
    assert (low[0], high[0]) == (0, 255)


@pytest.mark.parametrize("shape", [(48, 64), (33, 47)])
def test_form_10_bounds_the_pixels_by_known_intervals_and_codes_them_in_fewer_bytes(shape):
    """Given known intervals of the finest band (as a chain after step 7 has them), form 10
    codes every order (green in raster order, red and blue in the passes or in raster order) in
    fewer bytes than form 9, and decodes exactly given the same intervals."""
    rng = np.random.default_rng(0)
    img = _photo_crop()[: shape[0], : shape[1]]
    side = _near(img, spread=4)
    intervals = _block_intervals(img[: shape[0] // 2 * 2, : shape[1] // 2 * 2], rng, widest=4.0)
    nine = lossless_tail.encode_passes(img, side, 9)
    ten = lossless_tail.encode_passes(img, side, 10, intervals)
    assert len(ten.to_bytes()) < 0.98 * len(nine.to_bytes())
    assert lossless_tail.encode_passes(img, side, 10).to_bytes() == nine.to_bytes()  # no intervals: form 9's
    for coded in (ten, lossless_tail.encode_passes(img, None, 10, intervals)):
        dec = lossless_tail.TailDecoder(coded.params, *shape, side if coded is ten else None, 10, intervals)
        for _, payload in coded.chunks:
            assert dec.decode_pass(payload)
        assert dec.complete and np.array_equal(dec.x, img)
    with pytest.raises(ValueError, match="form 10"):
        lossless_tail.encode_passes(img, side, 9, intervals)
    # decoded with another image's intervals: a format error or other pixels, never a crash
    other = _block_intervals(255 - img[: shape[0] // 2 * 2, : shape[1] // 2 * 2], rng, widest=4.0)
    _assert_refused_or_other_pixels(ten, img, side, 10, other)


def _assert_refused_or_other_pixels(coded, img, side, form, intervals) -> None:
    """A tail decoded with intervals it was not coded with: a format error or other pixels."""
    dec = lossless_tail.TailDecoder(coded.params, *img.shape[:2], side, form, intervals)
    try:
        for _, payload in coded.chunks:
            dec.decode_pass(payload)
        assert not np.array_equal(dec.x, img)
    except FormatError:
        pass


def _pyramid_intervals(
    img: np.ndarray, rng: np.random.Generator, levels: int = 4, widest: float = 6.0
) -> lossless_tail.Intervals:
    """Known intervals of every Haar band of an image (padded by its edges to a multiple of
    2^levels, as the chain pads it), in levels (the chain's ends times 128) as
    _Chain.tail_intervals gives them: each 0.5 to `widest` wide around the true coefficient, a
    third of them the whole band."""
    h, w = img.shape[:2]
    m = 1 << levels
    x = haar.extend(img.astype(np.float64).transpose(2, 0, 1), -(-h // m) * m, -(-w // m) * m)
    lower, upper = [], []
    for b, band in enumerate(haar.forward((x + 0.5) / 128.0 - 1.0, levels)):
        true = band * 128.0
        width = rng.uniform(0.5, widest, true.shape)
        lo = true - rng.uniform(0, 1, true.shape) * width
        whole = 128.0 * haar.band_bound(b, levels)
        wide = rng.random(true.shape) < 1 / 3
        lower.append(np.where(wide, -whole, lo))
        upper.append(np.where(wide, whole, lo + width))
    return lossless_tail.Intervals(lower[-1], upper[-1], lower[:-1], upper[:-1])


def _raster_bounds(intervals: lossless_tail.Intervals, level: np.ndarray, c: int):
    """Every pixel's bounds as a raster plane's wavefronts (t = 2 row + column) meet them: the
    pixels of earlier wavefronts known, the block sums brought up to date after each."""
    h, w = level.shape
    rows, cols = np.divmod(np.arange(h * w), w)
    t = 2 * rows + cols
    known = np.zeros((h, w), bool)
    sums = lossless_tail.BlockSums(h, w, intervals.haar_levels)
    low, high = np.zeros(h * w, np.int64), np.zeros(h * w, np.int64)
    for front in range(int(t.max()) + 1):
        sel = np.flatnonzero(t == front)
        low[sel], high[sel] = intervals.bounds(rows[sel], cols[sel], c, level, known, sums)
        known[rows[sel], cols[sel]] = True
        sums.add(rows[sel], cols[sel], level[rows[sel], cols[sel]])
    return low, high


@pytest.mark.parametrize("shape, levels", [((32, 48), 2), ((37, 45), 2), ((48, 64), 4)])
def test_block_sums_bound_the_truth_and_pin_a_blocks_last_pixel_exactly(shape, levels):
    """Form 11: in raster order every pixel lies within its bounds; the last pixel of each 4 x 4
    block (the other 15 known) gets exactly the levels that every interval of the block allows (a
    brute-force check), and the coarser bands narrow some bounds beyond the finest band's."""
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
    img[: shape[0] // 2] = _photo_crop()[: shape[0] // 2, : shape[1]]  # smooth rows and noisy rows
    intervals = _pyramid_intervals(img, rng, levels, widest=8.0)
    finest = replace(intervals, coarse_lower=None, coarse_upper=None)
    narrower = 0
    for c in range(3):
        level = img[..., c].astype(np.int64)
        low, high = _raster_bounds(intervals, level, c)
        assert (low <= level.ravel()).all() and (level.ravel() <= high).all()
        fine_low, fine_high = _raster_bounds(finest, level, c)
        assert (low >= fine_low).all() and (high <= fine_high).all()
        narrower += int((high - low < fine_high - fine_low).sum())
        if levels != 2:
            continue
        for by in range(0, shape[0] - 3, 4):
            for bx in range(0, shape[1] - 3, 4):
                block = level[by : by + 4, bx : bx + 4].astype(np.float64)
                Y, X = by // 4, bx // 4  # the 4 x 4 block; its last 2 x 2 block is (2Y + 1, 2X + 1)
                ends = [
                    [ll[c, Y, X][None], d2[:, c, Y, X], d1[:, c, 2 * Y + 1, 2 * X + 1]]
                    for ll, d2, d1 in (
                        (*intervals.coarse_lower, intervals.lower),
                        (*intervals.coarse_upper, intervals.upper),
                    )
                ]
                allowed = []
                for v in range(256):
                    block[3, 3] = v
                    ll, d2, d1 = haar.forward((block[None] + 0.5) / 128.0 - 1.0, 2)
                    coefs = [ll.ravel(), d2.ravel(), d1[..., 1, 1].ravel()]
                    if all(((lo <= 128.0 * k) & (128.0 * k <= hi)).all() for k, lo, hi in zip(coefs, *ends)):
                        allowed.append(v)
                at = (by + 3) * shape[1] + bx + 3
                assert (low[at], high[at]) == (min(allowed), max(allowed))
    assert narrower > 0


def test_intervals_for_each_form():
    """Form 10 reads the finest band alone; form 11 the coarser bands too; neither reads intervals
    whose finest band bounds nothing (a tail after step 3: the coarser bands alone bought -0.02 %
    for half again the tail's time)."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    intervals = _pyramid_intervals(img, rng, 4)
    assert intervals.for_form(11) is intervals and intervals.for_form(11).haar_levels == 4
    ten = intervals.for_form(10)
    assert ten.coarse_lower is None and ten.haar_levels == 0 and np.array_equal(ten.lower, intervals.lower)
    whole = replace(
        intervals, lower=np.full_like(intervals.lower, -256.0), upper=np.full_like(intervals.upper, 256.0)
    )
    assert whole.for_form(10) is None and whole.for_form(11) is None


@pytest.mark.parametrize("shape", [(48, 64), (33, 47)])
def test_form_11_bounds_by_block_sums_and_codes_raster_planes_in_fewer_bytes(shape):
    """Given every band's known intervals, form 11 codes a tail in fewer bytes than form 10 given
    the same, and decodes exactly given the same intervals; another image's give a format error
    or other pixels, never a crash. Planes in the passes are bounded as form 10 bounds them."""
    rng = np.random.default_rng(2)
    img = _photo_crop()[: shape[0], : shape[1]]
    side = _near(img, spread=4)
    intervals = _pyramid_intervals(img, rng, 4, widest=3.0)
    ten = lossless_tail.encode_passes(img, side, 10, intervals)
    eleven = lossless_tail.encode_passes(img, side, 11, intervals)
    assert eleven.params[0] >= 1  # green in raster order
    assert len(eleven.to_bytes()) < len(ten.to_bytes())
    dec = lossless_tail.TailDecoder(eleven.params, *shape, side, 11, intervals)
    for _, payload in eleven.chunks:
        assert dec.decode_pass(payload)
    assert dec.complete and np.array_equal(dec.x, img)
    _assert_refused_or_other_pixels(eleven, img, side, 11, _pyramid_intervals(255 - img, rng, 4, widest=3.0))


@pytest.mark.parametrize("form", [7, 8])
def test_a_cut_green_chunk_gives_exact_green_where_it_arrived(form):
    img = _photo_crop()[:96, :128]
    side = _near(img, spread=6)
    coded = lossless_tail.encode_passes(img, side, form)
    assert coded.params[0] >= 1  # green in raster order (form 8: red and blue too, here)
    green = coded.chunks[0][1]
    got = []
    for words in (2, len(green) // 16, len(green) // 8):
        dec = lossless_tail.TailDecoder(coded.params, 96, 128, side, form)
        assert not dec.decode_pass(green[: 4 * words], cut=True) and not dec.complete
        shown, have = dec.image(), dec.decoded
        assert not have[..., [0, 2]].any() and np.array_equal(shown[have], img[have])
        assert np.array_equal(shown[~have], side[~have])  # the side image elsewhere
        got.append(int(have.sum()))
    assert 0 <= got[0] < got[1] < got[2] < 96 * 128


def test_form_5_splits_only_large_edge_passes_and_the_second_half_sees_8_neighbours():
    four, five = lossless_tail.passes(256, 256, 4), lossless_tail.passes(256, 256, 5)
    assert len(four) == 13 and len(five) == 14  # only h = 1's edges (32768 pixels) are split
    a, b = five[-2:]
    assert len(a.offsets) == 4 and len(b.offsets) == 8 and (a.rows % 2 == 0).all() and (b.rows % 2 == 1).all()
    for passes in (four, five):
        cover = np.zeros((256, 256), int)
        for p in passes:
            np.add.at(cover, (p.rows, p.cols), 1)
        assert (cover == 1).all()
    assert len(lossless_tail.passes(768, 512, 5)) == 13 + 2  # h = 1 and h = 2 (49152 pixels), not h = 4


def test_form_6_also_splits_large_centre_passes_into_a_checkerboard():
    five, six = lossless_tail.passes(512, 512, 5), lossless_tail.passes(512, 512, 6)
    assert len(five) == 15 and len(six) == 16  # only h = 1's centres (65536 pixels) are split
    small = lossless_tail.passes(256, 256, 6), lossless_tail.passes(256, 256, 5)  # 16384: not split
    assert [(p.offsets, p.rows.tolist(), p.cols.tolist()) for p in small[0]] == [
        (p.offsets, p.rows.tolist(), p.cols.tolist()) for p in small[1]
    ]
    at = next(i for i, p in enumerate(six) if len(p.offsets) == 8 and p.offsets[0] == (-1, -1))
    a, b = six[at - 1], six[at]
    assert a.offsets == five[at - 1].offsets and a.rows.size == b.rows.size == 32768
    assert (a.rows % 2 == 1).all() and (a.cols % 2 == 1).all()
    assert ((a.rows // 2 + a.cols // 2) % 2 == 0).all() and ((b.rows // 2 + b.cols // 2) % 2 == 1).all()
    first = np.zeros((512, 512), bool)
    first[a.rows, a.cols] = True
    for dy, dx in b.offsets[4:]:  # the far neighbours at distance 2 are first-half pixels
        assert abs(dy) + abs(dx) == 2
        inside = (b.rows + dy >= 0) & (b.rows + dy < 512) & (b.cols + dx >= 0) & (b.cols + dx < 512)
        assert first[(b.rows + dy)[inside], (b.cols + dx)[inside]].all()
    cover = np.zeros((512, 512), int)
    for p in six:
        np.add.at(cover, (p.rows, p.cols), 1)
    assert (cover == 1).all()


def test_a_tail_with_split_centre_passes_round_trips_and_a_cut_inside_one_is_exact():
    img = synthetic_image(384, 384, seed=5)  # h = 1's centres: 36864 pixels, split
    side = _near(img, spread=6)
    coded = lossless_tail.encode_passes(img, side, 6)
    assert np.array_equal(lossless_tail.decode(coded.to_bytes(), 384, 384, side, 6), img)
    dec = lossless_tail.TailDecoder(coded.params, 384, 384, side, 6)
    at = next(i for i, p in enumerate(dec.passes) if len(p.offsets) == 8 and p.offsets[0] == (-1, -1))
    for _, payload in coded.chunks[:at]:
        assert dec.decode_pass(payload)
    last = coded.chunks[at][1]
    assert not dec.decode_pass(last[: len(last) // 2], cut=True)
    shown = dec.image()
    assert 0 < dec.decoded.sum() < img.size and np.array_equal(shown[dec.decoded], img[dec.decoded])


def test_form_5_parameters_out_of_range_are_refused():
    img = synthetic_image(64, 64, seed=4)
    coded = lossless_tail.encode_passes(img, None, 5)
    first = lossless_tail.TailDecoder(coded.params, 64, 64, None, 5).params[0]
    # the lattice pass without a side image: G has no terms, R one, B two; then each class count
    assert [len(c.weights) for c in first] == [0, 1, 2]
    for forged, message in (
        (b"\x08", "too many predictor classes"),  # G: no weights, then 8 class cuts
        (b"\x02\x05\x00", "invalid"),  # two cuts that do not increase
        (b"\x00\x0d", "out of range"),  # no cuts, a shift of 13 bits
    ):
        with pytest.raises(FormatError, match=message):
            lossless_tail.TailDecoder(forged + coded.params[1:], 64, 64, None, 5)
    # R's one weight: at 2^20 or above it is corruption
    start, end = _r_weight(coded.params, 64, 64)
    forged = coded.params[:start] + bytes(container.put_varint(1 << 20)) + coded.params[end:]
    with pytest.raises(FormatError, match="out of range"):
        lossless_tail.TailDecoder(forged, 64, 64, None, 5)


@pytest.mark.parametrize("form", (4, 5, 6, 7))
def test_a_huge_varint_anywhere_in_the_parameters_is_one_format_error(form):
    """A 10-byte varint (2^63 and more) in place of any of the first parameters: corruption, not an
    overflow inside numpy."""
    coded = lossless_tail.encode_passes(synthetic_image(32, 32, seed=1), None, form)
    huge = b"\xff" * 9 + b"\x01"
    for at in range(48):
        with pytest.raises(FormatError):
            dec = lossless_tail.TailDecoder(
                coded.params[:at] + huge + coded.params[at + 1 :], 32, 32, None, form
            )
            for _, payload in coded.chunks:  # parameters that parse: the payloads must not decode
                dec.decode_pass(payload)


def _r_weight(params: bytes, height: int, width: int) -> tuple[int, int]:
    """Where R's one activity weight sits in the first pass of a form-5 tail without a side image."""
    src = lossless_tail._Reader(params)
    assert src.uint() == 0  # G: no weights, no class cuts in the lattice pass
    src.uint()  # the coefficients' shift
    for _ in range(lossless_tail._num_features(lossless_tail.passes(height, width)[0], False, 0, 5)):
        src.sint()
    nt = src.uint()
    for _ in range(2 * nt + 1):
        src.uint()
    start = src.pos
    src.uint()
    return start, src.pos


def test_extreme_images_round_trip():
    rng = np.random.default_rng(5)
    checker = (np.indices((40, 40)).sum(0) % 2 * 255).astype(np.uint8)
    for img in (
        np.zeros((40, 40, 3), np.uint8),
        np.full((40, 40, 3), 255, np.uint8),
        rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
        np.repeat(checker[:, :, None], 3, 2),
    ):
        for side in (None, 255 - img):
            assert np.array_equal(lossless_tail.decode(lossless_tail.encode(img, side), 40, 40, side), img)


def test_a_close_side_image_and_smooth_content_cost_fewer_bits():
    img = synthetic_image(96, 96, seed=1)
    alone = len(lossless_tail.encode(img))
    assert len(lossless_tail.encode(img, _near(img, spread=1))) < alone
    noise = np.random.default_rng(2).integers(0, 256, img.shape, dtype=np.uint8)
    assert alone < len(lossless_tail.encode(noise)) < 1.01 * noise.size + 4096  # ~8 bits, no blow-up


def test_damaged_and_short_tails_are_refused():
    img = synthetic_image(32, 48, seed=2)
    data = bytearray(lossless_tail.encode(img))
    with pytest.raises(FormatError):
        lossless_tail.decode(bytes(data[:-4]), 32, 48)
    data[-5] ^= 0x40  # a flipped bit in the last payload: the coder does not end where it should
    with pytest.raises(FormatError):
        lossless_tail.decode(bytes(data), 32, 48)
    with pytest.raises(FormatError):
        lossless_tail.TailDecoder(b"\xff" * 9, 32, 48)


def _sse(a: np.ndarray, b: np.ndarray) -> int:
    return int(((a.astype(np.int64) - b) ** 2).sum())


@pytest.mark.parametrize("form", lossless_tail.FORMS)
def test_a_cut_pass_gives_exact_pixels_where_they_arrived(form):
    img = synthetic_image(64, 64, seed=4)
    side = _near(img, spread=6)
    coded = lossless_tail.encode_passes(img, side, form)
    last = coded.chunks[-1][1]
    decoded = []
    for words in (2, len(last) // 12, len(last) // 6):
        dec = lossless_tail.TailDecoder(coded.params, 64, 64, side, form)
        assert dec.counts() == [count for count, _ in coded.chunks]
        for _, payload in coded.chunks[:-1]:
            assert dec.decode_pass(payload)
        assert not dec.decode_pass(last[: 4 * words], cut=True) and not dec.complete
        shown = dec.image()
        assert np.array_equal(shown[dec.decoded], img[dec.decoded])
        # the rest of the pass shows predictions from exact neighbours: better than the side image
        assert _sse(shown[~dec.decoded], img[~dec.decoded]) < _sse(side[~dec.decoded], img[~dec.decoded])
        decoded.append(int(dec.decoded.sum()))
    assert decoded[0] < decoded[1] < decoded[2] < img.size


# ----------------------------------------------------------------------------- in .uqd files


@pytest.fixture(scope="module")
def tail_files(codec):
    img = synthetic_image(48, 64, seed=11)
    return img, codec.encode(img, seed=4, tail=True), codec.encode(img, seed=4, tail=False)


def test_tail_file_layout_round_trip_and_shared_steps(codec, tail_files):
    img, tail, plain = tail_files
    T = codec.num_steps
    hd, size = container.parse_header(tail)
    assert hd.tail and hd.num_layers == T and not container.parse_header(plain)[0].tail
    fi = files.info(tail)
    assert fi.complete and len(fi.layers) == T and fi.layers[-1].lossless
    assert container.parse(tail).layers[-1].kind == container.KIND_TAIL
    out = codec.decode(tail)
    assert out.lossless and np.array_equal(out.pixels, img) and out.nbytes == len(tail)
    # layers 1..T-1 are the plain file's, byte for byte (after a header one byte longer: the tail's
    # form), and decode to the same images
    plain_size = container.parse_header(plain)[1]
    end = files.info(plain).layers[T - 2].end
    assert size == plain_size + 1 and fi.layers[T - 2].end == end + 1
    assert tail[size : end + 1] == plain[plain_size:end]
    for s in (1, T - 1):
        assert np.array_equal(codec.decode(tail, steps=s).pixels, codec.decode(plain, steps=s).pixels)


def test_auto_keeps_the_smaller_file(codec, tail_files):
    img, tail, plain = tail_files
    assert codec.encode(img, seed=4, tail=None) == min(tail, plain, key=len)
    big = synthetic_image(160, 160, seed=6)  # photo-like content where the tail wins
    chosen = codec.encode(big, seed=1, tail=None)
    sizes = [len(codec.encode(big, seed=1, tail=t)) for t in (False, True)]
    assert len(chosen) == min(sizes)


def test_every_tail_chunk_prefix_decodes_to_its_point_and_improves(codec, tail_files):
    img, tail, _ = tail_files
    fi = files.info(tail)
    points = list(codec.iter_decode(tail, every_chunk=True))
    assert [p.nbytes for p in points] == fi.cut_points
    inside = [p for p in points if p.layer == codec.num_steps]
    assert len(inside) == len(
        lossless_tail.TailDecoder(container.parse(tail).layers[-1].tail_params, 48, 64, img).counts()
    )
    errors = [int(((p.pixels.astype(np.int64) - img) ** 2).sum()) for p in inside]
    assert all(b <= a for a, b in zip(errors, errors[1:])) and errors[-1] == 0 and errors[0] > 0
    assert [level_name(p) for p in inside] == [f"tail pass {k + 1}" for k in range(len(inside) - 1)] + [
        "lossless"
    ]
    for p in inside[:-1]:
        cut = codec.decode(tail[: p.nbytes])
        assert not cut.lossless and np.array_equal(cut.pixels, p.pixels)


def test_truncating_inside_the_tail(codec, tail_files):
    img, tail, _ = tail_files
    fi = files.info(tail)
    step_error = _sse(codec.decode(tail, steps=codec.num_steps - 1).pixels, img)
    start = fi.layers[-2].end
    first = min(c for c in fi.cut_points if c > start)  # the tail's parameters and first chunk
    opening = min(s for s, _ in fi.chunk_spans if s >= start)  # where its first chunk begins
    assert files.truncate(tail, max_bytes=opening + 4) == tail[:start]  # no word of it: not yet
    for budget in np.linspace(first, len(tail) - 1, 6).astype(int):
        cut = files.truncate(tail, max_bytes=int(budget))
        assert start < len(cut) <= budget
        out = codec.decode(cut)
        assert out.nbytes == len(cut) and not out.lossless
        assert 0 < _sse(out.pixels, img) < step_error


def test_damaged_tail_layers_are_refused(codec, tail_files):
    _, tail, _ = tail_files
    parsed = container.parse(tail)
    end = files.info(tail).layers[-2].end
    bad = replace(parsed.layers[-1], tail_params=b"\x01\x02")
    with pytest.raises(FormatError):
        codec.decode(tail[:end] + bad.to_bytes())
    wrong_counts = replace(
        parsed.layers[-1], chunks=[replace(c, count=c.count + 3) for c in parsed.layers[-1].chunks]
    )
    with pytest.raises((FormatError, SyncError)):
        codec.decode(tail[:end] + wrong_counts.to_bytes())
    with pytest.raises(FormatError, match="after the last layer"):
        codec.decode(tail + parsed.layers[-1].to_bytes())


def test_tiled_files_with_a_tail(tiny_model):
    codec = Codec(tiny_model, "cpu", region=32)
    img = synthetic_image(40, 72, seed=4)
    data = codec.encode(img, seed=9, tail=True)
    hd, _, parts = container.split_tiled(data)
    assert hd.tiled and hd.tail and len(parts) == 6
    fi = files.info(data)
    assert fi.complete and len(fi.layers) == codec.num_steps
    assert np.array_equal(codec.decode(data).pixels, img)
    assert np.array_equal(
        codec.decode(files.truncate(data, steps=3)).pixels, codec.decode(data, steps=3).pixels
    )
    chosen = codec.encode(img, seed=9, tail=None)
    assert len(chosen) == min(len(data), len(codec.encode(img, seed=9, tail=False)))
    assert np.array_equal(codec.decode(chosen).pixels, img)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (2, 2), (6, 7), (7, 20), (20, 3)])
def test_a_tail_on_images_with_a_side_under_8_pixels(codec, shape):
    """Its 2 x 2 to 16 x 16 blocks reach past the image: they bound nothing, and are not read past
    the planes' edges (uqdm 0.34-0.35 failed here with an IndexError)."""
    img = synthetic_image(*shape, seed=6)
    data = codec.encode(img, seed=3, tail=True)
    assert np.array_equal(codec.decode(data).pixels, img)


def test_a_tail_on_a_tiled_image_whose_last_regions_are_thin(tiny_model):
    codec = Codec(tiny_model, "cpu", region=32)
    img = synthetic_image(38, 70, seed=5)  # regions 32 and 6 high, 32, 32 and 6 wide
    data = codec.encode(img, seed=2, tail=True)
    assert np.array_equal(codec.decode(data).pixels, img)
    cut = files.truncate(data, max_bytes=len(data) * 9 // 10)
    assert not codec.decode(cut).lossless


def test_cli_tail_modes(tmp_path, tiny_model_path):
    src = tmp_path / "a.png"
    Image.fromarray(synthetic_image(40, 48, seed=8)).save(src)
    for mode in ("on", "off", "auto"):
        r = run(
            "encode", src, "-o", tmp_path / f"{mode}.uqd", "-m", tiny_model_path, "--seed", 2, "--tail", mode
        )
        assert r.exit_code == 0, r.output
    assert container.parse_header((tmp_path / "on.uqd").read_bytes())[0].tail
    assert not container.parse_header((tmp_path / "off.uqd").read_bytes())[0].tail
    r = run("info", tmp_path / "on.uqd")
    assert r.exit_code == 0 and "lossless tail" in r.output
    r = run("decode", tmp_path / "on.uqd", "-o", tmp_path / "on.png", "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "on.png")), np.asarray(Image.open(src)))
    r = run("encode", src, "-o", tmp_path / "x.uqd", "-m", tiny_model_path, "--tail", "maybe")
    assert_one_line_error(r)
    assert "--tail must be one of" in r.stderr


def test_streaming_decoder_reads_a_tail_file(codec, tail_files, monkeypatch):
    import uqdm_codec

    img, tail, _ = tail_files
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
    dec = uqdm_codec.Decoder()
    for at in range(0, len(tail), 501):
        dec.feed(tail[at : at + 501])
    assert dec.latest.lossless and np.array_equal(dec.latest.pixels, img)


def test_new_tail_files_carry_the_form_flag_and_the_flag_needs_a_tail(codec, tail_files):
    _, tail, plain = tail_files
    assert container.parse_header(tail)[0].tail_form == lossless_tail.FORM == 11
    for flag in (container.TAIL_COLOURS, container.TAIL_SIGNED, container.TAIL_FORM_BYTE):
        assert tail[9] & flag and not plain[9] & flag
    hd = container.parse_header(plain)[0]
    forged = bytearray(replace(hd, tail=True).to_bytes())
    forged[9] = container.TAIL_COLOURS  # the form flag without the tail flag
    assert_forged_header_refused(bytes(forged))
    forged[9] = container.TAIL | container.TAIL_SIGNED  # form 3's flag without form 2's
    assert_forged_header_refused(bytes(forged))
    forged[9] = container.TAIL | container.TAIL_COLOURS | container.TAIL_FORM_BYTE  # without form 3's
    assert_forged_header_refused(bytes(forged))


@pytest.mark.parametrize(
    "form, message",
    [(3, "invalid tail form 3"), (lossless_tail.FORM + 1, f"form {lossless_tail.FORM + 1}.*newer uqdm")],
)
def test_a_form_byte_outside_4_to_the_current_form_is_refused(codec, tail_files, form, message):
    """Forms 1-3 are spelt by flags alone, so a form byte holds 4 or later; a later form than this
    decoder knows is refused in one line that says why."""
    from zlib import crc32

    _, tail, _ = tail_files
    hd, end = container.parse_header(tail)
    head = bytearray(tail[: end - 4])
    at = 47 + len(hd.model_name.encode())  # after the model name (no early tail, no region here)
    assert head[at] == lossless_tail.FORM
    head[at] = form
    with pytest.raises(FormatError, match=message):
        container.parse_header(bytes(head) + crc32(bytes(head)).to_bytes(4, "little"))


def assert_forged_header_refused(header: bytes) -> None:
    from zlib import crc32

    body = header[:-4]
    with pytest.raises(FormatError, match="flags"):
        container.parse_header(body + crc32(body).to_bytes(4, "little"))


GOLDEN_TAILS = [
    # (file, recorded decodes, form): written by uqdm 0.25 (commit f14f43f), 0.26 (commit 7e9db02),
    # 0.27 (commit 351c243), 0.28 (commit 5aff12f), 0.29 (commit 21b03f7), 0.30 (commit cc12ef7)
    # 0.31 (commit 62aa8fe), 0.32 (commit 9edfc71) and 0.33 (commit 05d2fa4),
    # the model shipped since 0.20 (run v14b), seed 7, `--tail on`, from kodim23[160:256, 280:408]
    ("v8-kodim23-96x128-uqdm025-tail.uqd", "v8-tail-decodes.json", 1),
    ("v8-kodim23-96x128-uqdm026-tail.uqd", "v8-tail2-decodes.json", 2),
    ("v8-kodim23-96x128-uqdm027-tail.uqd", "v8-tail3-decodes.json", 3),
    ("v8-kodim23-96x128-uqdm028-tail.uqd", "v8-tail4-decodes.json", 4),
    ("v8-kodim23-96x128-uqdm029-tail.uqd", "v8-tail5-decodes.json", 5),
    ("v8-kodim23-96x128-uqdm030-tail.uqd", "v8-tail6-decodes.json", 6),
    ("v8-kodim23-96x128-uqdm031-tail.uqd", "v8-tail7-decodes.json", 7),
    ("v8-kodim23-96x128-uqdm032-tail.uqd", "v8-tail8-decodes.json", 8),
    ("v8-kodim23-96x128-uqdm033-tail.uqd", "v8-tail9-decodes.json", 9),
    ("v8-kodim23-96x128-uqdm034-tail.uqd", "v8-tail10-decodes.json", 10),
]


@pytest.mark.parametrize("name, record, form", GOLDEN_TAILS)
def test_tail_files_of_earlier_releases_decode_as_they_did_there(name, record, form):
    """A tail file of each earlier form decodes to the SHA-256 of what its release decoded: after
    every step, and every chunk in turn."""

    data = (DATA / name).read_bytes()
    want = json.loads((DATA / record).read_text())
    hd = container.parse_header(data)[0]
    assert hd.tail and hd.tail_form == form and len(data) == want["bytes"]
    assert hd.fingerprint.hex().startswith("bc4f953bdf89")  # run v14b, shipped since uqdm 0.20
    codec = get_codec(model_for_file(hd, None))  # the current model, or the retired one of that name
    assert codec.fingerprint == hd.fingerprint

    def sha(a):
        return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

    for n in range(codec.num_steps + 1):
        assert sha(codec.decode(data, steps=n).pixels) == want["steps"][n], f"step {n}"
    full = codec.decode(data)
    assert full.lossless and np.array_equal(
        full.pixels, load_image(SAMPLES / "kodim23.png").pixels[160:256, 280:408]
    )
    images = list(codec.iter_decode(data, every_chunk=True))
    assert len(images) == want["levels"]
    assert hashlib.sha256(b"".join(im.pixels.tobytes() for im in images)).hexdigest() == want["every_chunk"]
    # a file cut inside its tail keeps its form and decodes the pixels that arrived exactly
    cut = files.truncate(data, max_bytes=len(data) - 1500)
    assert container.parse_header(cut)[0].tail_form == form
    out = codec.decode(cut)
    assert not out.lossless and out.nbytes == len(cut)
    assert (out.pixels == full.pixels).mean() > 0.5


@pytest.mark.parametrize("name, record, form", GOLDEN_TAILS)
def test_earlier_forms_still_encode_as_their_releases_did(name, record, form, monkeypatch):
    """The older coders are kept for old files and for measurements: with form 1 (2, ..., 7), the
    encoder writes uqdm 0.25's (0.26's, ..., 0.31's) file byte for byte."""
    data = (DATA / name).read_bytes()
    codec = get_codec(model_for_file(container.parse_header(data)[0], None))
    monkeypatch.setattr(lossless_tail, "FORM", form)
    pixels = load_image(SAMPLES / "kodim23.png").pixels[160:256, 280:408]
    assert codec.encode(pixels, seed=7, tail=True) == data
