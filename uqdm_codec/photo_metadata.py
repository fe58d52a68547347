"""A photo's EXIF and XMP metadata, carried through a .uqd file (FORMAT.md 1.2).

A camera's photo says when, with what and how it was taken; an edited one carries its rights and
captions in XMP. An image codec that drops them loses what its users keep photos for, so the
encoder keeps both and every decoded image carries them again. They sit in the header, deflated,
where every prefix has them. Only their framing is checked here: an EXIF block must be TIFF-structured
(as PNG's eXIf chunk holds it), an XMP packet must be bytes; what they say is the viewer's business.
No torch here.
"""

from __future__ import annotations

import warnings
import zlib

from .errors import FormatError

MAX_SIZE = 1 << 20  # 1 MiB: EXIF in a JPEG holds at most 64 KB, XMP packets rarely more
MAX_STORED = MAX_SIZE + (1 << 16)  # a stored (deflated) block's bytes, at most
EXIF_PREFIX = b"Exif\x00\x00"  # before the TIFF block in JPEG's APP1 and in Pillow's info["exif"]
TIFF_MAGICS = (b"II*\x00", b"MM\x00*")  # little- and big-endian TIFF headers


def exif_problem(block: bytes) -> str | None:
    """Why `block` is not an EXIF block a file may hold (None: it is one): empty, too long, or not
    TIFF-structured (byte order, 42, and a first IFD offset inside the block)."""
    if not 8 <= len(block) <= MAX_SIZE:
        return f"an EXIF block of {len(block)} bytes is not a valid one"
    if block[:4] not in TIFF_MAGICS:
        return "it is not a TIFF-structured EXIF block"
    first = int.from_bytes(block[4:8], "little" if block[:2] == b"II" else "big")
    if not 8 <= first < len(block):
        return "its first directory lies outside it"
    return None


def xmp_problem(packet: bytes) -> str | None:
    """Why `packet` cannot be stored as XMP (None: it can): empty or too long."""
    if not 1 <= len(packet) <= MAX_SIZE:
        return f"an XMP packet of {len(packet)} bytes is not a valid one"
    return None


def pack(raw: bytes) -> bytes:
    """An EXIF block or XMP packet as the header stores it: one zlib stream."""
    return zlib.compress(raw, 9)


def unpack(stored: bytes, what: str) -> bytes:
    """The raw block from its stored bytes; FormatError unless they are one whole zlib stream of
    at most MAX_SIZE bytes that passes `what`'s framing check (never more is inflated)."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(stored, MAX_SIZE + 1)
    except zlib.error:
        raise FormatError(f"corrupted .uqd header (its {what} does not inflate)") from None
    if len(raw) > MAX_SIZE or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise FormatError(f"corrupted .uqd header (its {what} is not one zlib stream)")
    why = exif_problem(raw) if what == "EXIF" else xmp_problem(raw)
    if why:
        raise FormatError(f"corrupted .uqd header (its {what}: {why})")
    return raw


def exif_block(info_exif: bytes) -> bytes:
    """The TIFF block of an EXIF payload as Pillow's info["exif"] or JPEG's APP1 hold it."""
    return info_exif[len(EXIF_PREFIX) :] if info_exif.startswith(EXIF_PREFIX) else info_exif


def pil_info(icc_profile: bytes | None, exif: bytes | None, xmp: bytes | None) -> dict:
    """A file's profile and metadata as the keys of a PIL image's info that Pillow's writers take."""
    info: dict = {}
    if icc_profile is not None:
        info["icc_profile"] = icc_profile
    if exif is not None:
        info["exif"] = EXIF_PREFIX + exif
    if xmp is not None:
        info["xmp"] = xmp
    return info


def describe_exif(block: bytes) -> str:
    """'EXIF: FUJIFILM FinePix S5500, 2006:05:04 23:11:07 (822 bytes)': camera and date where the
    block names them, for `uqdm info`."""
    from PIL import Image

    said = []
    try:
        exif = Image.Exif()
        with warnings.catch_warnings():  # Pillow warns of damaged directories: we only describe
            warnings.simplefilter("ignore")
            exif.load(EXIF_PREFIX + block)
        camera = " ".join(str(exif.get(t, "")).strip("\x00 ") for t in (0x010F, 0x0110)).strip()
        when = str(exif.get(0x0132, "")).strip("\x00 ")
        said = [s for s in (camera, when) if s]
        if 0x8825 in exif:
            said.append("GPS location")
    except Exception:  # a block Pillow cannot read is still kept and shown by its size
        said = []
    return f"EXIF: {', '.join(said) + ' ' if said else ''}({len(block):,} bytes)"
