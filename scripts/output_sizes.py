"""Bytes and writing time of a decoded image in each lossless output format (docs/MODEL.md 54).

A decode of a whole file is the original image exactly, so the originals stand for it here:

    python scripts/output_sizes.py ../shared/data/kodak/*.png [--formats png webp tif] [--json out.json]

Every file written is read back and compared with the pixels; run it with nothing else on the
machine, the seconds are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from uqdm_codec.image_io import load_image, save_image, writes_exactly  # noqa: E402


def measure(pixels: np.ndarray, suffix: str, folder: Path) -> dict:
    """Bytes and seconds of writing `pixels` as `suffix`, checked exact where the format is lossless."""
    path = folder / f"out.{suffix}"
    path.unlink(missing_ok=True)
    start = time.perf_counter()
    save_image(pixels, path)
    seconds = time.perf_counter() - start
    exact = np.array_equal(np.asarray(Image.open(path).convert("RGB")), pixels)
    if writes_exactly(path) and not exact:
        raise SystemExit(f"{suffix}: the pixels read back differ")
    return {"bytes": path.stat().st_size, "seconds": seconds, "exact": exact}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--formats", nargs="+", default=["png", "webp", "tif", "jp2", "qoi", "bmp"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for image in args.images:
            pixels = load_image(image).pixels
            row = {"image": image.name, "pixels": pixels.shape[0] * pixels.shape[1]}
            row.update({fmt: measure(pixels, fmt, Path(tmp)) for fmt in args.formats})
            rows.append(row)
            print(image.name, " ".join(f"{fmt} {row[fmt]['bytes']}" for fmt in args.formats), flush=True)
    pixels = sum(r["pixels"] for r in rows)
    summary = {}
    for fmt in args.formats:
        total = sum(r[fmt]["bytes"] for r in rows)
        summary[fmt] = {
            "bpp": 8 * total / pixels,
            "vs_png": total / sum(r["png"]["bytes"] for r in rows) - 1 if "png" in args.formats else None,
            "seconds_per_image": sum(r[fmt]["seconds"] for r in rows) / len(rows),
        }
        s = summary[fmt]
        vs = "" if s["vs_png"] is None else f", {100 * s['vs_png']:+.1f} % against PNG"
        print(f"{fmt}: {s['bpp']:.3f} bpp{vs}, {s['seconds_per_image']:.3f} s per image")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "images": rows}, indent=1))


if __name__ == "__main__":
    main()
