"""Lossless bytes of the grayscale photos under a folder: uqdm's three lossless ends against PNG,
WebP lossless and JPEG 2000 reversible (real file sizes).

    python scripts/gray_lossless.py ../shared/data --json gray_lossless.json [--limit N]

A photo is grayscale if it is an `L` image or an RGB one whose channels agree everywhere. Each is
encoded with the shipped model (`--fast`, seed 1) three ways: the pixel step and lossless layer
(`tail=False`), the tail after step T-1 (`tail=True`, the default for these images since uqdm
0.38) and the early tail after step 3 (`tail_after=3`); the baselines code its one plane.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uqdm_codec  # noqa: E402
from uqdm_codec.codec import is_grayscale  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")
BASELINES = (
    ("PNG", {"optimize": True}),
    ("WEBP", {"lossless": True, "quality": 100, "method": 6}),
    ("JPEG2000", {"irreversible": False}),
)
ENDS = (("off", {"tail": False}), ("on", {"tail": True}), ("after3", {"tail_after": 3}))


def arguments(doc: str | None) -> argparse.Namespace:
    """FOLDER, --json and --limit: what this script and gray_view.py take."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--limit", type=int)
    return parser.parse_args()


def gray_photos(folder: Path, rgb_too: bool = True) -> list[Path]:
    """The photos under `folder` Pillow opens as `L`, and with rgb_too the RGB ones whose channels
    agree everywhere."""
    gray = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES):
        with Image.open(path) as im:
            if im.mode == "L" or (rgb_too and im.mode == "RGB" and is_grayscale(np.asarray(im))):
                gray.append(path)
    return gray


def main() -> None:
    args = arguments(__doc__)
    gray = gray_photos(args.folder)
    codec = uqdm_codec.get_codec()
    rows = []
    for path in gray[: args.limit]:
        pixels = load_image(path).pixels
        row = {"file": str(path), "pixels": pixels.shape[0] * pixels.shape[1]}
        plane = Image.fromarray(pixels[:, :, 0], "L")
        for fmt, options in BASELINES:
            buffer = io.BytesIO()
            plane.save(buffer, format=fmt, **options)
            row[fmt] = len(buffer.getvalue())
        for name, options in ENDS:
            t0 = time.perf_counter()
            row[name] = len(codec.encode(pixels, seed=1, fast=True, **options))
            row[name + "_s"] = time.perf_counter() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
    n = sum(r["pixels"] for r in rows)
    keys = [fmt for fmt, _ in BASELINES] + [name for name, _ in ENDS]
    print(f"{len(rows)} images, bpp:", {k: round(8 * sum(r[k] for r in rows) / n, 3) for k in keys})
    saved = [1 - r["on"] / r["off"] for r in rows]
    print(
        f"tail on vs off: {np.median(saved):.1%} smaller at the median ({min(saved):.1%} to {max(saved):.1%})"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
