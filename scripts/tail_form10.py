"""Study: what the tail's form 10 (pixels bounded by the chain's known intervals) buys, real files.

    python scripts/tail_form10.py IMAGES... [--after 7 ...] [--crop 512] [--json F]

Encodes each photo's centre crop (seed = index, `--fast`) with a lossless tail after step S (7:
`--tail on`), as form 10 (the shipped tail: each pixel's prior truncated to the levels the finest
Haar band's known intervals leave it, lossless_tail.Intervals) and decodes the file back to the
original; then codes the same tail, given the same image after step S, as form 9 (uqdm 0.33) and
puts its layer in the form-10 layer's place. Prints each file's bits per pixel both ways and the
change, and the mean. docs/MODEL.md section 38.
"""

from __future__ import annotations

import copy
import sys
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
    for seed, (px, path) in enumerate(zip(load_crops(args.images, args.crop), args.images)):
        row: dict = {"image": path.name}
        for after in args.after:
            seen.clear()
            data = codec.encode(px, seed=seed, fast=True, tail=True, tail_after=after)
            out = codec.decode(data)
            if not (out.lossless and np.array_equal(out.pixels, px)):
                raise AssertionError(f"{path.name}: the form-10 file does not decode to the original")
            index, side, judge, intervals = seen[-1]
            new = len(tail_layer(index, px, side, copy.copy(judge), intervals).to_bytes())
            lt.FORM = 9
            try:
                old = len(tail_layer(index, px, side, judge, intervals).to_bytes())
            finally:
                lt.FORM = 10
            pixels = px.shape[0] * px.shape[1]
            row[f"form9_after{after}"] = 8.0 * (len(data) - new + old) / pixels
            row[f"form10_after{after}"] = 8.0 * len(data) / pixels
            row[f"change_after{after}"] = 100.0 * (new - old) / (len(data) - new + old)
        rows.append(row)
        print_row(row)
    finish_rows(rows, args.json)


if __name__ == "__main__":
    main()
