"""Study: does the network's pixel-step scale help green's raster coder choose its scales?

    python scripts/tail_net_scale.py IMAGES... [--crop 512] [--json F]

Encodes each photo's centre crop (seed = index, `--fast`, `--tail on`) and keeps what the tail after
step T-1 is given (the image then and the known intervals) and the network's scale for each pixel
at that state (the pixel step's prior scale, which a tail file never uses). Then codes green in
raster order (form 11, estimated bits, parameters included) as shipped and with one more activity
term, weighted by the encoder's fit like the others: `linear`, min(rint(8 s), 4095) with s the
scale in levels; `log`, rint(64 log2(1 + s)); `linear+WN`, the linear term at the pixel, W and N.
Prints each variant's change in green's bits per photo and over all. docs/MODEL.md section 40.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import finish_rows, load_crops, parser, print_row

from uqdm_codec import codec as codec_module
from uqdm_codec import get_codec
from uqdm_codec import tail_green as tg

VARIANTS = {
    "linear": (lambda s: np.minimum(np.rint(8 * s), 4095), lambda g: [0]),
    "log": (lambda s: np.rint(64 * np.log2(1 + s)), lambda g: [0]),
    "linear+WN": (lambda s: np.minimum(np.rint(8 * s), 4095), lambda g: [0] + g._causal[:2]),
}


def main() -> None:
    args = parser(__doc__).parse_args()
    seen: dict = {}
    predict, tail_layer, features = (
        codec_module._Chain.predict,
        codec_module.Codec._tail_layer,
        tg.Grid.features,
    )

    def keep_prediction(chain, step):
        seen["pred"], seen["shape"] = predict(chain, step), (chain.h, chain.w)
        return seen["pred"]

    def keep_tail(index, pixels, side, judge, intervals):
        seen["side"], seen["intervals"] = side.copy(), intervals
        seen["scale"] = seen["pred"].pixel_scale_crop(*seen["shape"])  # (3, H, W), data units
        return tail_layer(index, pixels, side, judge, intervals)

    extra: dict = {}

    def with_term(grid, at):
        feats, terms = features(grid, at)
        if extra:
            cols = [extra["plane"][at + offset][:, None] for offset in extra["offsets"](grid)]
            terms = np.concatenate([terms, *cols], 1)
        return feats, terms

    codec_module._Chain.predict = keep_prediction
    codec_module.Codec._tail_layer = staticmethod(keep_tail)
    tg.Grid.features = with_term
    codec = get_codec()
    rows, totals = [], dict.fromkeys(["shipped", *VARIANTS], 0.0)
    for seed, (px, path) in enumerate(zip(load_crops(args.images, args.crop), args.images)):
        extra.clear()  # the shipped tail for the file itself
        codec.encode(px, seed=seed, fast=True, tail=True)
        side, intervals = seen["side"], seen["intervals"].for_form(11)
        scale = seen["scale"][1] * 127.5  # green, in levels
        bits = {}
        for name in totals:
            extra.clear()
            if name != "shipped":
                term, offsets = VARIANTS[name]
                padded = np.pad(term(scale).astype(np.int64), ((tg.PAD, 1), (tg.PAD, tg.PAD)), mode="edge")
                extra.update(plane=padded.ravel(), offsets=offsets)
            bits[name] = tg.encode(px[..., 1], side[..., 1], 11, None, intervals, 1).bits
            totals[name] += bits[name]
        row = {"image": path.name, "median scale": float(np.median(scale))}
        row |= {f"{name} %": 100 * (bits[name] / bits["shipped"] - 1) for name in VARIANTS}
        rows.append(row)
        print_row(row)
    finish_rows(rows, args.json)
    print(
        "all photos' green: "
        + "  ".join(f"{n} {100 * (totals[n] / totals['shipped'] - 1):+.2f} %" for n in VARIANTS)
    )


if __name__ == "__main__":
    main()
