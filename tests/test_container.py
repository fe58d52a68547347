"""The .uqd container: header validation before allocation, truncation, framing."""

from __future__ import annotations

import re

import pytest

from uqdm_codec import container, files
from uqdm_codec.container import Chunk, Header, Layer
from uqdm_codec.errors import FormatError, UqdmError


def make_file(num_steps=2, payload=b"abcd" * 3):
    hd = Header(64, 48, num_steps, 42, bytes(range(16)), "m")
    layers = [
        Layer(container.KIND_STEP, i, 1000 + i, [Chunk(payload, 10, 3), Chunk(payload[:4], 3, 0)], 1)
        for i in range(1, num_steps + 1)
    ]
    layers.append(Layer(container.KIND_LOSSLESS, num_steps + 1, 7, [Chunk(payload, 64 * 48 * 3)]))
    return hd, hd.to_bytes() + b"".join(layer.to_bytes() for layer in layers)


def test_parse_round_trip():
    hd, data = make_file()
    parsed = container.parse(data)
    assert parsed.header == hd
    assert [layer.index for layer in parsed.layers] == [1, 2, 3]
    assert parsed.layers[0].display_check == 1001 and parsed.layers[0].chunks[0].payload == b"abcd" * 3
    assert [c.count for c in parsed.layers[1].chunks] == [10, 3] and parsed.layers[1].partition == 1
    assert [(c.show, c.network) for c in parsed.layers[1].chunks] == [(True, True), (False, False)]
    assert not parsed.warnings


def test_varints():
    for v in (0, 1, 127, 128, 300, 2**21, 2**32 - 1):
        enc = container.put_varint(v)
        assert container.get_varint(enc, 0) == (v, len(enc))
        assert container.get_varint(enc[:-1], 0) is None
    with pytest.raises(FormatError):
        container.get_varint(b"\xff" * 6, 0)


def test_chunk_boundaries_are_valid_cut_points():
    _, data = make_file()
    parsed = container.parse(data)
    for end in parsed.chunk_offsets[0]:
        cut = container.parse(data[:end])
        assert cut.partial is not None or len(cut.layers) == 1
        assert not any("ignoring" in w for w in cut.warnings)


def test_every_layer_boundary_prefix_is_valid():
    _, data = make_file()
    fi = files.info(data)
    for end in [fi.header_bytes] + [layer.end for layer in fi.layers]:
        parsed = container.parse(data[:end])
        assert not parsed.warnings


def test_every_other_prefix_warns_or_fails_cleanly():
    _, data = make_file()
    fi = files.info(data)
    boundaries = {fi.header_bytes} | {layer.end for layer in fi.layers}
    for end in range(len(data)):
        if end in boundaries:
            continue
        try:
            parsed = container.parse(data[:end])
        except FormatError:
            assert end < fi.header_bytes
        else:
            assert parsed.warnings


def _header_with(**fields):
    base = dict(
        magic=container.MAGIC,
        version=container.VERSION,
        flags=0,
        w=64,
        h=48,
        ch=3,
        steps=2,
        tile=64,
        fp=bytes(16),
        seed=1,
        name_len=0,
    )
    base.update(fields)
    body = container._HEAD.pack(*base.values())
    return container.sealed(body)


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(w=100000, h=100000), "outside the supported range"),
        (dict(w=60000, h=60000), "outside the supported range"),
        (dict(w=0), "outside the supported range"),
        (dict(ch=4), "channel"),
        (dict(steps=0), "step count"),
        (dict(steps=200), "step count"),
        (dict(version=10), "version 10"),
        (dict(version=1), "version 1 was written by uqdm 0.1.*re-encode"),
        (dict(version=2), "version 2 was written by uqdm 0.2.*re-encode"),
        (dict(version=4), "version 4 was written by uqdm 0.5.*re-encode"),
        (dict(version=6), "version 6 was written by uqdm 0.7-0.10.*re-encode"),
        (dict(flags=16), "flags"),
        (dict(flags=8, version=7), "flags"),  # a lossless tail (FORMAT.md 6.6) needs version 8
        (dict(flags=6), "reserved mirror"),
        (dict(flags=1), "incomplete"),  # tiled: the region size is missing
        (dict(tile=0), "tile"),
    ],
)
def test_absurd_headers_are_refused(fields, message):
    with pytest.raises(FormatError, match=message):
        container.parse(_header_with(**fields))


def test_header_crc_and_magic():
    _, data = make_file()
    with pytest.raises(FormatError, match="bad magic"):
        container.parse(b"UQDX" + data[4:])
    bad = bytearray(data)
    bad[12] ^= 1
    with pytest.raises(FormatError, match="checksum"):
        container.parse(bytes(bad))


@pytest.mark.parametrize(
    "start, says",
    [
        (b"", "not a .uqd file (it is empty)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a .uqd file: a PNG image (uqdm encode"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),
        (b"GIF89a" + bytes(20), "a GIF image"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8L", "a WebP image"),
        (b"\x00\x00\x00\x1cftypavif", "an AVIF or HEIF image"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(8), "a JPEG 2000 image"),
        (b"hello, world\n", "not a .uqd file (bad magic bytes)"),
    ],
)
def test_what_is_not_a_uqd_file_is_named(start, says):
    """decode photo.png used to say only 'bad magic bytes'; an empty file said the same."""
    with pytest.raises(FormatError, match=re.escape(says)):
        container.parse(start)


def test_a_prefix_of_the_magic_is_a_short_file():
    _, data = make_file()
    for n in range(1, 8):
        with pytest.raises(FormatError, match="file too short"):
            container.parse(data[:n])


def test_trailing_garbage_after_last_layer():
    _, data = make_file()
    with pytest.raises(FormatError, match="after the last layer"):
        container.parse(data + b"\x01\x02\x03")


def test_truncate_budgets():
    hd, data = make_file()
    fi = files.info(data)
    assert files.truncate(data, max_bytes=len(data)) == data
    assert files.truncate(data, max_bytes=fi.layers[1].end + 3) == data[: fi.layers[1].end]
    bpp = fi.layers[0].bpp
    assert files.truncate(data, bpp=bpp) == data[: fi.layers[0].end]
    assert files.truncate(data, steps=0) == data[: fi.header_bytes]
    with pytest.raises(UqdmError, match="smaller than the file header"):
        files.truncate(data, max_bytes=3)
    with pytest.raises(UqdmError):
        files.truncate(data, bpp=1.0, steps=1)


def test_a_cut_chunk_is_kept_only_with_its_rewritten_crc():
    """A file ending inside a chunk's payload keeps that chunk as cut when the chunk's CRC covers
    the words present (what truncate writes, FORMAT.md 2.1); a plain prefix of it is a truncated
    tail, as is a cut of fewer than two words (less than the coder's state)."""
    _, data = make_file(payload=bytes(range(40)))
    fi = files.info(data)
    start, end = fi.chunk_spans[0]  # layer 1's first chunk: CRC at start, 40 payload bytes
    assert end - start == 44
    plain = container.parse(data[: start + 4 + 12])
    assert not plain.partial.chunks and any("0 of 2 chunks" in w for w in plain.warnings)
    cut = container.parse(container.cut_chunk_bytes(data, start, start + 4 + 12))
    (chunk,) = cut.partial.chunks
    assert chunk.cut and chunk.payload == bytes(range(12)) and chunk.count == 10 and chunk.network
    assert cut.chunk_offsets[-1] == [start + 16]
    assert any("part of chunk 1" in w for w in cut.warnings)
    again = container.parse(
        container.cut_chunk_bytes(container.cut_chunk_bytes(data, start, start + 16), start, start + 12)
    )
    assert again.partial.chunks[0].payload == bytes(range(8))  # a cut chunk cut again
    with pytest.raises(ValueError):
        container.cut_chunk_bytes(data, start, start + 4 + 4)
    with pytest.raises(ValueError):
        container.cut_chunk_bytes(data, start, start + 4 + 10)


def test_truncate_cuts_inside_the_chunk_a_budget_ends_in():
    _, data = make_file(payload=bytes(range(40)))
    fi = files.info(data)
    start, end = fi.chunk_spans[0]
    for budget in range(start, end + 1):
        out = files.truncate(data, max_bytes=budget)
        words = (budget - start - 4) // 4
        if budget == end:
            assert out == data[:end]
        elif words >= 2:
            assert len(out) == start + 4 + 4 * words and budget - len(out) < 4
            assert out[start + 4 :] == data[start + 4 : len(out)]  # a prefix but the CRC field
            assert container.parse(out).partial.chunks[-1].cut
        else:
            assert out == data[: max(c for c in fi.cut_points if c <= budget)]  # the point before


def test_info_reads_the_header_once(monkeypatch):
    """files.info inflates a header's extensions once (an alpha channel is W x H bytes), not once
    to tell a tiled file and again to parse it."""
    import numpy as np

    read, parse_header = [], container.parse_header

    def counting(data):
        read.append(len(data))
        return parse_header(data)

    monkeypatch.setattr(container, "parse_header", counting)
    alpha = np.arange(72 * 40, dtype=np.uint8).tobytes()
    plain = make_file()[1]
    tiled = Header(72, 40, 8, 5, b"\0" * 16, "m", region=(32, 32), alpha=alpha).to_bytes()
    for data in (plain, tiled):
        read.clear()
        fi = files.info(data)
        assert read.count(len(data)) == 1 and fi.total_bytes == len(data)
    assert files.info(tiled).regions == 6 and files.info(tiled).header.alpha == alpha
