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
