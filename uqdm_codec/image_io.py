"""Reading any image Pillow can open as 8-bit RGB, and writing files atomically.

The lossless promise is for the 8-bit RGB or grayscale image this module produces and its alpha:
palette, CMYK, 1-bit and 16-bit inputs are converted (with a one-line note each; source_depth.py
finds the deep files Pillow reduces as it reads them), EXIF orientation is applied and animated
images contribute their first frame. An alpha channel (alpha_plane.py), an ICC colour profile
(colour_profile.py: RGB, or gray for a grayscale image) and EXIF and XMP metadata
(photo_metadata.py) are kept beside the pixels; an opaque alpha channel, a profile that is sRGB or
cannot describe the pixels, and the parts of EXIF that cannot be carried over are left out with a
note.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from . import alpha_plane, colour_profile, container, files, photo_metadata, source_depth
from .errors import ImageError, UqdmError, first_line, option


@dataclass
class LoadedImage:
    pixels: np.ndarray  # (H, W, 3) uint8
    notes: list[str] = field(default_factory=list)
    icc_profile: bytes | None = None  # the input's colour profile, if it had one: RGB, or GRAY with gray
    alpha: np.ndarray | None = None  # (H, W) uint8: the input's alpha channel, unless opaque everywhere
    exif: bytes | None = None  # the input's EXIF block (TIFF-structured), orientation and maker's note out
    xmp: bytes | None = None  # the input's XMP packet
    gray: bool = False  # the input had one plane (gray, maybe with alpha): pixels' R = G = B

    def extras(self, keep_icc: bool = True, keep_metadata: bool = True) -> dict:
        """What Codec.encode stores beside the pixels (FORMAT.md 1.2): the alpha channel, whether the
        image is grayscale, and the colour profile and EXIF and XMP metadata unless told to leave
        them out."""
        return {
            "icc_profile": self.icc_profile if keep_icc else None,
            "alpha": self.alpha,
            "exif": self.exif if keep_metadata else None,
            "xmp": self.xmp if keep_metadata else None,
            "gray": self.gray,
        }


# The formats decoded images are written in. The lossless ones keep every pixel (WebP in its lossless
# mode, keeping the colours under transparent pixels; TIFF deflated after a horizontal predictor;
# JPEG 2000 with its reversible colour transform); the lossy ones hold an
# approximation, made as named here; any other format Pillow knows is refused before decoding: its
# writer changes the image's size (ICO, ICNS), cannot write RGB (XBM, MSP, ...), cannot be read back
# without other software (EPS) or is missing.
LOSSLESS_FORMATS = frozenset(
    {"PNG", "WEBP", "TIFF", "JPEG2000", "BMP", "DIB", "PPM", "PGM", "QOI", "TGA", "SGI", "PCX", "DDS"}
)
# uqdm's names for what Pillow writes under another format's: a .pgm file is Pillow's PPM of one plane
PILLOW_FORMATS = {"PGM": "PPM"}
LOSSY_FORMATS = {
    "JPEG": "JPEG quality 95, colour at full resolution",
    "AVIF": "AVIF quality 95, colour at full resolution",
    "GIF": "a palette of 256 colours",
    "PDF": "a JPEG of quality 95 inside",
}
SAVE_OPTIONS = {
    "WEBP": {"lossless": True, "exact": True},
    "TIFF": {"compression": "tiff_adobe_deflate", "tiffinfo": {317: 2}},  # 317: horizontal predictor
    "JPEG2000": {"mct": 1},  # the reversible colour transform: a fifth smaller on Kodak
    "JPEG": {"quality": 95, "subsampling": 0},
    "AVIF": {"quality": 95, "subsampling": "4:4:4"},
    "PDF": {"quality": 95, "subsampling": 0},
}
# Names whose format Pillow writes as a colour PPM although the name says bitmap or float (a .pgm
# name is PGM's: a grayscale image's file, refused for a colour one)
MISNAMED_SUFFIXES = frozenset({".pbm", ".pfm"})
EXACT_SUFFIXES = ".png, .webp or .tif"  # named where a file name is refused
# Image formats a Pillow may lack a writer for (AVIF before 11.3; JPEG XL and HEIF without plugins):
# refused by name rather than written as a PNG under their suffix
UNWRITABLE_HERE = {".avif": "AVIF", ".avifs": "AVIF", ".jxl": "JPEG XL", ".heic": "HEIF", ".heif": "HEIF"}

# Formats whose Pillow writer embeds an ICC profile (others are written without one, with a note)
ICC_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "TIFF", "AVIF"})
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF", "AVIF"})  # and those that hold an alpha channel
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")  # Pillow modes with an alpha channel
# Pillow modes of one plane (and alpha): their files say the image is grayscale (FORMAT.md 1.2)
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# the formats decoded grayscale images are written in as one plane (L); the others as RGB, R = G = B
# (PPM too: Pillow writes L as a PGM, which a .ppm name would misname)
GRAY_FORMATS = frozenset(
    {"PNG", "TIFF", "JPEG2000", "BMP", "DIB", "TGA", "SGI", "PCX", "DDS", "JPEG", "GIF", "PGM"}
)
GRAY_ALPHA_FORMATS = frozenset({"PNG", "TIFF"})  # and those of ALPHA_FORMATS that write gray and alpha (LA)
EXIF_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "AVIF"})  # whose Pillow writer embeds EXIF as it is
XMP_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "AVIF", "TIFF"})  # and XMP
JPEG_SEGMENT = 65533  # the most bytes a JPEG APP1 segment holds after its length field
XMP_JPEG_NAMESPACE = b"http://ns.adobe.com/xap/1.0/\x00"  # before XMP in its APP1 segment
EXIF_IFD, GPS_IFD, ORIENTATION, MAKER_NOTE = 0x8769, 0x8825, 0x0112, 0x927C  # EXIF tags
PIXEL_X, PIXEL_Y = 0xA002, 0xA003  # in the EXIF directory: the image's width and height


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ImageError("image has no pixels")
    if width > container.MAX_SIDE or height > container.MAX_SIDE or width * height > container.MAX_PIXELS:
        raise ImageError(
            f"image is {width}x{height}; uqdm handles at most {container.MAX_SIDE} pixels per side "
            f"and {container.MAX_PIXELS // 1_000_000} megapixels"
        )


def _sixteen_to_eight(arr: np.ndarray) -> np.ndarray:
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _integers_to_eight(arr: np.ndarray, wide: str, deep: str, notes: list[str], sixteen: bool) -> np.ndarray:
    """8-bit values of an integer image, with a note unless they are its own: values past 255 (or
    any, if `sixteen`: the image says it is 16-bit) are 16-bit ones reduced, and values outside
    0..65535 (or, for an 8-bit image, 0..255) are clipped first. `wide` and `deep` name such images
    (clipped; 16-bit) in the notes."""
    low, high = int(arr.min(initial=0)), int(arr.max(initial=0))
    reduce = sixteen or high > 255
    top = 65535 if reduce else 255
    if low < 0 or high > 65535:  # say so: not passed off as 16-bit
        notes.append(f"{wide} image (values {low} to {high}) clipped to 0..{top}")
        if reduce:
            notes[-1] += ", reduced to 8 bits"
    elif reduce:
        notes.append(f"{deep} image reduced to 8 bits")
    arr = np.clip(arr, 0, top)
    return _sixteen_to_eight(arr) if reduce else arr.astype(np.uint8)


def _floats_to_eight(arr: np.ndarray, notes: list[str]) -> np.ndarray:
    """8-bit values of a floating-point image, with a note: values in 0..1 (the usual convention)
    scaled to 0..255, others clipped to it; rounded; NaN taken as 0."""
    arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        notes.append("NaN values in a floating-point image taken as 0")
        arr = np.where(np.isnan(arr), 0.0, arr)
    if 0.0 <= arr.min(initial=0.0) and arr.max(initial=0.0) <= 1.0 and np.any(arr % 1):
        notes.append("floating-point image with values in 0..1 scaled to 0..255 and rounded")
        arr = arr * 255.0  # the common convention for float images (was near-black: 0 or 1)
    else:
        notes.append("floating-point image clipped to 0..255 and rounded")
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _from_pil(im: Image.Image, notes: list[str]) -> np.ndarray:
    mode, before = im.mode, len(notes)
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im)
        arr = _integers_to_eight(arr, "32-bit integer", "16-bit grayscale", notes, sixteen=mode != "I")
        if mode == "I" and len(notes) == before:
            notes.append("integer grayscale image (mode I) stored as 8-bit grayscale")
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode == "F":
        arr = _floats_to_eight(np.asarray(im), notes)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode in ("RGBA", "RGBa"):
        pass  # the colour as it is; the alpha channel is _alpha's
    elif mode == "1":
        notes.append("1-bit image stored as 8-bit grayscale (0 and 255)")
    elif mode in ("L", "LA", "La"):
        pass  # a grayscale image as it is: its file says so, and decodes as one plane (LoadedImage.gray)
    elif mode in ("P", "PA"):
        notes.append("palette image converted to RGB")
    elif mode == "CMYK":
        notes.append("CMYK image converted to RGB")
    else:
        notes.append(f"{mode} image converted to RGB")
    if mode in ("P", "PA"):
        im = im.convert("RGBA")
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _through_profile(im: Image.Image, profile_source: Image.Image, notes: list[str]) -> np.ndarray | None:
    """The RGB pixels of a CMYK image with a CMYK profile, converted to sRGB through it, with a
    note; None for any other image, or (with a note) where the profile cannot be used."""
    profile = profile_source.info.get("icc_profile")
    if im.mode != "CMYK" or not profile or colour_profile.space(profile) != colour_profile.CMYK:
        return None
    profile = bytes(profile)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = colour_profile.cmyk_to_srgb(im, profile)
    except Exception as exc:  # noqa: BLE001 - littlecms refuses damaged profiles in many ways
        notes.append(f"CMYK image: its ICC colour profile cannot be used ({first_line(exc)})")
        return None
    notes.append(
        f"CMYK image converted to sRGB through its ICC colour profile ({colour_profile.describe(profile)})"
    )
    return np.asarray(converted, dtype=np.uint8)


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ALPHA_MODES or (im.mode == "P" and "transparency" in im.info)


def _alpha(im: Image.Image, notes: list[str]) -> np.ndarray | None:
    """The image's alpha channel as (H, W) uint8, if it has one that is not opaque everywhere
    (an opaque one is left out, with a note: the RGB image says all it says)."""
    if not _has_alpha(im):
        return None
    plane = np.asarray(im.convert("RGBA").getchannel("A"), dtype=np.uint8)
    return _keep_alpha(plane, f"{im.mode} image", notes)


def _keep_alpha(plane: np.ndarray, what: str, notes: list[str]) -> np.ndarray | None:
    if alpha_plane.is_opaque(plane):
        notes.append(f"{what}: its alpha channel is opaque everywhere, so it is left out")
        return None
    return np.ascontiguousarray(plane)


def _profile(im: Image.Image, gray: bool, notes: list[str]) -> bytes | None:
    """The image's ICC profile if it describes RGB colours (palette images' too) other than sRGB's,
    or for a grayscale image (`gray`) gray ones; None, with a note, if there was one that cannot
    describe the pixels (a CMYK profile, an RGB one of gray pixels, bytes that are no profile) or
    that is sRGB (colour_profile.is_srgb: the colours a viewer gives the decoded image without it,
    so a few KB saved at no cost)."""
    profile = im.info.get("icc_profile")
    if not profile:
        return None
    profile = bytes(profile)
    why = colour_profile.problem(profile, gray)
    if why is None and not gray and im.mode not in ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA"):
        why = f"it belongs to the {im.mode} pixels, not RGB"
    if why is None and colour_profile.is_srgb(profile):
        why = "it is sRGB, which an image without one is taken to be"
    if why is None:
        return profile
    notes.append(f"ICC colour profile left out: {why}")
    return None


def _exif(im: Image.Image, notes: list[str]) -> bytes | None:
    """The image's EXIF as a TIFF-structured block for the header, or None: rewritten by Pillow,
    which leaves out the thumbnail (IFD1: a small copy of the image, often most of the block); the
    orientation tag left out too (load_image applied it: the pixels are upright) and the camera
    maker's note (proprietary, its offsets do not survive the rewrite, and it can take tens of KB
    of every preview), with a note. A note if it holds a GPS location, since it travels with
    every prefix of the file."""
    raw = im.info.get("exif")
    if not raw:
        return None
    if why := photo_metadata.exif_problem(photo_metadata.exif_block(bytes(raw))[: photo_metadata.MAX_SIZE]):
        notes.append(f"EXIF metadata left out: {why}")  # Pillow would read on and make up values
        return None
    try:
        with warnings.catch_warnings():  # Pillow warns of damaged directories and reads what it can
            warnings.simplefilter("ignore")
            exif = Image.Exif()
            exif.load(bytes(raw))
            exif.pop(ORIENTATION, None)
            maker = None
            if EXIF_IFD in exif:
                directory = exif.get_ifd(EXIF_IFD)
                maker = directory.pop(MAKER_NOTE, None)
                _upright_dimensions(directory, *im.size)
            block = photo_metadata.exif_block(exif.tobytes()) if len(exif) else b""
    except Exception as exc:  # Pillow's EXIF reader raises many kinds on damaged blocks
        notes.append(f"EXIF metadata left out: it cannot be read ({first_line(exc)})")
        return None
    if not block:
        return None
    if why := photo_metadata.exif_problem(block):
        notes.append(f"EXIF metadata left out: {why}")
        return None
    if maker:
        notes.append(f"EXIF metadata kept without the camera maker's note ({len(maker):,} bytes)")
    if exif.get(GPS_IFD):
        leave = option("encode --no-metadata", "keep_metadata=False")
        notes.append(f"the EXIF metadata kept holds a GPS location ({leave} leaves it out)")
    return block


def _upright_dimensions(directory: dict, width: int, height: int) -> None:
    """Swap the EXIF directory's PixelXDimension and PixelYDimension where they describe the image
    before a quarter turn applied its orientation (exif_transpose leaves them as they were)."""
    x, y = directory.get(PIXEL_X), directory.get(PIXEL_Y)
    if width != height and (x, y) == (height, width):
        directory[PIXEL_X], directory[PIXEL_Y] = width, height


def _xmp(im: Image.Image, notes: list[str]) -> bytes | None:
    """The image's XMP packet, or None (with a note if it is too large)."""
    packet = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if not packet:
        return None
    packet = packet.encode("utf-8") if isinstance(packet, str) else bytes(packet)
    if why := photo_metadata.xmp_problem(packet):
        notes.append(f"XMP metadata left out: {why}")
        return None
    return packet


_STRAIGHT = {"La": "LA", "RGBa": "RGBA"}  # Pillow's premultiplied-alpha modes (only in memory)


def _loaded(
    upright: Image.Image, profile_source: Image.Image, notes: list[str], gray: bool = False
) -> LoadedImage:
    """`gray`: the file held one plane although Pillow made it RGBA (source_depth.is_gray_alpha)."""
    shown = upright
    if upright.mode in _STRAIGHT:  # as files hold it and decode writes it ('La' converts to nothing else)
        notes.append(f"premultiplied alpha ({upright.mode}) converted to straight alpha")
        shown = upright.convert(_STRAIGHT[upright.mode])
    gray = gray or shown.mode in GRAY_MODES
    pixels = _through_profile(shown, profile_source, notes)
    if pixels is None:
        pixels = _from_pil(shown, notes)
        profile = _profile(profile_source, gray, notes)
    else:
        profile = None  # the pixels are sRGB: what an image without a profile is taken to be
    alpha = _alpha(shown, notes)
    return LoadedImage(pixels, notes, profile, alpha, _exif(upright, notes), _xmp(upright, notes), gray)


def load_image(source, name: str | None = None) -> LoadedImage:
    """Path, PIL image, numpy array, or an image file's bytes or binary file object (named `name` in
    errors, e.g. "standard input") -> (H, W, 3) uint8 plus notes on any conversion, and the image's
    RGB colour profile, alpha channel, EXIF and XMP metadata if it carries them."""
    notes: list[str] = []
    if isinstance(source, np.ndarray):
        rgba = _from_array(source, notes)
        alpha = _keep_alpha(rgba[:, :, 3], "array", notes) if rgba.shape[2] == 4 else None
        gray = source.ndim == 2 or source.shape[2] <= 2  # H x W, H x W x 1, gray and alpha
        return LoadedImage(np.ascontiguousarray(rgba[:, :, :3]), notes, alpha=alpha, gray=gray)
    if isinstance(source, Image.Image):
        _check_size(*source.size)
        gray = _reduced(source, notes)
        _read_pixels(source)
        return _loaded(_upright(source, notes), source, notes, gray)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open(io.BytesIO(bytes(source)), name or "image bytes", notes)
    if callable(getattr(source, "read", None)):  # an open file, BytesIO, an upload's stream
        own = getattr(source, "name", None)  # an open file's path
        name = name or (own if isinstance(own, str) else "image file object")
        return _open(io.BytesIO(files.read_stream(source, name, ImageError)), name, notes)
    if not isinstance(source, (str, os.PathLike)):
        what = type(source).__name__
        raise ImageError(
            f"not an image: a {what} (give a path, PIL image, numpy array, or a file's bytes or binary "
            "file object)"
        )
    path = Path(source)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image (give the images in it: {path / '*'})")
    return _open(path, str(path), notes)


def _read_pixels(im: Image.Image) -> None:
    """Load a PIL image's pixels (Pillow reads them lazily), with one-line errors: an image opened in
    a `with` block and passed after it ends has a closed file (Pillow's bare AssertionError)."""
    try:
        im.load()
    except (AssertionError, AttributeError, ValueError):
        raise ImageError(
            "the PIL image's file was closed before its pixels were read: call .load() on it (or pass "
            "it) inside the `with Image.open(...)` block"
        ) from None
    except (OSError, SyntaxError) as exc:
        raise ImageError(f"cannot read the PIL image ({first_line(exc)})") from None


def _open(file: Path | io.BytesIO, path: str, notes: list[str]) -> LoadedImage:
    """An image file (path or bytes) as load_image returns it; `path` names it in errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as im:
                _check_size(*im.size)
                frames = getattr(im, "n_frames", 1)
                if frames > 1:  # an animation, a multi-page TIFF, an MPO's previews
                    notes.append(f"using the first of {frames} frames (an animation or a multi-page file)")
                    im.seek(0)
                gray = _reduced(im, notes)
                im.load()
                im = _upright(im, notes)
                return _loaded(im, im, notes, gray)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read image ({first_line(exc)})") from None


def _reduced(im: Image.Image, notes: list[str]) -> bool:
    """Note how Pillow reduces the values of `im` (not yet loaded) to 8 bits, if it does; whether
    the file held one plane that Pillow hands over as RGBA (a 16-bit grayscale-and-alpha PNG)."""
    if note := source_depth.reduction_note(im):
        notes.append(note)
    return source_depth.is_gray_alpha(im)


_TURNS = {
    2: "mirrored left to right",
    3: "turned 180 degrees",
    4: "mirrored top to bottom",
    5: "mirrored along its diagonal",
    6: "turned 90 degrees clockwise",
    7: "mirrored along its anti-diagonal",
    8: "turned 90 degrees anticlockwise",
}  # what EXIF orientation 2..8 asks a viewer to do


def _upright(im: Image.Image, notes: list[str]) -> Image.Image:
    """The image as viewers show it: its EXIF orientation applied, with a note, since the pixels
    stored (and decoded) are then not the array the file holds."""
    turn = _TURNS.get(im.getexif().get(ORIENTATION))
    if turn is not None:
        notes.append(f"EXIF orientation applied ({turn}): stored upright, as viewers show it")
    return ImageOps.exif_transpose(im)


def _from_array(arr: np.ndarray, notes: list[str]) -> np.ndarray:
    """(H, W, 3) or, with alpha, (H, W, 4) uint8 from an array of any of the shapes (gray, gray and
    alpha, RGB, RGBA) and number types it takes, converted as Pillow's images of those types are."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageError(
            f"array of shape {arr.shape} is not an image (need H x W, or H x W x 1, 2, 3 or 4: gray, "
            "gray and alpha, RGB, RGBA)"
        )
    _check_size(arr.shape[1], arr.shape[0])
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.bool_:
        notes.append("boolean image stored as 0 and 255")
        arr = arr.astype(np.uint8) * np.uint8(255)
    elif arr.dtype.kind in "iu":
        sixteen = arr.dtype.kind == "u" and arr.dtype.itemsize == 2  # uint16 in either byte order
        arr = _integers_to_eight(arr, f"{arr.dtype}", "16-bit", notes, sixteen=sixteen)
    elif arr.dtype.kind == "f":
        arr = _floats_to_eight(arr, notes)
    else:
        raise ImageError(f"array dtype {arr.dtype} not supported (need integers, floating point or bool)")
    if arr.shape[2] <= 2:  # one plane (and alpha): its file says so (LoadedImage.gray)
        arr = arr[:, :, [0, 0, 0, 1][: arr.shape[2] + 2]]  # gray, gray, gray (and alpha)
    return np.ascontiguousarray(arr)


def check_output(path: str | Path, force: bool = False, inputs: tuple[Path, ...] = ()) -> None:
    """Before any work: an output may not be a folder, nor one of `inputs` (even with force), nor,
    without force, an existing file. A device or a pipe (/dev/null, /dev/stdout) is written into,
    not replaced, so it needs no force."""
    path = Path(path)
    if path.is_dir():
        raise UqdmError(
            f"{path} is a folder, not a file name ({option('--out-dir', 'out_dir')} takes a folder)"
        )
    if not path.exists():
        return
    for src in inputs:
        if Path(src).exists() and os.path.samefile(path, src):
            raise UqdmError(
                f"{path}: the output would overwrite the input; name another{option(' with -o', '')}"
            )
    if not force and not is_device(path):
        raise UqdmError(f"{path} already exists ({option('use --force', 'force=True')} to overwrite)")


def is_device(path: str | Path) -> bool:
    """Whether `path` (through any links) is a device, pipe or socket: something written into as a
    stream, never renamed over (a rename would put a plain file in place of /dev/null)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def atomic_write(
    path: str | Path,
    data: bytes | None = None,
    *,
    force: bool = False,
    inputs: tuple[Path, ...] = (),
    writer=None,
) -> None:
    """Write `data` (or call writer(tmp_path); a binary buffer in place of the path for a device) to
    a temporary file beside `path`, then rename it into place: an interrupted run never leaves a
    half-written output. Refuses to overwrite an existing file unless `force`, and never overwrites
    one of `inputs`. A symbolic link stays and the file it points to is replaced; a device or pipe
    (is_device) is written into directly."""
    path = Path(path)
    check_output(path, force, inputs)
    device = is_device(path)
    real = path if device else Path(os.path.realpath(path))  # replace what a link points to
    parent = real.parent
    if not parent.is_dir():
        raise UqdmError(f"{path.parent if str(path.parent) else '.'}: output folder does not exist")
    tmp = real if device else parent / f".{real.name}.{os.getpid()}.tmp"
    try:
        if device and writer is not None:  # a pipe cannot seek, as PNG and TIFF writers do
            buffer = io.BytesIO()
            writer(buffer)
            data, writer = buffer.getvalue(), None
        if writer is not None:
            writer(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                if not device:
                    os.fsync(f.fileno())
        if not device:
            os.replace(tmp, real)
    except BaseException as exc:
        try:
            if not device:
                tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, PermissionError):
            raise UqdmError(f"{path}: permission denied") from None
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise UqdmError(f"{path}: no space left on device") from None
        if isinstance(exc, OSError) and exc.errno == errno.EROFS:
            raise UqdmError(f"{path}: read-only file system") from None
        if isinstance(exc, OSError):
            raise UqdmError(f"{path}: cannot write ({exc.strerror or first_line(exc)})") from None
        raise


def output_format(path: str | Path, unnamed: str = "PNG", gray: bool | None = None) -> str:
    """The format an image written to `path` gets, from its name; `unnamed` (PNG, or decode
    --format's) where it has no suffix or one Pillow does not know (-o /dev/stdout). Raises
    UqdmError for a format uqdm does not write, or with gray=False (a colour image) for PGM, so
    that a caller can refuse the name before decoding anything."""
    path = Path(path)
    fmt = _format_of(path.suffix.lower(), path.name, f"name it {EXACT_SUFFIXES}", unnamed)
    if gray is not None:
        check_gray_format(fmt, gray, path.name)
    return fmt


def check_gray_format(fmt: str, gray: bool, name: str) -> None:
    """Refuse PGM for a colour image (gray False): a .pgm file holds one plane."""
    if fmt == "PGM" and not gray:
        raise UqdmError(
            f"{name}: a PGM file holds a grayscale image, and this one is colour (write it as .ppm or .png)"
        )


def format_suffix(name: str) -> str:
    """A format named as `decode --format` takes it ('webp', '.jpg', 'PNG') as the suffix of the
    files it names ('.webp'); raises UqdmError for a name that is not one of an image format uqdm
    writes."""
    suffix = "." + name.strip().lower().lstrip(".")
    what, hint = option(f"--format {name}", f"image_format={name!r}"), "png, webp, tif, jpg, ..."
    if suffix not in Image.registered_extensions() and suffix not in UNWRITABLE_HERE:
        raise UqdmError(f"{what}: not the name of an image format ({hint})")
    _format_of(suffix, what, hint)
    return suffix


def _format_of(suffix: str, what: str, hint: str, unnamed: str = "PNG") -> str:
    """The format uqdm writes for `suffix` (`unnamed` for one that names no format); a UqdmError
    naming `what`, with `hint`, if none."""
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None and suffix in UNWRITABLE_HERE:
        raise UqdmError(f"{what}: this Pillow cannot write {UNWRITABLE_HERE[suffix]} images ({hint})")
    if fmt is None:
        return unnamed
    if fmt == "UQD":  # pillow_plugin.py's: decoding into it would encode again
        raise UqdmError(f"{what}: decoding writes an image, not a .uqd file ({hint})")
    if suffix in MISNAMED_SUFFIXES or (fmt not in LOSSLESS_FORMATS and fmt not in LOSSY_FORMATS):
        raise UqdmError(f"{what}: uqdm does not write '{suffix}' images ({hint})")
    if fmt == "PPM" and suffix == ".pgm":
        fmt = "PGM"
    if PILLOW_FORMATS.get(fmt, fmt) not in Image.SAVE:  # a Pillow built without this writer
        raise UqdmError(f"{what}: this Pillow cannot write {fmt} images ({hint})")
    return fmt


def check_uqd_name(path: str | Path) -> None:
    """Refuse an image format's name for a .uqd file (encode -o photo.jpg): viewers and tools would
    take the file for that format and fail on it."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is not None and fmt != "UQD":
        raise UqdmError(f"{path}: a .uqd file named as a {fmt} image; name it {path.stem}.uqd")


def writes_exactly(path: str | Path, unnamed: str = "PNG") -> bool:
    """Whether an image written to `path` keeps every pixel (a lossless format)."""
    return output_format(path, unnamed) in LOSSLESS_FORMATS


def save_image(
    pixels: np.ndarray,
    path: str | Path,
    *,
    force: bool = False,
    inputs: tuple[Path, ...] = (),
    icc_profile: bytes | None = None,
    alpha: np.ndarray | None = None,
    exif: bytes | None = None,
    xmp: bytes | None = None,
    gray: bool = False,
    unnamed: str = "PNG",
) -> list[str]:
    """Save (H, W, 3) uint8 pixels, with their colour profile, (H, W) alpha channel, EXIF block and
    XMP packet where the format holds them; gray: R = G = B, written as one plane (L, or LA with
    alpha) where the format has such images (GRAY_FORMATS), else as RGB; the format follows the
    file name (output_format: a name that says none gets `unnamed`'s). Returns notes: what the
    format drops, and where the name's suffix was not one of a format."""
    path = Path(path)
    fmt = output_format(path, unnamed)
    image, options, notes = _prepared(pixels, path.name, fmt, icc_profile, alpha, exif, xmp, gray)
    if path.suffix and path.suffix.lower() not in Image.registered_extensions():
        written = "a PNG" if fmt == "PNG" else f"a {fmt} image"
        notes.insert(0, f"{path.name}: '{path.suffix}' is not an image format's suffix; written as {written}")
    writer = PILLOW_FORMATS.get(fmt, fmt)
    atomic_write(
        path, force=force, inputs=inputs, writer=lambda tmp: image.save(tmp, format=writer, **options)
    )
    return notes


def image_bytes(
    pixels: np.ndarray,
    fmt: str = "PNG",
    *,
    icc_profile: bytes | None = None,
    alpha: np.ndarray | None = None,
    exif: bytes | None = None,
    xmp: bytes | None = None,
    gray: bool = False,
) -> tuple[bytes, list[str]]:
    """What save_image would write to a file of format `fmt`, as bytes (for standard output), and
    its notes."""
    image, options, notes = _prepared(pixels, f"the {fmt} image", fmt, icc_profile, alpha, exif, xmp, gray)
    buffer = io.BytesIO()
    image.save(buffer, format=PILLOW_FORMATS.get(fmt, fmt), **options)
    return buffer.getvalue(), notes


def pil_image(pixels: np.ndarray, alpha: np.ndarray | None = None, gray: bool = False) -> Image.Image:
    """The PIL image of (H, W, 3) uint8 pixels and their (H, W) alpha channel: RGB or RGBA, or with
    gray (R = G = B) one plane, L or LA (container.image_mode)."""
    planes = pixels[:, :, :1] if gray else pixels
    if alpha is not None:
        planes = np.dstack([planes, alpha])
    mode = container.image_mode(gray, alpha is not None)
    return Image.fromarray(np.ascontiguousarray(planes[:, :, 0] if mode == "L" else planes), mode)


def _prepared(
    pixels: np.ndarray,
    name: str,
    fmt: str,
    icc_profile: bytes | None,
    alpha: np.ndarray | None,
    exif: bytes | None,
    xmp: bytes | None,
    gray: bool = False,
) -> tuple[Image.Image, dict, list[str]]:
    """The PIL image and save options of pixels and their extras in format `fmt`, and notes (named
    `name`) on what the format cannot hold."""
    check_gray_format(fmt, gray, name)
    options, notes = dict(SAVE_OPTIONS.get(fmt, {})), []
    if fmt in LOSSY_FORMATS:
        notes.append(
            f"{name}: {fmt} is a lossy format: it holds an approximation of the decoded image "
            f"({LOSSY_FORMATS[fmt]}); PNG, WebP and TIFF keep every pixel"
        )
    keep_alpha = alpha is not None and fmt in ALPHA_FORMATS
    plane = gray and fmt in (GRAY_ALPHA_FORMATS if keep_alpha else GRAY_FORMATS)  # one plane of R = G = B
    image = pil_image(pixels, alpha if keep_alpha else None, plane)
    if alpha is not None and not keep_alpha:
        notes.append(f"{name}: {fmt} files cannot hold the image's alpha channel; left out")
    if icc_profile is not None and colour_profile.is_gray(icc_profile) and image.mode not in ("L", "LA"):
        notes.append(
            f"{name}: {fmt} is written as RGB, which the image's gray ICC colour profile cannot "
            "describe; left out"
        )
    elif icc_profile is not None and fmt in ICC_FORMATS:
        options["icc_profile"] = icc_profile
    elif icc_profile is not None:
        notes.append(f"{name}: {fmt} files cannot hold the image's ICC colour profile; left out")
    if exif is not None:
        payload = photo_metadata.EXIF_PREFIX + exif
        if fmt not in EXIF_FORMATS:
            notes.append(f"{name}: {fmt} files cannot hold the image's EXIF metadata; left out")
        elif fmt == "JPEG" and len(payload) > JPEG_SEGMENT:
            notes.append(f"{name}: its EXIF ({len(exif):,} bytes) is too long for JPEG; left out")
        else:
            options["exif"] = payload
    if xmp is not None:
        if fmt not in XMP_FORMATS:
            notes.append(f"{name}: {fmt} files cannot hold the image's XMP metadata; left out")
        elif fmt == "JPEG" and len(XMP_JPEG_NAMESPACE) + len(xmp) > JPEG_SEGMENT:
            notes.append(f"{name}: its XMP ({len(xmp):,} bytes) is too long for JPEG; left out")
        elif fmt == "PNG":
            text = PngImagePlugin.PngInfo()
            text.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"), zip=True)
            options["pnginfo"] = text
        elif fmt == "TIFF":
            options["tiffinfo"] = {**options["tiffinfo"], 700: xmp}
        else:
            options["xmp"] = xmp
    return image, options, notes
