"""`-` for standard input and `-o -` for standard output: the same bytes as through files, only the
output on standard output (every message on standard error), and one-line errors where a pipe
cannot work (a terminal, several inputs, no name to give an output)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from uqdm_codec import cli, files
from uqdm_codec.cli import app
from uqdm_codec.errors import ImageError, UqdmError
from uqdm_codec.image_io import image_bytes, load_image

from .conftest import synthetic_image

runner = CliRunner()


def run(*args, stdin: bytes | None = None):
    return runner.invoke(app, [str(a) for a in args], input=stdin)


def assert_one_line_error(result, words: str):
    assert result.exit_code == 1, result.output
    text = result.stderr.strip()
    assert text.startswith("error:") and "\n" not in text and "Traceback" not in text, text
    assert words in text, text
    assert result.stdout_bytes == b""  # nothing half-written on standard output


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(24, 40, seed=9)).save(path)
    return path


def test_encode_truncate_decode_through_pipes(photo, tiny_model_path, tmp_path):
    assert run("encode", photo, "-m", tiny_model_path, "--seed", 4, "-q").exit_code == 0
    uqd = photo.with_suffix(".uqd")
    data = uqd.read_bytes()

    r = run("encode", "-", "-o", "-", "-m", tiny_model_path, "--seed", 4, stdin=photo.read_bytes())
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == data  # the same file as from the path, and nothing else on stdout
    assert "wrote standard output" in r.stderr and "bpp" in r.stderr  # the table too, on stderr

    r = run("truncate", "-", "--bytes", len(data) // 2, "-o", "-", stdin=data)
    assert r.exit_code == 0, r.stderr
    cut = files.truncate(data, max_bytes=len(data) // 2)
    assert r.stdout_bytes == cut and "wrote standard output" in r.stderr

    r = run("truncate", uqd, "--steps", 2, "-o", "-")  # a file in, standard output out
    assert r.exit_code == 0 and r.stdout_bytes == files.truncate(data, steps=2)

    r = run("decode", "-", "-o", "-", "-m", tiny_model_path, stdin=cut)
    assert r.exit_code == 0, r.stderr
    assert (
        run(
            "decode", uqd, "--bytes", len(data) // 2, "-m", tiny_model_path, "-o", tmp_path / "c.png"
        ).exit_code
        == 0
    )
    assert r.stdout_bytes == (tmp_path / "c.png").read_bytes()  # the very PNG a file gets
    assert "wrote standard output" in r.stderr

    r = run("decode", "-", "-m", tiny_model_path, "-o", tmp_path / "whole.png", stdin=data)
    assert r.exit_code == 0 and "wrote" in r.stdout  # a file out: messages on stdout as ever
    assert np.array_equal(np.asarray(Image.open(tmp_path / "whole.png")), np.asarray(Image.open(photo)))

    r = run("decode", uqd, "-o", "-", "-m", tiny_model_path, "--progression", tmp_path / "strip.png")
    assert r.exit_code == 0 and (tmp_path / "strip.png").exists(), r.stderr
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.stdout_bytes))), np.asarray(Image.open(photo)))
    assert "wrote " in r.stderr and "levels" in r.stderr  # the strip's line too, not in the PNG's bytes

    r = run("info", "-", stdin=data)
    assert r.exit_code == 0 and r.stdout.startswith("standard input: 40x24")
    r = run("info", "-", "--json", stdin=cut)
    assert r.exit_code == 0 and '"file": "standard input"' in r.stdout


def test_pipes_fail_in_one_line(photo, tiny_model_path):
    assert run("encode", photo, "-m", tiny_model_path, "--seed", 4, "-q").exit_code == 0
    uqd = photo.with_suffix(".uqd")
    data = uqd.read_bytes()
    assert_one_line_error(run("decode", "-", "-m", tiny_model_path, stdin=data), "give -o FILE")
    assert_one_line_error(run("truncate", "-", "--steps", 1, stdin=data), "give -o FILE")
    assert_one_line_error(run("encode", "-", "-m", tiny_model_path, stdin=photo.read_bytes()), "give -o FILE")
    assert_one_line_error(run("truncate", "-", uqd, "--steps", 1, "--out-dir", photo.parent), "only input")
    assert_one_line_error(run("decode", "-", "-o", "-", "-m", tiny_model_path, stdin=b""), "standard input:")
    assert_one_line_error(run("info", "-", stdin=b"not a uqd file"), "standard input: not a .uqd file")
    assert_one_line_error(
        run("encode", "-", "-o", "-", "-m", tiny_model_path, stdin=b"no image"),
        "standard input: not an image",
    )
    assert_one_line_error(run("truncate", "-", "--steps", 8, "-o", "-", stdin=data[:200]), "holds only")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _ClosedPipe:
    class buffer:  # noqa: N801 - the attribute of sys.stdout it stands for
        @staticmethod
        def write(data: bytes) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        @staticmethod
        def flush() -> None:
            pass

    @staticmethod
    def fileno() -> int:
        raise io.UnsupportedOperation("no file number")


def test_no_binary_on_a_terminal_and_a_closed_pipe_is_one_error(monkeypatch):
    monkeypatch.setattr(sys, "stdout", _Terminal())
    with pytest.raises(UqdmError, match="refusing to write a PNG image to a terminal"):
        cli._check_stdout("a PNG image")
    monkeypatch.setattr(sys, "stdin", _Terminal())
    with pytest.raises(UqdmError, match="standard input, which is a terminal"):
        cli._read(cli.Path("-"))
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    with pytest.raises(UqdmError, match="standard output was closed"):
        cli._write_stdout(b"x" * 10)


def test_images_from_bytes_and_to_bytes(tmp_path):
    pixels = synthetic_image(12, 9, seed=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    loaded = load_image(buffer.getvalue(), "standard input")
    assert np.array_equal(loaded.pixels, pixels)
    with pytest.raises(ImageError, match="^standard input: not an image"):
        load_image(b"\x89PNG but not really", "standard input")
    blob, notes = image_bytes(pixels, "PNG", alpha=np.full((12, 9), 7, np.uint8))
    back = Image.open(io.BytesIO(blob))
    assert back.mode == "RGBA" and not notes and np.array_equal(np.asarray(back)[:, :, :3], pixels)
    _, notes = image_bytes(pixels, "JPEG", alpha=np.zeros((12, 9), np.uint8))
    assert "lossy format" in notes[0]
    assert notes[1:] == ["the JPEG image: JPEG files cannot hold the image's alpha channel; left out"]


@pytest.mark.skipif(not cli.Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_standard_output_is_one_error(tmp_path, tiny_model_path):
    """`uqdm info x.uqd > /dev/full` (a full disk behind standard output) was 'internal error:
    OSError: [Errno 28] No space left on device', exit code 2."""
    import subprocess

    uqd = tmp_path / "x.uqd"
    uqd.write_bytes(files.truncate(_encoded(tiny_model_path), steps=1))
    with open("/dev/full", "wb") as full:
        command = [sys.executable, "-m", "uqdm_codec", "info", str(uqd)]
        done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 1 and done.stderr == "error: standard output: No space left on device\n"


def _encoded(model: str) -> bytes:
    from uqdm_codec.codec import Codec

    return Codec(model, "cpu").encode(synthetic_image(16, 16, seed=2), seed=1)
