"""uqdm: a progressive image codec built on a universally quantized diffusion model.

    import uqdm_codec
    data = uqdm_codec.encode("photo.png")            # bytes of a .uqd file
    preview = uqdm_codec.decode(data, steps=3)       # PIL image after 3 diffusion steps
    sharp = uqdm_codec.decode(data, steps=3, recon="sample", seed=1)  # the rest drawn from the model
    exact = uqdm_codec.decode(data)                  # every layer: the original pixels
    small = uqdm_codec.truncate(data, bpp=0.5)       # longest prefix within 0.5 bits per pixel
    sized = uqdm_codec.truncate(data, max_bytes=20_000)  # ... or within 20,000 bytes
    lossy = uqdm_codec.encode("photo.png", psnr=38)  # the shortest prefix that reaches 38 dB
    indexed = uqdm_codec.encode("photo.png", psnr_index=True)  # records every chunk's PSNR
    served = uqdm_codec.truncate(indexed, psnr=36)   # then cut to a quality without the original

torch is imported on first use of encode/decode only; info/truncate never need it.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from .errors import FormatError, ImageError, ModelError, SyncError, UqdmError, UqdmWarning, check_flag, warn
from .files import FileInfo, LayerInfo, info, truncate

__version__ = "0.51.0"

from . import pillow_plugin as _pillow_plugin  # noqa: E402

_pillow_plugin.register()  # Image.open("x.uqd") works once uqdm_codec is imported

_CODECS: dict = {}


def get_codec(model=None, device=None, tile: int | None = None, region: int | None | str = "default"):
    """A cached Codec for (model, device): loading weights once per process. `tile` (network tile
    side) and `region` (longest side coded whole, None: never tile the file) are memory knobs; files
    decode the same whatever the decoder's."""
    from .codec import DEFAULT_REGION, Codec
    from .inference import DEFAULT_TILE, pick_device
    from .model import resolve_model_path

    dev = pick_device(device)
    key = (
        str(resolve_model_path(model).resolve()) if not hasattr(model, "denoiser") else id(model),
        str(dev),
        DEFAULT_TILE if tile is None else tile,
        DEFAULT_REGION if region == "default" else region,
    )
    if key not in _CODECS:
        _CODECS[key] = Codec(model, dev, key[2], region=key[3])
    return _CODECS[key]


def encode(
    image,
    model=None,
    *,
    seed: int | None = None,
    device=None,
    progress=None,
    mirrors: int = 1,
    fast: bool = False,
    tail: bool | None | str = "default",
    tail_after: int | None = None,
    keep_icc: bool = True,
    keep_metadata: bool = True,
    psnr: float | None = None,
    bpp: float | None = None,
    steps: int | None = None,
    psnr_index: bool = False,
    max_bytes: int | None = None,
    emit=None,
) -> bytes:
    """Encode an image (a path, an image file's bytes or binary file object, a PIL image, or a numpy array
    H x W or H x W x 1, 2, 3 or 4 of any integer, float (0..1 is scaled) or bool type) to .uqd bytes.
    mirrors=2 or 4: the network is averaged over mirror images at every step, for smaller files at 2 or 4
    times its time. fast: about half the encoding time, the same size and step images, coarser images
    inside a step (Codec.encode). tail=True ("on"): the lossless end is an interlaced coder from exact
    neighbours after step T-1, a smaller lossless file without the pixel step's image; None ("auto"): the
    smaller of the two; not given: True for a grayscale image (R = G = B), else False ("off")
    (Codec.encode). tail_after=S: the tail follows step S (0 .. T-1) instead, a smaller lossless file with
    previews up to step S only. keep_icc: store the image's ICC colour profile (RGB, or gray for a gray
    image), if it has one, so that decoded images carry it again (FORMAT.md 1.2; False leaves it out).
    keep_metadata: the same for its EXIF (less orientation, thumbnail and maker's note) and XMP metadata.
    An alpha channel (unless opaque everywhere) is kept exactly, and decoded images are RGBA. An image of
    one plane (gray: Pillow's L, LA, 1, I, I;16 or F, an H x W or H x W x 1 or 2 array) decodes as one (L,
    or LA with alpha). psnr=P: only the shortest prefix whose image reaches P dB (PSNR over R, G and B;
    the encoder stops at that step and cuts inside its chunk, cut_judge.py); bpp=B: the longest prefix
    within B bits per pixel (what truncate(bpp=B) keeps of the whole file); max_bytes=N: the same within N
    bytes; steps=N: the first N steps. At most one of the four; none: the whole, lossless file.
    psnr_index: the header records the PSNR of the image at every chunk boundary (FORMAT.md 1.2, about a
    byte per chunk), so that truncate(data, psnr=P) and decode(data, psnr=P) can cut the file to a quality
    without the original; not with bpp or max_bytes (truncate the indexed file instead). emit: a function
    called with the header and each layer as soon as it is coded (for a sender that streams the file while
    it is coded; Codec.encode says when it cannot). How the input was converted (16-bit reduced to 8 bits,
    EXIF orientation applied, an opaque alpha left out) comes as a UqdmWarning each: the lossless promise
    is for the converted image.
    """
    from .image_io import load_image
    from .quality import Target

    # bad values fail before the image is read
    target = Target(psnr=psnr, bpp=bpp, steps=steps, max_bytes=max_bytes)
    target.check_psnr_index(psnr_index)
    keep_icc, keep_metadata = check_flag("keep_icc", keep_icc), check_flag("keep_metadata", keep_metadata)
    check_flag("fast", fast)
    check_flag("psnr_index", psnr_index)
    loaded = load_image(image)
    warn(loaded.notes)  # what became of the input (16-bit reduced, an opaque alpha left out, ...)
    return get_codec(model, device).encode(
        loaded.pixels,
        seed=seed,
        progress=progress,
        mirrors=mirrors,
        fast=fast,
        tail=tail,
        tail_after=tail_after,
        target=target,
        psnr_index=psnr_index,
        emit=emit,
        **loaded.extras(keep_icc, keep_metadata),
    )


def decode(
    data: bytes | str | os.PathLike | BinaryIO,
    steps: int | None = None,
    model=None,
    *,
    device=None,
    progress=None,
    recon: str = "mean",
    seed: int | None = None,
    bpp: float | None = None,
    psnr: float | None = None,
    max_bytes: int | None = None,
):
    """Decode .uqd bytes (a path, or a binary file object) to a PIL image after `steps` diffusion steps
    (default: all layers in the file; with the lossless layer that is the exact original; L for a
    grayscale image's file; RGBA, or LA, if the file has an alpha channel, its colour profile and
    metadata, if any, in info["icc_profile"], info["exif"] and info["xmp"]), or from the longest prefix
    within `bpp` bits per pixel or `max_bytes` bytes, or the shortest whose image reaches `psnr` dB by the
    file's PSNR index (what `truncate` would keep, cut in memory). recon="sample" draws the steps the file
    does not hold from the model (the paper's ancestral decoding: sharp where the mean is blurry, seeded
    by `seed`, default 0); it changes nothing once the pixel step is in. Damage after what was read, and
    header extensions this decoder skips, come as a UqdmWarning each.
    """
    full, notable = _decode(data, steps, model, device, progress, recon, seed, bpp, psnr, max_bytes)
    warn(notable)  # not the line on a prefix that ends inside a layer: cut files are what decode is for
    return full.to_pil()


def Decoder(model=None, device=None):  # noqa: N802 - a class to the user
    """Streaming decoder: `Decoder().feed(bytes) -> PIL image | None` (see codec.Decoder)."""
    from .codec import Decoder as _Decoder

    return _Decoder(model, device)


def decode_full(
    data,
    steps: int | None = None,
    model=None,
    *,
    device=None,
    progress=None,
    recon: str = "mean",
    seed: int | None = None,
    bpp: float | None = None,
    psnr: float | None = None,
    max_bytes: int | None = None,
):
    """Like decode(), but returns a DecodedImage (pixels, steps, lossless flag, warnings, recon)."""
    return _decode(data, steps, model, device, progress, recon, seed, bpp, psnr, max_bytes)[0]


def _decode(data, steps, model, device, progress, recon, seed, bpp, psnr, max_bytes):
    """decode_full's image, and the warnings of note among its warnings: damage after the bytes read
    and header extensions this decoder skips."""
    from . import container, files, sampling
    from .codec import model_for_file

    recon, seed = sampling.check_recon(recon), sampling.check_seed(seed)
    damage: list[str] = []  # a file damaged after what is asked for: decoded, with a warning
    data = files.budget_prefix(files.uqd_bytes(data), steps, bpp, psnr, max_bytes, damage)
    header, _ = container.parse_header(data)
    codec = get_codec(model_for_file(header, model), device)
    decoded = codec.decode(data, steps, progress, recon=recon, seed=seed)
    decoded.warnings[:0] = damage
    skipped = header.unknown_extensions
    return decoded, damage + ([container.unknown_extensions_note(skipped)] if skipped else [])


__all__ = [
    "FileInfo",
    "FormatError",
    "ImageError",
    "LayerInfo",
    "ModelError",
    "SyncError",
    "UqdmError",
    "UqdmWarning",
    "decode",
    "decode_full",
    "encode",
    "get_codec",
    "info",
    "truncate",
]
