"""Encoding while sending: `emit` (uqdm encode -o - --stream) hands on the header and each layer as
soon as it is coded; the pieces add up to exactly the file encode returns, and each prefix of them
is a file that decodes. Where later coding would change earlier bytes, it is refused before any
byte goes out."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from uqdm_codec import files
from uqdm_codec.cli import app
from uqdm_codec.codec import Codec
from uqdm_codec.errors import UqdmError
from uqdm_codec.quality import Target

from .conftest import synthetic_image

runner = CliRunner()


@pytest.mark.parametrize(
    "options",
    [{}, {"tail": True}, {"tail_after": 2}, {"target": Target(steps=3)}, {"fast": True, "mirrors": 2}],
)
def test_the_pieces_are_the_file(codec, options):
    img = synthetic_image(40, 56, seed=8)
    pieces: list[bytes] = []
    reports: list[int] = []
    data = codec.encode(
        img, seed=3, emit=pieces.append, progress=lambda i, n: reports.append(len(pieces)), **options
    )
    assert b"".join(pieces) == data == codec.encode(img, seed=3, **options)
    layers = len(files.info(data).layers)
    assert len(pieces) == 1 + layers  # the header, then one piece per layer
    assert reports[0] == 2 and reports[0] < len(pieces)  # layer 1 went out before layer 2 was coded
    for k in range(1, len(pieces)):  # every prefix of pieces is a file that decodes
        prefix = b"".join(pieces[: k + 1])
        assert len(files.info(prefix).layers) == k
    last = codec.decode(b"".join(pieces[:3]))
    assert last.layer == 2 and not last.lossless
    if "target" not in options:
        assert np.array_equal(codec.decode(data).pixels, img)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"tail": None}, "tail auto"),
        ({"psnr_index": True}, "PSNR index"),
        ({"target": Target(psnr=30)}, "cut the last layer"),
        ({"target": Target(bpp=1.0)}, "cut the last layer"),
        ({"target": Target(max_bytes=900)}, "cut the last layer"),
    ],
)
def test_streams_that_cannot_be_are_refused_before_any_byte(codec, options, words):
    pieces: list[bytes] = []
    with pytest.raises(UqdmError, match=words):
        codec.encode(synthetic_image(40, 56), seed=1, emit=pieces.append, **options)
    assert pieces == []


def test_emit_and_progress_that_are_no_functions_are_refused(codec):
    """emit=5 was a TypeError from inside the encode."""
    for name in ("emit", "progress"):
        with pytest.raises(UqdmError, match=f"{name} must be a function"):
            codec.encode(synthetic_image(16, 16), seed=1, **{name: 5})


def test_a_tiled_image_is_refused(tiny_model):
    pieces: list[bytes] = []
    with pytest.raises(UqdmError, match="region by region"):
        Codec(tiny_model, "cpu", region=32).encode(synthetic_image(40, 72), seed=1, emit=pieces.append)
    assert pieces == []


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_encode_stream(tiny_model_path, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(24, 40, seed=2)).save(photo)
    assert run("encode", photo, "-m", tiny_model_path, "--seed", 5, "-q").exit_code == 0
    r = run("encode", photo, "-m", tiny_model_path, "--seed", 5, "-o", "-", "--stream")
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == photo.with_suffix(".uqd").read_bytes()
    assert "wrote standard output" in r.stderr

    for args, words in [
        ([], "give one input and -o -"),
        (["-o", tmp_path / "x.uqd"], "give one input and -o -"),
        (["-o", "-", "--psnr", "30"], "cannot be streamed"),
        (["-o", "-", "--psnr-index"], "cannot be streamed"),
        (["-o", "-", "--tail", "auto"], "cannot be streamed"),
    ]:
        r = run("encode", photo, "-m", tiny_model_path, "--stream", *args)
        assert r.exit_code == 1 and words in r.stderr and "Traceback" not in r.output, r.output
        assert r.stdout_bytes == b""
    r = run("encode", photo, photo, "-m", tiny_model_path, "--stream", "-o", "-")
    assert r.exit_code == 1 and "one input" in r.stderr


def test_cli_encode_stream_interrupted_says_what_went_out(tiny_model_path, tmp_path, monkeypatch):
    import uqdm_codec.codec

    photo = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(24, 40, seed=2)).save(photo)
    real = uqdm_codec.codec.Codec._encode_layer
    calls = []

    def interrupted(self, *args, **kwargs):  # Ctrl-C while layer 3 is coded
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(uqdm_codec.codec.Codec, "_encode_layer", interrupted)
    r = run("encode", photo, "-m", tiny_model_path, "--seed", 5, "-o", "-", "--stream")
    assert r.exit_code == 130 and "valid, shorter file" in r.stderr, r.stderr
    assert len(files.info(r.stdout_bytes).layers) == 2  # header and two layers went out
