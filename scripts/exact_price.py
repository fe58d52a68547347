"""What the exact integer network costs: rate-distortion of .uqd files against a reference bench.

    python scripts/exact_price.py runs/portability ../shared/data/kodak \\
        --reference docs/bench/results-float-0.2.json

Decodes every .uqd file in FOLDER (made by scripts/portability.py from the images in IMAGES),
measures real bytes and PSNR-RGB after every layer, and reports the BD-rate of the mean curve
(diffusion steps 1..T) against the same images' curve in a `uqdm bench` results.json (the float
model of uqdm 0.2), and the lossless bpp of both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


import uqdm_codec  # noqa: E402
from uqdm_codec import files  # noqa: E402
from uqdm_codec.bench import _mean_curve, bd_rate, psnr  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help=".uqd files")
    ap.add_argument("images", type=Path, help="the originals (same stems, .png)")
    ap.add_argument("--reference", type=Path, required=True, help="results.json of `uqdm bench`")
    ap.add_argument("--out", type=Path, default=None, help="write the curves as JSON")
    args = ap.parse_args()
    ref = {im["name"]: im for im in json.loads(args.reference.read_text())["images"]}
    codec = uqdm_codec.get_codec(None, "cpu")
    T = codec.num_steps
    ours, theirs, rows = [], [], []
    for path in sorted(args.folder.glob("*.uqd")):
        name = f"{path.stem}.png"
        if name not in ref:
            continue
        pixels = load_image(args.images / name).pixels
        data = path.read_bytes()
        fi = files.info(data)
        ends = [fi.header_bytes] + [layer.end for layer in fi.layers]
        npx = pixels.shape[0] * pixels.shape[1]
        images = codec.iter_decode(data)
        curve = [(8.0 * ends[k] / npx, psnr(pixels, im.pixels)) for k, im in enumerate(images)]
        ours.append(curve)
        theirs.append(list(zip(ref[name]["layer_bpp"], ref[name]["layer_psnr"])))
        rows.append({"image": name, "curve": curve})
        lossless = ref[name]["layer_bpp"][-1]
        print(f"{name}: lossless {curve[-1][0]:.3f} bpp (reference {lossless:.3f})", flush=True)
    a, b = _mean_curve(ours), _mean_curve(theirs)
    bd = bd_rate(b[1 : T + 1], a[1 : T + 1])
    print("\n| after step | " + " | ".join(str(k) for k in range(1, T + 1)) + " | lossless |")
    print("|---" * (T + 2) + "|")
    print("| exact bpp | " + " | ".join(f"{p[0]:.3f}" for p in a[1:]) + " |")
    print("| exact dB | " + " | ".join(f"{p[1]:.2f}" for p in a[1 : T + 1]) + " | exact |")
    print("| reference bpp | " + " | ".join(f"{p[0]:.3f}" for p in b[1:]) + " |")
    print("| reference dB | " + " | ".join(f"{p[1]:.2f}" for p in b[1 : T + 1]) + " | exact |")
    print(f"\n{len(ours)} images; BD-rate of the exact model against the reference: {bd:+.2f} %")
    print(f"lossless: {a[-1][0]:.3f} bpp against {b[-1][0]:.3f} ({100 * (a[-1][0] / b[-1][0] - 1):+.2f} %)")
    if args.out:
        args.out.write_text(
            json.dumps({"bd_rate_percent": bd, "exact": a, "reference": b, "images": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
