"""What the display filters buy (docs/MODEL.md section 13): real files with and without them.

    python scripts/filter_study.py IMAGES... --json out.json [--crop 512] [--timing]

Each image (centre crop, sides cut to multiples of 16) is encoded with the same seed by the shipped
codec with and without display filters (`Codec(display_filters=False)`, which also leaves every
prior on the network's locations) and decoded after every chunk; BD-rate per image over all those
real points, the lossless size, the step points (bpp, PSNR after each complete step) and the time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from study_common import load_crops, parser  # noqa: E402

from uqdm_codec import get_codec  # noqa: E402
from uqdm_codec.bench import bd_rate  # noqa: E402
from uqdm_codec.codec import Codec  # noqa: E402
from uqdm_codec.progression import psnr  # noqa: E402


def measure(codec: Codec, pixels: np.ndarray, seed: int) -> dict:
    npx = pixels.shape[0] * pixels.shape[1]
    t0 = time.perf_counter()
    data = codec.encode(pixels, seed=seed)
    t1 = time.perf_counter()
    points, steps = [], []
    for image in codec.iter_decode(data, every_chunk=True):
        if image.lossless:
            continue
        point = (8.0 * image.nbytes / npx, psnr(pixels, image.pixels))
        if point[0] > 0:
            points.append(point)
        if image.complete and image.layer > 0:
            steps.append(point)
    return {
        "curve": points,
        "steps": steps,
        "lossless_bpp": 8.0 * len(data) / npx,
        "encode_s": t1 - t0,
        "decode_s": time.perf_counter() - t1,
    }


def timing(variants: dict, images: list[np.ndarray]) -> dict:
    """Encode and decode (every layer, no intermediate images) each image with each variant in
    turn: seconds per image, interleaved so that both see the same machine."""
    out: dict = {name: {"encode_s": [], "decode_s": []} for name in variants}
    for seed, px in enumerate(images):
        for name, codec in variants.items():
            t0 = time.perf_counter()
            data = codec.encode(px, seed=seed)
            t1 = time.perf_counter()
            assert np.array_equal(codec.decode(data).pixels, px)
            out[name]["encode_s"].append(t1 - t0)
            out[name]["decode_s"].append(time.perf_counter() - t1)
    for name, r in out.items():
        print(
            f"{name}: encode {np.mean(r['encode_s']):.2f} s, decode {np.mean(r['decode_s']):.2f} s per image"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--timing", action="store_true", help="only time encode and full decode")
    args = ap.parse_args(argv)
    images = load_crops(args.images, args.crop)
    codec = get_codec()
    variants = {"plain": Codec(codec.model, display_filters=False), "filters": codec}
    if args.timing:
        out = timing(variants, images)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
        return
    out = {name: [measure(c, px, seed) for seed, px in enumerate(images)] for name, c in variants.items()}
    per_image = [bd_rate(a["curve"], b["curve"]) for a, b in zip(out["plain"], out["filters"])]
    out["bd_rate_per_image"] = per_image
    print(
        f"BD-rate of the display filters, every chunk: {np.mean(per_image):+.2f} % "
        f"(per image {', '.join(f'{b:+.1f}' for b in per_image)})"
    )
    for name in variants:
        runs = out[name]
        steps = np.mean([r["steps"] for r in runs], axis=0)
        print(
            f"{name}: lossless {np.mean([r['lossless_bpp'] for r in runs]):.3f} bpp, "
            f"encode {np.mean([r['encode_s'] for r in runs]):.2f} s, "
            f"decode {np.mean([r['decode_s'] for r in runs]):.2f} s; "
            "steps (bpp/dB): " + ", ".join(f"{b:.3f}/{d:.2f}" for b, d in steps)
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
