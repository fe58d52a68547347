"""ICC colour profiles: kept from the input, stored in a version-9 header, handed back with every
decoded image; sRGB and non-RGB profiles left out with a note; damaged profile fields refused."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

import uqdm_codec
from uqdm_codec import colour_profile, container, files
from uqdm_codec.cli import app
from uqdm_codec.codec import Codec
from uqdm_codec.container import crc32
from uqdm_codec.errors import FormatError
from uqdm_codec.image_io import load_image, save_image

from .conftest import cmyk_icc_profile, synthetic_image

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
LAB = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()


def _patched(profile: bytes, sig: bytes, at: int, value: bytes) -> bytes:
    """The profile with `value` written `at` bytes into tag `sig`'s data."""
    (count,) = struct.unpack_from(">I", profile, 128)
    for k in range(count):
        tag, offset, _ = struct.unpack_from(">4sII", profile, 132 + 12 * k)
        if tag == sig:
            out = bytearray(profile)
            out[offset + at : offset + at + len(value)] = value
            return bytes(out)
    raise KeyError(sig)


# sRGB's primaries with a red moved by 0.05 in X: a valid RGB profile that is not sRGB
WIDE = _patched(SRGB, b"rXYZ", 8, struct.pack(">i", round((0.4360747 + 0.05) * 65536)))


def test_what_a_profile_is():
    assert colour_profile.problem(SRGB) is None and colour_profile.problem(WIDE) is None
    assert "Lab" in colour_profile.problem(LAB)
    assert "not a valid" in colour_profile.problem(b"\0" * 64)
    assert "not a valid ICC" in colour_profile.problem(SRGB + b"\0")  # size field disagrees
    assert "not a valid ICC" in colour_profile.problem(SRGB[:36] + b"xxxx" + SRGB[40:])
    assert colour_profile.is_srgb(SRGB)
    assert not colour_profile.is_srgb(WIDE) and not colour_profile.is_srgb(LAB)
    # a tone curve a little off sRGB's (parametric gamma 2.4 -> 2.2) is another profile
    (count,) = struct.unpack_from(">I", SRGB, 128)
    tags = dict(
        (tag, offset)
        for tag, offset, _ in (struct.unpack_from(">4sII", SRGB, 132 + 12 * k) for k in range(count))
    )
    assert SRGB[tags[b"gTRC"] : tags[b"gTRC"] + 4] == b"para"
    gamma = _patched(SRGB, b"gTRC", 12, struct.pack(">i", round(2.2 * 65536)))
    assert colour_profile.problem(gamma) is None and not colour_profile.is_srgb(gamma)
    assert not colour_profile.is_srgb(SRGB[:128] + b"\xff" * 4 + SRGB[132:])  # a tag table past its end
    assert "sRGB" in colour_profile.describe(SRGB) and f"{len(SRGB)} bytes" in colour_profile.describe(SRGB)


def test_stored_profiles_round_trip_and_damage_is_refused():
    assert colour_profile.unpack(colour_profile.pack(WIDE)) == WIDE
    stored = colour_profile.pack(WIDE)
    for bad in (stored[:-3], stored + b"x", stored[:2] + bytes([stored[2] ^ 0xFF]) + stored[3:]):
        with pytest.raises(FormatError, match="colour profile"):
            colour_profile.unpack(bad)
    with pytest.raises(FormatError, match="describes Lab"):
        colour_profile.unpack(colour_profile.pack(LAB))


def _header(**kw) -> container.Header:
    return container.Header(56, 40, 8, 7, bytes(range(16)), "tiny-test", **kw)


def test_header_version_9_only_with_a_profile():
    plain, tagged = _header().to_bytes(), _header(icc_profile=WIDE).to_bytes()
    assert plain[8] == 8 and tagged[8] == container.EXTENDED_VERSION
    hd, size = container.parse_header(tagged + b"rest")
    assert size == len(tagged) and hd == _header(icc_profile=WIDE) and hd.version == 8
    assert container.parse_header(plain)[0].icc_profile is None
    tiled = _header(icc_profile=WIDE, region=(32, 32))
    assert container.parse_header(tiled.to_bytes())[0] == tiled
    assert tiled.region_header(0).icc_profile is None  # the regions' made headers stay version 8
    for n in range(len(tagged)):  # every prefix is an incomplete header, as a stream sees it
        with pytest.raises(FormatError, match="too short|bad magic|empty"):
            container.parse_header(tagged[:n])
    with pytest.raises(ValueError, match="colour profile"):
        _header(icc_profile=LAB).to_bytes()
    with pytest.raises(ValueError, match="version 8"):
        _header(icc_profile=WIDE, version=7).to_bytes()


def _resealed(body: bytes) -> bytes:
    return body + struct.pack("<I", crc32(body))


def test_forged_extensions_are_refused():
    plain = _header().to_bytes()[:-4]
    ext = lambda b: _resealed(bytes([*plain[:8], 9, *plain[9:]]) + b)  # noqa: E731
    assert container.parse_header(ext(b"\0"))[0] == _header()  # no extension: allowed, nothing held
    with pytest.raises(FormatError, match="too short"):  # an EXIF length should follow
        container.parse_header(ext(b"\x04"))
    stored = colour_profile.pack(WIDE)
    assert (
        container.parse_header(ext(b"\x01" + container.put_varint(len(stored)) + stored))[0].icc_profile
        == WIDE
    )
    with pytest.raises(FormatError, match="colour profile length"):
        container.parse_header(ext(b"\x01" + container.put_varint(container.MAX_ICC_STORED + 1) + stored))
    with pytest.raises(FormatError, match="colour profile length"):
        container.parse_header(ext(b"\x01\x80\x80\x80\x80\x80\x01"))
    with pytest.raises(FormatError, match="colour profile"):
        container.parse_header(ext(b"\x01" + container.put_varint(len(stored)) + stored[:-1] + b"\0"))
    with pytest.raises(FormatError, match="describes Lab"):
        lab = colour_profile.pack(LAB)
        container.parse_header(ext(b"\x01" + container.put_varint(len(lab)) + lab))
    tagged = bytearray(_header(icc_profile=WIDE).to_bytes())
    for at in range(8, len(tagged)):  # any changed byte: a one-line FormatError, never another error
        for flip in (0x01, 0x80):
            forged = bytearray(tagged)
            forged[at] ^= flip
            with pytest.raises(FormatError):
                container.parse_header(bytes(forged))


def test_the_profile_changes_only_the_header(codec):
    img = synthetic_image(40, 56, seed=2)
    plain = codec.encode(img, seed=11)
    tagged = codec.encode(img, seed=11, icc_profile=WIDE)
    p_size, t_size = container.parse_header(plain)[1], container.parse_header(tagged)[1]
    assert tagged[t_size:] == plain[p_size:]  # the same layers, the same chunk boundaries
    full = codec.decode(tagged)
    assert full.lossless and np.array_equal(full.pixels, img) and full.icc_profile == WIDE
    assert codec.decode(plain).icc_profile is None
    cut = files.truncate(tagged, bpp=files.bpp_of(t_size + 200, container.parse_header(tagged)[0]))
    assert codec.decode(cut).icc_profile == WIDE and codec.decode(tagged, steps=2).icc_profile == WIDE
    assert all(level.icc_profile == WIDE for level in codec.iter_decode(tagged))
    assert codec.decode(tagged).to_pil().info["icc_profile"] == WIDE
    with pytest.raises(uqdm_codec.UqdmError, match="Lab"):
        codec.encode(img, icc_profile=LAB)


def test_tiled_files_and_the_stream_carry_it(tiny_model, monkeypatch):
    codec = Codec(tiny_model, "cpu", region=32)
    img = synthetic_image(40, 72, seed=4)
    data = codec.encode(img, seed=3, icc_profile=WIDE)
    hd, size, parts = container.split_tiled(data)
    assert hd.icc_profile == WIDE and len(parts) == 6 and size == len(hd.to_bytes())
    fi = files.info(data)
    assert fi.complete and fi.header_bytes == size
    out = codec.decode(data)
    assert np.array_equal(out.pixels, img) and out.icc_profile == WIDE
    assert codec.decode(files.truncate(data, steps=3)).icc_profile == WIDE
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
    for blob in (data, Codec(tiny_model, "cpu").encode(img, seed=3, icc_profile=WIDE)):
        dec = uqdm_codec.Decoder()
        shown = [dec.feed(blob[at : at + 97]) for at in range(0, len(blob), 97)]
        assert all(im.info["icc_profile"] == WIDE for im in shown if im is not None)
        assert dec.latest.lossless and np.array_equal(dec.latest.pixels, img)


def test_reading_keeps_rgb_profiles_and_notes_the_rest(tmp_path):
    arr = synthetic_image(12, 10)
    Image.fromarray(arr).save(tmp_path / "wide.png", icc_profile=WIDE)
    Image.fromarray(arr).save(tmp_path / "srgb.png", icc_profile=SRGB)
    Image.fromarray(arr).save(tmp_path / "lab.png", icc_profile=LAB)
    Image.fromarray(arr[:, :, 0]).save(tmp_path / "grey.png", icc_profile=WIDE)
    Image.fromarray(arr).save(tmp_path / "plain.png")
    wide = load_image(tmp_path / "wide.png")
    assert wide.icc_profile == WIDE and not wide.notes and np.array_equal(wide.pixels, arr)
    assert load_image(Image.open(tmp_path / "wide.png")).icc_profile == WIDE
    for name, why in (
        ("srgb", "it is sRGB"),
        ("lab", "describes Lab"),
        ("grey", "describes RGB colours, not GRAY"),
    ):
        loaded = load_image(tmp_path / f"{name}.png")
        assert loaded.icc_profile is None and any(why in n for n in loaded.notes), loaded.notes
    assert load_image(tmp_path / "plain.png").icc_profile is None
    assert load_image(arr).icc_profile is None
    exif = Image.Exif()
    exif[0x0112] = 6  # a rotated JPEG keeps its profile
    Image.fromarray(arr).save(tmp_path / "rot.jpg", exif=exif, icc_profile=WIDE, quality=95)
    rotated = load_image(tmp_path / "rot.jpg")
    assert rotated.pixels.shape == (10, 12, 3) and rotated.icc_profile == WIDE


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif", ".avif"])
def test_writers_that_hold_a_profile_get_it(tmp_path, suffix):
    if suffix == ".avif" and ".avif" not in Image.registered_extensions():
        pytest.skip("this Pillow has no AVIF writer")
    path = tmp_path / f"out{suffix}"
    notes = save_image(synthetic_image(8, 8), path, icc_profile=WIDE)
    assert all("lossy format" in note for note in notes)  # JPEG's and AVIF's only note
    assert Image.open(path).info.get("icc_profile") == WIDE


def test_writers_without_one_say_so(tmp_path):
    notes = save_image(synthetic_image(8, 8), tmp_path / "out.bmp", icc_profile=WIDE)
    assert len(notes) == 1 and "BMP" in notes[0] and (tmp_path / "out.bmp").exists()
    assert save_image(synthetic_image(8, 8), tmp_path / "plain.bmp") == []


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_keeps_the_profile_through_encode_truncate_and_decode(tmp_path, tiny_model_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(24, 40, seed=9)).save(photo, icc_profile=WIDE)
    r = _run("encode", photo, "-m", tiny_model_path, "--seed", 5)
    assert r.exit_code == 0, r.output
    uqd = photo.with_suffix(".uqd")
    assert uqd.read_bytes()[8] == 9 and "ICC profile" in r.stdout
    assert "ICC profile" in _run("info", uqd).stdout
    r = _run("decode", uqd, "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    decoded = Image.open(tmp_path / "photo.decoded.png")
    assert decoded.info["icc_profile"] == WIDE and np.array_equal(
        np.asarray(decoded), np.asarray(Image.open(photo))
    )
    assert _run("truncate", uqd, "--steps", 2, "-o", tmp_path / "cut.uqd").exit_code == 0
    assert _run("decode", tmp_path / "cut.uqd", "-m", tiny_model_path).exit_code == 0
    assert Image.open(tmp_path / "cut.decoded.png").info["icc_profile"] == WIDE
    r = _run("decode", uqd, "--steps", 2, "-o", tmp_path / "two.bmp", "-m", tiny_model_path)
    assert r.exit_code == 0 and "cannot hold" in r.stderr
    r = _run("decode", uqd, "--all-steps", tmp_path / "levels", "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    assert all(Image.open(p).info["icc_profile"] == WIDE for p in (tmp_path / "levels").glob("*.png"))
    assert Image.open(uqd).info["icc_profile"] == WIDE  # the Pillow plugin
    r = _run("encode", photo, "-o", tmp_path / "bare.uqd", "--no-icc", "-m", tiny_model_path, "--seed", 5)
    assert r.exit_code == 0 and (tmp_path / "bare.uqd").read_bytes()[8] == 8
    second = tmp_path / "second.png"
    Image.fromarray(synthetic_image(16, 16, seed=1)).save(second, icc_profile=SRGB)
    r = _run("encode", photo, second, "--out-dir", tmp_path / "many", "-m", tiny_model_path)
    assert r.exit_code == 0 and "it is sRGB" in r.output, r.output
    assert (tmp_path / "many" / "photo.uqd").read_bytes()[8] == 9
    assert (tmp_path / "many" / "second.uqd").read_bytes()[8] == 8
    r = _run("decode", *(tmp_path / "many").glob("*.uqd"), "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "many" / "photo.decoded.png").info["icc_profile"] == WIDE
    assert "icc_profile" not in Image.open(tmp_path / "many" / "second.decoded.png").info


def test_library_encode_keeps_it_unless_asked(tmp_path, tiny_model_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(24, 40, seed=9)).save(photo, icc_profile=WIDE)
    data = uqdm_codec.encode(photo, model=tiny_model_path, seed=1)
    assert uqdm_codec.decode(data, model=tiny_model_path).info["icc_profile"] == WIDE
    assert uqdm_codec.info(data).header.icc_profile == WIDE
    bare = uqdm_codec.encode(photo, model=tiny_model_path, seed=1, keep_icc=False)
    assert bare[8] == 8 and "icc_profile" not in uqdm_codec.decode(bare, model=tiny_model_path).info
    assert zlib.crc32(bare[container.parse_header(bare)[1] :]) == zlib.crc32(
        data[container.parse_header(data)[1] :]
    )


def test_cmyk_images_convert_through_their_profile(tmp_path):
    """A CMYK image with a CMYK profile (a print workflow's JPEG or TIFF) was converted by Pillow's
    R = 255 - C - K, which ignores the profile, and the profile left out: colours far from the
    file's. It is converted to sRGB through its profile now (littlecms, relative colorimetric with
    black point compensation); without a profile, or with one littlecms refuses, as before."""
    profile = cmyk_icc_profile()
    cmyk = Image.fromarray(np.random.default_rng(3).integers(0, 256, (12, 10, 4), dtype=np.uint8), "CMYK")
    to_srgb = {
        "renderingIntent": ImageCms.Intent.RELATIVE_COLORIMETRIC,
        "outputMode": "RGB",
        "flags": ImageCms.Flags.BLACKPOINTCOMPENSATION,
    }
    for name in ("print.jpg", "print.tif"):
        cmyk.save(tmp_path / name, icc_profile=profile, quality=100)
        with Image.open(tmp_path / name) as stored:
            want = ImageCms.profileToProfile(
                stored,
                ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                ImageCms.createProfile("sRGB"),
                **to_srgb,
            )
        loaded = load_image(tmp_path / name)
        assert np.array_equal(loaded.pixels, np.asarray(want)) and loaded.icc_profile is None
        assert loaded.notes == [
            "CMYK image converted to sRGB through its ICC colour profile (Test CMYK (2216 bytes))"
        ]
        naive = np.asarray(Image.open(tmp_path / name).convert("RGB"), np.int16)
        assert (
            np.abs(loaded.pixels.astype(np.int16) - naive).mean() > 5
        )  # the profile's colours, not Pillow's
    cmyk.save(tmp_path / "plain.tif")
    assert load_image(tmp_path / "plain.tif").notes == ["CMYK image converted to RGB"]
    broken = profile[:128] + struct.pack(">I", 0) + profile[132:]  # no tags: littlecms refuses it
    cmyk.save(tmp_path / "broken.tif", icc_profile=broken)
    loaded = load_image(tmp_path / "broken.tif")
    assert loaded.notes[0].startswith("CMYK image: its ICC colour profile cannot be used (")
    assert loaded.notes[1] == "CMYK image converted to RGB"
    assert np.array_equal(loaded.pixels, np.asarray(cmyk.convert("RGB")))
