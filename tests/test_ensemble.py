"""The mirror ensemble (ensemble.py): exact mirrors of Haar bands, a header field old decoders
refuse cleanly, and files whose every level the decoder reproduces."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from uqdm_codec import container, ensemble, files, haar
from uqdm_codec.cli import app
from uqdm_codec.codec import ChunkPolicy, Codec, _Chain, ideal_bits
from uqdm_codec.errors import FormatError, UqdmError

from .conftest import synthetic_image


@pytest.mark.parametrize("mirror", ["h", "v", "hv"])
def test_mirrored_bands_are_the_bands_of_the_mirrored_image(mirror):
    x = np.random.default_rng(0).normal(size=(3, 32, 48))
    image = ensemble.mirror_image(x, mirror)
    bands = ensemble.mirror_bands(haar.forward(x, 4), mirror, signed=True)
    for got, want in zip(bands, haar.forward(image, 4)):
        np.testing.assert_allclose(got, want, atol=1e-12)
    back = ensemble.mirror_bands(bands, mirror, signed=True)  # a mirror is its own inverse, exactly
    for got, want in zip(back, haar.forward(x, 4)):
        assert np.array_equal(got, want)
    states = [np.arange(b.size, dtype=np.uint8).reshape(b.shape) for b in haar.forward(x, 4)]
    moved = ensemble.mirror_bands(states, mirror, signed=False)
    assert all(m.dtype == np.uint8 and sorted(m.ravel()) == sorted(s.ravel()) for m, s in zip(moved, states))


def test_average_is_a_fixed_order_sum_and_needs_a_power_of_two():
    avg = ensemble.Average()
    for v in (0.1, 0.2, 0.3, 0.4):
        avg.add([np.array([v])])
    assert avg.result()[0][0] == (((0.1 + 0.2) + 0.3) + 0.4) * 0.25
    three = ensemble.Average()
    for v in (1.0, 2.0, 3.0):
        three.add([np.array([v])])
    with pytest.raises(ValueError):
        three.result()


def test_four_mirror_prediction_is_mirror_equivariant(codec):
    """Averaged over a group of mirrors, the prediction on a mirrored state is the mirrored
    prediction (up to the order of the sum): a wrong sign anywhere in the mirrors would break it."""
    chain = _Chain(codec.net, 32, 48, seed=3, tile=codec.tile)
    x = haar.forward(np.random.default_rng(1).uniform(-1, 1, (3, 32, 48)), chain.levels)
    prior = chain.prior(1, None)
    chain.apply(1, prior.loc + 0.01, np.arange(prior.loc.size))
    a = codec.net.predict(chain.z, chain.state, 1, mirrors=4)
    z = ensemble.mirror_bands(chain.z, "v", signed=True)
    st = ensemble.mirror_bands(chain.state, "v", signed=False)
    b = codec.net.predict(z, st, 1, mirrors=4)
    for got, want in zip(ensemble.mirror_bands(b.locs, "v", signed=True), a.locs):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    for got, want in zip(ensemble.mirror_bands(b.scales, "v", signed=False), a.scales):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    one = codec.net.predict(chain.z, chain.state, 1)
    assert not all(np.array_equal(p, q) for p, q in zip(one.locs, a.locs))  # the ensemble did something
    del x


@pytest.mark.parametrize("mirrors", [1, 2, 4])
def test_header_carries_the_mirrors(mirrors):
    hd = container.Header(64, 48, 8, 42, bytes(range(16)), "m", mirrors=mirrors)
    raw = hd.to_bytes()
    assert container.parse_header(raw)[0] == hd
    # a default file keeps the flags byte of uqdm 0.11, which therefore still decodes it
    assert (raw[9] == 0) == (mirrors == 1)
    tiled = container.Header(64, 48, 8, 42, bytes(16), "m", region=(32, 32), mirrors=mirrors)
    assert container.parse_header(tiled.to_bytes())[0].region_header(1).mirrors == mirrors


def test_reserved_mirror_code_and_bad_values_are_refused():
    raw = bytearray(container.Header(64, 48, 8, 42, bytes(16), "m").to_bytes())
    raw[9] = 0b110  # the reserved code 3
    body = len(raw) - 4
    raw[body:] = container.crc32(bytes(raw[:body])).to_bytes(4, "little")
    with pytest.raises(FormatError, match="reserved mirror"):
        container.parse_header(bytes(raw))
    for bad in (3, True, 2.0, "2"):  # True and 2.0 were taken as 1 and 2
        with pytest.raises(UqdmError, match="mirrors must be one of"):
            ensemble.check_mirrors(bad)
    assert ensemble.check_mirrors(np.int64(4)) == 4


@pytest.fixture(scope="module")
def mirrored(tiny_model):
    codec = Codec(tiny_model, "cpu", chunking=ChunkPolicy(growth=0.01, min_bytes=24))
    img = synthetic_image(48, 64, seed=11)
    return codec, img, codec.encode(img, seed=4, mirrors=2)


def test_mirrored_file_is_lossless_and_every_chunk_decodes_to_its_point(mirrored):
    codec, img, data = mirrored
    assert files.info(data).header.mirrors == 2
    points = list(codec.iter_decode(data, every_chunk=True))  # the display checks of every chunk pass
    assert points[-1].lossless and np.array_equal(points[-1].pixels, img)
    assert [p.nbytes for p in points] == files.info(data).cut_points
    for p in points[1::4]:
        cut = codec.decode(data[: p.nbytes])
        assert np.array_equal(cut.pixels, p.pixels)
    plain = codec.encode(img, seed=4)
    assert plain != data and plain[:9] == data[:9]  # the same header up to the flags, other priors


def test_mirrored_file_decodes_with_other_tiles(mirrored, tiny_model):
    codec, img, data = mirrored
    small = Codec(tiny_model, "cpu", tile=16)
    want = [p.pixels for p in codec.iter_decode(data)]
    got = [p.pixels for p in small.iter_decode(data)]
    assert all(np.array_equal(a, b) for a, b in zip(want, got)) and len(want) == len(got)


def test_ideal_bits_follow_the_file(codec):
    img = synthetic_image(32, 48, seed=2)
    data = codec.encode(img, seed=0, mirrors=4)
    ideal = ideal_bits(codec, img, 0, mirrors=4)  # the same chain: each layer close to its code length
    for layer, bits in zip(container.parse(data).layers, ideal, strict=True):
        real = 8 * sum(len(c.payload) for c in layer.chunks)
        assert bits - 1 <= real <= 1.01 * bits + 64 * len(layer.chunks)


def test_cli_encodes_with_mirrors_and_info_says_so(tmp_path, tiny_model_path):
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(synthetic_image(24, 40, seed=5)).save(src)
    runner = CliRunner()
    res = runner.invoke(app, ["encode", str(src), "--model", tiny_model_path, "--mirrors", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["info", str(tmp_path / "a.uqd")])
    assert res.exit_code == 0 and "averaged over 4 mirror images" in res.output
    res = runner.invoke(app, ["encode", str(src), "--model", tiny_model_path, "--mirrors", "3", "--force"])
    assert res.exit_code != 0 and "mirrors must be one of" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["decode", str(tmp_path / "a.uqd"), "--model", tiny_model_path, "--quiet"])
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.decoded.png")), np.asarray(Image.open(src)))


def test_tiled_file_passes_the_mirrors_to_every_region(tiny_model):
    codec = Codec(tiny_model, "cpu", region=32)
    img = synthetic_image(40, 72, seed=6)
    data = codec.encode(img, seed=9, mirrors=2)
    hd = files.info(data).header
    assert hd.tiled and hd.mirrors == 2
    assert np.array_equal(codec.decode(data).pixels, img)
    assert data != codec.encode(img, seed=9)  # the regions were coded with the ensemble


def test_many_files_are_encoded_with_the_mirrors(tmp_path, tiny_model_path):
    from PIL import Image

    paths = []
    for k in range(2):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(synthetic_image(24, 32, seed=k)).save(paths[-1])
    res = CliRunner().invoke(
        app,
        [
            "encode",
            *map(str, paths),
            "--model",
            tiny_model_path,
            "--mirrors",
            "2",
            "--out-dir",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 0, res.output
    for k in range(2):
        assert files.info((tmp_path / "o" / f"{k}.uqd").read_bytes()).header.mirrors == 2
