"""The codec end to end with the fixture model: lossless, progressive, truncatable, deterministic."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import uqdm_codec
from uqdm_codec import container, files
from uqdm_codec.codec import Codec, ideal_bits
from uqdm_codec.errors import FormatError, ImageError, ModelError, SyncError, UqdmError

from .conftest import synthetic_image


def test_full_stream_is_lossless(codec, encoded):
    img, data = encoded
    out = codec.decode(data)
    assert out.lossless and out.steps == codec.num_steps
    assert np.array_equal(out.pixels, img)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (17, 33), (16, 16), (31, 2)])
def test_odd_sizes_round_trip(codec, shape):
    img = synthetic_image(*shape, seed=sum(shape))
    data = codec.encode(img, seed=1)
    assert np.array_equal(codec.decode(data).pixels, img)


def test_extreme_images_round_trip(codec):
    rng = np.random.default_rng(0)
    for img in (
        np.zeros((20, 24, 3), np.uint8),
        np.full((20, 24, 3), 255, np.uint8),
        rng.integers(0, 256, (20, 24, 3)).astype(np.uint8),
    ):
        assert np.array_equal(codec.decode(codec.encode(img, seed=2)).pixels, img)


def test_every_prefix_decodes_like_steps(codec, encoded):
    """Decoding a file truncated after step N equals decode(steps=N) of the full file."""
    _, data = encoded
    fi = files.info(data)
    for n in range(codec.num_steps + 1):
        full = codec.decode(data, steps=n)
        cut = files.truncate(data, steps=n)
        assert len(cut) == (fi.layers[n - 1].end if n else fi.header_bytes)
        part = codec.decode(cut)
        assert part.steps == n and not part.lossless
        assert np.array_equal(full.pixels, part.pixels)


def test_steps_improve_quality(codec, encoded):
    img, data = encoded
    mse = [
        float(((codec.decode(data, steps=n).pixels.astype(float) - img) ** 2).mean())
        for n in (0, codec.num_steps)
    ]
    assert mse[1] < mse[0]


def test_iter_decode_matches_decode(codec, encoded):
    _, data = encoded
    images = list(codec.iter_decode(data))
    assert [im.steps for im in images] == list(range(codec.num_steps + 1)) + [codec.num_steps]
    for im in images[:-1]:
        assert np.array_equal(im.pixels, codec.decode(data, steps=im.steps).pixels)


def test_decoding_is_deterministic_across_runs_and_threads(tiny_model, encoded):
    _, data = encoded
    first = Codec(tiny_model, "cpu").decode(data, steps=5).pixels
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = Codec(tiny_model, "cpu").decode(data, steps=5).pixels
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(first, single)


def test_same_seed_same_bytes(codec, image):
    assert codec.encode(image, seed=7) == codec.encode(image, seed=7)
    assert codec.encode(image, seed=7) != codec.encode(image, seed=8)


def test_every_seed_the_header_holds_and_no_other(codec):
    """Seeds were folded to 63 bits without a word (2^63 + 7 made seed 7's file); the header's
    8 bytes hold any 64-bit seed, so those are kept as given and the rest refused."""
    img = synthetic_image(9, 14, seed=5)
    top = 2**64 - 1
    data = codec.encode(img, seed=2**63 + 7)
    assert files.info(data).header.seed == 2**63 + 7 and data != codec.encode(img, seed=7)
    assert files.info(codec.encode(img, seed=top)).header.seed == top
    assert np.array_equal(codec.decode(data).pixels, img)
    for seed in (-1, 2**64, 1.5, "3", True):
        with pytest.raises(UqdmError, match="seed must be an integer from 0 to 2\\^64 - 1"):
            codec.encode(img, seed=seed)


def test_real_bytes_close_to_ideal(codec, encoded):
    img, data = encoded
    ideal = ideal_bits(codec, img, seed=files.info(data).header.seed)
    parsed = container.parse(data)
    for layer, bits in zip(parsed.layers, ideal):
        real = 8 * len(layer.chunks[0].payload)
        assert real <= 1.01 * bits + 64


def test_truncated_inside_a_layer_warns_and_decodes(codec, encoded):
    _, data = encoded
    fi = files.info(data)
    cut = data[: fi.layers[2].end + 10]
    out = codec.decode(cut)
    assert out.steps == 3 and any("incomplete" in w for w in out.warnings)
    assert np.array_equal(out.pixels, codec.decode(data, steps=3).pixels)


def test_asking_for_more_steps_than_present(codec, encoded):
    _, data = encoded
    with pytest.raises(UqdmError, match="holds only 2 complete steps"):
        codec.decode(files.truncate(data, steps=2), steps=4)
    with pytest.raises(UqdmError):
        codec.decode(data, steps=99)


def test_other_weights_are_refused_naming_both(encoded, other_model_path):
    _, data = encoded
    with pytest.raises(ModelError, match="tiny-test.*tiny-other"):
        Codec(other_model_path, "cpu").decode(data)


def test_corrupted_bytes_are_caught(codec, encoded):
    _, data = encoded
    fi = files.info(data)
    for pos in (3, 20, fi.header_bytes + 2, fi.layers[1].end + 30, len(data) - 5):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises((FormatError, SyncError)):
            codec.decode(bytes(bad))


def test_foreign_and_empty_files(codec):
    for junk in (b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, b"hello world" * 10):
        with pytest.raises(FormatError):
            codec.decode(junk)


def test_tampered_symbols_raise_sync_error(codec, encoded, monkeypatch):
    """A decoder whose arithmetic departs from the encoder's stops instead of showing a wrong image."""
    _, data = encoded
    from uqdm_codec import codec as codec_module

    real = codec_module.entropy.reconstruct
    monkeypatch.setattr(codec_module.entropy, "reconstruct", lambda k, p: real(k, p) + 1e-3)
    with pytest.raises(SyncError, match="arithmetic"):
        codec.decode(data, steps=4)


def test_swapped_layers_are_refused(codec, encoded):
    _, data = encoded
    fi = files.info(data)
    h = fi.header_bytes
    l1, l2 = data[h : fi.layers[0].end], data[fi.layers[0].end : fi.layers[1].end]
    with pytest.raises(FormatError, match="out of order"):
        codec.decode(data[:h] + l2 + l1 + data[fi.layers[1].end :])


def test_public_api(tiny_model_path, image):
    data = uqdm_codec.encode(image, model=tiny_model_path, seed=3, device="cpu")
    assert np.array_equal(np.asarray(uqdm_codec.decode(data, model=tiny_model_path, device="cpu")), image)
    preview = uqdm_codec.decode(data, steps=2, model=tiny_model_path, device="cpu")
    assert preview.size == (image.shape[1], image.shape[0])
    small = uqdm_codec.truncate(data, bpp=files.info(data).layers[3].bpp)
    assert len(small) == files.info(data).layers[3].end
    assert uqdm_codec.info(small).steps == 4


def test_public_api_takes_any_bytes_or_path_and_refuses_the_rest(tiny_model_path, image, tmp_path):
    """memoryview and paths are taken alike by decode, info and truncate (a memoryview and a
    missing path used to fail with AttributeError and FileNotFoundError; info and truncate took no
    path); steps must be a whole number (2.0 and True decoded as 2 and 1 steps)."""
    kw = {"model": tiny_model_path, "device": "cpu"}
    data = uqdm_codec.encode(image, seed=3, **kw)
    path = tmp_path / "x.uqd"
    path.write_bytes(data)
    cut = uqdm_codec.truncate(data, steps=2)
    for given in (memoryview(data), bytearray(data), str(path), path):
        assert uqdm_codec.truncate(given, steps=2) == cut
        assert uqdm_codec.info(given).total_bytes == len(data)
        assert np.array_equal(np.asarray(uqdm_codec.decode(given, **kw)), image)
    assert np.array_equal(
        np.asarray(uqdm_codec.decode(data, steps=np.int64(2), **kw)), np.asarray(uqdm_codec.decode(cut, **kw))
    )
    for bad, message in (
        (None, "a path or a binary file object, not NoneType"),
        (tmp_path / "no.uqd", "no such file"),
    ):
        for call in (uqdm_codec.decode, uqdm_codec.info, lambda d: uqdm_codec.truncate(d, steps=1)):
            with pytest.raises(UqdmError, match=message):
                call(bad)
    for steps in (2.0, True, "2"):
        with pytest.raises(UqdmError, match="steps must be a whole number"):
            uqdm_codec.decode(data, steps=steps, **kw)
        with pytest.raises(UqdmError, match="steps must be a whole number"):
            uqdm_codec.truncate(data, steps=steps)
        with pytest.raises(UqdmError, match="steps must be a whole number"):
            uqdm_codec.encode(image, steps=steps, **kw)
    with pytest.raises(ImageError, match="not an image: a list"):
        uqdm_codec.encode([[1, 2], [3, 4]], **kw)


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_public_api_takes_file_objects_and_warns_of_conversions(tiny_model_path, image, tmp_path):
    """A binary file object (an open file, an upload's BytesIO) was refused by encode, decode, info
    and truncate; and encode() dropped its input's conversion notes, so a 16-bit image gave a file
    whose 'lossless' end is not the input, without a word."""
    kw = {"model": tiny_model_path, "device": "cpu"}
    data = uqdm_codec.encode(io.BytesIO(_png(image)), seed=3, **kw)
    assert data == uqdm_codec.encode(image, seed=3, **kw)
    path = tmp_path / "x.uqd"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert np.array_equal(np.asarray(uqdm_codec.decode(f, **kw)), image)
    assert uqdm_codec.info(io.BytesIO(data)).total_bytes == len(data)
    assert uqdm_codec.truncate(io.BytesIO(data), steps=2) == uqdm_codec.truncate(data, steps=2)
    with open(path, encoding="latin-1") as f, pytest.raises(UqdmError, match="text mode; open it with 'rb'"):
        uqdm_codec.info(f)
    deep = image.astype(np.uint16) * 257 + 3  # 16-bit: reduced to the 8-bit image, with a warning
    with pytest.warns(uqdm_codec.UqdmWarning, match="^16-bit image reduced to 8 bits$") as said:
        assert uqdm_codec.encode(deep, seed=3, **kw) == data
    assert len(said) == 1 and said[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an image taken as it is, a prefix cut inside a layer: no warning
        uqdm_codec.encode(image, seed=3, **kw)
        cut = data[: (files.info(data).layers[2].end + files.info(data).layers[3].end) // 2]
        assert files.info(cut).in_next_step and uqdm_codec.decode_full(cut, **kw).warnings
        uqdm_codec.decode(cut, **kw)


@pytest.mark.parametrize("psnr", [np.float32(30.0), np.int64(30)])
def test_psnr_may_be_a_numpy_number_but_not_a_bool(psnr, encoded):
    """truncate(psnr=np.float32(30)) was refused and psnr=True taken as 1 dB, unlike every other
    number the library takes (errors.is_real)."""
    _, data = encoded
    with pytest.raises(UqdmError, match="has no PSNR index"):  # the value passed; the file lacks an index
        uqdm_codec.truncate(data, psnr=psnr)
    with pytest.raises(UqdmError, match="psnr must be a positive number of dB"):
        uqdm_codec.truncate(data, psnr=True)


def test_only_uncertain_coefficients_are_coded(codec, image):
    """Haar steps code exactly the coefficients whose prior scale >= threshold * q."""
    from uqdm_codec import entropy, haar
    from uqdm_codec.codec import _Chain

    chain = _Chain(codec.net, *image.shape[:2], seed=3, tile=codec.tile)
    x = entropy.pixels_to_data(image.transpose(2, 0, 1))
    xp = np.pad(x, ((0, 0), (0, chain.hp - image.shape[0]), (0, chain.wp - image.shape[1])), mode="edge")
    x_bands = haar.forward(xp, chain.levels)
    pred, coded = None, []
    for i in range(1, codec.num_steps):
        prior = chain.prior(i, pred)
        assert np.all(prior.scale >= codec.model.schedule.threshold * prior.quant_step)
        coded.append(len(prior) / xp.size)
        k = entropy.quantise(chain.elements(i, xp, x_bands), prior)
        chain.apply(i, entropy.reconstruct(k, prior), np.arange(k.size))
        for b, st in enumerate(chain.state):
            assert np.all(st.ravel()[chain.coded_flat[chain.coded_band == b]] == i)
        pred = chain.predict(i)
    assert 0 < coded[0] < 0.5  # the first step sends a small part of the image


def test_known_intervals_hold_every_value_and_clip_the_locations(codec, image):
    """Every coded Haar coefficient is known to lie in the intersection of its bins (FORMAT.md 5.5):
    the true value stays inside, an interval is at most the last bin wide, the step priors are
    truncated to it and the network's locations are clipped into it."""
    from uqdm_codec import entropy, haar
    from uqdm_codec.codec import INTERVAL_MARGIN, _Chain

    chain = _Chain(codec.net, *image.shape[:2], seed=5, tile=codec.tile)
    x = entropy.pixels_to_data(image.transpose(2, 0, 1))
    xp = np.pad(x, ((0, 0), (0, chain.hp - image.shape[0]), (0, chain.wp - image.shape[1])), mode="edge")
    x_bands = haar.forward(xp, chain.levels)
    pred, narrowed = None, 0
    for i in range(1, codec.num_steps):
        prior = chain.prior(i, pred)
        lower, upper = chain.known()
        for b in range(len(x_bands)):
            flat = chain.coded_flat[chain.coded_band == b]
            at = np.flatnonzero(chain.coded_band == b)
            assert np.array_equal(prior.lower[at], lower[b].ravel()[flat])
            assert np.array_equal(prior.upper[at], upper[b].ravel()[flat])
        k = entropy.quantise(chain.elements(i, xp, x_bands), prior)
        p = prior.part(slice(None))
        chain.apply(i, entropy.reconstruct(k, p), np.arange(k.size))
        lower, upper = chain.known()
        for b, xb in enumerate(x_bands):
            assert np.all((lower[b] <= xb) & (xb <= upper[b]))
            flat = chain.coded_flat[chain.coded_band == b]
            width = upper[b].ravel()[flat].astype(float) - lower[b].ravel()[flat]
            q = p.quant_step[chain.coded_band == b]
            assert np.all(width <= q + 2 * INTERVAL_MARGIN + 1e-5 * np.abs(xb).max())
            narrowed += int(np.sum(width < 0.99 * q))
        pred = chain.predict(i)
        for b, loc in enumerate(pred.locs):
            assert np.all((lower[b] <= loc) & (loc <= upper[b]))
    assert narrowed > 0  # some re-coded coefficient's bins overlapped only in part


def test_files_without_known_intervals_round_trip_and_differ(tiny_model, image):
    plain = Codec(tiny_model, "cpu", intervals=False)
    data = plain.encode(image, seed=6)
    assert np.array_equal(plain.decode(data).pixels, image)
    assert data != Codec(tiny_model, "cpu").encode(image, seed=6)


def test_rdoq_moves_symbols_toward_the_mode_and_stays_lossless(tiny_model, image):
    """The RDOQ probe (MODEL.md 53): the decoder needs nothing new, the pixels still come back
    exactly, the Haar steps are coded differently, and a file with known intervals refuses it."""
    plain = Codec(tiny_model, "cpu", intervals=False)
    base = plain.encode(image, seed=6)
    plain.rdoq = 0.3
    moved = plain.encode(image, seed=6)
    assert moved != base
    assert np.array_equal(plain.decode(moved).pixels, image)
    default = Codec(tiny_model, "cpu")
    default.rdoq = 0.3
    with pytest.raises(ValueError, match="known intervals"):
        default.encode(image, seed=6)


def test_rdoq_choice_never_costs_more_than_the_nearest_sample():
    from uqdm_codec import colour, rdoq
    from uqdm_codec.entropy import StepPrior

    rng = np.random.default_rng(0)
    n = 20_000
    x, loc = rng.normal(0, 3, n), rng.normal(0, 3, n)
    scale, dither, q = rng.uniform(0.2, 2.0, n), rng.uniform(-0.5, 0.5, n), np.full(n, 1.0)
    lower, upper = np.full(n, -50.0), np.full(n, 50.0)
    for lam in (0.05, 0.3):
        near = loc + (np.rint((x - loc) / q + dither) - dither) * q
        got = rdoq.choose(x, StepPrior(loc, scale, dither, q, np.full(n, 50.0)), lam)

        def cost(t, lam=lam):
            k = np.rint((t - loc) / q + dither)
            return ((t - x) / q) ** 2 + lam * colour.symbol_bits(k, loc, scale, dither, q, lower, upper)

        assert np.all(cost(got) <= cost(near) + 1e-12)
        moved = got != near
        assert 0 < moved.mean() < 0.5
        assert np.allclose(np.abs(got - near)[moved], 1.0)  # one bin, toward the mode
        assert np.all(np.abs(got - loc)[moved] < np.abs(near - loc)[moved] + 1e-9)


@pytest.fixture(scope="session")
def chunked(tiny_model):
    from uqdm_codec.codec import ChunkPolicy

    # choose_at_tail off: every tail's head shows the network's image (a random tiny model's never
    # wins elsewhere), so the file has NETWORK chunks to decode and the tests can find the tail
    policy = ChunkPolicy(growth=0.01, min_bytes=24, choose_at_tail=False)
    codec = Codec(tiny_model, "cpu", chunking=policy)
    img = synthetic_image(48, 64, seed=11)
    return codec, img, codec.encode(img, seed=4)


def test_chunked_file_is_lossless_and_has_many_cut_points(chunked):
    codec, img, data = chunked
    fi = files.info(data)
    assert len(fi.cut_points) >= 16 and any(layer.chunks > 1 for layer in fi.layers)
    assert np.array_equal(codec.decode(data).pixels, img)


def test_every_chunk_prefix_decodes_to_its_point(chunked):
    """A file cut after any chunk decodes to exactly the image iter_decode shows at that chunk."""
    codec, img, data = chunked
    points = list(codec.iter_decode(data, every_chunk=True))
    assert [p.nbytes for p in points] == files.info(data).cut_points
    for p in points[1::3]:
        cut = codec.decode(data[: p.nbytes])
        assert cut.layer == p.layer and cut.chunks == p.chunks
        assert np.array_equal(cut.pixels, p.pixels)


def test_steps_decode_ignores_a_partial_layer(chunked):
    codec, _, data = chunked
    fi = files.info(data)
    mid = next(c for c in fi.cut_points if fi.layers[2].end < c < fi.layers[3].end)
    assert np.array_equal(codec.decode(data[:mid], steps=3).pixels, codec.decode(data, steps=3).pixels)


def _decodable_ends(data: bytes) -> list[int]:
    """Every length a truncated file can have (FORMAT.md 2.1): chunk ends, and word boundaries
    at least two words into a chunk's payload."""
    fi = files.info(data)
    inside = [
        s + 4 + 4 * w for s, e in fi.chunk_spans for w in range(container.MIN_CUT_WORDS, (e - s - 4) // 4)
    ]
    return sorted(set(fi.cut_points) | set(inside))


def test_truncate_keeps_the_longest_decodable_prefix(chunked):
    """truncate lands on the longest decodable length within the budget, inside a chunk where the
    budget ends in one, and every such file decodes, to what it says it holds."""
    codec, _, data = chunked
    ends = _decodable_ends(data)
    fi = files.info(data)
    for budget in np.linspace(fi.cut_points[1], len(data) - 1, 9).astype(int):
        cut = files.truncate(data, max_bytes=int(budget))
        assert len(cut) == max(e for e in ends if e <= budget)
        out = codec.decode(cut)
        assert out.nbytes == len(cut)
        if len(cut) not in fi.cut_points:  # ends inside a chunk
            assert container.parse(cut).partial.chunks[-1].cut
            assert any("part of chunk" in w for w in out.warnings)


def test_a_cut_lossless_chunk_shows_exact_pixels_where_they_arrived(chunked):
    """Inside the lossless layer, a cut chunk's received levels are the original pixels and the
    rest still shows the last step's image; more words, more exact pixels."""
    codec, img, data = chunked
    fi = files.info(data)
    step_image = codec.decode(data, steps=fi.header.num_steps).pixels
    first, end = max((e - s, s, e) for s, e in fi.chunk_spans if s >= fi.layers[-2].end)[1:]
    words = (end - first - 4) // 4
    exact = []
    for kept in (2, words // 3, 2 * words // 3):
        out = codec.decode(container.cut_chunk_bytes(data, first, first + 4 + 4 * kept)).pixels
        same = out == img
        assert np.all(same | (out == step_image))
        exact.append(int((same & (step_image != img)).sum()))
    assert 0 < exact[0] < exact[1] < exact[2]


def test_cut_files_decode_the_same_streamed_and_twice(chunked, monkeypatch):
    codec, _, data = chunked
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
    fi = files.info(data)
    s, e = next((s, e) for s, e in fi.chunk_spans[3:] if e - s >= 4 + 4 * 6)
    cut = container.cut_chunk_bytes(data, s, s + 4 + 12)
    whole = codec.decode(cut)
    assert np.array_equal(codec.decode(cut).pixels, whole.pixels)
    dec = uqdm_codec.Decoder()
    for at in range(0, len(cut), 37):
        dec.feed(cut[at : at + 37])
    assert dec.latest.nbytes == len(cut) and np.array_equal(dec.latest.pixels, whole.pixels)
    assert dec.feed(b"") is None  # nothing after a cut chunk
    for bad in ("abc", None):  # were TypeErrors from inside the buffer
        with pytest.raises(UqdmError, match="a decoder is fed bytes, not"):
            dec.feed(bad)
    assert dec.feed(memoryview(b"")) is None


def _sse(a: np.ndarray, b: np.ndarray) -> int:
    return int(((a.astype(np.int64) - b) ** 2).sum())


def test_quality_never_falls_through_the_chunk_points(chunked):
    """The encoder flags a chunk's image as shown only when it beats the image on screen, so the
    error against the original never rises as bytes arrive, whatever the network does."""
    codec, img, data = chunked
    points = list(codec.iter_decode(data, every_chunk=True))
    errors = [_sse(p.pixels, img) for p in points]
    assert all(b <= a for a, b in zip(errors, errors[1:])) and errors[-1] == 0
    assert errors[0] > errors[len(errors) // 2] > 0  # and it does improve


def test_unflagged_chunks_keep_the_image_on_screen(chunked):
    codec, _, data = chunked
    parsed = container.parse(data)
    flags = [None] + [c.show for layer in parsed.layers for c in layer.chunks]  # None: the header point
    points = list(codec.iter_decode(data, every_chunk=True))
    assert len(flags) == len(points)
    for flag, before, at in zip(flags[1:], points, points[1:]):
        if not flag and not at.lossless:
            assert np.array_equal(before.pixels, at.pixels)
    net = [c for layer in parsed.layers for c in layer.chunks if c.network]
    assert net  # each chunked Haar step flags its tail's head for the network's image


def _check_step_points_fit(data: bytes, flat: bytes) -> None:
    """The first layer is byte for byte the unchunked one; in every later layer everything but the
    tail (which may be several chunks) ends within the bytes the unchunked file spends up to the
    end of that step. In a Haar step the tail's head is the chunk with the network flag."""
    fc, ff = files.info(data), files.info(flat)
    assert fc.layers[0].end == ff.layers[0].end
    parsed = container.parse(data)
    for i, (layer, ends) in enumerate(zip(parsed.layers[1:], parsed.chunk_offsets[1:]), start=1):
        net = [end for chunk, end in zip(layer.chunks, ends) if chunk.network]
        assert len(net) <= 1
        if net:
            assert net[0] <= ff.layers[i].end
        elif len(ends) > 1:
            assert ends[0] <= ff.layers[i].end


def test_chunked_step_points_fit_in_the_unchunked_file(chunked, tiny_model):
    codec, img, data = chunked
    flat = Codec(tiny_model, "cpu", chunking=None).encode(img, seed=4)
    _check_step_points_fit(data, flat)
    assert any(c.network for layer in container.parse(data).layers for c in layer.chunks)
    assert len(data) <= len(flat) * 1.2


def test_chunk_floor_scales_with_the_image():
    from uqdm_codec.codec import ChunkPolicy

    assert ChunkPolicy().for_image(384, 256).min_bytes == 384  # default: no scaling (cut chunks)
    policy = ChunkPolicy(min_floor=32)
    assert policy.for_image(768, 512).min_bytes == 384  # Kodak size: as before
    assert policy.for_image(4000, 3000).min_bytes == 384  # never above
    assert policy.for_image(384, 256).min_bytes == 96
    assert policy.for_image(64, 48).min_bytes == 32  # the floor
    assert ChunkPolicy(min_bytes=24, min_floor=32).for_image(64, 48).min_bytes == 24  # never raised


def test_small_image_truncates_within_3_percent(tiny_model):
    """On a thumbnail (128x96), `truncate` lands within 4 bytes of a budget wherever one is
    decodable: only budgets in the framing before a chunk's first two words (a layer header, the
    chunk's CRC, the coder's 64-bit state) fall back further. Of 200 budgets from the first layer
    to the whole file, those are the only ones more than 3 % short, and far fewer than with
    chunk boundaries alone. Step points still fit in the unchunked file's bytes."""
    img = synthetic_image(96, 128, seed=2)
    data = Codec(tiny_model, "cpu").encode(img, seed=5)
    fi = files.info(data)
    budgets = np.geomspace(fi.layers[0].end, len(data), 200).astype(int)
    landed = np.array([len(files.truncate(data, max_bytes=int(b))) for b in budgets]) / budgets
    chunk_points = np.array([max(c for c in fi.cut_points if c <= b) for b in budgets]) / budgets
    ends = [fi.header_bytes] + [e for _, e in fi.chunk_spans]  # each chunk's start is after ends[j]
    framing = [(before, start + 4 + 8) for before, (start, _) in zip(ends, fi.chunk_spans)]
    short = budgets[landed < 0.97]
    assert all(any(a <= b < z for a, z in framing) for b in short)
    assert len(short) < (chunk_points < 0.97).sum() / 2
    _check_step_points_fit(data, Codec(tiny_model, "cpu", chunking=None).encode(img, seed=5))
    assert np.array_equal(Codec(tiny_model, "cpu").decode(data).pixels, img)


def _rebuild(parsed, layers) -> bytes:
    hd = parsed.header
    return hd.to_bytes() + b"".join(layer.to_bytes() for layer in layers)


def test_network_flag_outside_a_haar_step_is_refused(chunked):
    codec, _, data = chunked
    parsed = container.parse(data)
    layers = parsed.layers
    last = layers[-1]
    last.chunks[0].flags |= container.NETWORK  # the lossless layer runs no network
    with pytest.raises(FormatError, match="network flag"):
        codec.decode(_rebuild(parsed, layers))


def test_streaming_decoder_improves_as_bytes_arrive(chunked, monkeypatch):
    import uqdm_codec

    codec, img, data = chunked
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
    dec = uqdm_codec.Decoder()
    assert dec.feed(data[:3]) is None  # not even the magic yet
    received, shown, levels = 3, 0, []
    while received < len(data):
        image = dec.feed(data[received : received + 97])
        received += 97
        if image is not None:
            shown += 1
            levels.append((dec.latest.layer, dec.latest.chunks))
            # what is shown equals decoding the bytes received so far
            assert np.array_equal(np.asarray(image), codec.decode(data[:received]).pixels)
    assert levels == sorted(levels) and shown > 5
    assert dec.latest.lossless and np.array_equal(dec.latest.pixels, img)


def test_any_tile_size_decodes_the_file(tiny_model):
    """The exact network gives the same integers for any tiling: a decoder with another tile size
    (and with 1 or 2 threads) reproduces every step of a file made with 64-pixel tiles."""
    img = synthetic_image(96, 160, seed=2)
    data = Codec(tiny_model, "cpu", tile=64).encode(img, seed=5)
    assert files.info(data).header.tile == 64  # recorded, informative
    other = Codec(tiny_model, "cpu", tile=1024)
    assert np.array_equal(other.decode(data).pixels, img)
    tiled = [im.pixels for im in Codec(tiny_model, "cpu", tile=32).iter_decode(data)]
    assert all(np.array_equal(a, b.pixels) for a, b in zip(tiled, other.iter_decode(data)))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = [im.pixels for im in other.iter_decode(data)]
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(a, b.pixels) for a, b in zip(single, other.iter_decode(data)))


def test_network_images_offered_at_every_chunk_decode_to_the_encoders_choice():
    """With network_every=1 the encoder flags `NETWORK` on any inner chunk of a Haar layer whose
    network image beats its posterior means (the shipped model's does, a random tiny model's not); a
    decoder cut there shows exactly that image, and quality still never falls as bytes arrive."""
    from PIL import Image

    from uqdm_codec.codec import ChunkPolicy

    from .test_portability import SAMPLE

    with Image.open(SAMPLE) as im:
        img = np.asarray(im.convert("RGB"))[192:256, 296:392].copy()
    codec = Codec(None, "cpu", chunking=ChunkPolicy(growth=0.03, min_bytes=24, network_every=1))
    data = codec.encode(img, seed=4)
    parsed = container.parse(data)
    chunks = [c for layer in parsed.layers for c in layer.chunks]
    tails = sum(1 for layer in parsed.layers[1 : codec.num_steps - 1] if len(layer.chunks) > 1)
    assert sum(c.network for c in chunks) > tails  # more than one network image per layer
    points = list(codec.iter_decode(data, every_chunk=True))
    errors = [_sse(p.pixels, img) for p in points]
    assert all(b <= a for a, b in zip(errors, errors[1:])) and errors[-1] == 0
    cut_at = [p for flag, p in zip(chunks, points[1:]) if flag.network]
    for p in cut_at[:: max(1, len(cut_at) // 4)]:
        assert np.array_equal(codec.decode(data[: p.nbytes]).pixels, p.pixels)


def test_tail_head_keeps_the_closer_image(tiny_model):
    """At the tail's head the encoder keeps the closer of the network's image and the posterior
    means (choose_at_tail): a random tiny model's network image loses to the means there, so no
    chunk is flagged `NETWORK`, the bytes are the same as when it is always shown, and at every
    chunk the image a decoder shows is at least as close to the original."""
    from uqdm_codec.codec import ChunkPolicy

    img = synthetic_image(48, 64, seed=11)
    runs = {}
    for choose in (False, True):
        policy = ChunkPolicy(growth=0.01, min_bytes=24, network_every=0, choose_at_tail=choose)
        codec = Codec(tiny_model, "cpu", chunking=policy)
        data = codec.encode(img, seed=4)
        flags = [c.network for layer in container.parse(data).layers for c in layer.chunks]
        errors = [_sse(p.pixels, img) for p in codec.iter_decode(data, every_chunk=True)]
        runs[choose] = data, flags, errors
    (always, always_flags, always_err), (chosen, chosen_flags, chosen_err) = runs[False], runs[True]
    assert sum(always_flags) >= 3 and not any(chosen_flags)
    assert len(always) == len(chosen) and len(always_err) == len(chosen_err)
    assert all(b <= a for a, b in zip(always_err, chosen_err))
    assert any(b < a for a, b in zip(always_err, chosen_err))


def test_fast_encoding_changes_only_the_flags_inside_steps():
    """encode(fast=True) offers the network's image only at each tail's head: the same layers and
    chunk payloads (so the same size and step images), NETWORK flags at most once per layer, and
    quality still never falls as bytes arrive."""
    from PIL import Image

    from uqdm_codec.codec import ChunkPolicy

    from .test_portability import SAMPLE

    with Image.open(SAMPLE) as im:
        img = np.asarray(im.convert("RGB"))[192:256, 296:392].copy()
    codec = Codec(None, "cpu", chunking=ChunkPolicy(growth=0.03, min_bytes=24))
    full, fast = codec.encode(img, seed=4), codec.encode(img, seed=4, fast=True)
    a, b = container.parse(full), container.parse(fast)
    assert len(full) == len(fast) and len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert [c.payload for c in la.chunks] == [c.payload for c in lb.chunks]
        assert sum(c.network for c in lb.chunks[:-1]) <= 1
    assert sum(c.network for layer in b.layers for c in layer.chunks) < sum(
        c.network for layer in a.layers for c in layer.chunks
    )
    for steps in (3, 5, codec.num_steps, None):
        assert np.array_equal(codec.decode(full, steps=steps).pixels, codec.decode(fast, steps=steps).pixels)
    errors = [_sse(p.pixels, img) for p in codec.iter_decode(fast, every_chunk=True)]
    assert all(q <= p for p, q in zip(errors, errors[1:])) and errors[-1] == 0


def test_tile_and_region_sides_are_checked_when_the_codec_is_made(tiny_model):
    """region=0 was a ZeroDivisionError, region='x' a TypeError and tile=7 a ValueError, each
    half-way through an encode; region=8 silently coded 16-pixel regions."""
    for kw in ({"tile": 7}, {"tile": -16}, {"tile": 24}, {"region": 0}, {"region": 8}, {"region": "x"}):
        with pytest.raises(UqdmError, match="must be a multiple of 16 from 16 to"):
            Codec(tiny_model, "cpu", **kw)
    assert Codec(tiny_model, "cpu", tile=16, region=None).region is None


def test_a_network_without_residual_blocks_still_codes():
    """Such a network has no FiLM rows to count against the schedule's steps; the check that
    refuses a config of another network (exactmodel.ExactModel) must not refuse it."""
    from uqdm_codec.exactmodel import from_float
    from uqdm_codec.model import UQDM, ModelConfig
    from uqdm_codec.network import NetworkConfig

    torch.manual_seed(0)
    flat = NetworkConfig(widths=(16, 16, 16, 16), blocks_down=(0, 0, 0), blocks_mid=0, blocks_up=(0, 0, 0))
    codec = Codec(from_float(UQDM(ModelConfig(name="flat", network=flat))), "cpu")
    img = synthetic_image(16, 24)
    assert np.array_equal(codec.decode(codec.encode(img, seed=1)).pixels, img)


def test_options_of_the_wrong_kind_are_one_line_errors(tiny_model_path, image, tmp_path, codec):
    """keep_icc="no" kept the profile and fast=1 passed: a yes/no option took any value for its
    truth. progress=5 in decode, device=5 and model=5 were TypeErrors or AttributeErrors, and
    get_codec(tile=0) silently took the default tile."""
    kw = {"model": tiny_model_path, "device": "cpu"}
    for option in ("fast", "keep_icc", "keep_metadata", "psnr_index"):
        for value in ("no", 1, None):
            with pytest.raises(UqdmError, match=f"^{option} must be True or False, not {value!r}$"):
                uqdm_codec.encode(image, **{option: value}, **kw)
    assert uqdm_codec.encode(image, seed=1, fast=np.bool_(True), **kw) == uqdm_codec.encode(
        image, seed=1, fast=True, **kw
    )
    data = uqdm_codec.encode(image, seed=1, **kw)
    with pytest.raises(UqdmError, match="^progress must be a function \\(or None\\), not 5$"):
        uqdm_codec.decode(data, progress=5, **kw)
    with pytest.raises(UqdmError, match="^every_chunk must be True or False"):
        next(codec.iter_decode(data, every_chunk="yes"))
    with pytest.raises(UqdmError, match="^device must be 'auto', 'cpu', 'cuda' or a torch.device, not 5$"):
        uqdm_codec.get_codec(tiny_model_path, device=5)
    with pytest.raises(ModelError, match="^a model is a name or a path to its .safetensors, not 5$"):
        uqdm_codec.get_codec(5)
    with pytest.raises(ModelError, match="^the model name is empty"):
        uqdm_codec.get_codec(" ")
    with pytest.raises(UqdmError, match="^tile must be a multiple of 16 .* not 0$"):
        uqdm_codec.get_codec(tiny_model_path, "cpu", tile=0)
    path = tmp_path / "x.uqd"
    path.write_bytes(data)  # Codec.decode takes what uqdm_codec.decode takes (a path was a TypeError)
    assert np.array_equal(codec.decode(str(path)).pixels, codec.decode(data).pixels)
    assert len(list(codec.iter_decode(path))) == len(list(codec.iter_decode(data)))
