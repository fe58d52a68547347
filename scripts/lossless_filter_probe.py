"""Probe: would a per-image filter over the pixel step's samples x~ sharpen the lossless layer?

    python scripts/lossless_filter_probe.py N_IMAGES      # the first N of the 6 held-aside photos

After the pixel step (chain driven as the encoder does, display filters included) every pixel's
x~ is known. Per colour, the lossless layer's location becomes a least-squares combination
(fitted on the image, unquantised, no side information counted) of the prior location and the
x~ of the 3x3 neighbourhood in all three colours, with the best of a few scale factors; prints
the lossless layer's bits per pixel before and after. Measured, not kept (docs/MODEL.md 13).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from haar_filter_probe import IMGS
from study_common import load_crops

from uqdm_codec import entropy, get_codec
from uqdm_codec.codec import ChainRun


def main() -> None:
    codec = get_codec()
    R = 1
    res = []

    def shift(a, dy, dx):
        h, w = a.shape[-2:]
        p = np.pad(a, ((R, R), (R, R)), mode="edge")
        return p[R + dy : R + dy + h, R + dx : R + dx + w]

    for seed, px in enumerate(load_crops(IMGS[: int(sys.argv[1])], 512)):
        h, w = px.shape[:2]
        run = ChainRun(codec, px, seed)
        x = run.x
        for i in range(1, codec.num_steps + 1):
            coded, k = run.code_all(i, run.prior(i), run.values(i))
            run.finish(i, float(entropy.step_element_bits(k, coded).sum()))
        xt = run.chain.pixel_tilde
        q = codec.model.schedule.pixel_quant
        levels = px.transpose(2, 0, 1).ravel()
        base = entropy.levels_element_bits(levels, xt, coded.loc, coded.scale, q).sum()
        L = coded.loc.reshape(3, h, w)
        X = xt.reshape(3, h, w)
        best = None
        newloc = np.empty_like(L)
        for c in range(3):
            feats = (
                [L[c]]
                + [shift(X[c2], dy, dx) for c2 in range(3) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
                + [np.ones((h, w))]
            )
            F = np.stack([f.ravel() for f in feats], 1)
            beta = np.linalg.lstsq(F, x[c].ravel(), rcond=None)[0]
            newloc[c] = (F @ beta).reshape(h, w)
        for f in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
            b = entropy.levels_element_bits(levels, xt, newloc.ravel(), coded.scale * f, q).sum()
            best = b if best is None else min(best, b)
        print(seed, base / (h * w), best / (h * w), flush=True)
        res.append((base / (h * w), best / (h * w)))
    r = np.mean(res, 0)
    print("mean", r, f"{100 * (r[1] / r[0] - 1):+.1f}%")


if __name__ == "__main__":
    main()
