"""Small and thin images: the plain file against early tails (docs/MODEL.md section 56).

    python scripts/small_shapes.py runs/held.txt [--json F]

For every photo listed (one path a line), seven shapes cut from it: its middle row (1 px tall), 4
middle rows, its middle column, the 17 x 17 top-left corner, 64 and 128 px wide thumbnails
(Lanczos) and the 40 x 200 top-left crop. Each is encoded with the shipped model, `--fast`, seed 1:
as a plain file and with the tail after every step S (`--tail-after S`, 0 .. T-1), and every file
is decoded back and must equal the original. Prints the summed sizes per shape, then for the
128 px thumbnail and the 4-row strip the PSNR of the best prefix within 0.5, 1, 2 and 4 bpp (the
curve a cut file follows) of the plain file and of the tails after steps 0 and 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np
from PIL import Image

from uqdm_codec import files, get_codec
from uqdm_codec.image_io import load_image
from uqdm_codec.progression import psnr


def shapes(full: np.ndarray) -> dict[str, np.ndarray]:
    h, w = full.shape[:2]
    thumb = {n: Image.fromarray(full).resize((n, max(1, n * h // w)), Image.LANCZOS) for n in (64, 128)}
    cut = {
        "row1": full[h // 2 : h // 2 + 1],
        "row4": full[h // 2 : h // 2 + 4],
        "col1": full[:, w // 2 : w // 2 + 1],
        "17x17": full[:17, :17],
        "thumb64": np.asarray(thumb[64]),
        "thumb128": np.asarray(thumb[128]),
        "crop40x200": full[:40, :200],
    }
    return {name: np.ascontiguousarray(px) for name, px in cut.items()}


def curve(codec, data: bytes, pixels: np.ndarray) -> list[tuple[float, float]]:
    """(bpp, PSNR) of the image at every chunk boundary of the file."""
    per_pixel = 8 / (pixels.shape[0] * pixels.shape[1])
    return [
        (cut * per_pixel, psnr(codec.decode(data[:cut]).pixels, pixels))
        for cut in files.info(data).cut_points
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", help="a file listing the photos, one path a line")
    ap.add_argument("--json", help="write every row (shape, sizes, curves) here as JSON lines")
    args = ap.parse_args()
    codec = get_codec()
    rows = []
    for path in [line.strip() for line in open(args.photos) if line.strip()]:
        for name, pixels in shapes(load_image(path).pixels).items():
            row = {"photo": Path(path).name, "shape": name, "size": list(pixels.shape[:2]), "sizes": {}}
            for kind, options in [("plain", {"tail": False})] + [
                (f"t{s}", {"tail_after": s}) for s in range(codec.num_steps)
            ]:
                data = codec.encode(pixels, seed=1, fast=True, **options)
                assert np.array_equal(codec.decode(data).pixels, pixels), (path, name, kind)
                row["sizes"][kind] = len(data)
                if name in ("thumb128", "row4") and kind in ("plain", "t0", "t3"):
                    row.setdefault("curves", {})[kind] = curve(codec, data, pixels)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text("".join(json.dumps(r) + "\n" for r in rows))
    total: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        for kind, size in row["sizes"].items():
            total[row["shape"]][kind] += size
    print(
        f"{'shape':11} {'plain':>8} " + " ".join(f"{'after ' + str(s):>13}" for s in range(codec.num_steps))
    )
    for name, sizes in total.items():
        plain = sizes["plain"]
        tails = " ".join(
            f"{sizes[f't{s}']:>6} {sizes[f't{s}'] / plain - 1:+6.1%}" for s in range(codec.num_steps)
        )
        print(f"{name:11} {plain:>8} {tails}")
    for name in ("thumb128", "row4"):
        for kind in ("plain", "t0", "t3"):
            at = []
            for rate in (0.5, 1, 2, 4):
                best = [
                    np.mean(
                        [
                            max([p for b, p in r["curves"][kind] if b <= rate] or [0])
                            for r in rows
                            if r["shape"] == name
                        ]
                    )
                ]
                at.append(f"{rate:g} bpp {best[0]:5.2f} dB")
            print(f"{name} {kind:5}: mean PSNR of the best prefix within " + ", ".join(at))


if __name__ == "__main__":
    main()
