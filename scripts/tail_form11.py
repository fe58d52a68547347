"""Study: what the tail's form 11 (raster planes bounded by every band's known intervals through
block sums) buys over form 10, real files.

    python scripts/tail_form11.py IMAGES... [--after 7 ...] [--crop 512] [--json F]

Encodes each photo's centre crop (seed = index, `--fast`) with a lossless tail after step S (7:
`--tail on`) as form 11 (the shipped tail) and decodes the file back to the original; then codes
the same tail, given the same image after step S and the same known intervals, as form 10 (uqdm
0.34) and puts its layer in the form-11 layer's place. Prints each file's bits per pixel both
ways, the change and the seconds each tail took to code (encoder and its check decode), and the
mean. docs/MODEL.md section 39.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import finish_rows, load_crops, parser, print_row

from uqdm_codec import codec as codec_module
from uqdm_codec import get_codec
from uqdm_codec import lossless_tail as lt


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--after", type=int, nargs="+", default=[7])
    args = ap.parse_args()
    seen = []
    tail_layer = codec_module.Codec._tail_layer

    def keep(index, pixels, side, judge, intervals):
        seen.append((index, side.copy(), copy.copy(judge), intervals))
        return tail_layer(index, pixels, side, judge, intervals)

    codec_module.Codec._tail_layer = staticmethod(keep)
    codec = get_codec()
    rows = []
    shipped = lt.FORM
    for seed, (px, path) in enumerate(zip(load_crops(args.images, args.crop), args.images)):
        row: dict = {"image": path.name}
        for after in args.after:
            seen.clear()
            data = codec.encode(px, seed=seed, fast=True, tail=True, tail_after=after)
            out = codec.decode(data)
            if not (out.lossless and np.array_equal(out.pixels, px)):
                raise AssertionError(f"{path.name}: the form-{shipped} file does not decode to the original")
            index, side, judge, intervals = seen[-1]
            sizes, seconds = {}, {}
            for form in (shipped, 10):
                lt.FORM = form
                try:
                    start = time.perf_counter()
                    sizes[form] = len(tail_layer(index, px, side, copy.copy(judge), intervals).to_bytes())
                    seconds[form] = time.perf_counter() - start
                finally:
                    lt.FORM = shipped
            pixels = px.shape[0] * px.shape[1]
            old = len(data) - sizes[shipped] + sizes[10]
            row[f"form10_after{after}"] = 8.0 * old / pixels
            row[f"form{shipped}_after{after}"] = 8.0 * len(data) / pixels
            row[f"change_after{after}"] = 100.0 * (len(data) - old) / old
            row[f"tail_seconds_form10_after{after}"] = seconds[10]
            row[f"tail_seconds_form{shipped}_after{after}"] = seconds[shipped]
        rows.append(row)
        print_row(row)
    finish_rows(rows, args.json)


if __name__ == "__main__":
    main()
