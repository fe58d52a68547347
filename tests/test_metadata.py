"""EXIF and XMP metadata: kept from the input (without orientation, thumbnail and maker's note),
stored in a version-9 header, handed back with every decoded image and written into the formats
that hold them; damaged fields refused; extensions a newer uqdm may add skipped with a warning."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import uqdm_codec
from uqdm_codec import container, files, photo_metadata
from uqdm_codec.cli import app
from uqdm_codec.codec import Codec
from uqdm_codec.container import crc32
from uqdm_codec.errors import FormatError
from uqdm_codec.image_io import load_image, save_image

from .conftest import synthetic_image

XMP = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:rights>CC BY 4.0</dc:rights>'
    b'</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


def camera_exif(orientation: int | None = None, gps: bool = False, maker_note: bytes = b"") -> Image.Exif:
    """What a camera writes: make, model, date, an exposure in the EXIF directory, and optionally
    an orientation, a GPS location and a maker's note."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "Testcam", "Model 7", "2026:12:06 09:00:00"
    if orientation is not None:
        exif[0x0112] = orientation
    # directories set as dicts: Pillow 11.0 drops the ones that get_ifd() made up
    exif[0x8769] = {0x829A: 0.004, 0x8827: 200}  # exposure time, ISO
    if maker_note:
        exif[0x8769][0x927C] = maker_note
    if gps:
        exif[0x8825] = {1: "N", 2: (48.0, 8.0, 0.0)}
    return exif


def block(exif: Image.Exif) -> bytes:
    return photo_metadata.exif_block(exif.tobytes())


EXIF = block(camera_exif())


def tags(exif_bytes: bytes) -> tuple[dict, dict, dict]:
    """IFD0 (less its pointers), the EXIF directory and the GPS directory of an EXIF payload."""
    exif = Image.Exif()
    exif.load(exif_bytes if exif_bytes.startswith(b"Exif") else photo_metadata.EXIF_PREFIX + exif_bytes)
    top = {k: v for k, v in exif.items() if k not in (0x8769, 0x8825)}
    return top, dict(exif.get_ifd(0x8769)), dict(exif.get_ifd(0x8825))


def test_what_a_block_is():
    assert photo_metadata.exif_problem(EXIF) is None
    assert "not a valid" in photo_metadata.exif_problem(b"II*\0")
    assert "TIFF" in photo_metadata.exif_problem(b"JFIF" + EXIF[4:])
    assert "outside" in photo_metadata.exif_problem(EXIF[:4] + struct.pack("<I", len(EXIF)) + EXIF[8:])
    big_endian = b"MM\0*" + struct.pack(">I", 8) + b"\0\0" + b"\0" * 4
    assert photo_metadata.exif_problem(big_endian) is None
    assert photo_metadata.xmp_problem(XMP) is None and photo_metadata.xmp_problem(b"")
    assert photo_metadata.xmp_problem(b"x" * (photo_metadata.MAX_SIZE + 1))
    said = photo_metadata.describe_exif(EXIF)
    assert "Testcam Model 7" in said and "2026:12:06" in said and f"({len(EXIF):,} bytes)" in said
    assert "GPS" in photo_metadata.describe_exif(block(camera_exif(gps=True)))
    assert photo_metadata.describe_exif(b"II*\0\x08\0\0\0\xff\xff").startswith("EXIF: (")


def test_stored_blocks_round_trip_and_damage_is_refused():
    for raw, what in ((EXIF, "EXIF"), (XMP, "XMP")):
        stored = photo_metadata.pack(raw)
        assert photo_metadata.unpack(stored, what) == raw
        for bad in (stored[:-3], stored + b"x", stored[:2] + bytes([stored[2] ^ 0xFF]) + stored[3:]):
            with pytest.raises(FormatError, match=what):
                photo_metadata.unpack(bad, what)
    with pytest.raises(FormatError, match="TIFF"):
        photo_metadata.unpack(photo_metadata.pack(b"not a tiff block"), "EXIF")
    with pytest.raises(FormatError, match="XMP"):  # a bomb: never inflated past the limit
        photo_metadata.unpack(photo_metadata.pack(bytes(photo_metadata.MAX_SIZE + 100)), "XMP")


def _header(**kw) -> container.Header:
    return container.Header(56, 40, 8, 7, bytes(range(16)), "tiny-test", **kw)


def test_header_fields_in_bit_order():
    alpha = bytes(range(40)) * 56
    full = _header(icc_profile=None, alpha=alpha, exif=EXIF, xmp=XMP)
    data = full.to_bytes()
    assert data[8] == container.EXTENDED_VERSION
    hd, size = container.parse_header(data + b"rest")
    assert size == len(data) and hd == full and hd.version == 8 and not hd.unknown_extensions
    for only in (dict(exif=EXIF), dict(xmp=XMP), dict(exif=EXIF, xmp=XMP)):
        assert container.parse_header(_header(**only).to_bytes())[0] == _header(**only)
    assert full.without_extensions().to_bytes() == _header().to_bytes()
    tiled = _header(exif=EXIF, region=(32, 32))
    assert container.parse_header(tiled.to_bytes())[0] == tiled and tiled.region_header(0).exif is None
    for n in range(len(data)):
        with pytest.raises(FormatError, match="too short|bad magic|empty"):
            container.parse_header(data[:n])
    with pytest.raises(ValueError, match="EXIF"):
        _header(exif=b"nope").to_bytes()
    with pytest.raises(ValueError, match="XMP"):
        _header(xmp=b"").to_bytes()


def _extended(extensions: bytes) -> bytes:
    plain = _header().to_bytes()[:-4]
    body = bytes([*plain[:8], 9, *plain[9:]]) + extensions
    return body + struct.pack("<I", crc32(body))


def test_unknown_extensions_are_skipped_with_a_warning():
    """Bit 7 announces a varint length and that many bytes (FORMAT.md 1.2): a field a newer uqdm
    may write is skipped, the rest of the header read, and the decoder warns."""
    stored = photo_metadata.pack(EXIF)
    data = _extended(b"\x84" + container.put_varint(len(stored)) + stored + b"\x03abc")  # EXIF, bit 7
    hd, size = container.parse_header(data)
    assert size == len(data) and hd.exif == EXIF and hd.unknown_extensions == 0x80
    assert "0x80" in container.unknown_extensions_note(0x80)
    assert hd.without_extensions() == _header()
    with pytest.raises(FormatError, match="extension 7 length"):
        container.parse_header(_extended(b"\x80\x00"))
    with pytest.raises(FormatError, match="too short"):
        container.parse_header(_extended(b"\x10\x05ab"))
    with pytest.raises(FormatError, match="EXIF length"):
        container.parse_header(_extended(b"\x04" + container.put_varint(photo_metadata.MAX_STORED + 1)))


def test_forged_fields_are_one_line_errors():
    """Any byte of the extensions changed and the header resealed (its CRC matching): the header
    parses or is refused with a FormatError, never another error."""
    tagged = _header(exif=EXIF, xmp=XMP).to_bytes()
    start = len(_header().to_bytes()) - 4  # where the extension byte is
    refused = 0
    for at in range(start, len(tagged) - 4):
        for flip in (0x01, 0x10, 0x80):
            forged = bytearray(tagged[:-4])
            forged[at] ^= flip
            try:
                container.parse_header(bytes(forged) + struct.pack("<I", crc32(bytes(forged))))
            except FormatError:
                refused += 1
    assert refused > 0.9 * 3 * (len(tagged) - 4 - start)  # zlib's Adler-32 catches nearly all


def test_metadata_changes_only_the_header_and_comes_back(codec, tiny_model, monkeypatch):
    img = synthetic_image(40, 56, seed=2)
    plain = codec.encode(img, seed=11)
    tagged = codec.encode(img, seed=11, exif=EXIF, xmp=XMP)
    p_size, t_size = container.parse_header(plain)[1], container.parse_header(tagged)[1]
    assert tagged[t_size:] == plain[p_size:]
    full = codec.decode(tagged)
    assert full.lossless and np.array_equal(full.pixels, img) and (full.exif, full.xmp) == (EXIF, XMP)
    assert (
        full.to_pil().info["exif"] == photo_metadata.EXIF_PREFIX + EXIF and full.to_pil().info["xmp"] == XMP
    )
    assert codec.decode(plain).exif is None and "exif" not in codec.decode(plain).to_pil().info
    assert all((im.exif, im.xmp) == (EXIF, XMP) for im in codec.iter_decode(tagged))
    assert codec.decode(files.truncate(tagged, steps=1)).exif == EXIF
    with pytest.raises(uqdm_codec.UqdmError, match="EXIF metadata not kept"):
        codec.encode(img, exif=b"II*\0")
    tiled = Codec(tiny_model, "cpu", region=32)
    data = tiled.encode(img, seed=3, exif=EXIF, xmp=XMP)
    assert container.split_tiled(data)[0].xmp == XMP and tiled.decode(data).exif == EXIF
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: tiled)
    dec = uqdm_codec.Decoder()
    shown = [dec.feed(data[at : at + 101]) for at in range(0, len(data), 101)]
    assert all(im.info["xmp"] == XMP for im in shown if im is not None) and dec.latest.lossless


def test_a_newer_files_extension_is_decoded_with_a_warning(codec):
    img = synthetic_image(20, 28, seed=1)
    data = codec.encode(img, seed=4, xmp=XMP)
    hd, size = container.parse_header(data)
    stored = photo_metadata.pack(XMP)
    at = size - 4 - len(stored) - len(container.put_varint(len(stored))) - 1  # the extension byte E
    assert data[at] == container.EXT_XMP
    body = data[:at] + bytes([container.EXT_XMP | 0x80]) + data[at + 1 : size - 4] + b"\x02hi"
    newer = body + struct.pack("<I", crc32(body)) + data[size:]
    out = codec.decode(newer)
    assert np.array_equal(out.pixels, img) and out.xmp == XMP
    assert any("0x80" in w and "newer uqdm" in w for w in out.warnings)
    assert any("0x80" in w for w in files.info(newer).warnings)


def test_reading_drops_orientation_thumbnail_and_maker_note(tmp_path):
    arr = synthetic_image(10, 12)
    exif = camera_exif(orientation=6, gps=True, maker_note=b"M" * 300)
    exif[0x8769].update({0xA002: 12, 0xA003: 10})  # the stored (sideways) width and height
    Image.fromarray(arr).save(tmp_path / "cam.jpg", exif=exif, xmp=XMP, quality=95)
    loaded = load_image(tmp_path / "cam.jpg")
    assert loaded.pixels.shape == (12, 10, 3)  # rotated upright
    top, sub, gps = tags(loaded.exif)
    assert 0x0112 not in top and top[0x010F] == "Testcam" and sub[0x8827] == 200 and 0x927C not in sub
    assert (sub[0xA002], sub[0xA003]) == (10, 12)  # the upright image's width and height
    assert gps[1] == "N" and loaded.xmp == XMP
    assert any("maker's note (300 bytes)" in n for n in loaded.notes)
    assert any("GPS" in n and "keep_metadata=False" in n for n in loaded.notes)
    assert load_image(Image.open(tmp_path / "cam.jpg")).exif == loaded.exif
    only_orientation = Image.Exif()
    only_orientation[0x0112] = 1
    Image.fromarray(arr).save(tmp_path / "o.png", exif=only_orientation)
    assert load_image(tmp_path / "o.png").exif is None  # nothing left worth keeping
    Image.fromarray(arr).save(tmp_path / "plain.png")
    assert load_image(tmp_path / "plain.png").exif is None and load_image(arr).xmp is None
    written = (tmp_path / "cam.jpg").read_bytes()
    at = written.index(photo_metadata.EXIF_PREFIX) + len(photo_metadata.EXIF_PREFIX)
    (tmp_path / "bad.jpg").write_bytes(written[:at] + b"XX" + written[at + 2 :])  # no byte order
    bad = load_image(tmp_path / "bad.jpg")
    assert bad.exif is None and any("EXIF metadata left out" in n for n in bad.notes)
    assert load_image(tmp_path / "cam.jpg").extras(keep_metadata=False)["exif"] is None


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".avif", ".tif", ".bmp"])
def test_writers_hold_what_they_can(tmp_path, suffix):
    if suffix == ".avif" and ".avif" not in Image.registered_extensions():
        pytest.skip("this Pillow has no AVIF writer")
    path = tmp_path / f"out{suffix}"
    notes = [
        n for n in save_image(synthetic_image(8, 8), path, exif=EXIF, xmp=XMP) if "lossy format" not in n
    ]
    back = Image.open(path)
    fmt = back.format
    exif_kept = fmt in ("PNG", "JPEG", "WEBP", "AVIF")
    xmp_kept = fmt != "BMP"
    if exif_kept:
        assert tags(back.info["exif"]) == tags(EXIF)
    if xmp_kept:
        got = back.info.get("xmp")
        assert (got.encode() if isinstance(got, str) else got) == XMP
    assert len(notes) == (not exif_kept) + (not xmp_kept)
    assert all("cannot hold" in n for n in notes)


def test_jpeg_refuses_an_oversized_block_with_a_note(tmp_path):
    big = block(camera_exif(maker_note=bytes(70_000)))
    notes = save_image(synthetic_image(8, 8), tmp_path / "big.jpg", exif=big)[1:]  # [0]: JPEG is lossy
    assert len(notes) == 1 and "too long for JPEG" in notes[0] and (tmp_path / "big.jpg").exists()


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_keeps_metadata_unless_asked(tmp_path, tiny_model_path):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(synthetic_image(24, 40, seed=9)).save(photo, exif=camera_exif(), xmp=XMP, quality=95)
    r = _run("encode", photo, "-m", tiny_model_path, "--seed", 5)
    assert r.exit_code == 0, r.output
    uqd = photo.with_suffix(".uqd")
    info = _run("info", uqd).stdout
    assert "Testcam" in info and "XMP" in info
    assert _run("decode", uqd, "-m", tiny_model_path, "-o", tmp_path / "out.webp").exit_code == 0
    back = Image.open(tmp_path / "out.webp")
    assert tags(back.info["exif"]) == tags(EXIF) and back.info["xmp"] == XMP
    assert tags(Image.open(uqd).info["exif"]) == tags(EXIF)  # the Pillow plugin
    r = _run(
        "encode", photo, "-o", tmp_path / "bare.uqd", "--no-metadata", "-m", tiny_model_path, "--seed", 5
    )
    assert r.exit_code == 0 and (tmp_path / "bare.uqd").read_bytes()[8] == 8
    second = tmp_path / "second.png"
    Image.fromarray(synthetic_image(16, 16, seed=1)).save(second)
    r = _run("encode", photo, second, "--out-dir", tmp_path / "many", "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    assert files.info((tmp_path / "many" / "photo.uqd").read_bytes()).header.xmp == XMP
    data = uqdm_codec.encode(photo, model=tiny_model_path, seed=1, keep_metadata=False)
    assert data[8] == 8
