"""Display filters and priors from the shown image (display_filter.py, FORMAT.md 6.5): the header
block, the exact arithmetic, the encoder's fit and choice, and what files made with them hold."""

from __future__ import annotations

import numpy as np
import pytest

from uqdm_codec import container, display_filter, files
from uqdm_codec.codec import Codec
from uqdm_codec.display_filter import DisplayFilter
from uqdm_codec.errors import FormatError

from .conftest import synthetic_image


def random_filter(radius: int, seed: int = 0) -> DisplayFilter:
    rng = np.random.default_rng(seed)
    n = 3 * display_filter.taps_per_colour(radius)
    taps = rng.integers(-3000, 3000, n)
    taps[rng.random(n) < 0.2] = 0
    return DisplayFilter(
        radius, tuple(int(t) for t in taps), tuple(int(b) for b in rng.integers(-900, 900, 3))
    )


def test_block_round_trip_and_errors():
    for radius in (1, 2):
        f = random_filter(radius)
        block = display_filter.to_bytes(f)
        assert len(block) == 1 + 2 * (3 * display_filter.taps_per_colour(radius) + 3) == f.nbytes
        assert display_filter.parse(b"ab" + block, 2) == (f, 2 + len(block))
        assert display_filter.parse(block[:-1], 0) is None
    assert display_filter.to_bytes(None) == b"\0" and display_filter.parse(b"\0", 0) == (None, 1)
    assert display_filter.parse(b"", 0) is None
    with pytest.raises(FormatError, match="radius 3"):
        display_filter.parse(bytes([3]) + bytes(400), 0)


def naive(f: DisplayFilter, image: np.ndarray) -> np.ndarray:
    """FORMAT.md 6.5 written out pixel by pixel in Python floats."""
    r, (_, h, w) = f.radius, image.shape
    k = 2 * r + 1
    out = np.empty_like(image)
    for c in range(3):
        for y in range(h):
            for x in range(w):
                acc = 0.0
                for c2 in range(3):
                    for dy in range(-r, r + 1):
                        for dx in range(-r, r + 1):
                            t = f.taps[((c * 3 + c2) * k + dy + r) * k + dx + r]
                            if t:
                                v = image[c2, min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)]
                                acc = acc + (t * 2.0**-14) * float(v)
                out[c, y, x] = min(max((float(image[c, y, x]) + acc) + f.bias[c] * 2.0**-16, -1.0), 1.0)
    return out


def test_apply_is_the_formula_bit_for_bit(monkeypatch):
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (3, 6, 9))
    for radius in (1, 2):
        f = random_filter(radius, seed=radius)
        assert np.array_equal(display_filter.apply(f, image), naive(f, image))
    assert display_filter.apply(None, image) is image
    big = rng.uniform(-1, 1, (3, 70, 50))
    f = random_filter(2, seed=5)
    whole = display_filter.apply(f, big)
    monkeypatch.setattr(display_filter, "STRIP_VALUES", 60)  # strips of one row: the same values
    assert np.array_equal(display_filter.apply(f, big), whole)
    zero = DisplayFilter(1, (0,) * 81, (0, 0, 0))
    assert np.array_equal(display_filter.apply(zero, image), image)


def speckled(h: int = 64, w: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(original levels (3, H, W), a display of it with pixel-scale colour noise, data units)."""
    original = synthetic_image(h, w, seed).transpose(2, 0, 1).astype(np.float64)
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 0.04, (3, h, w))
    noise -= noise.mean(axis=0)  # colour noise only: the grey level is right
    return original, np.clip((2 * original + 1) / 256 - 1 + noise, -1, 1)


def test_fit_removes_colour_speckle_and_choose_weighs_its_cost():
    original, image = speckled()
    target = (2 * original + 1) / 256 - 1
    base = display_filter.shown_sse(image, original)
    for f in display_filter.fit(image, target):
        assert display_filter.shown_sse(display_filter.apply(f, image), original) < 0.75 * base
    chosen, _, sse = display_filter.choose(image, original, db_per_bit=1e-4)
    assert chosen is not None
    assert sse == display_filter.shown_sse(display_filter.apply(chosen, image), original)
    assert display_filter.choose(image, original, db_per_bit=1.0)[0] is None  # a dB costs 1 bit: not worth
    assert display_filter.choose(target, original, db_per_bit=1e-4)[0] is None  # nothing to remove


@pytest.fixture(scope="module")
def filtered(codec):
    img = synthetic_image(48, 64, seed=3)
    return img, codec.encode(img, seed=2)


def test_files_carry_filters_and_decode_exactly(filtered, codec, tiny_model):
    img, data = filtered
    parsed = container.parse(data)
    T = codec.num_steps
    assert any(layer.display_filter for layer in parsed.layers)
    assert any(layer.from_display for layer in parsed.layers)
    for layer in parsed.layers[T - 1 :]:
        assert layer.display_filter is None and not layer.from_display
    assert not parsed.layers[0].from_display
    sides = [2 * la.display_filter.radius + 1 if la.display_filter else 0 for la in parsed.layers]
    assert [la.filter_side for la in files.info(data).layers] == sides  # what `uqdm info` shows
    images = list(codec.iter_decode(data))
    assert np.array_equal(images[-1].pixels, img)
    plain = Codec(tiny_model, device="cpu", display_filters=False).encode(img, seed=2)
    assert not any(la.display_filter or la.from_display for la in container.parse(plain).layers)
    assert np.array_equal(codec.decode(plain).pixels, img)


def rebuilt(data: bytes, parsed: container.ParsedFile) -> bytes:
    return data[: parsed.header_size] + b"".join(layer.to_bytes() for layer in parsed.layers)


def test_misplaced_filters_and_masks_are_refused(filtered, codec):
    _, data = filtered
    T = codec.num_steps
    parsed = container.parse(data)
    parsed.layers[T - 1].display_filter = random_filter(1)  # the pixel step
    with pytest.raises(FormatError, match="display filter"):
        container.parse(rebuilt(data, parsed))
    for index, mask in ((0, 1), (T - 1, 1), (1, 1 << 5)):
        parsed = container.parse(data)
        parsed.layers[index].from_display = mask
        with pytest.raises(FormatError, match="prior locations"):
            codec.decode(rebuilt(data, parsed))
