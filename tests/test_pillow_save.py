"""Pillow writes .uqd files: image.save("x.uqd", psnr=38) is uqdm_codec.encode with the same
keywords, the bytes exactly what encode writes; odd modes convert as encode converts them, and a
failed save leaves no file behind."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import uqdm_codec
from uqdm_codec.errors import UqdmError

from .conftest import synthetic_image


@pytest.fixture
def rgb():
    return Image.fromarray(synthetic_image(24, 40, seed=6))


def test_save_is_encode(rgb, tiny_model_path, tmp_path):
    path = tmp_path / "photo.uqd"
    rgb.save(path, model=tiny_model_path, seed=3, quality=90)  # quality: another format's, ignored
    data = path.read_bytes()
    assert data == uqdm_codec.encode(rgb, tiny_model_path, seed=3)
    assert np.array_equal(np.asarray(uqdm_codec.decode(data, model=tiny_model_path)), np.asarray(rgb))

    buffer = io.BytesIO()
    rgb.save(buffer, format="UQD", model=tiny_model_path, seed=3, steps=4)
    assert buffer.getvalue() == uqdm_codec.encode(rgb, tiny_model_path, seed=3, steps=4)
    assert uqdm_codec.info(buffer.getvalue()).header.width == 40


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16"])
def test_save_takes_the_modes_encode_takes(rgb, tiny_model_path, mode):
    image = (
        rgb.convert("RGBA")
        if mode == "RGBA"
        else rgb.convert("L").convert(mode)
        if mode == "I;16"
        else rgb.convert(mode)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="UQD", model=tiny_model_path, seed=1)
    assert buffer.getvalue() == uqdm_codec.encode(image, tiny_model_path, seed=1)


def test_a_failed_save_leaves_no_file(rgb, tiny_model_path, tmp_path):
    path = tmp_path / "bad.uqd"
    with pytest.raises(UqdmError):
        rgb.save(path, model=tiny_model_path, psnr=38, bpp=0.5)  # two targets: refused
    assert not path.exists()


def test_save_all_saves_one_image_and_refuses_more(rgb, tiny_model_path, tmp_path):
    """save_all=True, which code that writes animations passes to every format, was Pillow's
    KeyError 'UQD'."""
    buffer = io.BytesIO()
    rgb.save(buffer, format="UQD", save_all=True, model=tiny_model_path, seed=3)
    assert buffer.getvalue() == uqdm_codec.encode(rgb, tiny_model_path, seed=3)
    path = tmp_path / "two.uqd"
    with pytest.raises(UqdmError, match="holds one image, not 2 frames"):
        rgb.save(path, save_all=True, append_images=[rgb], model=tiny_model_path)
    assert not path.exists()


def test_opened_files_are_closed_once_read_and_verify_checks_every_checksum(
    rgb, tiny_model_path, tmp_path, monkeypatch
):
    """Image.open(path).load() left the file open for the image's life (a ResourceWarning; a lock on
    Windows), where Pillow's own plugins close it; a stream the caller passed stays open. verify()
    did nothing; it checks every checksum now, without decoding."""
    from uqdm_codec.codec import Codec

    codec = Codec(tiny_model_path, "cpu")
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
    path = tmp_path / "photo.uqd"
    rgb.save(path, model=tiny_model_path, seed=3)
    im = Image.open(path)
    opened = im.fp
    im.load()
    assert opened.closed and im.fp is None and np.array_equal(np.asarray(im), np.asarray(rgb))
    stream = io.BytesIO(path.read_bytes())
    with Image.open(stream) as im:
        im.load()
    assert not stream.closed
    im = Image.open(path)
    opened = im.fp
    im.verify()
    assert opened.closed
    bad = bytearray(path.read_bytes())
    bad[-5] ^= 0xFF
    with pytest.raises(OSError, match="checksum mismatch"):
        Image.open(io.BytesIO(bytes(bad))).verify()


def test_save_warns_at_the_callers_line(tiny_model_path, tmp_path):
    """A conversion note of save() pointed into pillow_plugin.py; it points at the line that called
    save, as encode()'s do, and a filter that makes it an error leaves no file."""
    import warnings

    opaque = Image.fromarray(np.full((16, 16, 4), 255, np.uint8), "RGBA")
    with pytest.warns(uqdm_codec.UqdmWarning, match="opaque everywhere") as record:
        opaque.save(tmp_path / "a.uqd", model=tiny_model_path)
    assert [w.filename for w in record] == [__file__]
    with warnings.catch_warnings():
        warnings.simplefilter("error", uqdm_codec.UqdmWarning)
        with pytest.raises(uqdm_codec.UqdmWarning):
            opaque.save(tmp_path / "b.uqd", model=tiny_model_path)
    assert not (tmp_path / "b.uqd").exists()
