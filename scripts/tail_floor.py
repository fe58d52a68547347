"""Study: how close green's raster coder is to what a better probability model could give (estimates).

    python scripts/tail_floor.py IMAGES... --cache F.npz [--json F]
    python scripts/tail_floor.py IMAGES... --intervals [--after 7]

The first form takes tail_edges.py's cache (each photo's 512 px centre crop, the image after step 3
and the bytes of steps 1-3; seed = index) and codes green as form 9 does (tail_green.encode, the
side image's green as its side image). Then, on the same symbols, the estimated bits of green
(discretised logistics, lossless_tail.logistic_bits' model; parameters not counted) under:
- `shipped`: the coder's own prior, a logistic at the least-squares location, scale by bin;
- `mix-wp W`: W times that plus 1 - W times a logistic of the same scale at the weighted predictor
  (JPEG XL's self-correcting predictor, one of the features): mixing two predictors' probabilities;
- `mix-wp per bin`: the best of W = 1, 0.9, ..., 0.5 for each scale bin (a few bytes to send);
- `tail F W`: W times the prior plus 1 - W times a logistic F times as wide (a heavier tail);
- `bias N`: CALIC's bias cancellation: each pixel's location moved by the mean error
  (v - location) of the pixels coded before its wavefront in its context, once that context has
  N of them; contexts are the signs of W, N, NW, NE - location (16) times the scale bin.
Estimates only, each against `shipped` on the same symbols: nothing here changes a file.

The second form encodes each photo with a lossless tail after step `--after` (7: `--tail on`) and
reports how far the known intervals of the finest Haar band (D_1) constrain the last pixel of each
2x2 block in raster order, given the other three exactly: the number of levels left for it. A
coder could truncate its prior there. docs/MODEL.md section 38.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import load_crops, load_tail_cache, parser

from uqdm_codec import codec as codec_module
from uqdm_codec import get_codec, tail_green
from uqdm_codec import lossless_tail as lt


def green_prior(green: np.ndarray, side: np.ndarray) -> dict[str, np.ndarray]:
    """Form 9's choices for green in raster order (tail_green.choose): the levels v, locations,
    scales and scale bins in coding order, the weighted predictor's prediction in levels, the 4
    causal levels W, N, NW, NE, the wavefronts and the coding order."""
    height, width = green.shape
    grid = tail_green.Grid(height, width, side, 9)
    grid.set_levels(green)
    v = green.ravel()[grid.order].astype(np.int64)
    chosen = tail_green.choose(grid, v)
    feats, _ = grid.features(grid.at)  # all but the symbols' columns, which are not read here
    wp_column = 8 + 7 + 1 + 2  # 8 levels, 7 side values, the median pair, the side pair: then the WP
    return {
        "v": v,
        "mu": chosen.mu,
        "scale": chosen.scale,
        "bin": lt._bins(chosen.activity, chosen.thresholds),
        "wp": feats[:, wp_column] / 2.0,
        "near": feats[:, :4],
        "fronts": grid.fronts,
        "order": grid.order,
    }


def mass(v: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """P(v) of a logistic (location m, scale s) discretised to the levels 0..255 (the ends take the tails)."""
    return np.exp2(-lt.logistic_bits(v, m, s))


def bias_cancelled(g: dict, least: int) -> np.ndarray:
    """The locations moved by their context's mean error over the earlier wavefronts."""
    v, mu = g["v"], g["mu"]
    signs = ((g["near"] > mu[:, None]) * (1 << np.arange(4))).sum(1)
    ctx = signs * (int(g["bin"].max()) + 1) + g["bin"]
    total, count = np.zeros(ctx.max() + 1), np.zeros(ctx.max() + 1)
    moved = mu.copy()
    for sl in g["fronts"]:
        c = ctx[sl]
        moved[sl] += np.where(count[c] >= least, total[c] / np.maximum(count[c], 1), 0.0)
        np.add.at(total, c, v[sl] - mu[sl])
        np.add.at(count, c, 1)
    return moved


def variants(g: dict) -> dict[str, float]:
    """Estimated bits of green under each variant of the module's docstring."""
    v, mu, s = g["v"], g["mu"], g["scale"]
    p, p_wp = mass(v, mu, s), mass(v, g["wp"], s)
    out = {"shipped": float(-np.log2(p).sum())}
    for w in (0.9, 0.8):
        out[f"mix-wp {w}"] = float(-np.log2(w * p + (1 - w) * p_wp).sum())
    out["mix-wp per bin"] = sum(
        min(float(-np.log2(w * p[sel] + (1 - w) * p_wp[sel]).sum()) for w in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5))
        for sel in (g["bin"] == b for b in np.unique(g["bin"]))
    )
    for f, w in ((2.0, 0.95), (3.0, 0.95), (3.0, 0.9)):
        out[f"tail {f:g} {w}"] = float(-np.log2(w * p + (1 - w) * mass(v, mu, f * s)).sum())
    for least in (8, 16):
        out[f"bias {least}"] = float(-np.log2(mass(v, bias_cancelled(g, least), s)).sum())
    return out


def estimates(images: list[Path], cache: Path, out: Path | None) -> None:
    totals: dict[str, float] = {}
    rows = []
    for (px, side, _), path in zip(load_tail_cache(cache, len(images)), images):
        bits = variants(green_prior(px[..., 1], side[..., 1]))
        rows.append(
            {"image": path.name, "green_bpp": {k: b / (px.shape[0] * px.shape[1]) for k, b in bits.items()}}
        )
        for k, b in bits.items():
            totals[k] = totals.get(k, 0.0) + b
        print(
            path.name,
            " ".join(f"{k} {100 * (b / bits['shipped'] - 1):+.2f}%" for k, b in bits.items()),
            flush=True,
        )
    change = {k: 100 * (b / totals["shipped"] - 1) for k, b in totals.items()}
    print("all    " + " ".join(f"{k} {c:+.2f}%" for k, c in change.items()))
    if out:
        out.write_text(json.dumps({"images": rows, "change_percent": change}, indent=1) + "\n")


def interval_widths(images: list[Path], after: int, crop: int, out: Path | None) -> None:
    """The levels the D_1 intervals after step `after` leave for the last pixel of each 2x2 block
    (lossless_tail.Intervals.bounds, its three mates known), and what truncating green's raster
    prior (form 9, given that step's image) to them would save."""
    seen = []
    tail_layer = codec_module.Codec._tail_layer

    def keep(index, pixels, side, judge, intervals):  # the image after step `after`, its intervals
        seen.append((side.copy(), intervals))
        return tail_layer(index, pixels, side, judge, intervals)

    codec_module.Codec._tail_layer = staticmethod(keep)
    rows = []
    for seed, (px, path) in enumerate(zip(load_crops(images, crop), images)):
        seen.clear()
        get_codec().encode(px, seed=seed, fast=True, tail=True, tail_after=after)
        side, intervals = seen[-1]
        h, w = px.shape[:2]
        if intervals is None:  # every interval still the whole band
            whole = np.full((3, 3, h // 2, w // 2), 256.0)
            intervals = lt.Intervals(-whole, whole)
        r, q = np.divmod(np.arange(h * w), w)
        last = (r % 2 == 1) & (q % 2 == 1)
        mates = ~last.reshape(h, w)
        bounds = [intervals.bounds(r[last], q[last], c, px[..., c].astype(np.int64), mates) for c in range(3)]
        low, high = np.stack([b[0] for b in bounds]), np.stack([b[1] for b in bounds])
        left = high - low + 1
        row = {"image": path.name, "median_levels": float(np.median(left))}
        row |= {f"share_at_most_{n}": float((left <= n).mean()) for n in (3, 5, 9)}
        # green in raster order: its prior at each block's last pixel, truncated to [low, high]
        g = green_prior(px[..., 1], side[..., 1])
        at = np.zeros(h * w, np.int64)
        at[g["order"]] = np.arange(h * w)  # coding position of each pixel
        inside = mass_between(low[1], high[1], g["mu"][at[last]], g["scale"][at[last]])
        bits = -np.log2(mass(g["v"], g["mu"], g["scale"])).sum()
        row["green_change_percent"] = float(100 * np.log2(inside).sum() / bits)
        row["green_bpp"] = float(bits / (h * w))
        rows.append(row)
        print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else v for k, v in row.items()), flush=True)
    codec_module.Codec._tail_layer = tail_layer
    if out:
        out.write_text(json.dumps({"after": after, "images": rows}, indent=1) + "\n")


def mass_between(low: np.ndarray, high: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """P(low <= v <= high) under the discretised logistic of mass()."""
    with np.errstate(over="ignore"):
        up = np.where(high >= 255, 1.0, 1.0 / (1.0 + np.exp(-(high + 0.5 - m) / s)))
        dn = np.where(low <= 0, 0.0, 1.0 / (1.0 + np.exp(-(low - 0.5 - m) / s)))
    return np.maximum(up - dn, 1e-12)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--intervals", action="store_true")
    ap.add_argument("--after", type=int, default=7)
    args = ap.parse_args()
    if args.intervals:
        interval_widths(args.images, args.after, args.crop, args.json)
    elif args.cache:
        estimates(args.images, args.cache, args.json)
    else:
        ap.error("give --cache F.npz (the estimates) or --intervals")


if __name__ == "__main__":
    main()
