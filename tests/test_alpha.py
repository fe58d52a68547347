"""Alpha channels: kept exactly in a version-9 header beside the colour chain, handed back with
every decoded image (RGBA), left out with a note where opaque everywhere or where the output format
cannot hold one; damaged alpha fields refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import uqdm_codec
from uqdm_codec import alpha_plane, container, files
from uqdm_codec.cli import app
from uqdm_codec.codec import Codec
from uqdm_codec.errors import FormatError, UqdmError
from uqdm_codec.image_io import load_image, save_image

from .conftest import synthetic_image


def _mask(h: int, w: int) -> np.ndarray:
    """A cut-out: a soft-edged disc, transparent outside."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - h / 2, xx - w / 3)
    return np.clip(255 * (min(h, w) / 2.5 - r), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (7, 13), (40, 56)])
def test_planes_round_trip(shape):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    for plane in (rng.integers(0, 256, shape, dtype=np.uint8), _mask(*shape), np.zeros(shape, np.uint8)):
        assert np.array_equal(alpha_plane.unpack(alpha_plane.pack(plane), shape[1], shape[0]), plane)
    assert len(alpha_plane.pack(_mask(400, 300))) < 0.05 * 400 * 300  # runs of equal values cost little


def test_damaged_planes_are_refused():
    stored = alpha_plane.pack(_mask(12, 10))
    for bad, w, h in ((stored, 10, 11), (stored, 11, 12), (stored + b"x", 10, 12), (stored[:-2], 10, 12)):
        with pytest.raises(FormatError, match="alpha channel"):
            alpha_plane.unpack(bad, w, h)
    with pytest.raises(FormatError, match="alpha channel"):
        alpha_plane.unpack(b"not zlib", 10, 12)


def test_header_with_alpha():
    plane = _mask(40, 56)
    hd = container.Header(56, 40, 8, 7, bytes(16), "m", alpha=plane.tobytes())
    data = hd.to_bytes()
    assert data[8] == container.EXTENDED_VERSION
    back, size = container.parse_header(data + b"more")
    assert back == hd and size == len(data) and np.array_equal(back.alpha_plane(), plane)
    assert container.Header(56, 40, 8, 7, bytes(16), "m").alpha_plane() is None
    for n in range(len(data)):
        with pytest.raises(FormatError, match="too short|bad magic|empty"):
            container.parse_header(data[:n])
    with pytest.raises(ValueError, match="width x height"):
        container.Header(56, 40, 8, 7, bytes(16), "m", alpha=b"\0" * 10).to_bytes()
    body = container.Header(56, 40, 8, 7, bytes(16), "m").to_bytes()[:-4]
    body = body[:8] + b"\x09" + body[9:] + b"\x02"
    for n in (0, alpha_plane.max_stored(56 * 40) + 1):
        with pytest.raises(FormatError, match="alpha channel length"):
            container.parse_header(container.sealed(body + container.put_varint(n) + b"\0" * 8))
    wrong = alpha_plane.pack(_mask(40, 55))  # a plane of another size
    with pytest.raises(FormatError, match="alpha channel"):
        container.parse_header(container.sealed(body + container.put_varint(len(wrong)) + wrong))


def test_codec_keeps_alpha_at_every_step(codec):
    img, plane = synthetic_image(40, 56, seed=3), _mask(40, 56)
    plain = codec.encode(img, seed=5)
    data = codec.encode(img, seed=5, alpha=plane)
    assert data[container.parse_header(data)[1] :] == plain[container.parse_header(plain)[1] :]
    for level in codec.iter_decode(data):
        assert np.array_equal(level.alpha, plane)
    full = codec.decode(data)
    assert full.lossless and np.array_equal(full.pixels, img) and np.array_equal(full.alpha, plane)
    pil = full.to_pil()
    assert pil.mode == "RGBA" and np.array_equal(np.asarray(pil), np.dstack([img, plane]))
    header_only = files.truncate(data, steps=0)
    assert np.array_equal(codec.decode(header_only).alpha, plane)  # the header alone: exact alpha
    assert codec.decode(plain).alpha is None and codec.decode(plain).to_pil().mode == "RGB"
    with pytest.raises(UqdmError, match="alpha must be"):
        codec.encode(img, alpha=plane[:, :-1])
    with pytest.raises(UqdmError, match="alpha must be"):
        codec.encode(img, alpha=plane.astype(np.uint16))


def test_tiled_and_streamed_files_keep_alpha(tiny_model, monkeypatch):
    codec = Codec(tiny_model, "cpu", region=32)
    img, plane = synthetic_image(40, 72, seed=4), _mask(40, 72)
    data = codec.encode(img, seed=3, alpha=plane)
    out = codec.decode(data)
    assert container.parse_header(data)[0].tiled
    assert np.array_equal(out.pixels, img) and np.array_equal(out.alpha, plane)
    assert np.array_equal(codec.decode(files.truncate(data, steps=2)).alpha, plane)
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
    dec = uqdm_codec.Decoder()
    shown = [dec.feed(data[at : at + 101]) for at in range(0, len(data), 101)]
    assert {im.mode for im in shown if im is not None} == {"RGBA"}
    assert np.array_equal(np.asarray(dec.latest.to_pil()), np.dstack([img, plane]))


def test_reading_alpha(tmp_path):
    rgb, plane = synthetic_image(12, 10), _mask(12, 10)
    Image.fromarray(np.dstack([rgb, plane]), "RGBA").save(tmp_path / "cut.png")
    cut = load_image(tmp_path / "cut.png")
    assert np.array_equal(cut.alpha, plane) and np.array_equal(cut.pixels, rgb) and not cut.notes
    assert np.array_equal(load_image(Image.open(tmp_path / "cut.png")).alpha, plane)
    Image.fromarray(np.dstack([rgb, np.full_like(plane, 255)]), "RGBA").save(tmp_path / "opaque.png")
    opaque = load_image(tmp_path / "opaque.png")
    assert opaque.alpha is None and any("opaque everywhere" in n for n in opaque.notes)
    Image.fromarray(np.dstack([rgb[:, :, 0], plane]), "LA").save(tmp_path / "la.png")
    la = load_image(tmp_path / "la.png")
    assert np.array_equal(la.alpha, plane) and la.gray and not la.notes
    palette = Image.fromarray(rgb).convert("P")
    index = np.asarray(palette)
    palette.save(tmp_path / "p.png", transparency=int(index[0, 0]))  # one colour transparent
    pal = load_image(tmp_path / "p.png")
    want = np.where(index == index[0, 0], 0, 255).astype(np.uint8)
    assert np.array_equal(pal.alpha, want) and 0 < want.mean() < 255
    arr = load_image(np.dstack([rgb, plane]))
    assert np.array_equal(arr.alpha, plane) and np.array_equal(arr.pixels, rgb)


def test_writing_alpha(tmp_path):
    rgb, plane = synthetic_image(8, 8), _mask(8, 8)
    for suffix in (".png", ".tif", ".webp"):
        path = tmp_path / f"a{suffix}"
        assert save_image(rgb, path, alpha=plane) == []
        back = Image.open(path)
        assert back.mode == "RGBA" and np.array_equal(np.asarray(back)[:, :, 3], plane)
    notes = save_image(rgb, tmp_path / "a.jpg", alpha=plane)[1:]  # after the one that JPEG is lossy
    assert len(notes) == 1 and "alpha" in notes[0] and Image.open(tmp_path / "a.jpg").mode == "RGB"


def test_cli_round_trip_with_alpha(tmp_path, tiny_model_path):
    photo = tmp_path / "cut.png"
    rgba = np.dstack([synthetic_image(24, 40, seed=9), _mask(24, 40)])
    Image.fromarray(rgba, "RGBA").save(photo)
    r = CliRunner().invoke(app, ["encode", str(photo), "-m", tiny_model_path, "--seed", "2"])
    assert r.exit_code == 0, r.output
    uqd = photo.with_suffix(".uqd")
    assert "alpha channel" in r.stdout and uqd.read_bytes()[8] == 9
    r = CliRunner().invoke(app, ["decode", str(uqd), "-m", tiny_model_path])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cut.decoded.png")), rgba)
    r = CliRunner().invoke(app, ["decode", str(uqd), "--steps", "3", "-m", tiny_model_path])
    step3 = np.asarray(Image.open(tmp_path / "cut.step3.png"))
    assert r.exit_code == 0 and step3.shape == (24, 40, 4) and np.array_equal(step3[:, :, 3], rgba[:, :, 3])
    r = CliRunner().invoke(app, ["decode", str(uqd), "-o", str(tmp_path / "flat.jpg"), "-m", tiny_model_path])
    assert r.exit_code == 0 and "cannot hold the image's alpha" in r.stderr
    data = uqd.read_bytes()
    assert uqdm_codec.decode(data, model=tiny_model_path).mode == "RGBA"
    assert Image.open(uqd).mode == "RGBA"  # the Pillow plugin
    again = uqdm_codec.encode(photo, model=tiny_model_path, seed=2)
    assert again == data
