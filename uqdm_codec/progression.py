"""Showing the progression: every decodable level of a file as images, or as one labelled strip
(with generative reconstruction, a row of samples under the row of the decoder's mean images)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .codec import Codec, DecodedImage


def decode_levels(
    codec: Codec, data: bytes, every_chunk: bool = False, recon: str = "mean", seed: int | None = None
) -> list[DecodedImage]:
    """The image at every level the file holds: before any step, after each step (and each chunk
    with every_chunk), and the exact image if the lossless layer is complete. With recon="sample",
    levels before the pixel step carry a sample in `pixels` and the mean image in `shown`."""
    return list(codec.iter_decode(data, every_chunk=every_chunk, recon=recon, seed=seed))


def mean_image(image: DecodedImage) -> np.ndarray:
    """The decoder's image on screen at this level, whatever the reconstruction."""
    return image.pixels if image.shown is None else image.shown


def level_name(image: DecodedImage) -> str:
    if image.layer == 0:
        return "header"
    if image.lossless:
        return "lossless"
    if image.tail:
        return f"tail pass {image.chunks}"
    return f"step {image.layer}" + ("" if image.complete else f" chunk {image.chunks}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def label(image: DecodedImage, pixels: int, reference: np.ndarray | None, sample: bool = False) -> str:
    """The label of a level: `step 3: 0.115 bpp, 24.10 dB`, or `sample: 21.30 dB` under it."""
    shown = image.pixels if sample else mean_image(image)
    text = "sample" if sample else f"{level_name(image)}: {8.0 * image.nbytes / pixels:.3f} bpp"
    if reference is not None:
        value = psnr(reference, shown)
        text += ", exact" if math.isinf(value) else f"{':' if sample else ','} {value:.2f} dB"
    return text


def strip(
    levels: list[DecodedImage],
    reference: np.ndarray | None,
    thumb_width: int = 256,
    per_row: int = 6,
    pixels: int | None = None,
) -> Image.Image:
    """Thumbnails of the levels in rows, each labelled with its bpp (and PSNR when the exact image
    is known). Levels holding a sample (recon "sample") get it drawn under the mean image, so each
    row of means has its row of samples beneath. `pixels`: the image area for bpp when the levels
    are crops (default: their own size)."""
    h, w = levels[0].pixels.shape[:2]
    tw = min(thumb_width, w)
    th = max(1, round(h * tw / w))
    font = ImageFont.load_default(size=14)
    pad = 22
    kinds = [False, True] if any(image.recon == "sample" for image in levels) else [False]
    rows = math.ceil(len(levels) / per_row) * len(kinds)
    cols = min(per_row, len(levels))
    sheet = Image.new("RGB", (cols * (tw + 8) + 8, rows * (th + pad + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for n, image in enumerate(levels):
        for r, sample in enumerate(kinds):
            if sample and image.recon != "sample":
                continue
            x0 = 8 + (n % per_row) * (tw + 8)
            y0 = 8 + ((n // per_row) * len(kinds) + r) * (th + pad + 8)
            thumb = Image.fromarray(image.pixels if sample else mean_image(image))
            sheet.paste(thumb.resize((tw, th), Image.Resampling.LANCZOS), (x0, y0))
            text = label(image, pixels or h * w, reference, sample)
            draw.text((x0, y0 + th + 4), text, fill="black", font=font)
    return sheet
