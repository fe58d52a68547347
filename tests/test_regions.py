"""Tiled files (FORMAT.md 1.1): a large image coded as independent regions whose layer records are
interleaved. Tested at small scale with a tiny model and a 32-pixel region side."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from uqdm_codec import container, files
from uqdm_codec.codec import Codec, Decoder
from uqdm_codec.errors import FormatError, ModelError, SyncError, UqdmError
from uqdm_codec.regions import region_size

from .conftest import synthetic_image

SEED = 77


@pytest.fixture(scope="module")
def tiled_codec(tiny_model):
    return Codec(tiny_model, device="cpu", region=32)


@pytest.fixture(scope="module")
def tiled(tiled_codec):
    img = synthetic_image(40, 72, seed=4)
    return img, tiled_codec.encode(img, seed=SEED)


def test_region_grid():
    assert region_size(4000, 3000, 1024, 16) == (1008, 1008)  # 4 x 3 regions, the last ones narrower
    assert region_size(1024, 700, 1024, 16) == (1024, 704)  # one region across
    assert region_size(72, 40, 32, 16) == (32, 32)
    hd = container.Header(72, 40, 8, 5, b"\0" * 16, "m", region=(32, 32))
    top = [(0, 0, 32, 32), (32, 0, 64, 32), (64, 0, 72, 32)]
    bottom = [(0, 32, 32, 40), (32, 32, 64, 40), (64, 32, 72, 40)]
    assert hd.regions() == top + bottom
    assert hd.region_header(2).seed == (5 + 2 * 0x9E3779B97F4A7C15) % 2**64
    assert hd.region_header(5).width == 8 and hd.region_header(5).height == 8


def test_small_images_stay_untiled(codec, tiled_codec, image):
    assert not container.parse_header(tiled_codec.encode(image[:32, :32], seed=1))[0].tiled
    assert tiled_codec.encode(image[:32, :32], seed=1) == codec.encode(image[:32, :32], seed=1)


def test_tiled_roundtrip_and_layout(tiled, tiled_codec, codec):
    img, data = tiled
    hd, size, parts = container.split_tiled(data)
    assert hd.tiled and hd.region == (32, 32) and len(parts) == 6
    fi = files.info(data)
    assert fi.regions == 6 and fi.complete and fi.layers[-1].end == len(data)
    out = tiled_codec.decode(data)
    assert out.lossless and np.array_equal(out.pixels, img) and out.nbytes == len(data)
    # each region's records are exactly the untiled file of its pixels with the made header
    for r, part in enumerate(parts):
        x0, y0, x1, y1 = hd.regions()[r]
        own = codec.encode_layers(np.ascontiguousarray(img[y0:y1, x0:x1]), hd.region_header(r))
        assert part.data == b"".join(own)
    # a decoder with another region side (or none) reads the same file the same way
    assert np.array_equal(codec.decode(data, steps=3).pixels, tiled_codec.decode(data, steps=3).pixels)


def test_steps_prefixes_and_levels(tiled, tiled_codec):
    img, data = tiled
    fi = files.info(data)
    levels = list(tiled_codec.iter_decode(data))
    assert [lv.layer for lv in levels] == list(range(tiled_codec.num_steps + 2))
    assert levels[-1].lossless and np.array_equal(levels[-1].pixels, img)
    for s in range(tiled_codec.num_steps + 1):
        cut = files.truncate(data, steps=s)
        assert len(cut) == (fi.layers[s - 1].end if s else fi.header_bytes)
        a, b = tiled_codec.decode(data, steps=s), tiled_codec.decode(cut)
        assert a.steps == b.steps == s and np.array_equal(a.pixels, b.pixels)
        assert np.array_equal(a.pixels, levels[s].pixels)
    with pytest.raises(UqdmError, match="per-chunk"):
        list(tiled_codec.iter_decode(data, every_chunk=True))


def test_truncate_anywhere(tiled, tiled_codec):
    img, data = tiled
    fi = files.info(data)
    last = None
    for budget in np.linspace(fi.header_bytes, len(data), 23).astype(int):
        cut = files.truncate(data, max_bytes=int(budget))
        assert len(cut) <= budget
        assert data.startswith(cut[: fi.header_bytes])
        lower = max(c for c in fi.cut_points if c <= budget)
        assert len(cut) >= lower  # never shorter than the last chunk boundary
        out = tiled_codec.decode(cut)
        if len(cut) < len(data):
            assert not out.lossless
        err = float(np.mean((out.pixels.astype(float) - img) ** 2))
        if last is not None:
            assert err <= last * 1.5 + 1.0  # a longer prefix is about as good or better
        last = err
        again = files.truncate(cut, max_bytes=len(cut) - 5) if len(cut) - 5 >= fi.header_bytes else None
        if again is not None:
            tiled_codec.decode(again)  # a cut file cuts again and still decodes


def test_partial_layer_refines_the_regions_before_the_cut(tiled, tiled_codec):
    img, data = tiled
    hd, _, parts = container.split_tiled(data)
    fi = files.info(data)
    # the prefix ending after region 0's record of layer 4: region 0 has 4 steps, the others 3
    end = parts[0].segments[3][1] + parts[0].segments[3][2]
    out = tiled_codec.decode(data[:end])
    assert out.steps == 3 and out.layer == 4 and fi.layers[2].end < end < fi.layers[3].end
    four, three = tiled_codec.decode(data, steps=4).pixels, tiled_codec.decode(data, steps=3).pixels
    x0, y0, x1, y1 = hd.regions()[0]
    assert np.array_equal(out.pixels[y0:y1, x0:x1], four[y0:y1, x0:x1])
    assert np.array_equal(out.pixels[y1:], three[y1:]) and np.array_equal(out.pixels[:, x1:], three[:, x1:])
    with pytest.raises(UqdmError, match="3 complete steps"):
        tiled_codec.decode(data[:end], steps=4)
    # the level-by-level decoder ends on the same image, and its levels before are the steps
    levels = list(tiled_codec.iter_decode(data[:end]))
    assert [lv.layer for lv in levels] == [0, 1, 2, 3, 4]
    assert np.array_equal(levels[-1].pixels, out.pixels) and np.array_equal(levels[3].pixels, three)


def test_streaming_and_sampling(tiled, tiled_codec, tiny_model):
    img, data = tiled
    dec = Decoder(tiny_model, "cpu")
    for k in range(0, len(data), 700):
        dec.feed(data[k : k + 700])
    assert dec.latest.lossless and np.array_equal(dec.latest.pixels, img)
    cut = files.truncate(data, steps=2)
    a = tiled_codec.decode(cut, recon="sample", seed=3)
    b = tiled_codec.decode(cut, recon="sample", seed=3)
    assert a.recon == "sample" and np.array_equal(a.pixels, b.pixels)
    assert np.array_equal(a.shown, tiled_codec.decode(cut).pixels)


def test_damaged_tiled_files(tiled, tiled_codec, other_model_path):
    img, data = tiled
    hd, size, parts = container.split_tiled(data)
    flipped = bytearray(data)
    flipped[parts[4].segments[2][1] + 30] ^= 0x10  # inside region 4's layer 3
    with pytest.raises((FormatError, SyncError)):
        tiled_codec.decode(bytes(flipped))
    with pytest.raises(FormatError, match="after the last layer"):
        files.info(data + data[size : size + 40])

    def with_header(header_bytes: bytes) -> bytes:
        body = header_bytes[:-4]
        return container.sealed(body) + data[size:]

    raw = hd.to_bytes()
    bad_flag = bytearray(raw)
    bad_flag[9] = 0b10001  # TILED and an unknown bit
    with pytest.raises(FormatError, match="flags"):
        files.info(with_header(bytes(bad_flag)))
    with pytest.raises(FormatError, match="region size"):
        files.info(with_header(replace(hd, region=(24, 32)).to_bytes()))
    with pytest.raises(FormatError, match="regions"):
        big = replace(hd, width=65535, height=1000, region=(16, 16))
        files.info(with_header(big.to_bytes()))
    other = Codec(other_model_path, device="cpu")
    with pytest.raises(ModelError, match="made with model"):
        other.decode(data)


def test_command_line_on_a_tiled_file(tiled, tmp_path, tiny_model_path):
    from PIL import Image
    from typer.testing import CliRunner

    from uqdm_codec.cli import app

    img, data = tiled
    path = tmp_path / "big.uqd"
    path.write_bytes(data)
    runner = CliRunner()
    r = runner.invoke(app, ["info", str(path)])
    assert r.exit_code == 0 and "6 regions of 32x32" in " ".join(r.stdout.split())
    r = runner.invoke(app, ["truncate", str(path), "--bpp", "3", "-o", str(tmp_path / "cut.uqd")])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert (tmp_path / "cut.uqd").stat().st_size <= 3 * 72 * 40 / 8
    r = runner.invoke(app, ["decode", str(path), "-m", tiny_model_path, "-o", str(tmp_path / "out.png")])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), img)
    strip, folder = tmp_path / "strip.png", tmp_path / "levels"
    args = ["--progression", str(strip), "--all-steps", str(folder)]
    r = runner.invoke(app, ["decode", str(path), "-m", tiny_model_path, *args])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert strip.exists() and len(list(folder.glob("*.png"))) == 10  # header, 8 steps, lossless
