"""Study: how far a tail's pixels could be bounded by the chain's known intervals at all, against
what forms 10 and 11 bound them to (estimates; needs scipy: `pip install scipy`).

    python scripts/tail_lp.py IMAGES... [--samples 1500] [--crop 512] [--json F]

Each photo's centre crop (seed = index) is encoded with `--tail on` (a tail after step 7), and the
known intervals of every Haar band after step 7 are kept. For a random sample of pixels, green in
raster order: the exact bounds every interval of the pixel's 16 x 16 block gives it, with the
pixels of earlier wavefronts known and the rest free in [0, 255] (two linear programs), against
form 10's bounds (the finest band with the block's known pixels) and form 11's (every band,
through the sums of complete blocks). Bits: green's form-9 prior (tail_green.choose) with its
location clipped into each bound and truncated to it. docs/MODEL.md section 39.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import finish_rows, load_crops, parser, print_row
from tail_floor import green_prior, mass, mass_between

from uqdm_codec import codec as codec_module
from uqdm_codec import get_codec, haar, tail_green

BLOCK, LEVELS = 16, 4


def truncated_bits(v: int, mu: float, scale: float, low: int, high: int) -> float:
    m = np.array([min(max(mu, low), high)])
    s = np.array([scale])
    inside = mass_between(np.array([low]), np.array([high]), m, s)
    return float(-np.log2(mass(np.array([v]), m, s))[0] + np.log2(inside)[0])


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--samples", type=int, default=1500)
    args = ap.parse_args()
    try:
        from scipy.optimize import linprog
    except ImportError:
        sys.exit("tail_lp.py needs scipy: pip install scipy")
    # the Haar transform of a 16 x 16 block as a matrix (coefficients x pixels), and the whole bands
    eye = np.eye(BLOCK * BLOCK).reshape(-1, 1, BLOCK, BLOCK)
    matrix = np.stack([np.concatenate([b.ravel() for b in haar.forward(e, LEVELS)]) for e in eye]).T
    offset = matrix @ np.full(BLOCK * BLOCK, -127.5)  # 128 c = H v + offset (the LL row only)
    shifts = [LEVELS] + [LEVELS + 1 - k for k in range(1, LEVELS + 1)]
    whole = np.concatenate(
        [
            np.full(b.size, 256.0 * 2.0**s)
            for b, s in zip(haar.forward(np.zeros((1, BLOCK, BLOCK)), LEVELS), shifts)
        ]
    )
    grabbed = []
    tail_intervals = codec_module._Chain.tail_intervals

    def grab(chain):
        grabbed.append(tail_intervals(chain))
        return grabbed[-1]

    codec_module._Chain.tail_intervals = grab
    sides = []
    tail_layer = codec_module.Codec._tail_layer

    def keep(index, pixels, side, judge, intervals):
        sides.append(side.copy())
        return tail_layer(index, pixels, side, judge, intervals)

    codec_module.Codec._tail_layer = staticmethod(keep)
    rng = np.random.default_rng(0)
    rows = []
    for seed, (px, path) in enumerate(zip(load_crops(args.images, args.crop), args.images)):
        grabbed.clear()
        sides.clear()
        get_codec().encode(px, seed=seed, fast=True, tail=True)
        intervals, side = grabbed[-1], sides[-1]
        h, w = px.shape[:2]
        c = 1
        g = green_prior(px[..., c], side[..., c])
        at = np.zeros(h * w, np.int64)
        at[g["order"]] = np.arange(h * w)
        mu, scale, v = g["mu"][at], g["scale"][at], px[..., c].ravel().astype(np.int64)
        bounds = {}
        for form in (10, 11):
            grid = tail_green.Grid(h, w, side[..., c], form, None, intervals.for_form(form), c)
            grid.set_levels(px[..., c])
            low, high = np.empty(h * w, np.int64), np.empty(h * w, np.int64)
            low[grid.order], high[grid.order] = tail_green.choose(grid, g["v"]).bounds
            bounds[form] = low, high
        bands = [
            (lo, hi)
            for lo, hi in zip(
                [*intervals.coarse_lower, intervals.lower], [*intervals.coarse_upper, intervals.upper]
            )
        ]
        bits = {"form10": [], "form11": [], "all_bands": []}
        for p in rng.choice(h * w, args.samples, replace=False):
            i, j = divmod(int(p), w)
            y0, x0 = i // BLOCK * BLOCK, j // BLOCK * BLOCK
            ends = [
                np.concatenate(
                    [
                        b[..., c, y0 >> s : (y0 + BLOCK) >> s, x0 >> s : (x0 + BLOCK) >> s].ravel()
                        for b, s in zip(e, shifts)
                    ]
                )
                for e in zip(*bands)
            ]
            lo, hi = ends[0].astype(np.float64) - offset, ends[1].astype(np.float64) - offset
            r, q = np.divmod(np.arange(BLOCK * BLOCK), BLOCK)
            known = 2 * (y0 + r) + (x0 + q) < 2 * i + j
            block = px[y0 : y0 + BLOCK, x0 : x0 + BLOCK, c].ravel().astype(np.float64)
            part = matrix[:, known] @ block[known]
            bind = hi - lo < whole - 1e-3
            free = matrix[:, ~known][bind]
            a_ub = np.vstack([free, -free])
            b_ub = np.concatenate([hi[bind] - part[bind], part[bind] - lo[bind]]) + 1e-6
            me = int(np.flatnonzero(np.flatnonzero(~known) == (i - y0) * BLOCK + j - x0)[0])
            cost = np.zeros(free.shape[1])
            cost[me] = 1.0
            least = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=(0, 255), method="highs")
            most = linprog(-cost, A_ub=a_ub, b_ub=b_ub, bounds=(0, 255), method="highs")
            low10, high10 = bounds[10][0][p], bounds[10][1][p]
            low = max(int(np.ceil(least.fun - 1e-4)), low10)
            high = min(int(np.floor(-most.fun + 1e-4)), high10)
            bits["all_bands"].append(truncated_bits(v[p], mu[p], scale[p], low, high))
            for form in (10, 11):
                bits[f"form{form}"].append(
                    truncated_bits(v[p], mu[p], scale[p], *(b[p] for b in bounds[form]))
                )
        mean = {k: float(np.mean(b)) for k, b in bits.items()}
        gain = mean["form10"] - mean["all_bands"]
        row = {"image": path.name, **{f"{k}_bits": b for k, b in mean.items()}}
        row["all_bands_vs_form10_percent"] = 100.0 * -gain / mean["form10"]
        row["form11_vs_form10_percent"] = 100.0 * (mean["form11"] - mean["form10"]) / mean["form10"]
        row["form11_share_of_gain"] = (mean["form10"] - mean["form11"]) / gain if gain > 0 else float("nan")
        rows.append(row)
        print_row(row)
    finish_rows(rows, args.json)


if __name__ == "__main__":
    main()
