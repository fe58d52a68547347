"""An image's ICC colour profile, carried through a .uqd file (FORMAT.md 1.2).

A photo tagged Adobe RGB or Display P3 shows wrong colours once its profile is lost: the numbers
are the same, the colours they mean are not; a grayscale scan tagged Dot Gain 20% or Gray Gamma 2.2
shows wrong tones. So the encoder keeps an RGB profile it finds on an RGB input, and a gray one on a
grayscale input, and every decoded image carries it again. Only the profile's framing is checked here (its
size field and signature, ICC.1 section 7.2); what it says is the viewer's business. No torch here.
"""

from __future__ import annotations

import io
import struct
import zlib

from .errors import FormatError

MIN_SIZE = 128  # an ICC profile's header alone
MAX_SIZE = 1 << 24  # 16 MiB: far above real profiles (a few hundred bytes to a few hundred KB)
SIGNATURE = b"acsp"  # bytes 36-39 of every profile
RGB, GRAY = b"RGB ", b"GRAY"  # the colour spaces (bytes 16-19) of the profiles a file may hold
CMYK = b"CMYK"  # and that of the input profiles converted through (cmyk_to_srgb)


def problem(profile: bytes, gray: bool = False) -> str | None:
    """Why `profile` cannot describe an RGB image, or with `gray` a grayscale one (None: it can):
    too short or long, a size field that disagrees with its length, no signature, or a colour space
    other than RGB (GRAY)."""
    if not MIN_SIZE <= len(profile) <= MAX_SIZE:
        return f"a profile of {len(profile)} bytes is not a valid one"
    (declared,) = struct.unpack_from(">I", profile, 0)
    if declared != len(profile) or profile[36:40] != SIGNATURE:
        return "it is not a valid ICC profile"
    found = space(profile)
    if found != (GRAY if gray else RGB):
        name = found.decode("ascii", "replace").strip() or "unknown"
        return f"it describes {name} colours, not {'GRAY' if gray else 'RGB'}"
    return None


def space(profile: bytes) -> bytes:
    """The profile's colour space signature (bytes 16-19): RGB, GRAY, CMYK, ..."""
    return bytes(profile[16:20])


def is_gray(profile: bytes) -> bool:
    """Whether the profile describes a one-plane image (colour space GRAY)."""
    return space(profile) == GRAY


# sRGB's primaries adapted to the ICC's D50 (Bradford), as the rXYZ, gXYZ and bXYZ tags hold them
SRGB_COLORANTS = {
    b"rXYZ": (0.4360747, 0.2225045, 0.0139322),
    b"gXYZ": (0.3850649, 0.7168786, 0.0971045),
    b"bXYZ": (0.1430804, 0.0606169, 0.7141733),
}
COLORANT_TOLERANCE = 0.002  # s15Fixed16 rounding and makers' own adaptations stay well inside
CURVE_TOLERANCE = 0.5 / 255  # the tone curves at every 8-bit level, within half a level
LUT_TAGS = (b"A2B0", b"A2B1", b"A2B2", b"B2A0", b"B2A1", b"B2A2")  # would override the matrix


def _tags(profile: bytes) -> dict[bytes, bytes]:
    """The profile's tag table as {signature: data}; {} where it does not fit inside the profile."""
    if len(profile) < 132:
        return {}
    (count,) = struct.unpack_from(">I", profile, 128)
    if 132 + 12 * count > len(profile):
        return {}
    tags = {}
    for k in range(count):
        sig, offset, size = struct.unpack_from(">4sII", profile, 132 + 12 * k)
        if offset + size > len(profile):
            return {}
        tags[sig] = profile[offset : offset + size]
    return tags


def _srgb_eotf(v: float) -> float:
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def _curve(data: bytes):
    """A tone curve tag ('curv' or 'para') as a function on [0, 1]; None if of another kind."""
    kind = data[:4]
    if kind == b"curv" and len(data) >= 12:
        (n,) = struct.unpack_from(">I", data, 8)
        if len(data) < 12 + 2 * n:
            return None
        if n == 0:
            return lambda v: v
        if n == 1:
            gamma = struct.unpack_from(">H", data, 12)[0] / 256.0
            return lambda v: v**gamma
        table = struct.unpack_from(f">{n}H", data, 12)

        def lookup(v: float) -> float:
            x = v * (n - 1)
            i = min(int(x), n - 2)
            return (table[i] + (x - i) * (table[i + 1] - table[i])) / 65535.0

        return lookup
    if kind == b"para" and len(data) >= 12:
        (function,) = struct.unpack_from(">H", data, 8)
        count = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(function)
        if count is None or len(data) < 12 + 4 * count:
            return None
        params = [x / 65536.0 for x in struct.unpack_from(f">{count}i", data, 12)]
        g, a, b, c, d, e, f = params + [0.0] * (7 - count)
        if function == 0:
            return lambda v: v**g
        if function == 1:  # (a v + b)^g for v >= -b/a, else 0
            return lambda v: (a * v + b) ** g if a * v + b > 0 else 0.0
        if function == 2:
            return lambda v: (a * v + b) ** g + c if a * v + b > 0 else c
        if function == 3:
            return lambda v: (a * v + b) ** g if v >= d else c * v
        return lambda v: (a * v + b) ** g + e if v >= d else c * v + f
    return None


def is_srgb(profile: bytes) -> bool:
    """Whether a matrix/TRC RGB profile is sRGB (its primaries and tone curves, within rounding):
    what a viewer assumes of an image without a profile, so it need not be stored. A profile with
    lookup tables, or one that cannot be read, is not taken for sRGB."""
    if problem(profile) is not None:
        return False
    tags = _tags(profile)
    if any(t in tags for t in LUT_TAGS):
        return False
    for sig, want in SRGB_COLORANTS.items():
        data = tags.get(sig, b"")
        if len(data) < 20 or data[:4] != b"XYZ ":
            return False
        got = [x / 65536.0 for x in struct.unpack_from(">3i", data, 8)]
        if max(abs(g - w) for g, w in zip(got, want)) > COLORANT_TOLERANCE:
            return False
    for sig in (b"rTRC", b"gTRC", b"bTRC"):
        curve = _curve(tags.get(sig, b""))
        if curve is None:
            return False
        try:
            if max(abs(curve(v / 255) - _srgb_eotf(v / 255)) for v in range(256)) > CURVE_TOLERANCE:
                return False
        except (ArithmeticError, ValueError):  # a curve that overflows or goes complex is not sRGB's
            return False
    return True


def cmyk_to_srgb(image, profile: bytes):
    """A CMYK PIL image as sRGB, through its CMYK profile (littlecms, Pillow's ImageCms), with the
    relative colorimetric intent and black point compensation, the defaults of the tools that make
    such files; Pillow's own CMYK to RGB conversion ignores the profile (R = 255 - C - K), and a
    print profile's colours are far from it. Raises (ValueError, OSError, ImportError) where
    littlecms cannot use the profile."""
    from PIL import ImageCms

    return ImageCms.profileToProfile(
        image,
        ImageCms.ImageCmsProfile(io.BytesIO(profile)),
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        outputMode="RGB",
        flags=ImageCms.Flags.BLACKPOINTCOMPENSATION,
    )


def pack(profile: bytes) -> bytes:
    """The profile as the header stores it: a zlib stream (RFC 1950), as PNG's iCCP chunk does."""
    return zlib.compress(profile, 9)


def unpack(stored: bytes, gray: bool = False) -> bytes:
    """The profile from its stored zlib stream; FormatError if the stream is damaged, has bytes
    after its end, or inflates to something that is not an RGB profile (with `gray`, a GRAY one;
    never more than MAX_SIZE bytes are inflated)."""
    inflater = zlib.decompressobj()
    try:
        profile = inflater.decompress(stored, MAX_SIZE + 1)
    except zlib.error:
        raise FormatError("corrupted .uqd header (its colour profile does not inflate)") from None
    if not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise FormatError("corrupted .uqd header (its colour profile's stream is cut or too long)")
    why = problem(profile, gray)
    if why is not None:
        raise FormatError(f"corrupted .uqd header (its {'gray ' if gray else ''}colour profile: {why})")
    return profile


def describe(profile: bytes) -> str:
    """A name for messages: the profile's own description where Pillow's colour management can
    read it, and its size."""
    try:
        from PIL import ImageCms

        name = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile))).strip()
    except Exception:  # no littlecms in this Pillow, or a profile it cannot parse: the size says enough
        name = ""
    return f"{name} ({len(profile)} bytes)" if name else f"{len(profile)} bytes"
