"""The .uqd container: header, then one layer per diffusion step, then the lossless layer.

Byte layout (all integers little-endian) is specified in docs/FORMAT.md. Parsing validates every
field before anything is allocated from it, and separates three outcomes:
- a clean prefix (ends on a layer or chunk boundary): valid, decodes to the last complete point;
- a cut chunk (the data ends inside a chunk whose CRC matches the words present, as `truncate`
  writes it): decoded as far as those words go;
- a truncated tail (an incomplete layer header or chunk): ignored with a warning;
- corruption (bad magic, CRC mismatch, impossible field values): FormatError.
No torch here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from . import alpha_plane, colour, colour_profile, display_filter, lossless_context, photo_metadata
from .display_filter import DisplayFilter
from .errors import FormatError, UqdmError, is_whole
from .lossless_context import LosslessContext

MAGIC = b"\x89UQD\r\n\x1a\n"
VERSION = 8  # what the encoder writes
INTERVALS_VERSION = 8  # the first version whose priors use known intervals (FORMAT.md 5.5)
READ_VERSIONS = (7, 8)  # 7: uqdm 0.11-0.12, decoded as they decoded it (no known intervals)
EXTENDED_VERSION = 9  # version 8 whose header ends in extensions (FORMAT.md 1.2): written only when needed
_READABLE = f"{', '.join(map(str, READ_VERSIONS))} and {EXTENDED_VERSION}"  # for messages
EXT_ICC = 1  # extension bit 0: the header holds the image's ICC colour profile
EXT_ALPHA = 2  # extension bit 1: the header holds the image's alpha channel
EXT_EXIF = 4  # extension bit 2: the header holds the photo's EXIF block
EXT_XMP = 8  # extension bit 3: the header holds the photo's XMP packet
EXT_PSNR = 16  # extension bit 4: the header holds the PSNR of the image at every chunk boundary
EXT_GRAY = 32  # extension bit 5: the image is grayscale; decoders show one plane, the mean of R, G, B
GRAY_MARK = b"\x01"  # the GRAY extension's field: one byte, 1
EXT_GRAY_ICC = 64  # extension bit 6: the header holds a grayscale image's gray ICC colour profile
# bit 7: skipped, with a warning
KNOWN_EXTENSIONS = EXT_ICC | EXT_ALPHA | EXT_EXIF | EXT_XMP | EXT_PSNR | EXT_GRAY | EXT_GRAY_ICC
PSNR_PER_DB = 100  # PSNR index entries are hundredths of a dB (FORMAT.md 1.2)
PSNR_EXACT = 20000  # the index entry of an exact image; any other image of at most MAX_PIXELS is below 132 dB
MAX_UNKNOWN_STORED = 1 << 24  # an unknown extension's field, at most (FORMAT.md 1.2)
MAX_ICC_STORED = colour_profile.MAX_SIZE + (1 << 16)  # a stored (deflated) profile's bytes, at most
MAX_GRAY_ICC_STORED = MAX_UNKNOWN_STORED  # bit 6's: what decoders that skip it (0.38-0.50) accept
OLD_VERSIONS = {  # refused with a clear message
    1: "uqdm 0.1 before sub-step display flags",
    2: "uqdm 0.2, whose float network decoded only where the file was written",
    3: "uqdm 0.4, whose chunks could not be cut and whose model is no longer shipped",
    4: "uqdm 0.5, before colour context",
    5: "uqdm 0.6, before display filters",
    6: "uqdm 0.7-0.10, before the lossless layer's spatial context",
}
MIN_CUT_WORDS = 2  # a cut chunk holds at least the coder's 64-bit state
MAX_SIDE = 65535
MAX_PIXELS = 1 << 26  # 67 megapixels: what the decoder can hold in 24 GiB with room to spare
MAX_STEPS = 64
MAX_NAME = 64

MAX_REGIONS = 4096  # regions of a tiled file (FORMAT.md 1.1)
TILED = 1  # header flag: the image is coded as a grid of independent regions (FORMAT.md 1.1)
MIRROR_SHIFT, MIRROR_MASK = 1, 0b110  # header flag bits 1-2: the network's mirror ensemble (FORMAT.md 2)
TAIL = 8  # header flag bit 3: the last layer is an interlaced lossless tail (FORMAT.md 6.6)
TAIL_COLOURS = 16  # bit 4, only with TAIL: the tail's form 2 or later (earlier colours' levels, errors)
EARLY_TAIL = 32  # bit 5, only with TAIL: the tail follows step S < T-1, a header byte after the model name
TAIL_SIGNED = 64  # bit 6, only with TAIL_COLOURS: the tail's form 3 (also the neighbours' signed errors)
TAIL_FORM_BYTE = 128  # bit 7, only with TAIL_SIGNED: a header byte holds the tail's form, 4 or later
TAIL_FORM = 11  # the tail form new files get (lossless_tail.FORM); 1: uqdm 0.23-0.25, ... 10: 0.34
MIRROR_CODES = {1: 0, 2: 1, 4: 2}  # mirrors -> the 2-bit code (3 is reserved)
_MIRRORS_OF_CODE = {code: m for m, code in MIRROR_CODES.items()}
_REGION = struct.Struct("<HH")  # a tiled file's region width and height, after the model name
SEED_STRIDE = 0x9E3779B97F4A7C15  # region r's seed: file seed + r * SEED_STRIDE, modulo 2^64

KIND_STEP = 1
KIND_LOSSLESS = 2
KIND_TAIL = 3  # the last layer of a file with the TAIL flag: exact pixels from exact neighbours
MAX_TAIL_PARAMS = 1 << 16  # bytes of a tail layer's parameters (13 passes x 3 colours need ~3 KB)
PARTITION_NATURAL = 0  # elements in their natural order (band, then C order; pixels in C order)
PARTITION_IMPORTANCE = 1  # elements sorted by the prior's scale / quantiser step, largest first

_HEAD = struct.Struct(
    "<8sBBIIBBH16sQB"
)  # magic, version, flags, w, h, channels, T, tile/16, fp, seed, name len
_LAYER = struct.Struct("<BBBBI")  # kind, index, partition, n_chunks, display check
_U32 = struct.Struct("<I")
_CHUNK = struct.Struct("<I")  # payload CRC32
CHUNK_CRC_BYTES = _CHUNK.size  # a chunk's framing before its payload


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def sealed(body: bytes) -> bytes:
    """A file or layer header: its body, then the body's CRC32 (FORMAT.md 1 and 2)."""
    return body + _U32.pack(crc32(body))


def put_varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, high bit set on all but the last."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def get_varint(data: bytes, pos: int, limit: int = 5) -> tuple[int, int] | None:
    """(value, next position), or None if the data ends first. At most `limit` bytes."""
    value = 0
    for k in range(limit):
        if pos + k >= len(data):
            return None
        byte = data[pos + k]
        value |= (byte & 0x7F) << (7 * k)
        if not byte & 0x80:
            return value, pos + k + 1
    raise FormatError("malformed number in a layer header")


def image_mode(gray: bool, alpha: bool) -> str:
    """The Pillow mode of a decoded image: L for a grayscale image's file (FORMAT.md 1.2) or RGB,
    with an alpha channel LA or RGBA."""
    return ("L" if gray else "RGB") + ("A" if alpha else "")


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    num_steps: int
    seed: int
    fingerprint: bytes
    model_name: str
    tile: int = 1024  # the encoder's network tile side (informative: any tiling gives the same result)
    channels: int = 3
    region: tuple[int, int] | None = None  # a tiled file's region width and height (FORMAT.md 1.1)
    mirrors: int = 1  # network passes averaged per prediction: 1, 2 or 4 (ensemble.py)
    version: int = VERSION  # 7: written without known intervals (uqdm 0.11-0.12)
    tail: bool = False  # the last layer is a lossless tail (FORMAT.md 6.6), after step T-1 or tail_after
    tail_form: int = TAIL_FORM  # the tail's features (FORMAT.md 6.6)
    tail_after: int | None = None  # the step S < T-1 an early tail follows (EARLY_TAIL); None: T-1
    # the image's ICC colour profile (FORMAT.md 1.2): RGB, or GRAY for a grayscale image (bit 6)
    icc_profile: bytes | None = None
    alpha: bytes | None = None  # the image's alpha channel, H x W bytes row-major (FORMAT.md 1.2)
    exif: bytes | None = None  # the photo's EXIF metadata, a TIFF-structured block (FORMAT.md 1.2)
    xmp: bytes | None = None  # the photo's XMP packet (FORMAT.md 1.2)
    # the image's PSNR at the file's chunk boundaries in file order, in 1/PSNR_PER_DB dB (FORMAT.md 1.2)
    psnr_index: tuple[int, ...] | None = None
    gray: bool = False  # the image is grayscale (R = G = B): shown as one plane (FORMAT.md 1.2)
    unknown_extensions: int = 0  # extension bits this decoder skipped (a newer uqdm wrote them)

    @property
    def extensions(self) -> int:
        """The extension byte E this header writes (FORMAT.md 1.2): 0 for a version-8 header."""
        profiles = self._profiles()
        fields = (
            profiles[0],
            self.alpha,
            self.exif,
            self.xmp,
            self.psnr_index,
            self.gray or None,
            profiles[1],
        )
        bits = (EXT_ICC, EXT_ALPHA, EXT_EXIF, EXT_XMP, EXT_PSNR, EXT_GRAY, EXT_GRAY_ICC)
        return sum(bit for bit, f in zip(bits, fields) if f is not None)

    def _profiles(self) -> tuple[bytes | None, bytes | None]:
        """The colour profile as bit 0's field (RGB) or as bit 6's (GRAY), the other None."""
        if self.icc_profile is not None and colour_profile.is_gray(self.icc_profile):
            return None, self.icc_profile
        return self.icc_profile, None

    @property
    def mode(self) -> str:
        """The Pillow mode of the images decoded from the file (image_mode)."""
        return image_mode(self.gray, self.alpha is not None)

    def extension_problem(self) -> tuple[str, str] | None:
        """(what, why) of the first of the profile, EXIF and XMP that this header cannot store
        (FORMAT.md 1.2), or None."""
        profile = self.icc_profile
        if profile is not None and colour_profile.is_gray(profile):
            if not self.gray:
                return "colour profile", "a GRAY profile describes a grayscale image, and this one is RGB"
            if len(colour_profile.pack(profile)) > MAX_GRAY_ICC_STORED:
                return "colour profile", "it does not compress to 16 MiB (FORMAT.md 1.2, bit 6)"
        for what, value, problem in (
            ("colour profile", profile, lambda p: colour_profile.problem(p, colour_profile.is_gray(p))),
            ("EXIF metadata", self.exif, photo_metadata.exif_problem),
            ("XMP metadata", self.xmp, photo_metadata.xmp_problem),
        ):
            if value is not None and (why := problem(value)):
                return what, why
        return None

    def without_extensions(self) -> Header:
        """The same header with no extension: the one chunk sizes are counted from."""
        return replace(
            self,
            icc_profile=None,
            alpha=None,
            exif=None,
            xmp=None,
            psnr_index=None,
            gray=False,
            unknown_extensions=0,
        )

    @property
    def num_layers(self) -> int:
        """Layers of a complete file: T steps and the lossless layer, or S steps and the tail."""
        return self.coded_steps + 1

    @property
    def coded_steps(self) -> int:
        """Diffusion steps the file codes: T, or S (T-1 unless the tail is early) before a tail."""
        if not self.tail:
            return self.num_steps
        return self.num_steps - 1 if self.tail_after is None else self.tail_after

    @property
    def max_steps(self) -> int:
        """The largest `steps` a decoder takes: T (the pixel step), or the tail's layer S + 1."""
        return min(self.num_layers, self.num_steps)

    def check_steps(self, steps: int) -> None:
        """UqdmError unless steps is a whole number 0 <= steps <= max_steps: what every `steps`
        argument must satisfy (2.0 or True would index layers as if they were 2 and 1)."""
        if not is_whole(steps):
            raise UqdmError(f"steps must be a whole number, not {steps!r}")
        if not 0 <= steps <= self.max_steps:
            raise UqdmError(f"steps must be between 0 and {self.max_steps}")

    def check_steps_held(self, steps: int, have: int, verb: str = "decode") -> None:
        """check_steps, then UqdmError unless the file's `have` complete layers reach step `steps`:
        one message for decode, tiled decode, streaming decode and truncate."""
        self.check_steps(steps)
        have = min(have, self.max_steps)
        if steps > have:
            raise UqdmError(f"the file holds only {have} complete steps; cannot {verb} {steps}")

    def last_kind(self) -> int:
        return KIND_TAIL if self.tail else KIND_LOSSLESS

    @property
    def intervals(self) -> bool:
        """Whether the chain keeps known intervals (FORMAT.md 5.5): version 8 on."""
        return self.version >= INTERVALS_VERSION

    @property
    def tiled(self) -> bool:
        return self.region is not None

    def regions(self) -> list[tuple[int, int, int, int]]:
        """(x0, y0, x1, y1) of each region in coding order (rows of regions, left to right); the
        whole image for an untiled file."""
        rw, rh = self.region or (self.width, self.height)
        return [
            (x, y, min(x + rw, self.width), min(y + rh, self.height))
            for y in range(0, self.height, rh)
            for x in range(0, self.width, rw)
        ]

    def region_header(self, r: int) -> Header:
        """Region r of a tiled file as the untiled file it is coded as (FORMAT.md 1.1)."""
        x0, y0, x1, y1 = self.regions()[r]
        seed = (self.seed + r * SEED_STRIDE) % (1 << 64)
        return Header(
            x1 - x0,
            y1 - y0,
            self.num_steps,
            seed,
            self.fingerprint,
            self.model_name,
            self.tile,
            mirrors=self.mirrors,
            version=self.version,
            tail=self.tail,
            tail_form=self.tail_form,
            tail_after=self.tail_after,
        )

    def to_bytes(self) -> bytes:
        name = self.model_name.encode("utf-8")
        if len(name) > MAX_NAME:
            raise ValueError("model name too long")
        if self.tile % 16 or not 16 <= self.tile <= 16 * 65535:
            raise ValueError("tile must be a positive multiple of 16")
        if self.mirrors not in MIRROR_CODES:
            raise ValueError(f"mirrors must be one of {sorted(MIRROR_CODES)}")
        if self.version not in READ_VERSIONS:
            raise ValueError(f"version must be one of {READ_VERSIONS}")
        extended = self.extensions != 0
        if extended and self.version != VERSION:
            raise ValueError(f"header extensions need version {VERSION}'s chain")
        if self.alpha is not None and len(self.alpha) != self.width * self.height:
            raise ValueError("the alpha channel must hold width x height bytes")
        if problem := self.extension_problem():
            raise ValueError(f"{problem[0]}: {problem[1]}")
        early = self.tail and self.tail_after is not None
        if early and not 0 <= self.tail_after < self.num_steps - 1:
            raise ValueError(f"an early tail follows a step from 0 to {self.num_steps - 2}")
        body = (
            _HEAD.pack(
                MAGIC,
                EXTENDED_VERSION if extended else self.version,
                (TILED if self.region else 0)
                | (TAIL if self.tail else 0)
                | (TAIL_COLOURS if self.tail and self.tail_form >= 2 else 0)
                | (TAIL_SIGNED if self.tail and self.tail_form >= 3 else 0)
                | (EARLY_TAIL if early else 0)
                | (TAIL_FORM_BYTE if self.tail and self.tail_form >= 4 else 0)
                | MIRROR_CODES[self.mirrors] << MIRROR_SHIFT,
                self.width,
                self.height,
                self.channels,
                self.num_steps,
                self.tile // 16,
                self.fingerprint,
                self.seed,
                len(name),
            )
            + name
        )
        if early:
            body += bytes([self.tail_after])
        if self.tail and self.tail_form >= 4:
            body += bytes([self.tail_form])
        if self.region:
            body += _REGION.pack(*self.region)
        if extended:
            body += bytes([self.extensions])
        rgb_profile, gray_profile = self._profiles()
        for stored in (
            None if rgb_profile is None else colour_profile.pack(rgb_profile),
            None if self.alpha is None else alpha_plane.pack(self.alpha_plane()),
            None if self.exif is None else photo_metadata.pack(self.exif),
            None if self.xmp is None else photo_metadata.pack(self.xmp),
            None if self.psnr_index is None else pack_psnr_index(self.psnr_index),
            GRAY_MARK if self.gray else None,
            None if gray_profile is None else colour_profile.pack(gray_profile),
        ):
            if stored is not None:
                body += put_varint(len(stored)) + stored
        return sealed(body)

    def alpha_plane(self) -> np.ndarray | None:
        """The alpha channel as an (H, W) uint8 array, or None."""
        if self.alpha is None:
            return None
        return np.frombuffer(self.alpha, np.uint8).reshape(self.height, self.width)


SHOW = 1  # chunk flag: the decoder shows this chunk's image (else it keeps the image it showed)
NETWORK = 2  # chunk flag: this chunk's image is the network's display at the partial state


@dataclass
class Chunk:
    payload: bytes  # ANS words, little-endian u32
    count: int  # number of elements (symbols) the chunk codes
    flags: int = SHOW  # SHOW | NETWORK bits, see docs/FORMAT.md section 6.3
    cut: bool = False  # payload is a prefix of the chunk's words (FORMAT.md 2.1)

    @property
    def show(self) -> bool:
        return bool(self.flags & SHOW)

    @property
    def network(self) -> bool:
        return bool(self.flags & NETWORK)


@dataclass
class Layer:
    kind: int
    index: int
    display_check: int
    chunks: list[Chunk]
    partition: int = 0
    context: colour.Context = ()  # a step layer's colour context (FORMAT.md 6.4)
    display_filter: DisplayFilter | None = None  # a step layer's display filter (FORMAT.md 6.5)
    from_display: int = 0  # bands whose prior locations come from the shown image (FORMAT.md 6.5)
    lossless_context: LosslessContext | None = None  # the lossless layer's spatial context (FORMAT.md 6.2)
    tail_params: bytes = b""  # a tail layer's predictor and scale parameters (FORMAT.md 6.6)

    def header_bytes(self) -> bytes:
        body = _LAYER.pack(self.kind, self.index, self.partition, len(self.chunks), self.display_check)
        if self.kind == KIND_STEP:
            body += colour.to_bytes(self.context) + bytes([self.from_display])
            body += display_filter.to_bytes(self.display_filter)
        elif self.kind == KIND_LOSSLESS:
            body += lossless_context.to_bytes(self.lossless_context)
        elif self.kind == KIND_TAIL:
            body += put_varint(len(self.tail_params)) + self.tail_params
        body += b"".join(
            put_varint(4 * c.count + c.flags) + put_varint(len(c.payload) // 4) for c in self.chunks
        )
        return sealed(body)

    def to_bytes(self) -> bytes:
        parts = [self.header_bytes()]
        for c in self.chunks:
            if len(c.payload) % 4:
                raise ValueError("chunk payloads are whole 32-bit words")
            parts.append(_CHUNK.pack(crc32(c.payload)))
            parts.append(c.payload)
        return b"".join(parts)

    @property
    def size(self) -> int:
        return len(self.header_bytes()) + sum(_CHUNK.size + len(c.payload) for c in self.chunks)


@dataclass
class ParsedFile:
    header: Header
    header_size: int
    layers: list[Layer]  # complete layers, in order
    partial: Layer | None = None  # an incomplete last layer: its complete chunks (the last maybe cut)
    partial_expected_chunks: int = 0
    warnings: list[str] = field(default_factory=list)
    layer_offsets: list[int] = field(default_factory=list)  # end offset of each complete layer
    chunk_offsets: list[list[int]] = field(default_factory=list)  # end offset of each chunk


_IMAGE_MAGICS = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "a JPEG XL image"),
)


def _not_uqd(data: bytes) -> str:
    """Why `data` is not a .uqd file, naming an image format where it is one (a common slip:
    decode photo.png)."""
    if not data:
        return "not a .uqd file (it is empty)"
    kind = next((name for magic, name in _IMAGE_MAGICS if data.startswith(magic)), None)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "a WebP image"
    if kind is None and data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis", b"heic", b"mif1"):
        kind = "an AVIF or HEIF image"
    if kind is not None:
        return f"not a .uqd file: {kind} (uqdm encode compresses images)"
    return "not a .uqd file (bad magic bytes)"


def parse_header(data: bytes) -> tuple[Header, int]:
    if len(data) < len(MAGIC) and data and MAGIC.startswith(bytes(data)):
        raise FormatError("file too short: the .uqd header is incomplete")
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError(_not_uqd(bytes(data[:16])))
    if len(data) < _HEAD.size:
        raise FormatError("file too short: the .uqd header is incomplete")
    magic, version, flags, w, h, ch, steps, tile16, fp, seed, name_len = _HEAD.unpack_from(data)
    if version in OLD_VERSIONS:
        raise FormatError(
            f".uqd version {version} was written by {OLD_VERSIONS[version]}; this decoder reads versions "
            f"{_READABLE}: re-encode the image from its original"
        )
    if version not in (*READ_VERSIONS, EXTENDED_VERSION):
        raise FormatError(f"unsupported .uqd version {version} (this decoder reads versions {_READABLE})")
    if (
        flags & ~(TILED | MIRROR_MASK | TAIL | TAIL_COLOURS | EARLY_TAIL | TAIL_SIGNED | TAIL_FORM_BYTE)
        or (flags & TAIL and version < VERSION)
        or (flags & (TAIL_COLOURS | EARLY_TAIL) and not flags & TAIL)
        or (flags & TAIL_SIGNED and not flags & TAIL_COLOURS)
        or (flags & TAIL_FORM_BYTE and not flags & TAIL_SIGNED)
    ):
        raise FormatError(f"unsupported .uqd header flags {flags:#x}")
    mirror_code = (flags & MIRROR_MASK) >> MIRROR_SHIFT
    mirrors = _MIRRORS_OF_CODE.get(mirror_code)
    if mirrors is None:
        raise FormatError(f"unsupported .uqd header flags {flags:#x} (reserved mirror ensemble code)")
    early = 1 if flags & EARLY_TAIL else 0  # the tail's step byte
    formed = 1 if flags & TAIL_FORM_BYTE else 0  # the tail's form byte
    body = _HEAD.size + name_len + early + formed + (_REGION.size if flags & TILED else 0)
    spans: dict[int, tuple[int, int]] = {}
    unknown = 0
    if version == EXTENDED_VERSION:
        body, spans, unknown = _extension_spans(data, body, w * h)
    end = body + _U32.size
    if len(data) < end:
        raise FormatError("file too short: the .uqd header is incomplete")
    (stored,) = _U32.unpack_from(data, body)
    if crc32(data[:body]) != stored:
        raise FormatError("corrupted .uqd header (checksum mismatch)")
    if ch != 3:
        raise FormatError(f"unsupported channel count {ch}")
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE) or w * h > MAX_PIXELS:
        raise FormatError(
            f"image size {w}x{h} in header is outside the supported range "
            f"(at most {MAX_SIDE} per side and {MAX_PIXELS} pixels)"
        )
    if not 1 <= steps <= MAX_STEPS:
        raise FormatError(f"invalid step count {steps} in header")
    if tile16 == 0:
        raise FormatError("invalid tile size 0 in header")
    if name_len > MAX_NAME:
        raise FormatError("invalid model name length in header")
    try:
        name = data[_HEAD.size : _HEAD.size + name_len].decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("invalid model name in header") from None
    tail_after = data[_HEAD.size + name_len] if early else None
    if tail_after is not None and not tail_after < steps - 1:
        raise FormatError(
            f"invalid tail step {tail_after} in header (an early tail follows steps 0 to {steps - 2})"
        )
    tail_form = _tail_form(flags)
    if formed:
        tail_form = data[_HEAD.size + name_len + early]
        if tail_form < 4:
            raise FormatError(f"invalid tail form {tail_form} in header (a form byte holds 4 or later)")
        if tail_form > TAIL_FORM:
            raise FormatError(
                f"the lossless tail is of form {tail_form}; this decoder reads forms 1 to {TAIL_FORM}: "
                "a newer uqdm wrote it"
            )
    region = None
    if flags & TILED:
        region = _REGION.unpack_from(data, _HEAD.size + name_len + early + formed)
        rw, rh = region
        if not (16 <= rw and 16 <= rh and rw % 16 == 0 and rh % 16 == 0):
            raise FormatError(f"invalid region size {rw}x{rh} in header")
        if -(-w // rw) * -(-h // rh) > MAX_REGIONS:
            raise FormatError(f"region size {rw}x{rh} gives more than {MAX_REGIONS} regions")

    if EXT_GRAY_ICC in spans and (EXT_GRAY not in spans or EXT_ICC in spans):
        raise FormatError(
            "corrupted .uqd header (a gray colour profile needs the grayscale mark, and no RGB one)"
        )

    def field_of(bit: int, unpack):  # an extension's field, inflated only now: after the CRC check
        return unpack(data[slice(*spans[bit])]) if bit in spans else None

    header = Header(
        w,
        h,
        steps,
        seed,
        fp,
        name,
        16 * tile16,
        ch,
        region,
        mirrors,
        VERSION if version == EXTENDED_VERSION else version,  # the chain's version: 9 is 8's
        tail=bool(flags & TAIL),
        tail_form=tail_form,
        tail_after=tail_after,
        icc_profile=field_of(EXT_ICC, colour_profile.unpack) or field_of(EXT_GRAY_ICC, _gray_profile),
        alpha=field_of(EXT_ALPHA, lambda stored: alpha_plane.unpack(stored, w, h).tobytes()),
        exif=field_of(EXT_EXIF, lambda stored: photo_metadata.unpack(stored, "EXIF")),
        xmp=field_of(EXT_XMP, lambda stored: photo_metadata.unpack(stored, "XMP")),
        psnr_index=field_of(EXT_PSNR, unpack_psnr_index),
        gray=bool(field_of(EXT_GRAY, _gray_mark)),
        unknown_extensions=unknown,
    )
    return header, end


def _extension_spans(data: bytes, pos: int, pixels: int) -> tuple[int, dict[int, tuple[int, int]], int]:
    """A version-9 header's extensions, its extension byte at `pos`: where they end (the header
    CRC's offset), the span of each known field present ({bit: (start, end)}) and the bits of the
    unknown ones skipped (FORMAT.md 1.2); FormatError("file too short ...") while the data ends first."""
    if len(data) <= pos:
        raise FormatError("file too short: the .uqd header is incomplete")
    extensions = data[pos]
    pos += 1
    spans: dict[int, tuple[int, int]] = {}
    limits = {
        EXT_ICC: ("colour profile", MAX_ICC_STORED),
        EXT_ALPHA: ("alpha channel", alpha_plane.max_stored(pixels)),
        EXT_EXIF: ("EXIF", photo_metadata.MAX_STORED),
        EXT_XMP: ("XMP", photo_metadata.MAX_STORED),
        EXT_PSNR: ("PSNR index", MAX_UNKNOWN_STORED),
        EXT_GRAY: ("grayscale mark", len(GRAY_MARK)),
        EXT_GRAY_ICC: ("gray colour profile", MAX_GRAY_ICC_STORED),
    }
    for k in range(8):
        bit = 1 << k
        if not extensions & bit:
            continue
        what, limit = limits.get(bit, (f"extension {k}", MAX_UNKNOWN_STORED))
        try:
            size = get_varint(data, pos)
        except FormatError:
            raise FormatError(f"corrupted .uqd header ({what} length)") from None
        if size is None:
            raise FormatError("file too short: the .uqd header is incomplete")
        n, start = size
        if not 0 < n <= limit:
            raise FormatError(f"corrupted .uqd header ({what} length)")
        if bit & KNOWN_EXTENSIONS:  # an unknown field is only skipped
            spans[bit] = (start, start + n)
        pos = start + n
    return pos, spans, extensions & ~KNOWN_EXTENSIONS


def pack_psnr_index(entries: tuple[int, ...]) -> bytes:
    """The PSNR index's field (FORMAT.md 1.2): each entry's increase over the one before (the first
    over 0) as a varint; entries never fall, as the image on screen never gets worse."""
    if not entries or entries[-1] > PSNR_EXACT or any(b < a for a, b in zip((0, *entries), entries)):
        raise ValueError(f"a PSNR index holds at least one entry, from 0 to {PSNR_EXACT}, never falling")
    return b"".join(put_varint(b - a) for a, b in zip((0, *entries), entries))


def unpack_psnr_index(stored: bytes) -> tuple[int, ...]:
    """The entries of a PSNR index's field; FormatError where it is not one pack_psnr_index writes."""
    entries, pos, total = [], 0, 0
    while pos < len(stored):
        try:
            got = get_varint(stored, pos, 3)
        except FormatError:
            got = None
        if got is None:
            raise FormatError("corrupted .uqd header (PSNR index)")
        step, pos = got
        total += step
        if total > PSNR_EXACT:
            raise FormatError("corrupted .uqd header (PSNR index)")
        entries.append(total)
    return tuple(entries)


def _gray_mark(stored: bytes) -> bool:
    """The GRAY extension's field (FORMAT.md 1.2): one byte, 1; FormatError otherwise."""
    if stored != GRAY_MARK:
        raise FormatError("corrupted .uqd header (grayscale mark)")
    return True


def _gray_profile(stored: bytes) -> bytes:
    """The GRAY_ICC extension's profile (FORMAT.md 1.2: a GRAY profile, stored as bit 0's)."""
    return colour_profile.unpack(stored, gray=True)


def unknown_extensions_note(bits: int) -> str:
    """The warning of a file whose header holds extensions this decoder skipped."""
    return (
        f"the header holds extensions {bits:#x} that this decoder does not know (a newer uqdm wrote "
        "them); left out"
    )


def _tail_form(flags: int) -> int:
    """The tail's form from the header flags: 1 without TAIL_COLOURS (uqdm 0.23-0.25), 2 with it
    (0.26), 3 with TAIL_SIGNED too (0.27; with TAIL_FORM_BYTE the header's byte says which later
    form); a file without a tail gets the current form, which it never uses."""
    if not flags & TAIL:
        return TAIL_FORM
    return 1 if not flags & TAIL_COLOURS else 3 if flags & TAIL_SIGNED else 2


def parse(data: bytes, head: tuple[Header, int] | None = None) -> ParsedFile:
    """Split a (possibly truncated) .uqd byte string into header and layers; `head`: what
    parse_header(data) returned, where the caller has it (the header is not read again)."""
    data = bytes(data)
    header, pos = head if head is not None else parse_header(data)
    if header.tiled:
        raise ValueError("a tiled file is parsed region by region: split_tiled()")
    out = ParsedFile(header, pos, [])
    expected_index = 1
    while pos < len(data):
        if expected_index > header.num_layers:  # the file before them is whole
            raise FormatError(f"unexpected data after the last layer ({len(data) - pos} bytes)", intact=pos)
        start = pos
        if len(data) - pos < _LAYER.size:
            out.warnings.append(_truncated_note(expected_index, header, len(data) - pos))
            break
        kind, index, partition, n_chunks, check = _LAYER.unpack_from(data, pos)
        spans, cursor, context, filt, from_display = [], pos + _LAYER.size, (), None, 0
        ctx_b = None  # the lossless layer's spatial context
        tail_params = b""
        if kind == KIND_STEP:
            block = colour.parse(data, cursor)
            filter_block = None
            if block is not None and block[1] < len(data):
                from_display = data[block[1]]
                filter_block = display_filter.parse(data, block[1] + 1)
            if filter_block is None:
                out.warnings.append(_truncated_note(expected_index, header, len(data) - pos))
                break
            context, cursor = block
            filt, cursor = filter_block
        elif kind == KIND_LOSSLESS:
            spatial = lossless_context.parse(data, cursor)
            if spatial is None:
                out.warnings.append(_truncated_note(expected_index, header, len(data) - pos))
                break
            ctx_b, cursor = spatial
        elif kind == KIND_TAIL:
            size = get_varint(data, cursor)
            if size is not None and size[0] > MAX_TAIL_PARAMS:
                raise FormatError(f"layer {expected_index} has an oversized lossless tail header")
            if size is None or len(data) < size[1] + size[0]:
                out.warnings.append(_truncated_note(expected_index, header, len(data) - pos))
                break
            tail_params, cursor = data[size[1] : size[1] + size[0]], size[1] + size[0]
        for _ in range(n_chunks):
            count = get_varint(data, cursor)
            words = get_varint(data, count[1]) if count else None
            if words is None:
                break
            spans.append((count[0] >> 2, 4 * words[0], count[0] & 3))
            cursor = words[1]
        if len(spans) < n_chunks or len(data) - cursor < _U32.size:
            out.warnings.append(_truncated_note(expected_index, header, len(data) - pos))
            break
        (stored,) = _U32.unpack_from(data, cursor)
        if crc32(data[pos:cursor]) != stored:
            raise FormatError(f"corrupted layer {expected_index} header (checksum mismatch)", intact=start)
        want_kind = header.last_kind() if expected_index == header.num_layers else KIND_STEP
        if index != expected_index or kind != want_kind:
            raise FormatError(f"layer {expected_index} is missing or out of order (found layer {index})")
        if n_chunks == 0:
            raise FormatError(f"layer {index} has no chunks")
        if partition not in (PARTITION_NATURAL, PARTITION_IMPORTANCE):
            raise FormatError(f"layer {index} uses unknown partition {partition}")
        # a step codes at most every coefficient of the padded image (sides padded to <= 256)
        most = (-(-header.width // 256) * 256) * (-(-header.height // 256) * 256) * header.channels
        if sum(span[0] for span in spans) > most:
            raise FormatError(f"layer {index} claims more elements than the image has")
        pos = cursor + _U32.size
        if filt is not None and index >= header.num_steps:
            raise FormatError(f"layer {index} carries a display filter, which only a Haar step may")
        layer = Layer(kind, index, check, [], partition, context, filt, from_display, ctx_b, tail_params)
        ends = []
        complete = True
        for j, (count, length, flags) in enumerate(spans):
            if len(data) - pos < _CHUNK.size + length:
                complete = False
                cut = _cut_chunk(data, pos, length, count, flags)
                if cut is not None:
                    layer.chunks.append(cut)
                    ends.append(pos + _CHUNK.size + len(cut.payload))
                break
            (crc,) = _CHUNK.unpack_from(data, pos)
            payload = data[pos + _CHUNK.size : pos + _CHUNK.size + length]
            if crc32(payload) != crc:
                raise FormatError(
                    f"corrupted data in layer {index}, chunk {j + 1} (checksum mismatch)", intact=pos
                )
            layer.chunks.append(Chunk(payload, count, flags))
            pos += _CHUNK.size + length
            ends.append(pos)
        if not complete:
            out.partial = layer
            out.partial_expected_chunks = n_chunks
            out.chunk_offsets.append(ends)
            have = len(layer.chunks)
            if have and layer.chunks[-1].cut:
                have -= 1
                got = f"{have} of {n_chunks} chunks and part of chunk {have + 1}"
            else:
                got = f"{have} of {n_chunks} chunks"
            out.warnings.append(
                f"layer {index} is incomplete ({got}, {len(data) - start} bytes); decoding what is there"
            )
            break
        out.layers.append(layer)
        out.layer_offsets.append(pos)
        out.chunk_offsets.append(ends)
        expected_index += 1
    return out


def _cut_chunk(data: bytes, pos: int, length: int, count: int, flags: int) -> Chunk | None:
    """The chunk at `pos` when the data ends inside its payload: a cut chunk if the whole words
    present (at least MIN_CUT_WORDS) match the chunk's CRC, which is what `truncate` writes there
    (FORMAT.md 2.1); else None (a transfer still in progress, or damage: ignored)."""
    have = (len(data) - pos - _CHUNK.size) // 4 * 4
    if have < 4 * MIN_CUT_WORDS or have >= length:
        return None
    (crc,) = _CHUNK.unpack_from(data, pos)
    payload = data[pos + _CHUNK.size : pos + _CHUNK.size + have]
    if crc32(payload) != crc:
        return None
    return Chunk(payload, count, flags, cut=True)


def cut_end(chunk_start: int, budget: int) -> int | None:
    """The longest cut (FORMAT.md 2.1) of the chunk whose CRC is at `chunk_start` that ends within
    `budget` bytes of the file: whole words, at least MIN_CUT_WORDS; None if none fits. The caller
    makes sure the chunk's payload is longer than that."""
    words = (budget - chunk_start - _CHUNK.size) // 4
    return chunk_start + _CHUNK.size + 4 * words if words >= MIN_CUT_WORDS else None


def cut_chunk_bytes(data: bytes, chunk_start: int, end: int) -> bytes:
    """data[:end] for an `end` inside the payload of the chunk starting at `chunk_start` (at its
    CRC), with that CRC replaced by the CRC of the payload words kept: a file whose last chunk is
    cut (FORMAT.md 2.1). `end - chunk_start - 4` must be a whole number of words, at least
    MIN_CUT_WORDS."""
    have = end - chunk_start - _CHUNK.size
    if have % 4 or have < 4 * MIN_CUT_WORDS:
        raise ValueError("a cut chunk keeps whole 32-bit words, at least MIN_CUT_WORDS")
    kept = data[chunk_start + _CHUNK.size : end]
    return bytes(data[:chunk_start]) + _CHUNK.pack(crc32(kept)) + bytes(kept)


def _truncated_note(index: int, header: Header, nbytes: int) -> str:
    what = "lossless layer" if index == header.num_layers else f"layer {index}"
    return f"ignoring {nbytes} trailing bytes: {what} is incomplete"


@dataclass
class RegionPart:
    """One region of a tiled file as the untiled file it is coded as: its header (made, not read:
    FORMAT.md 1.1) and the layer records of it the file holds, with where each came from."""

    header: Header
    data: bytes  # header.to_bytes() + the region's layer records present (the last maybe in part)
    header_size: int
    segments: list[tuple[int, int, int]] = field(default_factory=list)  # (offset here, in file, length)

    def file_offset(self, offset: int) -> int | None:
        """Where an offset of `data` lies in the tiled file (None: inside the made header)."""
        for here, there, length in self.segments:
            if here <= offset <= here + length:
                return there + offset - here
        return None


def _record_end(data: bytes, pos: int) -> int | None:
    """End of the layer record (layer header and chunks) starting at `pos`, from its header alone;
    None if the data ends inside that header. Checks nothing: the record's own parse does."""
    if len(data) - pos < _LAYER.size:
        return None
    n_chunks = data[pos + 3]
    cursor, total = pos + _LAYER.size, 0
    if data[pos] == KIND_STEP:
        if cursor >= len(data):
            return None
        cursor += 1 + colour.ENTRY.size * bin(data[cursor]).count("1") + 1  # and the from-display mask
        if cursor >= len(data):
            return None
        radius = data[cursor]  # a bad radius is the record's own parse to refuse
        cursor += display_filter.block_size(radius) if radius <= display_filter.MAX_RADIUS else 1
    elif data[pos] == KIND_LOSSLESS:
        if cursor >= len(data):
            return None
        cursor += lossless_context.SIZE if data[cursor] == 1 else 1  # a bad flag is the parse's to refuse
    elif data[pos] == KIND_TAIL:
        size = get_varint(data, cursor)
        if size is None:
            return None
        cursor = size[1] + size[0]
    for _ in range(n_chunks):
        count = get_varint(data, cursor)
        words = get_varint(data, count[1]) if count else None
        if words is None:
            return None
        total += _CHUNK.size + 4 * words[0]
        cursor = words[1]
    return cursor + _U32.size + total


def split_tiled(data: bytes, head: tuple[Header, int] | None = None) -> tuple[Header, int, list[RegionPart]]:
    """A tiled file (FORMAT.md 1.1) as its regions' untiled files: layer records come layer by
    layer, region by region within a layer, so record j belongs to region j mod R (`head`: as for
    parse)."""
    data = bytes(data)
    header, size = head if head is not None else parse_header(data)
    pos = size
    if not header.tiled:
        raise ValueError("not a tiled file")
    count = len(header.regions())
    heads = [header.region_header(r) for r in range(count)]
    pieces = [[h.to_bytes()] for h in heads]
    parts = [RegionPart(h, b"", len(p[0])) for h, p in zip(heads, pieces)]
    sizes = [len(p[0]) for p in pieces]
    j = 0
    while pos < len(data):
        if j >= header.num_layers * count:  # the file before them is whole
            raise FormatError(f"unexpected data after the last layer ({len(data) - pos} bytes)", intact=pos)
        end = _record_end(data, pos)
        end = len(data) if end is None else min(end, len(data))
        r = j % count
        parts[r].segments.append((sizes[r], pos, end - pos))
        pieces[r].append(data[pos:end])
        sizes[r] += end - pos
        pos, j = end, j + 1
    for part, piece in zip(parts, pieces):
        part.data = b"".join(piece)
    return header, size, parts
