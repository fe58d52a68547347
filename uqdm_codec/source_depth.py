"""What Pillow reduces to 8 bits as it reads a file, without saying so.

Pillow reads a 16-bit RGB or RGBA PNG or TIFF as 8-bit RGB(A), a PPM whose largest value is not 255
scaled to 0..255, and a JPEG 2000 or AVIF file of 10 to 16 bits as 8 bits; the pixels it hands over
are then not the file's. The codec's lossless end reproduces those 8-bit pixels, so the user is told
(a note), as for 16-bit grayscale images, whose values image_io reduces itself. Everything here is read
from the image's header before its pixels are loaded: Pillow's tile (the raw mode a PNG, TIFF or PPM
is unpacked with) and, for JPEG 2000 and AVIF, the file's first bytes.
"""

from __future__ import annotations

from PIL import Image

HEAD_BYTES = 1 << 20  # read for the JPEG 2000 and AVIF headers (a large ICC profile may come first)
_SIXTEEN_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})  # image_io reduces these itself
_KINDS = {"RGB": "RGB", "RGBA": "RGBA", "L": "grayscale", "LA": "grayscale"}


def tile_rawmode(im: Image.Image) -> str:
    """The raw mode Pillow unpacks the image's first tile with ('RGB;16B', 'LA;16B', ...), or ''
    (pixels loaded already, or a decoder that takes no raw mode)."""
    tile = getattr(im, "tile", None)  # an Image made in memory has none
    if not tile:
        return ""
    args = tile[0].args
    first = args[0] if isinstance(args, tuple) and args else args
    return first if isinstance(first, str) else ""


def is_gray_alpha(im: Image.Image) -> bool:
    """A 16-bit grayscale-and-alpha PNG, which Pillow hands over as RGBA (R = G = B)."""
    return tile_rawmode(im).startswith("LA;16")


def _file_head(im: Image.Image) -> bytes:
    """The first HEAD_BYTES bytes of the file a PIL image (opened, not yet loaded) was opened from,
    if its file is still open; b"" otherwise."""
    stream = getattr(im, "fp", None)
    if stream is None:
        return b""
    try:
        where = stream.tell()
        stream.seek(0)
        head = stream.read(HEAD_BYTES)
        stream.seek(where)
    except (OSError, ValueError, AttributeError):  # closed, or not seekable
        return b""
    return head if isinstance(head, bytes) else b""


def reduction_note(im: Image.Image) -> str | None:
    """A note saying how Pillow reduced the values of `im` (opened, not yet loaded) to 8 bits, or
    None if it did not (or image_io reduces them itself: 16-bit and integer grayscale)."""
    if im.mode in _SIXTEEN_MODES:
        return None
    kind = "grayscale" if is_gray_alpha(im) else _KINDS.get(im.mode, im.mode)
    rawmode = tile_rawmode(im)
    if ";16" in rawmode:
        return f"16-bit {kind} image reduced to 8 bits"
    if tile_rawmode(im) and im.tile[0].codec_name == "ppm":
        largest = im.tile[0].args[1]
        if largest != 255:
            return f"{kind} image with values 0..{largest} scaled to 0..255"
        return None
    bits = 0
    if im.format == "JPEG2000":
        bits = _jpeg2000_bits(_file_head(im))
    elif im.format == "AVIF":
        bits = _avif_bits(_file_head(im))
    if bits > 8:
        return f"{bits}-bit {kind} image reduced to 8 bits"
    return None


def _jpeg2000_bits(head: bytes) -> int:
    """The most bits of any component, from the codestream's SIZ segment (ISO 15444-1 A.5.1: after
    the SOC marker; Ssiz holds the depth less one, its top bit the sign), or 0 if not found."""
    at = head.find(b"\xff\x4f\xff\x51")
    if at < 0:
        return 0
    siz = head[at + 4 :]  # Lsiz(2) Rsiz(2) Xsiz..YTOsiz(8 x 4) Csiz(2), then Ssiz XRsiz YRsiz per component
    if len(siz) < 40:
        return 0
    count = int.from_bytes(siz[36:38], "big")
    depths = siz[38 : 38 + 3 * count : 3]
    return max(((d & 0x7F) + 1 for d in depths), default=0)


def _avif_bits(head: bytes) -> int:
    """The most bits per channel of any image item, from the 'pixi' properties (ISO 23008-12 6.5.6:
    version and flags (4), channel count (1), then one depth byte per channel), or 0 if none."""
    bits, at = 0, head.find(b"pixi")
    while at >= 0:
        count = head[at + 8] if at + 8 < len(head) else 0
        bits = max([bits, *head[at + 9 : at + 9 + count]])
        at = head.find(b"pixi", at + 4)
    return bits
