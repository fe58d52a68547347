"""Where the bits go: bits, coded fraction and error removed per diffusion step and Haar band.

    python scripts/account.py IMAGES... [--out table.md] [--json account.json] [--crop 512]

Each image is centre-cropped to at most CROP x CROP and to a multiple of the network's block
(16), so that no padding enters the band statistics; image k is coded with seed k. The tables
(uqdm_codec/accounting.py says what every column means) are printed and written to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from uqdm_codec import accounting, get_codec  # noqa: E402
from uqdm_codec.bench import center_crop  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="write the markdown tables here")
    ap.add_argument("--json", type=Path, help="write every number here")
    ap.add_argument("--crop", type=int, default=512, help="centre crop to at most CROP x CROP")
    ap.add_argument("--model", default=None, help="model name or .safetensors path (default: shipped)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    codec = get_codec(args.model, args.device)
    block = codec.net.multiple
    accounts = []
    for seed, path in enumerate(args.images):
        pixels = center_crop(load_image(path).pixels, args.crop)
        h, w = pixels.shape[:2]
        h2, w2 = (h - h % block) or h, (w - w % block) or w
        y, x = (h - h2) // 2, (w - w2) // 2
        pixels = np.ascontiguousarray(pixels[y : y + h2, x : x + w2])
        t0 = time.perf_counter()
        accounts.append(accounting.account_image(codec, pixels, seed=seed))
        print(
            f"{path}: {pixels.shape[1]}x{pixels.shape[0]}, {time.perf_counter() - t0:.1f} s", file=sys.stderr
        )
    total = accounting.combine(accounts)
    table = accounting.to_markdown(total, codec.num_steps)
    print(table)
    if args.out:
        args.out.write_text(table)
    if args.json:
        doc = {
            "images": [str(p) for p in args.images],
            "model": codec.model.config.name,
            "total": accounting.to_dict(total),
            "per_image": [accounting.to_dict(a) for a in accounts],
        }
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
