"""The .uqd container: header validation before allocation, truncation, framing."""

from __future__ import annotations

import struct

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
    return body + struct.pack("<I", container.crc32(body))


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(w=100000, h=100000), "outside the supported range"),
        (dict(w=60000, h=60000), "outside the supported range"),
        (dict(w=0), "outside the supported range"),
        (dict(ch=4), "channel"),
        (dict(steps=0), "step count"),
        (dict(steps=200), "step count"),
        (dict(version=9), "version 9"),
        (dict(version=1), "version 1 was written by uqdm 0.1.*re-encode"),
        (dict(version=2), "version 2 was written by uqdm 0.2.*re-encode"),
        (dict(flags=1), "flags"),
        (dict(tile=0), "tile"),
    ],
)
def test_absurd_headers_are_refused(fields, message):
    with pytest.raises(FormatError, match=message):
        container.parse(_header_with(**fields))


def test_header_crc_and_magic():
    _, data = make_file()
    with pytest.raises(FormatError, match="magic"):
        container.parse(b"GIF89a" + data[6:])
    bad = bytearray(data)
    bad[12] ^= 1
    with pytest.raises(FormatError, match="checksum"):
        container.parse(bytes(bad))


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
