"""The command line through Typer's test runner: outputs, messages, exit codes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from uqdm_codec.cli import app

from .conftest import synthetic_image

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result):
    assert result.exit_code != 0
    text = result.stderr.strip()
    assert text.startswith("error:") and "\n" not in text and "Traceback" not in text, text


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(24, 40, seed=9)).save(path)
    return path


def test_encode_decode_info_truncate(photo, tiny_model_path):
    r = run("encode", photo, "-m", tiny_model_path, "--seed", 5)
    assert r.exit_code == 0, r.output
    uqd = photo.with_suffix(".uqd")
    assert uqd.exists() and "lossless pixels" in r.stdout and "bpp" in r.stdout

    r = run("decode", uqd, "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    decoded = photo.with_name("photo.decoded.png")
    assert np.array_equal(np.asarray(Image.open(decoded)), np.asarray(Image.open(photo)))
    assert "lossless" in r.stdout

    r = run("decode", uqd, "--steps", 2, "-m", tiny_model_path)
    assert r.exit_code == 0 and photo.with_name("photo.step2.png").exists()

    r = run("info", uqd)
    assert r.exit_code == 0 and "diffusion step 8" in r.stdout

    r = run("truncate", uqd, "--steps", 3, "-o", photo.with_name("cut.uqd"))
    assert r.exit_code == 0 and "3 steps" in r.stdout
    r = run("decode", photo.with_name("cut.uqd"), "-m", tiny_model_path, "-o", photo.with_name("cut.png"))
    assert r.exit_code == 0 and "after 3 of 8 steps" in r.stdout
    r = run("truncate", uqd, "--bpp", 50)
    assert r.exit_code == 0 and photo.with_name("photo.50bpp.uqd").exists()


def test_no_overwrite_without_force(photo, tiny_model_path):
    assert run("encode", photo, "-m", tiny_model_path).exit_code == 0
    uqd = photo.with_suffix(".uqd")
    before = uqd.read_bytes()
    r = run("encode", photo, "-m", tiny_model_path)
    assert_one_line_error(r)
    assert "already exists" in r.stderr and uqd.read_bytes() == before
    assert run("encode", photo, "-m", tiny_model_path, "--force").exit_code == 0


def test_never_overwrites_the_input(photo, tiny_model_path):
    r = run("encode", photo, "-m", tiny_model_path, "-o", photo, "--force")
    assert_one_line_error(r)
    assert Image.open(photo).size == (40, 24)


def test_errors_are_one_line(tmp_path, photo, tiny_model_path, other_model_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(run("encode", tmp_path / "missing.png", "-m", tiny_model_path))
    assert_one_line_error(run("encode", tmp_path / "notes.txt", "-m", tiny_model_path))
    assert_one_line_error(run("decode", tmp_path / "notes.txt", "-m", tiny_model_path))
    assert_one_line_error(run("info", tmp_path / "missing.uqd"))
    assert_one_line_error(run("encode", photo, "-m", tmp_path / "nope.safetensors"))
    assert run("encode", photo, "-m", tiny_model_path).exit_code == 0
    uqd = photo.with_suffix(".uqd")
    r = run("decode", uqd, "-m", other_model_path)
    assert_one_line_error(r)
    assert "tiny-test" in r.stderr and "tiny-other" in r.stderr
    assert_one_line_error(run("truncate", uqd, "--bpp", 1, "--steps", 1))
    assert_one_line_error(run("truncate", uqd, "--bpp", 0.0001))
    assert_one_line_error(run("decode", uqd, "--steps", 42, "-m", tiny_model_path))
    bad = bytearray(uqd.read_bytes())
    bad[len(bad) // 2] ^= 0xFF
    (tmp_path / "bad.uqd").write_bytes(bytes(bad))
    assert_one_line_error(run("decode", tmp_path / "bad.uqd", "-m", tiny_model_path))
    assert not (tmp_path / "bad.decoded.png").exists()


def test_truncated_file_warns(photo, tiny_model_path):
    from uqdm_codec import files

    assert run("encode", photo, "-m", tiny_model_path, "--seed", 3).exit_code == 0
    uqd = photo.with_suffix(".uqd")
    data = uqd.read_bytes()
    inside = files.info(data).cut_points[3] + 5  # a few bytes into the next chunk
    (photo.parent / "partial.uqd").write_bytes(data[:inside])
    r = run("decode", photo.parent / "partial.uqd", "-m", tiny_model_path)
    assert r.exit_code == 0 and "warning:" in r.stderr


def test_grayscale_input_gets_a_note(tmp_path, tiny_model_path):
    path = tmp_path / "gray.png"
    Image.fromarray(synthetic_image(16, 16)[:, :, 0]).save(path)
    r = run("encode", path, "-m", tiny_model_path)
    assert r.exit_code == 0 and "note: grayscale" in r.stderr


def test_help():
    r = run("--help")
    assert r.exit_code == 0 and "encode" in r.stdout and "truncate" in r.stdout


def test_progression_and_all_levels(photo, tiny_model_path):
    assert run("encode", photo, "-m", tiny_model_path).exit_code == 0
    uqd = photo.with_suffix(".uqd")
    strip_path, folder = photo.with_name("strip.png"), photo.with_name("levels")
    r = run("decode", uqd, "-m", tiny_model_path, "--progression", strip_path, "--all-steps", folder)
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 10 and names[0].startswith("000_header") and "lossless" in names[-1]
    assert Image.open(strip_path).size[0] > 40


def test_pillow_opens_uqd_files(photo, tiny_model_path, monkeypatch):
    import uqdm_codec
    from uqdm_codec.codec import Codec

    assert run("encode", photo, "-m", tiny_model_path).exit_code == 0
    codec = Codec(tiny_model_path, "cpu")
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
    with Image.open(photo.with_suffix(".uqd")) as im:
        assert im.format == "UQD" and im.size == (40, 24)
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(Image.open(photo)))
