"""Showing the progression: every decodable level of a file as images, or as one labelled strip."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .codec import Codec, DecodedImage


def decode_levels(codec: Codec, data: bytes, every_chunk: bool = False) -> list[DecodedImage]:
    """The image at every level the file holds: before any step, after each step (and each chunk
    with every_chunk), and the exact image if the lossless layer is complete."""
    return list(codec.iter_decode(data, every_chunk=every_chunk))


def level_name(image: DecodedImage) -> str:
    if image.layer == 0:
        return "header"
    if image.lossless:
        return "lossless"
    return f"step {image.layer}" + ("" if image.complete else f" chunk {image.chunks}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def label(image: DecodedImage, pixels: int, reference: np.ndarray | None) -> str:
    bpp = 8.0 * image.nbytes / pixels
    text = f"{level_name(image)}: {bpp:.3f} bpp"
    if reference is not None:
        value = psnr(reference, image.pixels)
        text += ", exact" if math.isinf(value) else f", {value:.2f} dB"
    return text


def strip(
    levels: list[DecodedImage], reference: np.ndarray | None, thumb_width: int = 256, per_row: int = 6
) -> Image.Image:
    """Thumbnails of the levels in rows, each labelled with its bpp (and PSNR when the exact image
    is known)."""
    h, w = levels[0].pixels.shape[:2]
    tw = min(thumb_width, w)
    th = max(1, round(h * tw / w))
    font = ImageFont.load_default(size=14)
    pad = 22
    rows = math.ceil(len(levels) / per_row)
    cols = min(per_row, len(levels))
    sheet = Image.new("RGB", (cols * (tw + 8) + 8, rows * (th + pad + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for n, image in enumerate(levels):
        x0 = 8 + (n % per_row) * (tw + 8)
        y0 = 8 + (n // per_row) * (th + pad + 8)
        sheet.paste(Image.fromarray(image.pixels).resize((tw, th), Image.Resampling.LANCZOS), (x0, y0))
        draw.text((x0, y0 + th + 4), label(image, h * w, reference), fill="black", font=font)
    return sheet
