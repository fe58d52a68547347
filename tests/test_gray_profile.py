"""A grayscale image keeps its gray ICC colour profile (FORMAT.md 1.2, extension bit 6): a scan tagged
Dot Gain 20% or Gray Gamma 2.2 lost it (bit 0 holds RGB profiles only), and its tones were shown as
sRGB's. The profile travels beside the grayscale mark and comes back with every one-plane image."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

import uqdm_codec
from uqdm_codec import colour_profile, container, image_io
from uqdm_codec.cli import app
from uqdm_codec.errors import FormatError, UqdmError

from . import spec_container
from .conftest import gray_icc_profile, synthetic_image
from .test_gray_mode import plane, rgb

GRAY = gray_icc_profile()
WIDE = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # a valid profile, not RGB or GRAY
RGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_header_round_trip_and_forgeries():
    header = container.Header(24, 16, 4, 1, b"\0" * 16, "m", gray=True, icc_profile=GRAY)
    data = header.to_bytes()
    back = container.parse_header(data)[0]
    assert back.icc_profile == GRAY and back.gray and back.extensions == 0x60
    assert colour_profile.is_gray(back.icc_profile) and not colour_profile.is_gray(RGB_PROFILE)
    stored = colour_profile.pack(GRAY)
    field = container.put_varint(len(stored)) + stored
    before = data[: -4 - len(field) - 2 - 1]  # the header up to its extension byte E
    assert data[len(before)] == 0x60
    mark = b"\x01\x01"
    rgb_stored = colour_profile.pack(RGB_PROFILE)
    rgb_field = container.put_varint(len(rgb_stored)) + rgb_stored
    for extensions, fields, why in [
        (0x40, field, "needs the grayscale mark"),  # bit 6 without bit 5
        (0x61, rgb_field + mark + field, "needs the grayscale mark"),  # beside an RGB profile
    ]:
        forged = container.sealed(before + bytes([extensions]) + fields)
        with pytest.raises(FormatError, match=why):
            container.parse_header(forged)
        with pytest.raises(spec_container.Refused, match="gray colour profile"):  # FORMAT.md's reader
            spec_container.read_header(forged)
    lab = colour_profile.pack(WIDE)
    forged = container.sealed(before + b"\x60" + mark + container.put_varint(len(lab)) + lab)
    with pytest.raises(FormatError, match="gray colour profile: it describes Lab colours, not GRAY"):
        container.parse_header(forged)
    assert container.parse_header(container.sealed(before + b"\x60" + mark + field))[0].icc_profile == GRAY
    assert spec_container.read_header(data)[0]["extensions"][6] == stored
    with pytest.raises(ValueError, match="a GRAY profile describes a grayscale image"):
        container.Header(24, 16, 4, 1, b"\0" * 16, "m", icc_profile=GRAY).to_bytes()
    big = bytearray(
        np.random.default_rng(0).integers(0, 256, colour_profile.MAX_SIZE, dtype=np.uint8).tobytes()
    )
    big[:128] = GRAY[:128]  # a gray profile's header, its size field the largest a profile may have
    big[0:4] = colour_profile.MAX_SIZE.to_bytes(4, "big")
    huge = container.Header(24, 16, 4, 1, b"\0" * 16, "m", gray=True, icc_profile=bytes(big))
    assert huge.extension_problem() == (
        "colour profile",
        "it does not compress to 16 MiB (FORMAT.md 1.2, bit 6)",
    )
    legacy = container.Header(24, 16, 4, 1, b"\0" * 16, "m", gray=True, icc_profile=RGB_PROFILE)  # 0.50's
    assert container.parse_header(legacy.to_bytes())[0].extensions == 0x21


def test_the_codec_keeps_it_and_refuses_profiles_of_the_other_kind(codec):
    g = plane(24, 32, seed=2)
    data = codec.encode(rgb(g), seed=1, gray=True, icc_profile=GRAY)
    plain = codec.encode(rgb(g), seed=1, gray=True)
    assert len(data) == len(plain) + len(colour_profile.pack(GRAY)) + 2  # its length varint and bytes
    for image in codec.iter_decode(data):
        assert image.icc_profile == GRAY and image.to_pil().info["icc_profile"] == GRAY
    with pytest.raises(UqdmError, match="a grayscale image's profile is a GRAY one"):
        codec.encode(rgb(g), gray=True, icc_profile=RGB_PROFILE)
    with pytest.raises(UqdmError, match="a GRAY profile describes a grayscale image"):
        codec.encode(synthetic_image(24, 32), icc_profile=GRAY)


def test_a_decoder_that_skips_bit_6_shows_the_gray_image_without_it(codec, monkeypatch):
    """uqdm 0.50 skips bit 6 with a warning: the same gray image, no profile."""
    g = plane(16, 24, seed=3)
    data = codec.encode(rgb(g), seed=1, gray=True, icc_profile=GRAY)
    monkeypatch.setattr(container, "KNOWN_EXTENSIONS", container.KNOWN_EXTENSIONS & ~container.EXT_GRAY_ICC)
    old = codec.decode(data)
    assert old.gray and old.icc_profile is None and any("0x40" in w for w in old.warnings)
    assert np.array_equal(old.pixels[:, :, 0], g)


def _tagged(g: np.ndarray, mode: str, profile: bytes) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(g).convert(mode).save(stream, "PNG", icc_profile=profile)
    return stream.getvalue()


def test_inputs_keep_a_gray_profile_on_gray_pixels_only():
    g = plane(8, 10, seed=4)
    for mode in ("L", "LA"):
        loaded = image_io.load_image(_tagged(g, mode, GRAY))
        assert (
            loaded.gray
            and loaded.icc_profile == GRAY
            and loaded.notes == [n for n in loaded.notes if "opaque" in n]
        )
        assert loaded.extras()["icc_profile"] == GRAY and loaded.extras(keep_icc=False)["icc_profile"] is None
    colour = image_io.load_image(_tagged(g, "RGB", GRAY))
    assert not colour.gray and colour.icc_profile is None
    assert colour.notes == ["ICC colour profile left out: it describes GRAY colours, not RGB"]
    stream = io.BytesIO()
    wide = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(g).save(stream, "TIFF", icc_profile=wide)  # an RGB profile on gray pixels
    gray = image_io.load_image(stream.getvalue())
    assert gray.gray and gray.icc_profile is None
    assert gray.notes == ["ICC colour profile left out: it describes RGB colours, not GRAY"]


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "JPEG", "WEBP", "PPM", "AVIF"])
def test_output_files_carry_it_where_they_hold_one_plane(fmt):
    Image.init()  # the writers of every format Pillow has
    if fmt not in Image.SAVE:
        pytest.skip(f"this Pillow has no {fmt} writer")
    g = plane(10, 12, seed=5)
    blob, notes = image_io.image_bytes(rgb(g), fmt, icc_profile=GRAY, gray=True)
    back = Image.open(io.BytesIO(blob))
    if back.mode == "L":
        assert back.info.get("icc_profile") == GRAY, fmt
        assert not [n for n in notes if "profile" in n]
    else:  # RGB: a gray profile cannot describe it
        assert "icc_profile" not in back.info, fmt
        assert [n for n in notes if "gray ICC colour profile cannot describe; left out" in n], notes


def test_command_line_round_trip(tmp_path, tiny_model_path):
    g = plane(24, 32, seed=6)
    src = tmp_path / "scan.png"
    src.write_bytes(_tagged(g, "L", GRAY))
    r = CliRunner().invoke(app, ["encode", str(src), "-m", tiny_model_path, "--seed", "1", "-q"])
    assert r.exit_code == 0 and "profile" not in r.output, r.output
    uqd = tmp_path / "scan.uqd"
    r = CliRunner().invoke(app, ["info", str(uqd)])
    assert r.exit_code == 0 and "ICC profile: Gray" in r.output, r.output
    r = CliRunner().invoke(app, ["info", str(uqd), "--json"])
    assert json.loads(r.stdout)["header"]["icc_profile"]["description"].startswith("Gray Gamma 1.8")
    for name in ("whole.png", "whole.jpg", "whole.webp"):
        out = tmp_path / name
        r = CliRunner().invoke(app, ["decode", str(uqd), "-m", tiny_model_path, "-o", str(out), "-q"])
        assert r.exit_code == 0, r.output
        assert Image.open(out).info.get("icc_profile") == (None if name.endswith(".webp") else GRAY), name
    assert np.array_equal(np.asarray(Image.open(tmp_path / "whole.png")), g)
    with Image.open(uqd) as opened:  # the Pillow plugin
        assert opened.mode == "L" and opened.info["icc_profile"] == GRAY
    r = CliRunner().invoke(
        app, ["encode", str(src), "-m", tiny_model_path, "--no-icc", "-o", str(tmp_path / "n.uqd")]
    )
    assert (
        r.exit_code == 0 and container.parse_header((tmp_path / "n.uqd").read_bytes())[0].icc_profile is None
    )
    back = uqdm_codec.decode(uqd, model=tiny_model_path)
    assert back.mode == "L" and back.info["icc_profile"] == GRAY
