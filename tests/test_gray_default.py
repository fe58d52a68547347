"""A grayscale image's lossless end is the tail unless the caller chooses (codec.default_tail):
its pixel step and lossless layer would code three copies of one plane."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import uqdm_codec
from uqdm_codec import container
from uqdm_codec.cli import TAIL_DEFAULT, app
from uqdm_codec.codec import TAIL_DEFAULT as CODEC_TAIL_DEFAULT
from uqdm_codec.codec import default_tail, default_tail_note, is_grayscale
from uqdm_codec.errors import UqdmError

from .conftest import synthetic_image


def gray(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.repeat(synthetic_image(h, w, seed)[:, :, 1:2], 3, axis=2)


def test_what_is_grayscale():
    assert is_grayscale(gray(9, 7)) and default_tail(gray(9, 7))
    colour = gray(9, 7)
    colour[4, 3, 2] ^= 1  # one value off
    assert not is_grayscale(colour) and not default_tail(synthetic_image(9, 7))
    assert TAIL_DEFAULT == CODEC_TAIL_DEFAULT  # one value, lossless_tail's (no torch in the CLI's import)
    assert "grayscale" in default_tail_note(gray(9, 7), TAIL_DEFAULT)
    assert default_tail_note(gray(9, 7), False) is None and default_tail_note(colour, TAIL_DEFAULT) is None


def test_gray_images_end_in_the_tail_unless_told(codec):
    img = gray(24, 40, seed=3)
    default = codec.encode(img, seed=2)
    hd = container.parse_header(default)[0]
    assert hd.tail and hd.tail_after is None
    assert np.array_equal(codec.decode(default).pixels, img)
    plain = codec.encode(img, seed=2, tail=False)
    assert not container.parse_header(plain)[0].tail and np.array_equal(codec.decode(plain).pixels, img)
    assert default == codec.encode(img, seed=2, tail=True)  # the default is --tail on, not auto
    early = codec.encode(img, seed=2, tail_after=1)
    assert container.parse_header(early)[0].tail_after == 1
    colour = synthetic_image(24, 40, seed=3)
    assert not container.parse_header(codec.encode(colour, seed=2))[0].tail
    for tiny in (gray(1, 1), gray(3, 5)):
        assert np.array_equal(codec.decode(codec.encode(tiny, seed=1)).pixels, tiny)
    with pytest.raises(UqdmError, match="tail must be"):
        codec.encode(img, tail="yes")
    assert codec.encode(img, seed=2, tail="on") == default  # the command line's names mean the same
    assert codec.encode(img, seed=2, tail="off") == plain


def test_cli_notes_the_choice(tmp_path, tiny_model_path):
    photo = tmp_path / "grey.png"
    Image.fromarray(gray(24, 40, seed=5)[:, :, 0], "L").save(photo)
    r = CliRunner().invoke(app, ["encode", str(photo), "-m", tiny_model_path, "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "its lossless end is the tail" in r.stderr and "lossless tail" in r.stdout
    assert container.parse_header(photo.with_suffix(".uqd").read_bytes())[0].tail
    off = tmp_path / "off.uqd"
    r = CliRunner().invoke(
        app, ["encode", str(photo), "-o", str(off), "--tail", "off", "-m", tiny_model_path]
    )
    assert r.exit_code == 0 and "lossless end" not in r.stderr
    assert not container.parse_header(off.read_bytes())[0].tail
    data = uqdm_codec.encode(photo, model=tiny_model_path, seed=1)
    assert container.parse_header(data)[0].tail


def test_batch_notes_only_its_own_choice(tmp_path, tiny_model_path):
    from uqdm_codec.batch import encode_file

    photo = tmp_path / "grey.png"
    Image.fromarray(gray(16, 24, seed=2)[:, :, 0], "L").save(photo)
    chosen = encode_file(photo, model=tiny_model_path, seed=1)
    assert any("lossless end is the tail" in n for n in chosen.notes)
    early = encode_file(photo, output=tmp_path / "early.uqd", model=tiny_model_path, seed=1, tail_after=2)
    assert early.ok and not any("lossless end" in n for n in early.notes)
    assert container.parse_header((tmp_path / "early.uqd").read_bytes())[0].tail_after == 2
