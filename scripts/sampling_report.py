"""Generative reconstruction against the mean on a folder of images (Kodak): PSNR and sharpness.

    python scripts/sampling_report.py ../shared/data/kodak --images kodim01,kodim04,kodim07 \\
        --out runs/sampling_report.json --strip docs/sampling_strip.png --strip-image kodim23

Per image, with the default model and real file bytes (file seed 0), after every step N: PSNR of
the decoder's mean image and of an ancestral sample (`decode --recon sample --seed S`), and the
high-frequency energy of each relative to the original's: the mean square of the finest Haar
detail band (D1, 2x2 pixel detail) and of the next one (D2, 4x4), in 8-bit units, over RGB.
Blur shows as a ratio below 1, grain as a ratio above 1; a faithful texture is near 1. Prints a
markdown table of the means over the images. `--sample-pixels` also draws the pixel step (the
experiment behind sampling.SAMPLE_PIXELS); `--strip` writes the progression strip of one image,
cropped (mean row, sample row).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from uqdm_codec import get_codec, haar, progression, sampling  # noqa: E402
from uqdm_codec.bench import list_images, psnr  # noqa: E402
from uqdm_codec.codec import DecodedImage  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402


def band_energy(pixels: np.ndarray) -> tuple[float, float]:
    """Mean square of the finest two Haar detail bands (8-bit units) of an (H, W, 3) image."""
    h, w = pixels.shape[0] // 4 * 4, pixels.shape[1] // 4 * 4
    x = pixels[:h, :w].transpose(2, 0, 1).astype(np.float64)
    ll, d1 = haar.analysis(x)
    _, d2 = haar.analysis(ll)
    return float(np.mean(d1**2)), float(np.mean(d2**2))


def measure(codec, pixels: np.ndarray, seed: int) -> tuple[list[dict], list[DecodedImage]]:
    npx = pixels.shape[0] * pixels.shape[1]
    data = codec.encode(pixels, seed=0)
    ref = band_energy(pixels)
    rows, levels = [], []
    t0 = time.perf_counter()
    for image in codec.iter_decode(data, recon="sample", seed=seed):
        if image.lossless:
            break
        mean = progression.mean_image(image)
        e_mean, e_sample = band_energy(mean), band_energy(image.pixels)
        rows.append(
            {
                "step": image.layer,
                "bpp": 8 * image.nbytes / npx,
                "psnr_mean": psnr(pixels, mean),
                "psnr_sample": psnr(pixels, image.pixels),
                "d1_mean": e_mean[0] / ref[0],
                "d1_sample": e_sample[0] / ref[0],
                "d2_mean": e_mean[1] / ref[1],
                "d2_sample": e_sample[1] / ref[1],
                "sampled": image.recon == "sample",
                "seconds": time.perf_counter() - t0,
            }
        )
        levels.append(image)
        t0 = time.perf_counter()
    return rows, levels


def table(per_image: dict[str, list[dict]]) -> str:
    steps = len(next(iter(per_image.values())))
    cols = ["bpp", "psnr_mean", "psnr_sample", "d1_mean", "d1_sample", "d2_mean", "d2_sample"]
    head = [
        "after step",
        "bpp",
        "PSNR mean (dB)",
        "PSNR sample (dB)",
        "D1 energy mean",
        "D1 energy sample",
        "D2 energy mean",
        "D2 energy sample",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in range(steps):
        avg = {c: float(np.mean([rows[n][c] for rows in per_image.values()])) for c in cols}
        sampled = any(rows[n]["sampled"] for rows in per_image.values())
        name = "0 (header)" if n == 0 else str(n)
        cells = [
            f"{avg['bpp']:.3f}",
            f"{avg['psnr_mean']:.2f}",
            f"{avg['psnr_sample']:.2f}" if sampled else "= mean",
            f"{avg['d1_mean']:.2f}",
            f"{avg['d1_sample']:.2f}" if sampled else "",
            f"{avg['d2_mean']:.2f}",
            f"{avg['d2_sample']:.2f}" if sampled else "",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_strip(levels: list[DecodedImage], pixels: np.ndarray, box, steps, path: Path) -> None:
    """The chosen steps of one image, cropped to box = (x, y, w, h): means above, samples below."""
    x, y, w, h = box

    def crop(a):
        return None if a is None else np.ascontiguousarray(a[y : y + h, x : x + w])

    chosen = [replace(im, pixels=crop(im.pixels), shown=crop(im.shown)) for im in levels if im.layer in steps]
    npx = pixels.shape[0] * pixels.shape[1]
    sheet = progression.strip(chosen, crop(pixels), thumb_width=w, per_row=len(chosen), pixels=npx)
    sheet = sheet.quantize(256, dither=0).convert("RGB") if path.suffix == ".png" else sheet
    sheet.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)", file=sys.stderr)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--images", help="comma-separated stems (default: every image in the folder)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", type=Path, help="write per-image rows as JSON")
    ap.add_argument("--sample-pixels", action="store_true", help="also draw the pixel step (experiment)")
    ap.add_argument("--strip", type=Path, help="write a cropped progression strip of --strip-image")
    ap.add_argument("--strip-image", default="kodim23")
    ap.add_argument("--crop", default="330,40,200,150", help="x,y,w,h of the strip's crop")
    ap.add_argument("--strip-steps", default="1,2,3,4,5", help="steps shown in the strip")
    args = ap.parse_args(argv)

    sampling.SAMPLE_PIXELS = args.sample_pixels
    codec = get_codec(args.model, "cpu")
    paths = list_images(args.folder)
    if args.images:
        wanted = args.images.split(",")
        paths = [p for p in paths if p.stem in wanted]
    per_image = {}
    for path in paths:
        t0 = time.perf_counter()
        pixels = load_image(path).pixels
        rows, levels = measure(codec, pixels, args.seed)
        per_image[path.stem] = rows
        print(f"{path.stem}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if args.strip and path.stem == args.strip_image:
            box = [int(v) for v in args.crop.split(",")]
            steps = {int(v) for v in args.strip_steps.split(",")}
            write_strip(levels, pixels, box, steps, args.strip)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(per_image, indent=1))
    print(f"{len(per_image)} images ({', '.join(per_image)}), sampling seed {args.seed}")
    print(table(per_image))


if __name__ == "__main__":
    main()
