"""A second reader of .uqd bytes, written from docs/FORMAT.md sections 1, 1.1, 1.2, 2 and 2.1 alone.

Nothing here imports uqdm_codec. It finds what the document says a file holds: the header's
fields, every layer record (which region and layer, its kind, its chunks with their element
counts and flags), cut chunks, truncated tails, and the chunk boundaries in file order.
tests/test_format_spec.py compares it with the reference (`uqdm_codec.files.info`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

MAGIC = bytes([0x89, 0x55, 0x51, 0x44, 0x0D, 0x0A, 0x1A, 0x0A])


class Refused(Exception):
    """The document says: refuse (corruption, or a file this version does not read)."""


class Short(Exception):
    """The bytes end inside what is being read."""


@dataclass
class Chunk:
    count: int
    flags: int
    words: int
    start: int  # file offset of its CRC field
    end: int  # file offset after the chunk (or after the words kept, if cut)
    cut: bool = False


@dataclass
class Record:
    region: int
    layer: int  # 1-based, within the region
    kind: int
    start: int
    header_end: int
    n: int  # chunks the layer header announces
    chunks: list[Chunk] = field(default_factory=list)
    short: bool = False  # the bytes end inside a chunk that is not cut
    fields: dict = field(default_factory=dict)  # the layer header's fields by name

    @property
    def end(self) -> int:
        return self.chunks[-1].end if self.chunks else self.header_end

    @property
    def complete(self) -> bool:
        return len(self.chunks) == self.n and not self.chunks[-1].cut


@dataclass
class SpecFile:
    version: int
    flags: int
    width: int
    height: int
    steps: int
    tile16: int
    fingerprint: bytes
    seed: int
    name: str
    tail_step: int | None
    tail_form: int | None
    region_size: tuple[int, int] | None
    extensions: dict[int, bytes]  # bit -> the field's stored bytes
    header_end: int
    records: list[Record]
    complete: bool
    truncated_tail: bool

    @property
    def regions(self) -> int:
        if self.region_size is None:
            return 1
        rw, rh = self.region_size
        return -(-self.width // rw) * -(-self.height // rh)

    @property
    def mirrors(self) -> int:
        return {0: 1, 1: 2, 2: 4}[(self.flags >> 1) & 3]

    @property
    def layers(self) -> int:
        """Layers per region: T+1, or TS+1 with the TAIL flag."""
        return self.tail_step + 1 if self.tail_step is not None else self.steps + 1

    def layer_ends(self) -> list[int]:
        """Where each layer that every region holds whole ends: its last region's record."""
        whole = [r for r in self.records if r.complete]
        return [r.end for r in whole[self.regions - 1 :: self.regions]]

    def chunk_boundaries(self) -> list[int]:
        """The end of the header, then the end of every chunk present, in file order."""
        return [self.header_end] + [c.end for r in self.records for c in r.chunks]


class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Short
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u(self, fmt: str) -> int:
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size))[0]

    def varint(self, max_bytes: int = 5) -> int:
        value = 0
        for i in range(max_bytes):
            byte = self.u("B")
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value
        raise Refused("varint too long")


def crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def read_header(data: bytes) -> tuple[dict, int]:
    r = Reader(data)
    if r.take(8) != MAGIC:
        raise Refused("magic")
    version = r.u("B")
    if version not in (7, 8, 9):
        raise Refused(f"version {version}")
    flags = r.u("B")
    width, height, channels, steps, tile16 = r.u("I"), r.u("I"), r.u("B"), r.u("B"), r.u("H")
    if not (1 <= width <= 65535 and 1 <= height <= 65535 and width * height <= 1 << 26):
        raise Refused("size")
    if channels != 3 or not 1 <= steps <= 64 or tile16 < 1:
        raise Refused("channels, steps or tile")
    fingerprint, seed = r.take(16), r.u("Q")
    name = r.take(r.u("B")).decode("utf-8")
    tail, early, signed, form_byte = flags & 8, flags & 32, flags & 64, flags & 128
    tail_step = tail_form = None
    if tail:
        tail_step = r.u("B") if early else steps - 1
        if early and tail_step > steps - 2:
            raise Refused("tail step")
        tail_form = r.u("B") if form_byte else (3 if signed else 2 if flags & 16 else 1)
    region_size = (r.u("H"), r.u("H")) if flags & 1 else None
    extensions: dict[int, bytes] = {}
    if version == 9:
        bits = r.u("B")
        for bit in range(8):
            if bits >> bit & 1:
                extensions[bit] = r.take(r.varint())
    if crc(data[: r.pos]) != r.u("I"):
        raise Refused("header CRC")
    if 5 in extensions and extensions[5] != b"\x01":  # 1.2 bit 5: the grayscale mark, one byte 1
        raise Refused("grayscale mark")
    if 6 in extensions and (5 not in extensions or 0 in extensions):  # 1.2 bit 6: a gray image's profile
        raise Refused("gray colour profile")
    fields = dict(
        version=version,
        flags=flags,
        width=width,
        height=height,
        steps=steps,
        tile16=tile16,
        fingerprint=fingerprint,
        seed=seed,
        name=name,
        tail_step=tail_step,
        tail_form=tail_form,
        region_size=region_size,
        extensions=extensions,
    )
    return fields, r.pos


def read_record(data: bytes, pos: int, region: int, layer: int, last: bool, tail: bool) -> Record:
    """One layer record (2): raises Short where the bytes end inside its layer header; where they
    end inside a chunk, the record holds the chunks before it (and the chunk itself if it is cut)."""
    r = Reader(data, pos)
    kind, index, partition, n = r.u("B"), r.u("B"), r.u("B"), r.u("B")
    fields: dict = {"partition": partition, "display_check": r.u("I")}
    expected = (3 if tail else 2) if last else 1
    if kind != expected or index != layer or partition not in (0, 1) or n < 1:
        raise Refused(f"layer header {kind} {index} {partition} {n}")
    if kind == 1:
        mask = r.u("B")
        fields["colour"] = {
            b: struct.unpack("<bBbbB", r.take(5)) for b in range(8) if mask >> b & 1
        }  # a10, f1, a20, a21, f2
        fields["from_display"] = r.u("B")
        radius = r.u("B")
        if radius > 2:
            raise Refused("display filter radius")
        fields["filter"] = None
        if radius:
            k = 2 * radius + 1
            values = struct.unpack(f"<{9 * k * k + 3}h", r.take(2 * (9 * k * k + 3)))
            fields["filter"] = (radius, values[:-3], values[-3:])
    elif kind == 2:
        fields["lossless"] = None
        if r.u("B") == 1:
            fields["lossless"] = [struct.unpack("<12bB", r.take(13)) for _ in range(3)]
    else:
        size = r.varint()
        if size > 65536:
            raise Refused("tail parameters")
        fields["tail"] = r.take(size)
    spans = [(r.varint(), r.varint()) for _ in range(n)]
    if crc(data[pos : r.pos]) != r.u("I"):
        raise Refused("layer CRC")
    record = Record(region, layer, kind, pos, r.pos, n, fields=fields)
    for number, words in spans:
        start = r.pos
        if r.pos + 4 > len(data):
            record.short = True
            return record
        stored = r.u("I")  # payload CRC
        payload_end = r.pos + 4 * words
        if payload_end <= len(data):
            if crc(data[r.pos : payload_end]) != stored:
                raise Refused("chunk CRC")
            r.pos = payload_end
            record.chunks.append(Chunk(number >> 2, number & 3, words, start, payload_end))
            continue
        kept = (len(data) - r.pos) // 4
        if 2 <= kept < words and r.pos + 4 * kept == len(data) and crc(data[r.pos :]) == stored:
            record.chunks.append(Chunk(number >> 2, number & 3, words, start, len(data), cut=True))
        else:
            record.short = True  # a truncated tail: ignored
        return record
    return record


def read(data: bytes) -> SpecFile:
    fields, pos = read_header(data)
    spec = SpecFile(**fields, header_end=pos, records=[], complete=False, truncated_tail=False)
    total = spec.layers * spec.regions
    for j in range(total):
        if pos == len(data):
            return spec
        region, layer = j % spec.regions, j // spec.regions + 1
        try:
            record = read_record(data, pos, region, layer, layer == spec.layers, spec.tail_step is not None)
        except Short:
            spec.truncated_tail = True
            return spec
        spec.records.append(record)
        if record.short or (record.chunks and record.chunks[-1].cut):
            spec.truncated_tail = record.short
            return spec
        pos = record.end
    if pos != len(data):
        raise Refused("bytes after the last layer")
    spec.complete = True
    return spec


def inflate_whole(stored: bytes) -> bytes:
    """A zlib stream that must end exactly at the field's last byte (1.2)."""
    d = zlib.decompressobj()
    out = d.decompress(stored)
    if not d.eof or d.unused_data:
        raise Refused("zlib stream")
    return out


def alpha(stored: bytes, width: int, height: int) -> bytes:
    """1.2 bit 1: each value the difference to its left neighbour, in column 0 to the value above."""
    d = inflate_whole(stored)
    if len(d) != width * height:
        raise Refused("alpha size")
    out = bytearray(len(d))
    for y in range(height):
        for x in range(width):
            i = y * width + x
            before = out[i - 1] if x else (out[i - width] if y else 0)
            out[i] = (before + d[i]) % 256
    return bytes(out)


def psnr_index(stored: bytes) -> tuple[int, ...]:
    """1.2 bit 4: running sums of varints of at most 3 bytes, filling the field exactly."""
    r, total, entries = Reader(stored), 0, []
    while r.pos < len(stored):
        try:
            total += r.varint(3)
        except Short:
            raise Refused("PSNR index varint runs past the field") from None
        if total > 20000:
            raise Refused("PSNR index entry")
        entries.append(total)
    return tuple(entries)
