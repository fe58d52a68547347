"""A grayscale input decodes as grayscale (FORMAT.md 1.2, extension bit 5): an L image came back as an
RGB one with R = G = B, three times the planes in every image file decode wrote. Its file says the image
is gray, and decoders show one plane at every step, the mean of the chain's R, G and B, which is also
what the encoder judges (show flags, PSNR index, PSNR targets)."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import uqdm_codec
from uqdm_codec import container, files, image_io, quality
from uqdm_codec.cli import app
from uqdm_codec.codec import Codec, gray_view
from uqdm_codec.errors import FormatError, UqdmError

from .conftest import synthetic_image
from .test_psnr_index import check_promises


def plane(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An (H, W) gray plane with some structure."""
    return synthetic_image(h, w, seed)[:, :, 1].copy()


def rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def test_gray_view_is_the_rounded_mean():
    px = np.array([[[0, 0, 1], [0, 1, 1], [255, 255, 254], [10, 20, 60], [7, 7, 7]]], np.uint8)
    assert gray_view(px)[0, :, 0].tolist() == [0, 1, 255, 30, 7]
    assert np.array_equal(gray_view(px)[:, :, 0], gray_view(px)[:, :, 2])
    every = np.stack(np.meshgrid(*[np.arange(256, dtype=np.uint8)] * 2, [0, 255], indexing="ij"), -1)
    sums = every.astype(np.int64).sum(axis=-1)
    assert np.array_equal(gray_view(every.reshape(-1, 1, 3))[:, 0, 0], np.floor(sums / 3 + 0.5).reshape(-1))


def test_header_field_round_trip_and_forgeries():
    base = container.Header(24, 16, 4, 1, b"\0" * 16, "m")
    gray = container.Header(24, 16, 4, 1, b"\0" * 16, "m", gray=True)
    data = gray.to_bytes()
    assert data[8] == container.EXTENDED_VERSION and data[-6:-4] == b"\x01\x01" and data[-7] == 0x20
    back = container.parse_header(data)[0]
    assert back.gray and back.mode == "L" and back.without_extensions() == base
    assert container.Header(24, 16, 4, 1, b"\0" * 16, "m", gray=True, alpha=b"\1" * 384).mode == "LA"
    assert base.mode == "RGB" and not container.parse_header(base.to_bytes())[0].gray
    for field in (b"\x01\x00", b"\x01\x02", b"\x02\x01\x01"):  # a value other than 1, a longer field
        forged = container.sealed(data[:-6] + field)
        with pytest.raises(FormatError, match="grayscale mark"):
            container.parse_header(forged)


def test_gray_images_decode_as_gray_at_every_step(codec):
    g = plane(24, 40, seed=3)
    data = codec.encode(rgb(g), seed=2, gray=True, tail=False)
    assert container.parse_header(data)[0].gray
    images = list(codec.iter_decode(data, every_chunk=True))
    assert len(images) > 8
    for image in images:
        assert image.gray and image.mode == "L" and np.array_equal(image.pixels, gray_view(image.pixels))
        pil = image.to_pil()
        assert pil.mode == "L" and np.array_equal(np.asarray(pil), image.pixels[:, :, 0])
    assert images[-1].lossless and np.array_equal(np.asarray(images[-1].to_pil()), g)
    # the same pixels as an RGB image: the same layers but for the show flags, RGB images
    colour = codec.encode(rgb(g), seed=2, tail=False)
    assert not container.parse_header(colour)[0].gray and codec.decode(colour).to_pil().mode == "RGB"
    assert len(colour) == len(data) - 3  # the extension byte, the field's length and its byte
    with pytest.raises(UqdmError, match="gray=True is for a grayscale image"):
        codec.encode(synthetic_image(24, 40), gray=True)
    with pytest.raises(UqdmError, match="gray must be True or False"):
        codec.encode(rgb(g), gray="yes")


@pytest.mark.parametrize("options", [{"tail": False}, {"tail": True, "fast": True}])
def test_the_index_and_targets_judge_the_gray_image(codec, options):
    """Show flags, the PSNR index and PSNR targets measure the image decoders show (the gray view)."""
    g = plane(40, 56, seed=7)
    data = codec.encode(rgb(g), seed=11, gray=True, psnr_index=True, **options)
    check_promises(codec, data, rgb(g), every=1)
    for target in (24.0, 31.0):
        cut = codec.encode(rgb(g), seed=11, gray=True, target=quality.Target(psnr=target), **options)
        d = codec.decode(cut).pixels[:, :, 0].astype(np.int64) - g
        assert 10 * math.log10(255**2 * d.size / max(1, int((d * d).sum()))) >= target


def test_a_tiled_gray_file(tiny_model):
    tiled = Codec(tiny_model, device="cpu", region=16)
    g = plane(20, 40, seed=4)
    data = tiled.encode(rgb(g), seed=2, gray=True, psnr_index=True)
    assert files.info(data).regions == 6
    check_promises(tiled, data, rgb(g), every=7)
    assert np.array_equal(np.asarray(tiled.decode(data).to_pil()), g)
    cut = tiled.encode(rgb(g), seed=2, gray=True, target=quality.Target(psnr=30.0))
    d = tiled.decode(cut).pixels[:, :, 0].astype(np.int64) - g
    assert 10 * math.log10(255**2 * d.size / max(1, int((d * d).sum()))) >= 30.0


def test_a_decoder_that_skips_the_mark_shows_rgb(codec, monkeypatch, tiny_model_path):
    """uqdm 0.38-0.49 skip bit 5 with a warning and decode the RGB chain: the same exact image."""
    g = plane(24, 32, seed=1)
    data = codec.encode(rgb(g), seed=1, gray=True)
    monkeypatch.setattr(container, "KNOWN_EXTENSIONS", container.KNOWN_EXTENSIONS & ~container.EXT_GRAY)
    old = codec.decode(data)
    assert not old.gray and old.pixels.tolist() == rgb(g).tolist() and any("0x20" in w for w in old.warnings)
    with pytest.warns(uqdm_codec.UqdmWarning, match="0x20"):
        assert uqdm_codec.decode(data, model=tiny_model_path).mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "LA", "1", "I;16", "I", "F"])
def test_one_plane_inputs_come_back_as_one_plane(mode, tiny_model_path):
    g = plane(20, 24, seed=2)
    if mode == "LA":
        image = Image.merge("LA", (Image.fromarray(g), Image.fromarray(255 - g)))
    elif mode == "1":
        image = Image.fromarray(g).convert("1")
    elif mode == "I;16":
        image = Image.fromarray(g.astype(np.uint16) * 257)
    elif mode == "F":
        image = Image.fromarray(g.astype(np.float32))
    else:
        image = Image.fromarray(g).convert(mode)
    loaded = image_io.load_image(image)
    assert loaded.gray and loaded.extras()["gray"]
    with warnings.catch_warnings():  # the conversions' notes (1-bit, 16-bit, ...)
        warnings.simplefilter("ignore", uqdm_codec.UqdmWarning)
        data = uqdm_codec.encode(image, model=tiny_model_path, seed=1)
    back = uqdm_codec.decode(data, model=tiny_model_path)
    assert back.mode == ("LA" if mode == "LA" else "L")
    want = np.asarray(image.convert("L")) if mode in ("1", "LA") else g
    assert np.array_equal(np.asarray(back.convert("L")), want)


def test_arrays_and_colour_inputs():
    assert image_io.load_image(plane(4, 6)).gray and image_io.load_image(plane(4, 6)[:, :, None]).gray
    assert not image_io.load_image(rgb(plane(4, 6))).gray  # an RGB image stays RGB, even with R = G = B
    assert not image_io.load_image(Image.fromarray(synthetic_image(4, 6)).convert("P")).gray
    assert not image_io.load_image(Image.fromarray(synthetic_image(4, 6)).convert("RGBA")).gray


@pytest.mark.parametrize(
    "fmt, mode, alpha_mode",
    [
        ("PNG", "L", "LA"),
        ("TIFF", "L", "LA"),
        ("BMP", "L", "L"),
        ("PPM", "RGB", "RGB"),
        ("WEBP", "RGB", "RGBA"),
    ],
)
def test_saved_files_hold_one_plane_where_the_format_has_it(fmt, mode, alpha_mode):
    g = plane(10, 12, seed=5)
    alpha = (255 - g).astype(np.uint8)
    for a, want in ((None, mode), (alpha, alpha_mode)):
        blob, _ = image_io.image_bytes(rgb(g), fmt, alpha=a, gray=True)
        back = Image.open(io.BytesIO(blob))
        back.load()
        assert back.mode == want, (fmt, a is not None)
        assert np.array_equal(np.asarray(back.convert("L")), g)


def test_command_line_round_trip_info_and_pillow(tmp_path, tiny_model_path):
    g = plane(24, 32, seed=6)
    src = tmp_path / "scan.png"
    Image.fromarray(g).save(src)
    r = CliRunner().invoke(app, ["encode", str(src), "-m", tiny_model_path, "--seed", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert "stored as RGB" not in r.output
    uqd = tmp_path / "scan.uqd"
    r = CliRunner().invoke(app, ["info", str(uqd)])
    assert r.exit_code == 0 and "32x24 L," in r.output, r.output
    for extra, name in (([], "whole.png"), (["--steps", "2"], "two.png")):
        out = tmp_path / name
        r = CliRunner().invoke(app, ["decode", str(uqd), "-m", tiny_model_path, "-o", str(out), "-q", *extra])
        assert r.exit_code == 0, r.output
        assert Image.open(out).mode == "L"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "whole.png")), g)
    with Image.open(uqd) as opened:  # the Pillow plugin: mode from the header, then the decode
        assert opened.mode == "L" and opened.size == (32, 24)
