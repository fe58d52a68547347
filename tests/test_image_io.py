"""Reading odd and hostile images; atomic writes."""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from uqdm_codec.errors import ImageError, UqdmError
from uqdm_codec.image_io import atomic_write, load_image, save_image


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "1", "I;16", "I", "F"])
def test_modes_convert_with_a_note(tmp_path, mode):
    """Each mode but RGBA, L and LA (8-bit gray, kept as it is since uqdm 0.50) is converted, with a
    note."""
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 10, 3)).astype(np.uint8))
    if mode == "I;16":
        im = Image.fromarray((np.arange(120).reshape(12, 10) * 500).astype(np.uint16))
    else:
        im = base.convert(mode)
    path = tmp_path / f"x.{'tiff' if mode in ('CMYK', 'I', 'F') else 'png'}"
    im.save(path)
    loaded = load_image(path)
    assert loaded.pixels.shape == (12, 10, 3) and loaded.pixels.dtype == np.uint8
    converted = [n for n in loaded.notes if "opaque everywhere" not in n]  # an opaque alpha: left out
    assert bool(converted) == (mode not in ("L", "LA", "RGBA")), loaded.notes
    assert loaded.gray == (mode in ("L", "LA", "1", "I;16", "I", "F"))


def test_a_float_image_in_0_to_1_is_scaled(tmp_path):
    """Float images in 0..1 (the usual convention) were clipped to 0..255 and rounded: 0s and 1s."""
    values = np.linspace(0, 1, 120, dtype=np.float32).reshape(12, 10)
    Image.fromarray(values).save(tmp_path / "unit.tiff")
    loaded = load_image(tmp_path / "unit.tiff")
    assert "values in 0..1 scaled to 0..255" in loaded.notes[0]
    assert loaded.pixels[0, 0, 0] == 0 and loaded.pixels[-1, -1, 0] == 255
    Image.fromarray(values * 200).save(tmp_path / "wide.tiff")  # 0..200: taken as it is
    loaded = load_image(tmp_path / "wide.tiff")
    assert "clipped to 0..255" in loaded.notes[0] and loaded.pixels[-1, -1, 0] == 200


def test_a_32_bit_image_says_it_is_clipped(tmp_path):
    """Mode I values past 16 bits were called a 16-bit image in the note."""
    path = tmp_path / "wide.tiff"
    Image.fromarray((np.arange(120).reshape(12, 10) * 2000 - 1000).astype(np.int32)).save(path)
    loaded = load_image(path)
    assert loaded.notes[0].startswith("32-bit integer image (values -1000 to 237000) clipped to 0..65535")
    assert loaded.pixels[0, 0, 0] == 0 and loaded.pixels[-1, -1, 0] == 255


def test_sixteen_bit_rgb_png(tmp_path):
    arr = (np.arange(6 * 5 * 3).reshape(6, 5, 3) * 900).astype(np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(_png16_rgb(arr))
    loaded = load_image(path)
    assert loaded.pixels.shape == (6, 5, 3)
    assert np.abs(loaded.pixels.astype(int) - arr / 257).max() <= 1
    assert loaded.notes == ["16-bit RGB image reduced to 8 bits"]  # was silent: the exact end is 8-bit


def _deep_files() -> list[tuple[str, bytes, str, bool]]:
    """(name, file, note, gray) for files of more than 8 bits that Pillow reads as 8-bit RGB(A)
    without saying so (before uqdm 0.51 they had no note, and their exact end passed for the file's)."""
    rng = np.random.default_rng(4)
    rgb, rgba, la = (rng.integers(0, 65536, (9, 7, c)).astype(np.uint16) for c in (3, 4, 2))
    cases = [
        (
            "rgb16.ppm",
            b"P6 7 9 65535\n" + rgb.astype(">u2").tobytes(),
            "RGB image with values 0..65535",
            False,
        ),
        (
            "rgb10.ppm",
            b"P6 7 9 1023\n" + (rgb >> 6).astype(">u2").tobytes(),
            "RGB image with values 0..1023",
            False,
        ),
        (
            "gray4.pgm",
            b"P5 7 9 15\n" + (rgb[:, :, 0] >> 12).astype(np.uint8).tobytes(),
            "grayscale image with values 0..15",
            True,
        ),
    ]
    codecs = pytest.importorskip("imagecodecs")
    for name, encode, arrays in [
        ("png", codecs.png_encode, (rgb, rgba, la)),
        ("tif", codecs.tiff_encode, (rgb, rgba)),
        ("jp2", codecs.jpeg2k_encode, (rgb, rgba, la)),
    ]:
        for arr in arrays:
            kind = {3: "RGB", 4: "RGBA", 2: "grayscale"}[arr.shape[2]]
            try:
                file = encode(arr)
            except NotImplementedError:  # imagecodecs before 2025 writes no TIFF
                continue
            cases.append(
                (f"{kind}.{name}", file, f"16-bit {kind} image reduced to 8 bits", kind == "grayscale")
            )
    Image.init()
    for arr in (rgb, rgba) if "AVIF" in Image.OPEN else ():  # Pillow reads AVIF from 11.2 on
        kind = {3: "RGB", 4: "RGBA"}[arr.shape[2]]
        file = codecs.avif_encode(arr >> 6, bitspersample=10, level=100)
        cases.append((f"{kind}.avif", file, f"10-bit {kind} image reduced to 8 bits", False))
    return cases


def test_files_of_more_than_8_bits_say_they_were_reduced(tmp_path):
    """16-bit PNG, TIFF and JPEG 2000 files, a PPM whose largest value is not 255 and a 10-bit AVIF:
    Pillow hands over 8-bit pixels without a word, so the note comes from the file's header (read
    before the pixels; a PIL image not yet loaded too); a 16-bit gray and alpha PNG or JPEG 2000 is
    one plane. 8-bit files of each format have no note."""
    for name, file, note, gray in _deep_files():
        path = tmp_path / name
        path.write_bytes(file)
        for source in (path, file):
            loaded = load_image(source)
            assert [n for n in loaded.notes if note in n] and loaded.gray == gray, (name, loaded.notes)
        with Image.open(path) as im:
            assert load_image(im).notes == loaded.notes, name
    eight = np.random.default_rng(5).integers(0, 256, (9, 7, 3)).astype(np.uint8)
    for fmt in ("PNG", "TIFF", "PPM", "JPEG2000", "AVIF", "WEBP", "JPEG"):
        if fmt not in Image.SAVE:  # AVIF before Pillow 11.2
            continue
        stream = io.BytesIO()
        Image.fromarray(eight).save(stream, fmt)
        assert load_image(stream.getvalue()).notes == [], fmt


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((4, 6, 3), np.uint8)
    arr[0, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=100)
    loaded = load_image(path)
    assert loaded.pixels.shape == (6, 4, 3)
    turn = "EXIF orientation applied (turned 90 degrees clockwise): stored upright, as viewers show it"
    assert loaded.notes == [turn]
    plain = tmp_path / "plain.jpg"
    Image.fromarray(arr).save(plain, quality=100)
    assert load_image(plain).notes == []


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    loaded = load_image(path)
    assert any("first of 3 frames" in n for n in loaded.notes)


def test_hostile_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("definitely not an image")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:60])
    for name in ("empty.png", "text.png", "cut.png", "missing.png"):
        with pytest.raises(ImageError):
            load_image(tmp_path / name)
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (3000, 3000)).save(path)  # compresses to a few kB
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path)


def test_size_limits(tmp_path):
    with pytest.raises(ImageError, match="at most"):
        load_image(np.zeros((1, 70000, 3), np.uint8))
    with pytest.raises(ImageError):
        load_image(np.zeros((0, 5, 3), np.uint8))


def test_arrays():
    assert load_image(np.zeros((3, 4), np.uint8)).pixels.shape == (3, 4, 3)
    transparent = load_image(np.zeros((3, 4, 4), np.uint8))  # an alpha channel is kept
    assert transparent.alpha.shape == (3, 4) and not transparent.notes
    opaque = load_image(np.full((3, 4, 4), 255, np.uint8))  # unless it is opaque everywhere
    assert opaque.alpha is None and any("opaque" in n for n in opaque.notes)
    with pytest.raises(ImageError):
        load_image(np.zeros((3, 4, 3), np.complex64))


def test_atomic_write_rules(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write(target, b"one")
    with pytest.raises(UqdmError, match="already exists"):
        atomic_write(target, b"two")
    atomic_write(target, b"two", force=True)
    assert target.read_bytes() == b"two"
    with pytest.raises(UqdmError, match="input"):
        atomic_write(target, b"three", force=True, inputs=(target,))
    with pytest.raises(UqdmError, match="does not exist"):
        atomic_write(tmp_path / "nope" / "x.bin", b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # no temp files left
    with pytest.raises(UqdmError, match="is a folder, not a file name"):
        atomic_write(tmp_path, b"", force=True)


def test_links_are_written_through(tmp_path):
    """A link stays a link: the file it names is replaced (a rename over the link used to leave
    the target as it was and the link turned into a plain file)."""
    target, link = tmp_path / "real.bin", tmp_path / "link.bin"
    target.write_bytes(b"old")
    link.symlink_to(target.name)
    with pytest.raises(UqdmError, match="already exists"):
        atomic_write(link, b"new")
    atomic_write(link, b"new", force=True)
    assert link.is_symlink() and target.read_bytes() == b"new"
    save_image(np.zeros((2, 3, 3), np.uint8), tmp_path / "img.png")
    (tmp_path / "img_link.png").symlink_to("img.png")
    save_image(np.full((2, 3, 3), 7, np.uint8), tmp_path / "img_link.png", force=True)
    assert (tmp_path / "img_link.png").is_symlink()
    assert np.asarray(Image.open(tmp_path / "img.png")).max() == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png", "img_link.png", "link.bin", "real.bin"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_pipes_and_devices_are_written_into(tmp_path):
    """A pipe (or /dev/null, /dev/stdout) is written into, without --force, never renamed over:
    as root a rename put a plain file in place of /dev/null. PNG's writer seeks, so an image is
    made in memory first."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for write in (
        lambda: atomic_write(fifo, b"bytes through a pipe"),
        lambda: save_image(np.full((2, 3, 3), 9, np.uint8), fifo),
    ):
        got: list[bytes] = []
        reader = threading.Thread(target=lambda into=got: into.append(fifo.read_bytes()))
        reader.start()
        write()
        reader.join(timeout=30)
        assert got and got[0] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got[0].startswith(b"\x89PNG") and np.asarray(Image.open(io.BytesIO(got[0]))).max() == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_failed_write_leaves_nothing(tmp_path):
    def boom(tmp):
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.png", writer=boom)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "errno_code,message", [(13, "permission denied"), (28, "no space left"), (30, "read-only")]
)
def test_write_failures_are_one_line_and_leave_nothing(tmp_path, monkeypatch, errno_code, message):
    import os

    def fail(src, dst):
        raise (PermissionError if errno_code == 13 else OSError)(errno_code, os.strerror(errno_code))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(UqdmError, match=message):
        save_image(np.zeros((2, 2, 3), np.uint8), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_cmyk_jpeg_and_palette_gif(tmp_path):
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 255, (16, 12, 3)).astype(np.uint8))
    rgb.convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    rgb.convert("P").save(tmp_path / "p.gif")
    for name, note in (("c.jpg", "CMYK"), ("p.gif", "palette")):
        loaded = load_image(tmp_path / name)
        assert loaded.pixels.shape == (16, 12, 3) and any(note in n for n in loaded.notes)


def test_premultiplied_alpha_images_are_read_as_straight_alpha():
    """Pillow's in-memory 'La' and 'RGBa': 'La' ended in 'conversion from La to L not supported',
    'RGBa' kept its premultiplied colours under an alpha that decodes as straight."""
    gray = Image.new("LA", (3, 2), (100, 50)).convert("La")
    loaded = load_image(gray)
    assert loaded.pixels[0, 0].tolist() == [102, 102, 102] and loaded.alpha[0, 0] == 50  # 100*50/255, back
    assert loaded.notes[0] == "premultiplied alpha (La) converted to straight alpha"
    colour = Image.new("RGBA", (3, 2), (100, 60, 20, 128))
    loaded = load_image(colour.convert("RGBa"))
    assert np.abs(loaded.pixels[0, 0].astype(int) - [100, 60, 20]).max() <= 1 and loaded.alpha[0, 0] == 128


@pytest.mark.parametrize(
    "dtype, values, expected, note",
    [
        (np.float32, [0.0, 0.5, 1.0], [0, 128, 255], "values in 0..1 scaled to 0..255"),
        (np.float64, [0.0, 100.4, 300.0], [0, 100, 255], "clipped to 0..255 and rounded"),
        (np.float32, [np.nan, 0.25, 1.0], [0, 64, 255], "NaN values in a floating-point image taken as 0"),
        (np.int64, [0, 17, 255], [0, 17, 255], None),  # 8-bit values in a wide type: exact, no note
        (np.int32, [0, 257, 65535], [0, 1, 255], "16-bit image reduced to 8 bits"),
        (np.uint16, [0, 257, 65535], [0, 1, 255], "16-bit image reduced to 8 bits"),
        (">u2", [0, 200, 255], [0, 1, 1], "16-bit image reduced to 8 bits"),  # big-endian: 16-bit too
        (np.int8, [-5, 0, 100], [0, 0, 100], "int8 image (values -5 to 100) clipped to 0..255"),
        (
            np.int64,
            [-1, 0, 70000],
            [0, 0, 255],
            "int64 image (values -1 to 70000) clipped to 0..65535, reduced",
        ),
        (np.bool_, [False, True, True], [0, 255, 255], "boolean image stored as 0 and 255"),
    ],
)
def test_arrays_of_any_number_type_convert_as_pillow_images_do(dtype, values, expected, note):
    """Only uint8 and uint16 arrays were taken: a float image in 0..1 (skimage's, a tensor's) or an
    int64 one (after NumPy arithmetic) was refused, where Pillow's mode F and I images were read."""
    arr = np.array([values] * 2, dtype=dtype)[:, :, None].repeat(3, axis=2)
    loaded = load_image(arr)
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels[0, :, 0].tolist() == expected
    if note is None:
        assert loaded.notes == []
    else:
        assert any(n.startswith(note) or note in n for n in loaded.notes), loaded.notes


def test_array_shapes_gray_with_alpha_and_refusals():
    gray = np.arange(24, dtype=np.uint8).reshape(4, 6)
    alpha = np.full((4, 6), 255, np.uint8)
    alpha[0, 0] = 3
    loaded = load_image(np.dstack([gray, alpha]))  # H x W x 2: gray and alpha (Pillow's LA)
    assert np.array_equal(loaded.pixels, np.repeat(gray[:, :, None], 3, axis=2))
    assert np.array_equal(loaded.alpha, alpha) and loaded.notes == [] and loaded.gray
    for bad in (np.zeros((4, 6, 5), np.uint8), np.zeros((3, 4, 6, 3), np.uint8), np.zeros(6, np.uint8)):
        with pytest.raises(ImageError, match="is not an image \\(need H x W, or H x W x 1, 2, 3 or 4"):
            load_image(bad)
    with pytest.raises(ImageError, match="dtype complex64 not supported"):
        load_image(np.zeros((4, 6), np.complex64))


def test_a_pil_integer_image_keeps_its_notes():
    """Mode I and I;16 share the integer conversion with arrays; they are grayscale (one plane)."""
    small = Image.fromarray(np.arange(24, dtype=np.int32).reshape(4, 6))
    assert load_image(small).notes == ["integer grayscale image (mode I) stored as 8-bit grayscale"]
    deep = Image.fromarray((np.arange(24).reshape(4, 6) * 500).astype(np.uint16))
    assert load_image(deep).notes == ["16-bit grayscale image reduced to 8 bits"]
    assert load_image(small).gray and load_image(deep).gray


def test_binary_file_objects_are_images(tmp_path):
    """An open file or a BytesIO (an upload) was refused as 'not an image: a BytesIO'."""
    arr = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    with open(path, "rb") as f:
        assert np.array_equal(load_image(f).pixels, arr)
    assert np.array_equal(load_image(io.BytesIO(path.read_bytes())).pixels, arr)
    with open(path, encoding="latin-1") as f, pytest.raises(ImageError, match="text mode; open it with 'rb'"):
        load_image(f)
    with open(path, "rb") as f, pytest.raises(ImageError, match=f"{path}: not an image Pillow can read"):
        f.seek(8)  # read from where the file stands, as Pillow does
        load_image(f)
    closed = io.BytesIO(b"")
    closed.close()
    with pytest.raises(ImageError, match="cannot read the file object"):
        load_image(closed)


def test_a_pil_image_whose_file_is_closed_is_one_error(tmp_path):
    """An image opened in a `with` block and passed after it was Pillow's bare AssertionError."""
    path = tmp_path / "x.png"
    Image.new("RGB", (4, 3), "red").save(path)
    with Image.open(path) as im:
        pass
    with pytest.raises(ImageError, match="file was closed before its pixels were read"):
        load_image(im)
    with Image.open(path) as im:
        im.load()
    assert load_image(im).pixels.shape == (3, 4, 3)  # loaded in time: fine after the block
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[:4000])  # cut short inside its pixels: Pillow's OSError, one line
    with Image.open(path) as im, pytest.raises(ImageError, match="cannot read the PIL image"):
        load_image(im)
