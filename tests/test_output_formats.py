"""What each output image format keeps of a decoded image: lossless formats every pixel, lossy ones
an approximation with a note saying so, and formats uqdm does not write refused before decoding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from typer.testing import CliRunner

from uqdm_codec import batch
from uqdm_codec.cli import app
from uqdm_codec.errors import UqdmError, command_line
from uqdm_codec.image_io import (
    LOSSLESS_FORMATS,
    LOSSY_FORMATS,
    PILLOW_FORMATS,
    check_uqd_name,
    format_suffix,
    image_bytes,
    output_format,
    save_image,
    writes_exactly,
)

from .conftest import synthetic_image

SUFFIXES = sorted(Image.registered_extensions())


def _writable(suffix: str) -> bool:
    try:
        output_format(f"x{suffix}")
    except UqdmError:
        return False
    return True


def _noisy(h: int = 20, w: int = 28, seed: int = 0) -> np.ndarray:
    """Pixels no lossy coder keeps exactly."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [s for s in SUFFIXES if _writable(s) and writes_exactly(f"x{s}")])
def test_every_lossless_name_keeps_every_pixel(tmp_path, suffix):
    pixels, gray = _noisy(), suffix == ".pgm"  # a grayscale image's format
    if gray:
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    path = tmp_path / f"out{suffix}"
    assert save_image(pixels, path, gray=gray) == []
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), pixels)


def test_webp_keeps_the_colours_under_transparent_pixels(tmp_path):
    pixels, alpha = _noisy(), np.zeros((20, 28), np.uint8)
    alpha[:, 14:] = 255
    assert save_image(pixels, tmp_path / "a.webp", alpha=alpha) == []
    back = np.asarray(Image.open(tmp_path / "a.webp"))
    assert np.array_equal(back[:, :, :3], pixels) and np.array_equal(back[:, :, 3], alpha)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".avif", ".gif", ".pdf"])
def test_lossy_names_say_so(tmp_path, suffix):
    if suffix not in Image.registered_extensions():
        pytest.skip(f"this Pillow has no {suffix} writer")
    path = tmp_path / f"out{suffix}"
    notes = save_image(synthetic_image(32, 48), path)
    assert not writes_exactly(path) and output_format(path) in LOSSY_FORMATS
    assert len(notes) == 1 and "lossy format" in notes[0] and "PNG, WebP and TIFF" in notes[0]
    assert path.stat().st_size > 0


def test_tiff_and_jpeg2000_are_written_compactly(tmp_path):
    pixels = synthetic_image(64, 96)
    save_image(pixels, tmp_path / "plain.tif")
    save_image(pixels, tmp_path / "xmp.tif", xmp=b"<x:xmpmeta/>")
    for name in ("plain.tif", "xmp.tif"):
        tags = Image.open(tmp_path / name).tag_v2
        assert tags[259] == 8 and tags[317] == 2  # deflate after the horizontal predictor
    assert Image.open(tmp_path / "xmp.tif").tag_v2[700] == b"<x:xmpmeta/>"
    grey = pixels[:, :, :1].astype(np.int16)  # colours that move together, as a photo's do
    pixels = np.clip(np.concatenate([grey, grey + 9, grey - 7], axis=2), 0, 255).astype(np.uint8)
    save_image(pixels, tmp_path / "out.jp2")
    Image.fromarray(pixels).save(tmp_path / "default.jp2")  # Pillow's own: no colour transform
    assert (tmp_path / "out.jp2").stat().st_size < (tmp_path / "default.jp2").stat().st_size


def test_jpeg_is_written_at_high_quality_without_chroma_subsampling(tmp_path):
    pixels = synthetic_image(64, 96)
    save_image(pixels, tmp_path / "out.jpg")
    Image.fromarray(pixels).save(tmp_path / "default.jpg")  # Pillow's own: quality 75, 4:2:0

    def psnr(path):
        mse = np.mean((np.asarray(Image.open(path).convert("RGB"), np.float64) - pixels) ** 2)
        return 10 * np.log10(255**2 / mse)

    assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "out.jpg")) == 0  # 4:4:4
    assert psnr(tmp_path / "out.jpg") > psnr(tmp_path / "default.jpg") + 3  # 36.0 against 32.1 dB


@pytest.mark.parametrize("name", ["a.ico", "a.icns", "a.xbm", "a.pbm", "a.pfm", "a.eps", "a.uqd"])
def test_formats_uqdm_does_not_write_are_refused(tmp_path, name):
    with pytest.raises(UqdmError, match="name it .png"):
        output_format(name)
    with pytest.raises(UqdmError):
        save_image(synthetic_image(8, 8), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_pgm_is_for_grayscale_images(tmp_path):
    """A .pgm name was refused for every image (Pillow writes colour there as a PPM); a grayscale
    image's is one plane (P5), a colour image's is refused before anything is written."""
    g = synthetic_image(8, 10)[:, :, 1]
    gray = np.repeat(g[:, :, None], 3, axis=2)
    assert output_format("a.pgm") == "PGM" and format_suffix("pgm") == ".pgm" and writes_exactly("a.pgm")
    assert output_format("a.pgm", gray=True) == "PGM"
    with pytest.raises(UqdmError, match="a PGM file holds a grayscale image, and this one is colour"):
        output_format("a.pgm", gray=False)
    with pytest.raises(UqdmError, match="a PGM file holds a grayscale image"):
        save_image(synthetic_image(8, 10), tmp_path / "colour.pgm")
    assert list(tmp_path.iterdir()) == []
    notes = save_image(gray, tmp_path / "g.pgm", gray=True, alpha=np.full((8, 10), 9, np.uint8))
    assert notes == ["g.pgm: PGM files cannot hold the image's alpha channel; left out"]
    assert (tmp_path / "g.pgm").read_bytes()[:2] == b"P5" and np.array_equal(
        np.asarray(Image.open(tmp_path / "g.pgm")), g
    )
    blob, _ = image_bytes(gray, "PGM", gray=True)
    assert blob == (tmp_path / "g.pgm").read_bytes()
    save_image(gray, tmp_path / "g.ppm", gray=True)  # a .ppm name stays colour
    assert (tmp_path / "g.ppm").read_bytes()[:2] == b"P6"


def test_formats_this_pillow_lacks_are_refused_not_written_as_png(tmp_path):
    for suffix in (".jxl", ".heic", ".avif"):
        if suffix in Image.registered_extensions():
            continue  # a plugin or a newer Pillow writes it
        with pytest.raises(UqdmError, match="this Pillow cannot write"):
            output_format(f"a{suffix}")
        with pytest.raises(UqdmError, match="this Pillow cannot write"):
            format_suffix(suffix.lstrip("."))
        with pytest.raises(UqdmError):
            save_image(synthetic_image(8, 8), tmp_path / f"a{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_unknown_names_are_pngs_with_a_note(tmp_path):
    assert output_format("out") == "PNG" and output_format("out.xyz") == "PNG"
    assert save_image(synthetic_image(8, 8), tmp_path / "plain") == []
    notes = save_image(synthetic_image(8, 8), tmp_path / "out.xyz")
    assert len(notes) == 1 and "'.xyz'" in notes[0] and "PNG" in notes[0]
    assert Image.open(tmp_path / "out.xyz").format == "PNG"


def test_the_tables_name_formats_pillow_knows():
    known = set(Image.registered_extensions().values())
    ours = {PILLOW_FORMATS.get(f, f) for f in LOSSLESS_FORMATS | set(LOSSY_FORMATS)}
    assert ours - known <= {"AVIF"}  # AVIF only where built in


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_decode_says_when_the_lossless_image_is_written_lossy(uqd, tiny_model_path):
    r = _run("decode", uqd, "-m", tiny_model_path, "-o", uqd.with_name("out.jpg"))
    assert r.exit_code == 0, r.output
    assert "not exact" in r.stdout and "exact original" not in r.stdout and "lossy format" in r.stderr
    r = _run("decode", uqd, "-m", tiny_model_path, "-o", uqd.with_name("out.webp"))
    assert r.exit_code == 0 and "lossless (exact original)" in r.stdout and r.stderr == ""
    original = np.asarray(Image.open(uqd.with_name("photo.png")).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(uqd.with_name("out.webp")).convert("RGB")), original)


def test_decode_refuses_a_format_before_decoding(uqd, tiny_model_path, monkeypatch):
    from uqdm_codec import codec as codec_module

    def must_not_run(*args, **kwargs):
        raise AssertionError("decoded before refusing the output name")

    monkeypatch.setattr(codec_module.Codec, "decode", must_not_run)
    for args in (["-o", uqd.with_name("out.ico")], ["--stream", "-o", uqd.with_name("out.uqd")]):
        r = _run("decode", uqd, "-m", tiny_model_path, *args)
        assert r.exit_code != 0
        text = r.stderr.strip()
        assert text.startswith("error:") and "\n" not in text and "name it .png" in text, text
    r = _run("decode", uqd, "-m", tiny_model_path, "--progression", uqd.with_name("strip.xbm"))
    assert r.exit_code != 0 and "name it .png" in r.stderr
    result = batch.decode_file(uqd, output=uqd.with_name("x.ico"), model=tiny_model_path)
    assert not result.ok and "name it .png" in result.error
    assert not uqd.with_name("out.ico").exists() and not uqd.with_name("x.ico").exists()


def test_library_decode_to_a_lossy_name(uqd, tiny_model_path):
    result = batch.decode_file(uqd, output=uqd.with_name("x.jpg"), model=tiny_model_path)
    assert result.ok and "lossy" in result.status and any("lossy format" in n for n in result.notes)


def test_format_names():
    assert format_suffix("webp") == format_suffix(".WEBP") == ".webp" and format_suffix("jpg") == ".jpg"
    for bad, why in (("bogus", "not the name"), ("ico", "does not write"), ("uqd", "not a .uqd")):
        with pytest.raises(UqdmError, match=why) as caught:
            format_suffix(bad)
        assert str(caught.value).startswith(f"image_format={bad!r}:")
        with command_line(), pytest.raises(UqdmError, match=f"^--format {bad}:"):
            format_suffix(bad)


def test_decode_format_names_the_outputs_and_standard_output(uqd, tiny_model_path):
    original = np.asarray(Image.open(uqd.with_name("photo.png")).convert("RGB"))
    r = _run("decode", uqd, "-m", tiny_model_path, "--format", "webp")
    assert r.exit_code == 0 and "exact original" in r.stdout, r.output
    assert np.array_equal(
        np.asarray(Image.open(uqd.with_name("photo.decoded.webp")).convert("RGB")), original
    )
    r = _run(
        "decode", uqd, "-m", tiny_model_path, "--steps", 2, "--format", "tif", "--out-dir", uqd.parent / "d"
    )
    assert r.exit_code == 0 and Image.open(uqd.parent / "d" / "photo.step2.tif").format == "TIFF"
    r = _run("decode", uqd, "-m", tiny_model_path, "--format", "webp", "-o", "-")
    assert r.exit_code == 0 and r.stdout_bytes[:4] == b"RIFF" and b"WEBP" in r.stdout_bytes[:16]
    r = _run("decode", uqd, "-m", tiny_model_path, "--format", "jpg", "-o", "-")
    assert r.exit_code == 0 and r.stdout_bytes[:2] == b"\xff\xd8" and "lossy format" in r.stderr
    assert (
        _run(
            "decode", uqd, "-m", tiny_model_path, "--format", "webp", "-o", uqd.with_name("a.WebP")
        ).exit_code
        == 0
    )
    for args in (
        ["--format", "webp", "-o", uqd.with_name("b.jpg")],
        ["--format", "ico"],
        ["--format", "nope"],
    ):
        r = _run("decode", uqd, "-m", tiny_model_path, *args)
        assert r.exit_code != 0
        text = r.stderr.strip()
        assert text.startswith("error:") and "\n" not in text, text
    copy = uqd.with_name("other.uqd")
    copy.write_bytes(uqd.read_bytes())
    results = batch.run_batch(
        "decode", [uqd, copy], uqd.parent / "w", model=tiny_model_path, image_format="webp"
    )
    assert [r.output.name for r in results] == ["photo.decoded.webp", "other.decoded.webp"]
    assert all(r.ok and r.status == "lossless" for r in results)


def test_format_applies_to_an_output_name_that_says_none(uqd, tiny_model_path):
    """-o /dev/stdout, -o out or -o out.dat with --format webp: the name says no format, so
    --format's is written (it used to be refused as 'different formats')."""
    assert output_format("out", "WEBP") == "WEBP" and output_format("x.png", "WEBP") == "PNG"
    assert writes_exactly("out", "JPEG") is False
    original = np.asarray(Image.open(uqd.with_name("photo.png")).convert("RGB"))
    plain, odd, strip, streamed = (uqd.with_name(n) for n in ("out", "out.dat", "strip", "streamed"))
    r = _run("decode", uqd, "-m", tiny_model_path, "--format", "webp", "-o", plain)
    assert r.exit_code == 0 and "exact original" in r.stdout and r.stderr == "", r.output
    assert Image.open(plain).format == "WEBP"
    assert np.array_equal(np.asarray(Image.open(plain).convert("RGB")), original)
    r = _run("decode", uqd, "-m", tiny_model_path, "--format", "jpg", "-o", odd)
    assert r.exit_code == 0 and "not exact" in r.stdout and Image.open(odd).format == "JPEG"
    assert "'.dat' is not an image format's suffix; written as a JPEG image" in r.stderr
    r = _run("decode", uqd, "-m", tiny_model_path, "--format", "tif", "--progression", strip)
    assert r.exit_code == 0 and Image.open(strip).format == "TIFF", r.output
    r = _run("decode", uqd, "-m", tiny_model_path, "--format", "webp", "--stream", "-o", streamed)
    assert r.exit_code == 0 and Image.open(streamed).format == "WEBP", r.output
    library = batch.decode_file(uqd, output=uqd.with_name("lib"), model=tiny_model_path, image_format="tif")
    assert library.ok and library.status == "lossless" and Image.open(library.output).format == "TIFF"


def test_uqd_files_are_not_named_as_images(uqd, tiny_model_path):
    check_uqd_name("a.uqd"), check_uqd_name("a.UQD"), check_uqd_name("a"), check_uqd_name("a.bin")
    with pytest.raises(UqdmError, match="named as a JPEG image; name it a.uqd"):
        check_uqd_name("a.jpg")
    photo = uqd.with_name("photo.png")
    for args in (
        ["encode", photo, "-o", uqd.with_name("x.jpg")],
        ["truncate", uqd, "--steps", 1, "-o", "y.png"],
    ):
        r = _run(*args, "-m", tiny_model_path) if args[0] == "encode" else _run(*args)
        assert r.exit_code != 0 and r.stderr.startswith("error:") and "name it" in r.stderr, r.output
    with pytest.raises(UqdmError, match="name it z.uqd"):
        batch.encode_file(photo, output=uqd.with_name("z.webp"), model=tiny_model_path)
    assert not any(uqd.with_name(n).exists() for n in ("x.jpg", "y.png", "z.webp"))
    assert _run("encode", photo, "-m", tiny_model_path, "-o", uqd.with_name("plain")).exit_code == 0


def test_all_steps_in_another_format(uqd, tiny_model_path):
    folder = uqd.parent / "levels"
    r = _run("decode", uqd, "-m", tiny_model_path, "--all-steps", folder, "--format", "jpg")
    assert r.exit_code == 0, r.output
    written = sorted(folder.iterdir())
    assert len(written) > 2 and all(p.suffix == ".jpg" and Image.open(p).format == "JPEG" for p in written)
    assert r.stderr.count("lossy format") == 1  # one note for the folder, not one per level


def test_decode_writes_pgm_for_a_grayscale_file_only(uqd, tiny_model_path, monkeypatch):
    """A colour file's .pgm name is refused before decoding (one error line, no file); a gray file's
    is written, one plane."""
    from uqdm_codec import codec as codec_module

    gray_src = uqd.with_name("scan.png")
    g = synthetic_image(20, 24, seed=3)[:, :, 0]
    Image.fromarray(g).save(gray_src)
    r = _run("encode", gray_src, "-m", tiny_model_path, "-q")
    assert r.exit_code == 0, r.output
    r = _run("decode", uqd.with_name("scan.uqd"), "-m", tiny_model_path, "-o", uqd.with_name("scan.pgm"))
    assert r.exit_code == 0 and "exact original" in r.stdout, r.output
    assert np.array_equal(np.asarray(Image.open(uqd.with_name("scan.pgm"))), g)
    r = _run("decode", uqd.with_name("scan.uqd"), "-m", tiny_model_path, "--format", "pgm", "-o", "-")
    assert r.exit_code == 0 and r.stdout_bytes == uqd.with_name("scan.pgm").read_bytes()

    def must_not_run(*args, **kwargs):
        raise AssertionError("decoded before refusing the output name")

    monkeypatch.setattr(codec_module.Codec, "decode", must_not_run)
    r = _run("decode", uqd, "-m", tiny_model_path, "-o", uqd.with_name("colour.pgm"))
    text = r.stderr.strip()
    assert r.exit_code == 1 and text.startswith("error:") and "\n" not in text, text
    assert "a PGM file holds a grayscale image, and this one is colour" in text
    result = batch.decode_file(uqd, output=uqd.with_name("x.pgm"), model=tiny_model_path)
    assert not result.ok and "this one is colour" in result.error
    assert not uqd.with_name("colour.pgm").exists() and not uqd.with_name("x.pgm").exists()
