"""The PSNR index (FORMAT.md 1.2, extension bit 4): what it promises at every chunk boundary must be
what decoders show, `truncate --psnr` must keep the shortest prefix that reaches a target, and the
index must change no byte of the layers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import uqdm_codec
from uqdm_codec import container, files, quality
from uqdm_codec.cli import app
from uqdm_codec.codec import Codec
from uqdm_codec.errors import FormatError, UqdmError
from uqdm_codec.quality import Target, index_entry, psnr_of

from .conftest import synthetic_image


def psnr_shown(codec: Codec, data: bytes, img: np.ndarray) -> float:
    d = codec.decode(data).pixels.astype(np.int64) - img
    return psnr_of(int((d * d).sum()), img.shape[0] * img.shape[1])


def layers_of(data: bytes) -> bytes:
    return data[files.info(data).header_bytes :]


def check_promises(codec: Codec, data: bytes, img: np.ndarray, every: int = 1) -> None:
    """Every entry is the shown image's PSNR rounded down to a hundredth (exact: inf)."""
    table = files.info(data).psnr_table
    assert table
    for k, (end, value) in enumerate(table.items()):
        if k % every and k != len(table) - 1:
            continue
        shown = psnr_shown(codec, data[:end], img)
        assert value <= shown < value + 0.01 or value == shown == math.inf, (end, value, shown)


@pytest.mark.parametrize("options", [{}, {"tail": True}, {"tail_after": 2}, {"tail": None, "fast": True}])
def test_index_promises_what_decoders_show(codec, options):
    img = synthetic_image(40, 56, seed=7)
    screen: list = []
    plain = codec.encode(img, seed=11, screen=screen, **options)
    data = codec.encode(img, seed=11, psnr_index=True, **options)
    assert layers_of(data) == layers_of(plain)  # the index moves no byte of the layers
    fi = files.info(data)
    assert fi.header.psnr_index == tuple(index_entry(psnr_of(e, 40 * 56)) for e in screen)
    assert len(fi.psnr_table) == len(fi.cut_points) and fi.psnr_table[len(data)] == math.inf
    assert codec.decode(data).pixels.tolist() == img.tolist()
    check_promises(codec, data, img, every=1 if not options else 3)


def test_truncate_to_a_psnr(codec):
    img = synthetic_image(40, 56, seed=3)
    data = codec.encode(img, seed=2, psnr_index=True)
    table = list(files.info(data).psnr_table.items())
    checked = 0
    for (before, low), (end, high) in zip(table, table[1:]):
        if not low < high < math.inf:
            continue
        target = (low + high) / 2
        cut = files.truncate(data, psnr=target)
        assert cut == data[:end]  # the first boundary that reaches it
        assert psnr_shown(codec, cut, img) >= target > psnr_shown(codec, data[:before], img)
        assert files.truncate(cut, psnr=target) == cut  # a cut file keeps the index
        assert uqdm_codec.truncate(data, psnr=high) == cut  # a target equal to an entry
        checked += 1
    assert checked >= 10
    assert files.truncate(data, psnr=0.5) == data[: files.info(data).header_bytes]  # the blank image
    assert files.truncate(data, psnr=500) == data  # only the exact image reaches it
    # a file cut by bytes keeps the promises it holds, and says how far it goes
    small = files.truncate(data, bpp=8.0)
    assert files.info(small).ends_in_cut_chunk
    kept = files.info(small).psnr_table
    assert list(kept.items()) == [(e, v) for e, v in table if e < len(small)]
    best = max(kept.values())
    assert files.truncate(small, psnr=best) == data[: min(e for e, v in kept.items() if v == best)]
    with pytest.raises(UqdmError, match=f"its best is {best:.2f} dB.*itself a prefix"):
        files.truncate(small, psnr=best + 0.01)


def test_psnr_target_with_an_index(codec):
    """A file encoded to a quality carries the index of the boundaries it holds, not of the cut
    chunk it ends in; its layers are those of the file without the index."""
    img = synthetic_image(40, 56, seed=5)
    whole = codec.encode_judged(img, seed=4, psnr_index=True)
    values = list(files.info(whole.data).psnr_table.values())
    target = (values[10] + 2 * values[11]) / 3
    plain = codec.encode(img, seed=4, target=Target(psnr=target))
    got = codec.encode_judged(img, seed=4, target=Target(psnr=target), psnr_index=True)
    assert layers_of(got.data) == layers_of(plain)
    fi = files.info(got.data)
    ends = fi.cut_points[:-1] if fi.ends_in_cut_chunk else fi.cut_points
    assert fi.header.psnr_index == files.info(whole.data).header.psnr_index[: len(ends)]
    assert got.psnr is not None and got.psnr >= target
    assert psnr_shown(codec, got.data, img) == got.psnr
    steps = codec.encode(img, seed=4, target=Target(steps=3), psnr_index=True)
    assert files.info(steps).steps == 3 and files.info(steps).psnr_table
    with pytest.raises(UqdmError, match="does not go with a bpp target"):
        codec.encode(img, seed=4, target=Target(bpp=2.0), psnr_index=True)


def test_index_of_a_tiled_file(tiny_model):
    tiled = Codec(tiny_model, device="cpu", region=32)
    img = synthetic_image(40, 72, seed=2)
    data = tiled.encode(img, seed=5, psnr_index=True, xmp=b"<x:xmpmeta/>")
    fi = files.info(data)
    assert fi.regions == 6 and len(fi.header.psnr_index) == len(fi.cut_points)
    assert fi.header.xmp == b"<x:xmpmeta/>"  # beside the other extensions
    check_promises(tiled, data, img, every=9)


def test_index_field_round_trip_and_damage():
    entries = (1346, 1944, 1944, 3600, 20000)
    stored = container.pack_psnr_index(entries)
    assert container.unpack_psnr_index(stored) == entries
    assert len(stored) == 2 + 2 + 1 + 2 + 3  # deltas 1346, 598, 0, 1656, 16400
    for bad in ((), (5, 4), (20001,), (-1,)):
        with pytest.raises(ValueError):
            container.pack_psnr_index(bad)
    for damaged in (b"\x80", b"\xff\xff\xff\x01", container.put_varint(20001), stored + b"\x01"):
        with pytest.raises(FormatError, match="PSNR index"):
            container.unpack_psnr_index(damaged)
    assert index_entry(math.inf) == container.PSNR_EXACT
    assert index_entry(36.004) == 3600 and index_entry(35.999) == 3599
    assert index_entry(0.001) == 0 and index_entry(1000.0) == container.PSNR_EXACT - 1


def test_a_damaged_index_is_refused_and_an_unknown_one_skipped(codec, monkeypatch, tiny_model_path):
    img = synthetic_image(24, 32, seed=1)
    data = codec.encode(img, seed=1, psnr_index=True)
    header, size = container.parse_header(data)
    # the index's field, rewritten to hold an entry above the exact image's, the CRC made to match
    stored = container.pack_psnr_index(header.psnr_index)
    at = data.index(container.put_varint(len(stored)) + stored, 0, size)
    bad = container.put_varint(3) + container.put_varint(20001)
    rest = data[at + len(container.put_varint(len(stored))) + len(stored) : size - 4]
    body = data[:at] + container.put_varint(len(bad)) + bad + rest
    with pytest.raises(FormatError, match="PSNR index"):
        container.parse_header(container.sealed(body) + data[size:])
    # a decoder that does not know bit 4 (uqdm 0.38-0.40) skips it, with a warning, and decodes
    monkeypatch.setattr(container, "KNOWN_EXTENSIONS", container.KNOWN_EXTENSIONS & ~container.EXT_PSNR)
    old = codec.decode(data)
    assert old.pixels.tolist() == img.tolist() and any("0x10" in w for w in old.warnings)
    with pytest.warns(uqdm_codec.UqdmWarning, match="0x10"):  # the library's decode() says so too
        uqdm_codec.decode(data, model=tiny_model_path)
    assert container.parse_header(data)[0].psnr_index is None
    with pytest.raises(UqdmError, match="no PSNR index"):
        files.truncate(data, psnr=20)


def test_cli_psnr_index(tmp_path, tiny_model_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(32, 48, seed=3)).save(photo)
    runner = CliRunner()
    model = ["-m", tiny_model_path]
    r = runner.invoke(app, ["encode", str(photo), *model, "--seed", "1", "--psnr-index"])
    assert r.exit_code == 0, r.output
    whole = tmp_path / "photo.uqd"
    data = whole.read_bytes()
    r = runner.invoke(app, ["info", str(whole)])
    assert r.exit_code == 0 and "PSNR index" in r.stdout and "exact" in r.stdout, r.output
    table = files.info(data).psnr_table
    target = list(table.values())[len(table) // 2]
    r = runner.invoke(app, ["truncate", str(whole), "--psnr", repr(target)])
    assert r.exit_code == 0, r.output
    cut = (tmp_path / f"photo.{target:g}dB.uqd").read_bytes()
    assert cut == files.truncate(data, psnr=target) and f"{target:.2f} dB" in r.stdout
    r = runner.invoke(app, ["decode", str(whole), *model, "--psnr", repr(target)])
    assert r.exit_code == 0, r.output
    shown = np.asarray(Image.open(tmp_path / f"photo.{target:g}dB.png"))
    assert shown.tolist() == np.asarray(uqdm_codec.decode(cut, model=tiny_model_path)).tolist()
    assert np.asarray(uqdm_codec.decode(data, model=tiny_model_path, psnr=target)).tolist() == shown.tolist()
    js = json.loads(runner.invoke(app, ["info", str(whole), "--json"]).stdout)
    assert js["header"]["psnr_index"]["entries"] == len(table) and js["layers"][-1]["psnr"] == "exact"
    assert len(js["cut_psnr"]) == len(js["cut_points"])
    # several files at once: encoded with the index, then each cut to its own prefix
    other = tmp_path / "other.png"
    Image.fromarray(synthetic_image(32, 48, seed=4)).save(other)
    r = runner.invoke(
        app,
        [
            "encode",
            str(photo),
            str(other),
            *model,
            "--seed",
            "1",
            "--psnr-index",
            "--out-dir",
            str(tmp_path / "e"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e" / "photo.uqd").read_bytes() == data
    assert files.info((tmp_path / "e" / "other.uqd").read_bytes()).psnr_table
    second = tmp_path / "second.uqd"
    second.write_bytes(data)
    r = runner.invoke(
        app, ["truncate", str(whole), str(second), "--psnr", "20", "--out-dir", str(tmp_path / "o")]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "second.20dB.uqd").read_bytes() == files.truncate(data, psnr=20)
    # one-line errors, nothing written
    plain = tmp_path / "plain.uqd"
    r = runner.invoke(app, ["encode", str(photo), *model, "-o", str(plain)])
    assert r.exit_code == 0
    for args in (
        ["truncate", str(plain), "--psnr", "20"],
        ["truncate", str(whole), "--psnr", "20", "--bpp", "1"],
        ["truncate", str(whole), "--psnr", "-1"],
        ["decode", str(plain), *model, "--psnr", "20"],
        ["decode", str(whole), *model, "--psnr", "20", "--steps", "2"],
        ["encode", str(photo), *model, "--psnr-index", "--bpp", "2", "-o", str(tmp_path / "x.uqd")],
    ):
        before = sorted(p.name for p in tmp_path.iterdir())
        r = runner.invoke(app, args)
        assert r.exit_code != 0 and "Traceback" not in r.output, args
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_psnr_index_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, uqdm_codec.files, uqdm_codec.container; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert quality.index_entry(30.0) == 2999
