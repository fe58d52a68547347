"""Early tails (uqdm 0.27, `encode --tail-after S`): real files, whole and cut to budgets.

    python scripts/early_tail.py IMAGES... [--crop 512] [--after 0 2 4] [--budgets 0.5 1 2 4] [--json F]

Each photo (centre crop; `--crop 100000` for whole images) is encoded with the shipped model,
`--fast` and seed = index: as a plain file, with `--tail on` (the tail after step T-1), and with
the tail after each step S of `--after`. Every file is decoded back and must equal the original.
Prints, per photo, the whole files' bits per pixel next to JPEG 2000 reversible, WebP lossless
and JPEG XL lossless (real bytes), and the PSNR of each file cut by `truncate --bpp B` for each
budget B: what an early tail gives up between step S and the lossless end (docs/MODEL.md
section 31).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import finish_rows, load_crops, parser, print_row

from uqdm_codec import files, get_codec
from uqdm_codec.bench import baseline_settings, missing_baselines
from uqdm_codec.progression import psnr

LOSSLESS = ("JPEG 2000 reversible", "WebP lossless", "JPEG XL lossless")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--after", type=int, nargs="+", default=[0, 2, 4])
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    args = ap.parse_args()
    codec = get_codec()
    baselines = baseline_settings()
    rows = []
    for seed, (path, px) in enumerate(zip(args.images, load_crops(args.images, args.crop))):
        npx = px.shape[0] * px.shape[1]
        row: dict = {"image": path.name}
        for name in LOSSLESS:
            if name not in missing_baselines():
                size, rec = baselines[name][0](px)
                assert np.array_equal(rec, px)
                row[name] = 8.0 * size / npx
        kinds = {"plain": {}, "tail on": {"tail": True}}
        kinds.update({f"after {s}": {"tail_after": s} for s in args.after})
        for kind, options in kinds.items():
            data = codec.encode(px, seed=seed, fast=True, **options)
            assert np.array_equal(codec.decode(data).pixels, px), f"{path.name}, {kind}: not lossless"
            row[kind] = 8.0 * len(data) / npx
            for budget in args.budgets:
                cut = codec.decode(files.truncate(data, bpp=budget))
                row[f"{kind} @{budget:g} dB"] = psnr(px, cut.pixels)
        rows.append(row)
        print_row(row)
    finish_rows(rows, args.json)


if __name__ == "__main__":
    main()
