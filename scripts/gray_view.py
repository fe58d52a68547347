"""What the grayscale mark (FORMAT.md 1.2 bit 5, uqdm 0.50) changes for the grayscale photos under a
folder: the PSNR of every step image as uqdm 0.50 shows it (one plane, the rounded mean of R, G and B)
and as a decoder that skips the mark shows it (the chain's RGB image), the file bytes with and without
the mark, and the size of the exact image as decode writes it (an L PNG against the RGB PNG before).

    python scripts/gray_view.py ../shared/data/train --json gray_view.json [--limit N]

A photo counts if Pillow opens it as `L`. Each is encoded with the shipped model (`--fast`, seed 1,
the default lossless end: the tail after step T-1) as the gray image it is (`gray=True`, what
`uqdm encode` does with it) and as RGB pixels with R = G = B (`gray=False`, what uqdm 0.49 did).
"""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uqdm_codec  # noqa: E402
from uqdm_codec import container  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gray_lossless import arguments, gray_photos  # noqa: E402


def psnr(image: np.ndarray, original: np.ndarray) -> float:
    """PSNR over all values of `image` (H, W, 3) against the (H, W) plane `original`."""
    d = image.astype(np.float64) - original[:, :, None]
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def step_psnrs(codec, data: bytes, original: np.ndarray) -> list[float]:
    """The PSNR of the image after every complete layer (the blank image first)."""
    return [psnr(image.pixels, original) for image in codec.iter_decode(data)]


def png_bytes(image) -> int:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return len(buffer.getvalue())


def main() -> None:
    args = arguments(__doc__)
    photos = gray_photos(args.folder, rgb_too=False)
    codec = uqdm_codec.get_codec()
    rows = []
    for path in photos[: args.limit]:
        loaded = load_image(path)
        plane = loaded.pixels[:, :, 0]
        marked = codec.encode(loaded.pixels, seed=1, fast=True, gray=True)
        plain = codec.encode(loaded.pixels, seed=1, fast=True, gray=False)
        shown = step_psnrs(codec, marked, plane)
        known = container.KNOWN_EXTENSIONS
        container.KNOWN_EXTENSIONS = known & ~container.EXT_GRAY  # a decoder of uqdm 0.38-0.49
        try:
            skipped = step_psnrs(codec, marked, plane)
        finally:
            container.KNOWN_EXTENSIONS = known
        exact = codec.decode(marked)
        row = {
            "file": str(path),
            "pixels": int(plane.size),
            "bytes_marked": len(marked),
            "bytes_rgb": len(plain),
            "psnr_gray_shown": shown,
            "psnr_mark_skipped": skipped,
            "psnr_rgb_file": step_psnrs(codec, plain, plane),
            "png_L": png_bytes(exact.to_pil()),
            "png_RGB": png_bytes(Image.fromarray(loaded.pixels, "RGB")),
            "exact": bool(np.array_equal(np.asarray(exact.to_pil()), plane)),
        }
        rows.append(row)
        gain = [a - b for a, b in zip(shown[:-1], skipped[:-1])]
        print(
            f"{path.name}: {len(marked)} bytes ({len(marked) - len(plain):+d}); gray minus RGB dB per step "
            + " ".join(f"{g:+.3f}" for g in gain)
            + f"; PNG {row['png_L']} vs {row['png_RGB']} bytes; exact {row['exact']}",
            flush=True,
        )
    steps = min(len(r["psnr_gray_shown"]) for r in rows) - 1
    print("mean dB gain of the gray view over the RGB image, per step (blank first):")
    print(
        " ".join(
            f"{np.mean([r['psnr_gray_shown'][i] - r['psnr_mark_skipped'][i] for r in rows]):+.3f}"
            for i in range(steps)
        )
    )
    print(
        "worst:",
        " ".join(
            f"{min(r['psnr_gray_shown'][i] - r['psnr_mark_skipped'][i] for r in rows):+.3f}"
            for i in range(steps)
        ),
    )
    png_l, png_rgb = sum(r["png_L"] for r in rows), sum(r["png_RGB"] for r in rows)
    print(f"PNG of the exact image: L {png_l} bytes, RGB {png_rgb}")
    print(
        f"file bytes: marked {sum(r['bytes_marked'] for r in rows)}, RGB {sum(r['bytes_rgb'] for r in rows)}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
