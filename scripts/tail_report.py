"""Real files with and without the lossless tail: sizes, times, and the images between step T-1 and lossless.

    python scripts/tail_report.py IMAGES... [--crop 512] [--json F]

For each photo (centre crop, seed = index) the shipped model encodes the file twice (`--fast`):
`tail=False` (the pixel step and the lossless layer) and `tail=True` (the interlaced tail after
step T-1, FORMAT.md 6.6). Both decode to the original (checked). Prints, per photo: the lossless
size of each (real bytes), the prefix they share (steps 1..T-1), encode and decode seconds, and the
PSNR of each file's images between step T-1 and lossless (every chunk point), interpolated at a
quarter, half and three quarters of the way from step T-1's bytes to the plain file's lossless
bytes. docs/MODEL.md section 27.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import finish_rows, load_crops, parser, print_row

from uqdm_codec import files, get_codec
from uqdm_codec.bench import psnr

FRACTIONS = (0.25, 0.5, 0.75)


def main() -> None:
    args = parser(__doc__).parse_args()
    codec = get_codec()
    T = codec.num_steps
    rows = []
    for seed, (path, px) in enumerate(zip(args.images, load_crops(args.images, args.crop))):
        npx = px.shape[0] * px.shape[1]
        row: dict = {"image": path.name}
        curves = {}
        for name, tail in (("plain", False), ("tail", True)):
            t0 = time.perf_counter()
            data = codec.encode(px, seed=seed, fast=True, tail=tail)
            row[f"{name} encode s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            points = list(codec.iter_decode(data, every_chunk=True))
            row[f"{name} decode s"] = time.perf_counter() - t0
            assert points[-1].lossless and np.array_equal(points[-1].pixels, px)
            row[f"{name} bpp"] = 8.0 * len(data) / npx
            prefix = files.info(data).layers[T - 2].end
            row["steps 1..T-1 bpp"] = 8.0 * prefix / npx
            curves[name] = [
                (8.0 * p.nbytes / npx, min(psnr(px, p.pixels), 99.0)) for p in points if p.nbytes >= prefix
            ]
        row["tail vs plain %"] = 100.0 * (row["tail bpp"] / row["plain bpp"] - 1.0)
        lo, hi = row["steps 1..T-1 bpp"], row["plain bpp"]
        for f in FRACTIONS:
            at = lo + f * (hi - lo)
            for name, curve in curves.items():
                rates, quality = zip(*curve)
                row[f"{name} dB at {f:.2f}"] = float(np.interp(at, rates, quality))
        rows.append(row)
        print_row(row)
    finish_rows(rows, args.json)


if __name__ == "__main__":
    main()
