"""Study: what a new form of the lossless tail buys over an older one, real files.

    python scripts/tail_new_form.py IMAGES... [--forms OLD NEW] [--after 7 ...] [--crop 512] [--json F]

Encodes each photo's centre crop (seed = index, `--fast`) with a lossless tail after step S (7:
`--tail on`) as the shipped form and decodes the file back to the original; then codes the same
tail, given the same image after step S and the same known intervals, as form OLD and as form NEW
(default 10 and 11) and puts each layer in the shipped layer's place. Prints each file's bits per
pixel both ways, the change and the seconds each tail took to code (its encoder and the check
decode), and the means. `--forms 9 10`: docs/MODEL.md section 38 (form 10 against form 9);
`--forms 10 11`: section 39 (form 11 against form 10).
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
    ap.add_argument("--forms", type=int, nargs=2, default=[10, 11], metavar=("OLD", "NEW"))
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
    old, new = args.forms
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
            for form in (shipped, old, new):
                lt.FORM = form
                try:
                    start = time.perf_counter()
                    sizes[form] = len(tail_layer(index, px, side, copy.copy(judge), intervals).to_bytes())
                    seconds[form] = time.perf_counter() - start
                finally:
                    lt.FORM = shipped
            pixels = px.shape[0] * px.shape[1]
            steps = len(data) - sizes[shipped]  # the header and the layers before the tail
            row[f"form{old}_after{after}"] = 8.0 * (steps + sizes[old]) / pixels
            row[f"form{new}_after{after}"] = 8.0 * (steps + sizes[new]) / pixels
            row[f"change_after{after}"] = 100.0 * (sizes[new] - sizes[old]) / (steps + sizes[old])
            row[f"tail_seconds_form{old}_after{after}"] = seconds[old]
            row[f"tail_seconds_form{new}_after{after}"] = seconds[new]
        rows.append(row)
        print_row(row)
    finish_rows(rows, args.json)


if __name__ == "__main__":
    main()
