"""Files of uqdm 0.11-0.12 (format version 7, no known intervals) still decode as they did there.

tests/data holds two such files, written by uqdm 0.12 (commit 134535e) from a 96x128 crop of
samples/kodim23.png with the model shipped then (run v8), one with --mirrors 2, and the SHA-256 of
what uqdm 0.12 decoded from them: after every step, the whole file, and every chunk in turn. Since
uqdm 0.17 ships another model, they also check that a file finds the retired weights it was made
with (weights/retired/) without being told."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uqdm_codec import container, get_codec
from uqdm_codec.codec import model_for_file
from uqdm_codec.image_io import load_image

DATA = Path(__file__).resolve().parent / "data"
EXPECTED = json.loads((DATA / "v7-decodes.json").read_text())
EXPECTED_V8 = json.loads((DATA / "v8-decodes.json").read_text())  # files of uqdm 0.17 and 0.18


def _sha(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def _assert_whole_file_and_chunks_as_recorded(codec, data: bytes, want: dict) -> None:
    """The whole file decodes to the recorded hash and to the crop it was made from; every chunk in
    turn to the recorded images."""
    full = codec.decode(data)
    assert full.lossless and _sha(full.pixels) == want["steps"][-1]
    original = load_image(Path(__file__).resolve().parent.parent / "samples" / "kodim23.png").pixels
    assert np.array_equal(full.pixels, original[160:256, 280:408])
    images = list(codec.iter_decode(data, every_chunk=True))
    assert len(images) == want["levels"]
    assert hashlib.sha256(b"".join(im.pixels.tobytes() for im in images)).hexdigest() == want["every_chunk"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_version_7_files_decode_as_uqdm_0_12_decoded_them(name):
    data = (DATA / name).read_bytes()
    header, _ = container.parse_header(data)
    assert header.version == 7 and not header.intervals
    codec = get_codec(model_for_file(header, None))
    want = EXPECTED[name]
    for n in range(codec.num_steps + 1):
        assert _sha(codec.decode(data, steps=n).pixels) == want["steps"][n], f"step {n}"
    _assert_whole_file_and_chunks_as_recorded(codec, data, want)


def test_the_encoder_writes_version_8_with_intervals_and_7_without(tiny_model):
    from uqdm_codec.codec import Codec

    from .conftest import synthetic_image

    img = synthetic_image(24, 32, seed=9)
    for intervals, version in ((True, 8), (False, 7)):
        codec = Codec(tiny_model, "cpu", intervals=intervals)
        data = codec.encode(img, seed=3)
        assert container.parse_header(data)[0].version == version
        decoder = Codec(tiny_model, "cpu", intervals=not intervals)  # the file's version decides
        assert np.array_equal(decoder.decode(data).pixels, img)


def test_truncating_a_version_7_file_keeps_it_version_7():
    import uqdm_codec

    name = sorted(EXPECTED)[0]
    data = (DATA / name).read_bytes()
    cut = uqdm_codec.truncate(data, steps=5)
    assert container.parse_header(cut)[0].version == 7
    assert _sha(np.asarray(uqdm_codec.decode(cut))) == EXPECTED[name]["steps"][5]


def test_tiled_files_carry_the_version_to_every_region(tiny_model):
    from uqdm_codec.codec import Codec

    from .conftest import synthetic_image

    img = synthetic_image(40, 72, seed=10)
    for intervals in (True, False):
        codec = Codec(tiny_model, "cpu", region=32, intervals=intervals)
        data = codec.encode(img, seed=4)
        header = container.parse_header(data)[0]
        assert header.tiled and header.version == (8 if intervals else 7)
        assert np.array_equal(Codec(tiny_model, "cpu", region=32).decode(data).pixels, img)


def test_files_of_a_retired_model_find_its_weights_and_others_are_refused():
    from uqdm_codec.errors import ModelError
    from uqdm_codec.model import retired_model_path

    name = sorted(EXPECTED)[0]
    data = (DATA / name).read_bytes()
    header = container.parse_header(data)[0]
    retired = retired_model_path(header.model_name, header.fingerprint)
    assert retired is not None and retired.parent.name == "retired"
    assert get_codec(retired).fingerprint == header.fingerprint
    assert retired_model_path("../uqdm-small", header.fingerprint) is None
    assert retired_model_path(header.model_name, bytes(16)) is None
    # the current model refuses the file with a one-line error when asked for explicitly
    with pytest.raises(ModelError, match="made with model"):
        get_codec("uqdm-small").decode(data, steps=1)


def test_the_cli_decodes_a_retired_models_file_without_being_told(tmp_path):
    from typer.testing import CliRunner

    from uqdm_codec.cli import app

    name = sorted(EXPECTED)[0]
    src = tmp_path / "old.uqd"
    src.write_bytes((DATA / name).read_bytes())
    result = CliRunner().invoke(app, ["decode", str(src), "--steps", "2", "-o", str(tmp_path / "old.png")])
    assert result.exit_code == 0, result.output
    assert _sha(np.asarray(Image.open(tmp_path / "old.png"))) == EXPECTED[name]["steps"][2]


RELEASES = {  # file (written by commit d16d352 / c261c2d, seed 7) -> fingerprint of the model it used
    "v8-kodim23-96x128-uqdm017.uqd": "5abafba905573bdfb7c411dcc9e12cbe",  # run v12e, uqdm 0.17
    "v8-kodim23-96x128-uqdm018.uqd": "586d459e4d87e18ecad7f6beb499e5bc",  # run v13b, uqdm 0.18
}


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_files_of_earlier_releases_decode_as_those_releases_decoded_them(name):
    """tests/data/v8-kodim23-96x128-uqdm01?.uqd: format 8 (known intervals), written by uqdm 0.17 and
    0.18 from the same crop with the model each shipped; both models are retired now, and the decoder
    must find each from the file alone, at every step and chunk."""
    import uqdm_codec

    want = EXPECTED_V8[name]
    data = (DATA / name).read_bytes()
    header, _ = container.parse_header(data)
    assert header.version == 8 and header.intervals and len(data) == want["bytes"]
    assert header.fingerprint.hex() == RELEASES[name]
    codec = get_codec(model_for_file(header, None))
    assert codec.fingerprint == header.fingerprint != get_codec("uqdm-small").fingerprint
    for n in range(codec.num_steps + 1):
        assert _sha(np.asarray(uqdm_codec.decode(data, steps=n))) == want["steps"][n], f"step {n}"
    _assert_whole_file_and_chunks_as_recorded(codec, data, want)


def test_every_golden_file_of_a_release_is_listed():
    assert set(EXPECTED_V8) == set(RELEASES)
