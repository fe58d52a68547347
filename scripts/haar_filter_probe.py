"""Upper bound of a per-band Haar-domain filter on the prior locations, on top of the display filters.

    python scripts/haar_filter_probe.py N_IMAGES [RADIUS]     # the first N of the 6 held-aside photos

For every Haar step from 3 on and every detail band, each (orientation, colour) of the coded
coefficients gets its location moved by a least-squares combination (weighted by 1/scale) of the
band's locations over a (2R+1)^2 window in all three colours, fitted on the image itself with
unquantised taps and no side information counted: an optimistic bound. Measured, not kept
(docs/MODEL.md section 13).
"""

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import load_crops

from uqdm_codec import entropy, get_codec
from uqdm_codec.codec import ChainRun

H = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "train"
HELD_ASIDE = (
    "bsds500/test_100007.jpg",
    "bsds500/train_183087.jpg",
    "imagenet_sample/n01665541_leatherback_turtle.JPEG",
    "imagenet_sample/n02165456_ladybug.JPEG",
    "imagenet_sample/n03404251_fur_coat.JPEG",
    "imagenet_sample/n04355338_sundial.JPEG",
)
IMGS = [H / p for p in HELD_ASIDE]


def main() -> None:
    codec = get_codec()
    R = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    tab = {}

    def bits(chain, prior, xs):
        _, coded = chain.coding_prior(prior, xs)
        p = coded.part(slice(None))
        return entropy.step_element_bits(entropy.quantise(xs, p), p)

    for seed, px in enumerate(load_crops(IMGS[: int(sys.argv[1])], 512)):
        h, w = px.shape[:2]
        T = codec.num_steps
        run = ChainRun(codec, px, seed)
        chain = run.chain
        for i in range(1, T):
            prior = run.prior(i)
            xs = run.values(i)
            if i >= 3:
                b0 = bits(chain, prior, xs)
                loc = prior.loc.copy()
                for b in range(1, chain.levels + 1):
                    est = chain.estimate[b]  # (3 orient, 3 colours, hh, ww) clipped locs
                    s0, s1 = chain._band_start[b], chain._band_start[b + 1]
                    if s1 - s0 < 200:
                        continue
                    flat = chain.coded_flat[s0:s1].astype(np.int64)
                    hh, ww = est.shape[-2:]
                    o, c, yy, xx = (
                        flat // (3 * hh * ww),
                        (flat // (hh * ww)) % 3,
                        (flat % (hh * ww)) // ww,
                        flat % ww,
                    )
                    pad = np.pad(est, ((0, 0), (0, 0), (R, R), (R, R)), mode="edge")
                    m = prior.loc[s0:s1]
                    sc = prior.scale[s0:s1]
                    t = xs[s0:s1] - m
                    new = m.copy()
                    for oc in range(9):
                        sel = np.flatnonzero(o * 3 + c == oc)
                        if sel.size < 100:
                            continue
                        oo = oc // 3
                        feats = [
                            pad[oo, c2, yy[sel] + dy, xx[sel] + dx]
                            for c2 in range(3)
                            for dy in range(2 * R + 1)
                            for dx in range(2 * R + 1)
                        ]
                        F = np.stack(feats + [np.ones(sel.size)], 1)
                        wgt = 1 / sc[sel]
                        beta = np.linalg.lstsq(F * wgt[:, None], t[sel] * wgt, rcond=None)[0]
                        new[sel] = m[sel] + F @ beta
                    loc[s0:s1] = new
                b1 = bits(chain, replace(prior, loc=loc), xs)
                for b in range(chain.levels + 1):
                    sel = chain.coded_band == b
                    r = tab.setdefault((i, b), [0.0, 0.0])
                    r[0] += b0[sel].sum() / (h * w)
                    r[1] += b1[sel].sum() / (h * w)
            p, k = run.code_all(i, prior, xs)
            run.finish(i, float(entropy.step_element_bits(k, p).sum()))
    t0 = t1 = 0
    for key, (a, b) in sorted(tab.items()):
        t0 += a
        t1 += b
        if a > 0.005:
            print(key, round(a, 4), round(b, 4), f"{100 * (b / a - 1):+.1f}%")
    print("total", t0, t1, f"{100 * (t1 / t0 - 1):+.2f}%")


if __name__ == "__main__":
    main()
