"""Early tails (the EARLY_TAIL header flag, FORMAT.md 1 and 6.6): a lossless file of steps 1..S
and then the tail given step S's image, through the codec, truncation, tiling, sampling and the CLI."""

from __future__ import annotations

from dataclasses import replace
from zlib import crc32

import numpy as np
import pytest
from PIL import Image

from uqdm_codec import container, files, lossless_tail
from uqdm_codec.codec import Codec
from uqdm_codec.errors import FormatError, UqdmError
from uqdm_codec.progression import level_name

from .conftest import synthetic_image
from .test_cli import assert_one_line_error, run


def _sse(a: np.ndarray, b: np.ndarray) -> int:
    return int(((a.astype(np.int64) - b) ** 2).sum())


@pytest.fixture(scope="module")
def early(codec):
    """The image, its plain file, and its files with the tail after steps 0, 2 and T-2."""
    img = synthetic_image(48, 64, seed=11)
    T = codec.num_steps
    tails = {s: codec.encode(img, seed=4, tail=True, tail_after=s) for s in (0, 2, T - 2)}
    return img, codec.encode(img, seed=4), tails


def test_layout_lossless_end_and_shared_steps(codec, early):
    img, plain, tails = early
    plain_info = files.info(plain)
    for s, data in tails.items():
        hd, size = container.parse_header(data)
        assert hd.tail and hd.tail_after == s and hd.coded_steps == s and hd.num_layers == s + 1
        assert data[9] & container.EARLY_TAIL and data[9] & container.TAIL
        fi = files.info(data)
        assert fi.complete and len(fi.layers) == s + 1 and fi.layers[-1].lossless and fi.steps == s + 1
        assert container.parse(data).layers[-1].kind == container.KIND_TAIL
        out = codec.decode(data)
        assert out.lossless and np.array_equal(out.pixels, img) and out.nbytes == len(data)
        # steps 1..S are the plain file's bytes (after a header two bytes longer: the tail's step
        # and its form) and images
        end = plain_info.layers[s - 1].end if s else plain_info.header_bytes
        assert size == plain_info.header_bytes + 2
        assert data[size : fi.layers[s - 1].end if s else size] == plain[size - 2 : end]
        for n in range(s + 1):
            assert np.array_equal(codec.decode(data, steps=n).pixels, codec.decode(plain, steps=n).pixels)
        assert np.array_equal(codec.decode(data, steps=s + 1).pixels, img)
        with pytest.raises(UqdmError, match=f"between 0 and {s + 1}"):
            codec.decode(data, steps=s + 2)


def test_the_tail_after_step_t_minus_1_is_the_plain_tail_file(codec, early):
    img = early[0]
    T = codec.num_steps
    assert codec.encode(img, seed=4, tail=True, tail_after=T - 1) == codec.encode(img, seed=4, tail=True)
    assert codec.encode(img, seed=4, tail_after=T - 1) == codec.encode(img, seed=4, tail=True)
    one = codec.encode(img, seed=4, tail=True, tail_after=1)
    assert codec.encode(img, seed=4, tail=None, tail_after=1) == one
    assert codec.encode(img, seed=4, tail_after=1) == one  # an early tail is a tail whatever `tail` says
    for bad in (-1, T, 2.5, True):
        with pytest.raises(UqdmError, match="tail"):
            codec.encode(img, seed=4, tail=True, tail_after=bad)


def test_every_chunk_prefix_decodes_and_the_tail_improves(codec, early):
    img, _, tails = early
    data = tails[2]
    fi = files.info(data)
    points = list(codec.iter_decode(data, every_chunk=True))
    assert [p.nbytes for p in points] == fi.cut_points
    inside = [p for p in points if p.layer == 3]
    errors = [_sse(p.pixels, img) for p in inside]
    assert all(b <= a for a, b in zip(errors, errors[1:])) and errors[-1] == 0
    assert errors[0] <= _sse(codec.decode(data, steps=2).pixels, img)
    assert level_name(inside[0]) == "tail pass 1" and level_name(inside[-1]) == "lossless"
    for p in inside[:-1]:
        cut = codec.decode(data[: p.nbytes])
        assert not cut.lossless and np.array_equal(cut.pixels, p.pixels)


def test_truncation_by_steps_and_inside_the_tail(codec, early):
    img, _, tails = early
    data = tails[2]
    fi = files.info(data)
    assert files.truncate(data, steps=2) == data[: fi.layers[1].end]
    assert files.truncate(data, steps=3) == data
    with pytest.raises(UqdmError, match="between 0 and 3"):
        files.truncate(data, steps=4)
    start = fi.layers[-2].end
    step_error = _sse(codec.decode(data, steps=2).pixels, img)
    first = min(c for c in fi.cut_points if c > start)  # the tail's parameters and first chunk
    opening = min(s for s, _ in fi.chunk_spans if s >= start)  # where its first chunk begins
    assert files.truncate(data, max_bytes=opening + 4) == data[:start]  # no word of it: not yet
    for budget in np.linspace(first, len(data) - 1, 5).astype(int):
        cut = files.truncate(data, max_bytes=int(budget))
        assert start < len(cut) <= budget
        out = codec.decode(cut)
        assert not out.lossless and out.steps == 2 and 0 < _sse(out.pixels, img) <= step_error


def test_sampling_stops_where_the_tail_begins(codec, early):
    img, _, tails = early
    data = tails[2]
    drawn = codec.decode(data, steps=2, recon="sample", seed=3)
    assert drawn.recon == "sample" and drawn.shown is not None
    assert not np.array_equal(drawn.pixels, drawn.shown)
    full = codec.decode(data, recon="sample", seed=3)
    assert full.lossless and np.array_equal(full.pixels, img)
    cut = files.truncate(data, max_bytes=(files.info(data).layers[1].end + len(data)) // 2)
    inside = codec.decode(cut, recon="sample", seed=3)  # inside the tail: its own exact image
    assert inside.recon == "mean" and np.array_equal(inside.pixels, codec.decode(cut).pixels)


def test_tiled_files_with_an_early_tail(tiny_model):
    codec = Codec(tiny_model, "cpu", region=32)
    img = synthetic_image(40, 72, seed=4)
    data = codec.encode(img, seed=9, tail_after=1)
    hd, _, parts = container.split_tiled(data)
    assert hd.tiled and hd.tail_after == 1 and len(parts) == 6
    assert all(container.parse(p.data).header.tail_after == 1 for p in parts)
    fi = files.info(data)
    assert fi.complete and len(fi.layers) == 2
    assert np.array_equal(codec.decode(data).pixels, img)
    assert np.array_equal(
        codec.decode(files.truncate(data, steps=1)).pixels, codec.decode(data, steps=1).pixels
    )
    with pytest.raises(UqdmError, match="between 0 and 2"):
        codec.decode(data, steps=3)


def test_streaming_decoder_reads_an_early_tail(codec, early, monkeypatch):
    import uqdm_codec

    img, _, tails = early
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
    for data in tails.values():
        dec = uqdm_codec.Decoder()
        for at in range(0, len(data), 401):
            dec.feed(data[at : at + 401])
        assert dec.latest.lossless and np.array_equal(dec.latest.pixels, img)


def _resealed(header: bytes) -> bytes:
    body = header[:-4]
    return body + crc32(body).to_bytes(4, "little")


def test_forged_headers_are_refused(codec, early):
    _, plain, tails = early
    T = codec.num_steps
    hd, size = container.parse_header(tails[2])
    assert container.parse_header(hd.to_bytes())[0] == hd
    flag_only = bytearray(container.parse_header(plain)[0].to_bytes())
    flag_only[9] |= container.EARLY_TAIL  # without TAIL
    with pytest.raises(FormatError, match="flags"):
        container.parse_header(_resealed(bytes(flag_only)))
    head = bytearray(tails[2][:size])
    name_len = head[46]
    for step in (T - 1, T, 255):
        head[47 + name_len] = step
        with pytest.raises(FormatError, match="invalid tail step"):
            container.parse_header(_resealed(bytes(head)))
    with pytest.raises(ValueError):
        replace(hd, tail_after=T - 1).to_bytes()
    # the header byte changed but the layers kept: the decoder refuses the file, never shows it
    head[47 + name_len] = 3
    with pytest.raises(FormatError):
        codec.decode(_resealed(bytes(head)) + tails[2][size:])


def test_cli_tail_after(tmp_path, tiny_model_path):
    src = tmp_path / "a.png"
    pixels = synthetic_image(40, 48, seed=8)
    Image.fromarray(pixels).save(src)
    r = run("encode", src, "-o", tmp_path / "e.uqd", "-m", tiny_model_path, "--seed", 2, "--tail-after", 2)
    assert r.exit_code == 0, r.output
    assert container.parse_header((tmp_path / "e.uqd").read_bytes())[0].tail_after == 2
    r = run("info", tmp_path / "e.uqd")
    assert r.exit_code == 0 and "3 of 3 layers" in r.output
    assert "2 diffusion steps + lossless tail" in " ".join(r.output.split())
    # the content column's cells, joined across the lines a narrow terminal wraps them onto
    content = " ".join(line.split("│")[2].strip() for line in r.output.splitlines() if line.count("│") >= 7)
    assert f"lossless tail after step 2 (form {lossless_tail.FORM})" in content
    r = run("decode", tmp_path / "e.uqd", "-o", tmp_path / "e.png", "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "e.png")), pixels)
    r = run("decode", tmp_path / "e.uqd", "-o", tmp_path / "e2.png", "--steps", 2, "-m", tiny_model_path)
    assert r.exit_code == 0 and "after 2 of 2 steps" in " ".join(r.output.split()), r.output
    for args in (["--tail-after", 99], ["--tail-after", -1], ["--tail-after", 1, "--tail", "auto"]):
        r = run("encode", src, "-o", tmp_path / "x.uqd", "-m", tiny_model_path, *args)
        assert_one_line_error(r)
        assert "tail" in r.stderr
    assert not (tmp_path / "x.uqd").exists()
    r = run("decode", tmp_path / "e.uqd", "-o", tmp_path / "e4.png", "--steps", 4, "-m", tiny_model_path)
    assert_one_line_error(r)


def test_bench_with_an_early_tail(tmp_path, codec, tiny_model_path):
    from uqdm_codec import bench

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(synthetic_image(40, 48, seed=1)).save(folder / "a.png")
    summary, results = bench.run(folder, codec, baselines=False, tail_after=2)
    assert summary["lossless_ok"] and summary["tail"] and summary["tail_after"] == 2
    assert len(summary["uqdm_layers"]) == 4  # header-only preview, steps 1-2, the tail
    assert np.isinf(results[0].layer_psnr[-1])
    r = run(
        "bench", folder, "-m", tiny_model_path, "--out", tmp_path / "out", "--no-baselines", "--tail-after", 9
    )
    assert_one_line_error(r)
