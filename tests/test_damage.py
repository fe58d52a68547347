"""A damaged file: what lies before the damage is still served (decode --steps, --bytes, truncate),
with a warning; a request that needs the damaged bytes is one error that says what is intact."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import uqdm_codec
from uqdm_codec import files
from uqdm_codec.cli import app
from uqdm_codec.codec import Codec
from uqdm_codec.errors import FormatError

from .conftest import synthetic_image


def _damage_chunk(data: bytes, step: int) -> tuple[bytes, int]:
    """`data` with a payload byte of the first chunk of layer `step` flipped, and where that
    chunk starts (its CRC)."""
    fi = files.info(data)
    start = min(a for a, _ in fi.chunk_spans if a >= fi.layers[step - 2].end)
    bad = bytearray(data)
    bad[start + 5] ^= 0xFF
    return bytes(bad), start


def test_damage_after_the_steps_asked_for_is_no_obstacle(codec, encoded):
    img, data = encoded
    bad, start = _damage_chunk(data, 5)
    with pytest.raises(
        FormatError, match="the .* bytes before it are intact \\(4 complete steps\\)"
    ) as caught:
        files.info(bad)
    assert caught.value.intact == start and f"truncate(data, max_bytes={start}) keeps them" in str(
        caught.value
    )
    notes: list[str] = []
    assert files.truncate(bad, steps=4, notes=notes) == files.truncate(data, steps=4)
    assert len(notes) == 1 and notes[0].startswith("damaged file: corrupted data in layer 5, chunk 1")
    assert files.truncate(bad, max_bytes=start) == files.truncate(data, max_bytes=start)
    assert files.truncate(bad, bpp=8 * (start - 4) / img.size * 3) == files.truncate(
        data, bpp=8 * (start - 4) / img.size * 3
    )
    for asked in ({"steps": 5}, {"max_bytes": start + 1}):
        with pytest.raises(FormatError, match="layer 5, chunk 1 \\(checksum mismatch\\); the"):
            files.truncate(bad, **asked)
    with pytest.raises(FormatError, match="are intact"):
        files.budget_prefix(bad, None, None)  # the whole file
    head = files.budget_prefix(bad, 4, None)
    assert np.array_equal(codec.decode(head, 4).pixels, codec.decode(data, 4).pixels)


def test_bytes_after_a_whole_file_are_refused_but_say_the_file_is_intact(codec, encoded, tiny_model):
    """FORMAT.md 2 makes bytes after the last layer corruption (a second file appended, a
    transfer's padding): still refused, but the error says the bytes before them are a whole
    file, and every request they hold is served with a warning, as for damage."""
    img, data = encoded
    tiled = Codec(tiny_model, "cpu", region=32).encode(synthetic_image(40, 72), seed=1)
    for whole in (data, tiled):
        extra = whole + whole[:30]
        with pytest.raises(FormatError, match="after the last layer.*intact \\(a whole file\\)") as caught:
            files.info(extra)
        assert caught.value.intact == len(whole)
        notes: list[str] = []
        assert files.truncate(extra, max_bytes=len(whole), notes=notes) == whole
        assert files.truncate(extra, steps=2) == files.truncate(whole, steps=2)
        assert len(notes) == 1 and notes[0].startswith("damaged file: unexpected data after the last layer")
    head = files.budget_prefix(data + b"\0", 3, None)
    assert np.array_equal(codec.decode(head, 3).pixels, codec.decode(data, 3).pixels)


def test_a_damaged_layer_header_keeps_the_layers_before(encoded):
    _, data = encoded
    fi = files.info(data)
    bad = bytearray(data)
    bad[fi.layers[2].end + 1] ^= 0x01  # layer 4's record header
    with pytest.raises(FormatError, match="corrupted layer 4 header.*intact \\(3 complete steps\\)"):
        files.info(bytes(bad))
    assert files.truncate(bytes(bad), steps=3) == files.truncate(data, steps=3)
    header = bytearray(data)
    header[10] ^= 0x01  # the width: nothing lies before it
    with pytest.raises(FormatError, match="corrupted .uqd header \\(checksum mismatch\\)$") as caught:
        files.truncate(bytes(header), steps=1)
    assert caught.value.intact is None


def test_public_decode_and_the_command_line(tmp_path, tiny_model_path):
    img = synthetic_image(24, 40, seed=9)
    kw = {"model": tiny_model_path, "device": "cpu"}
    data = uqdm_codec.encode(img, seed=5, **kw)
    bad, start = _damage_chunk(data, 5)
    full = uqdm_codec.decode_full(bad, steps=4, **kw)
    assert np.array_equal(full.pixels, uqdm_codec.decode_full(data, steps=4, **kw).pixels)
    assert full.warnings[0].startswith("damaged file:")
    # decode() and truncate() return an image or bytes: the damage was silent there, now a warning
    with pytest.warns(uqdm_codec.UqdmWarning, match="^damaged file: corrupted data in layer 5") as said:
        shown = uqdm_codec.decode(bad, steps=4, **kw)
    assert len(said) == 1 and said[0].filename == __file__  # points at the caller's line
    assert np.array_equal(np.asarray(shown), full.pixels)
    with pytest.warns(uqdm_codec.UqdmWarning, match="^damaged file:") as said:
        assert uqdm_codec.truncate(bad, steps=4) == files.truncate(data, steps=4)
    assert len(said) == 1 and said[0].filename == __file__
    path = tmp_path / "bad.uqd"
    path.write_bytes(bad)
    run = CliRunner().invoke
    r = run(app, ["decode", str(path), "-m", tiny_model_path])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and f"decode --bytes {start} shows them" in r.stderr
    assert not (tmp_path / "bad.decoded.png").exists()
    r = run(app, ["decode", str(path), "--steps", "4", "-m", tiny_model_path])
    assert r.exit_code == 0 and "warning: damaged file:" in r.stderr
    r = run(app, ["truncate", str(path), "--steps", "4", "-o", str(tmp_path / "four.uqd")])
    assert r.exit_code == 0 and (tmp_path / "four.uqd").read_bytes() == files.truncate(data, steps=4)
    r = run(app, ["info", str(path)])
    assert r.exit_code == 1 and "are intact (4 complete steps)" in r.stderr


def test_a_tiled_file_names_the_region_and_the_earliest_damage(tiny_model):
    """Regions are checked one after another, not in file order: damage late in region 1 is met
    before damage earlier in the file in the last region, and the earliest is the one reported."""
    from uqdm_codec import container

    data = Codec(tiny_model, "cpu", region=32).encode(synthetic_image(40, 72, seed=4), seed=3)
    _, _, parts = container.split_tiled(data)
    fi = [files.info(part.data) for part in parts]

    def chunk(region: int, step: int) -> int:  # where a region's first chunk of a step starts
        start = min(a for a, _ in fi[region].chunk_spans if a >= fi[region].layers[step - 2].end)
        return parts[region].file_offset(start)

    late, early = chunk(0, 8), chunk(len(parts) - 1, 5)
    assert early < late
    bad = bytearray(data)
    bad[late + 5] ^= 0xFF
    bad[early + 5] ^= 0xFF
    with pytest.raises(FormatError, match=f"^region {len(parts)} .*: corrupted data in layer 5") as caught:
        files.info(bytes(bad))
    assert caught.value.intact == early and "intact (4 complete steps)" in str(caught.value)
    assert files.truncate(bytes(bad), steps=4) == files.truncate(data, steps=4)
    assert files.truncate(bytes(bad), max_bytes=early) == files.truncate(data, max_bytes=early)


@pytest.mark.parametrize("size", [97, 10**6])
def test_a_stream_shows_what_lies_before_the_damage(codec, encoded, monkeypatch, size):
    """decode --stream: with --steps that end before the damage, decode's image (with a warning
    where the damaged bytes came before reading stopped); without, the images of the bytes before
    the damage, then the error."""
    from uqdm_codec import streaming

    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
    _, data = encoded
    bad, start = _damage_chunk(data, 5)
    pieces = [bad[i : i + size] for i in range(0, len(bad), size)]
    last = list(streaming.decode_stream(iter(pieces), steps=4))[-1]
    assert np.array_equal(last.pixels, codec.decode(data, 4).pixels)
    assert [w.startswith(files.DAMAGED) for w in last.warnings] == ([True] if size > len(bad) else [])
    shown = []
    with pytest.raises(FormatError, match="layer 5, chunk 1 \\(checksum mismatch\\)"):
        for image in streaming.decode_stream(iter(pieces)):
            shown.append(image)
    assert np.array_equal(shown[-1].pixels, codec.decode(bad[:start]).pixels)
