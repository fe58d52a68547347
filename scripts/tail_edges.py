"""Study: non-linear features for the lossless tail's predictors (edge-directed, median), form 3.

    python scripts/tail_edges.py IMAGES... --cache F.npz [--after 3] [--crop 512] [--json F]

Encodes each photo once (centre crop, seed = index, `--fast`) and keeps the original, the image
after step `--after` and the bytes of steps 1..after in F.npz (reused when present). Then the mean
whole-file size in bpp (those steps' real bytes plus the tail's real bytes; encoder only, so each
variant is checked by nothing but its size) for the shipped form 3 and for form 3 with extra
features in every pass with neighbours:
- `edge`: the sum of the pair of opposite neighbours that differ least (the diagonal pairs in a
  centre pass, up-down or left-right in an edge pass): interpolation along the edge;
- `median`: the sum of the middle two of the 4 neighbours;
- `edge+median`: both;
- `edge-side`: the pair chosen by the side image's differences instead of the levels' (both sides
  have it), for passes with a side image;
- `colour-act`: the activity of R and B adds 16 x |k| of every colour coded before at the pixel
  (form 3: only the first one's);
- `minmax`: the smallest and the largest of the 4 neighbours; `median+minmax`: all three;
- `median+col`: the median's sum also for each colour coded before at the pixel;
- `median+col+act`: that and `colour-act` together (form 4 of uqdm 0.28);
- `mca+errcol`: that and the sum of the earlier colours' signed errors at the neighbours;
- `mca+ring`: that and 4 more known pixels (the next ring's) as linear features.
docs/MODEL.md section 32.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import compare_tail_sizes, load_crops, load_tail_cache, parser

from uqdm_codec import get_codec, lossless_tail

SHIPPED = lossless_tail._features
VARIANTS = [
    "edge", "median", "edge+median", "edge-side", "colour-act", "minmax", "median+minmax",
    "median+col", "median+col+act", "mca+errcol", "mca+ring",
]  # fmt: skip


def cache(args) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(original, image after step `after`, bytes of steps 1..after) per photo."""
    if not args.cache.exists():
        codec, out = get_codec(), {}
        for seed, px in enumerate(load_crops(args.images, args.crop)):
            data = codec.encode(px, seed=seed, fast=True, tail=True, tail_after=args.after)
            level = list(codec.iter_decode(data, steps=args.after))[-1]
            out |= {f"px{seed}": px, f"side{seed}": level.pixels, f"pre{seed}": np.array(level.nbytes)}
            print(f"cached {seed}", flush=True)
        np.savez_compressed(args.cache, **out)
    return load_tail_cache(args.cache, len(args.images))


def _pairs(p) -> tuple[tuple[int, int], tuple[int, int]]:
    if p.offsets[0][1] != 0:  # centre pass: (-h,-h), (-h,h), (h,-h), (h,h): NW-SE and NE-SW
        return (0, 3), (1, 2)
    return (0, 1), (2, 3)  # edge pass: up-down, left-right


def variant(name: str):
    def features(p, near, known, x, side, c, earlier, errors=None, form=3):
        feats, activity = SHIPPED(p, near, known, x, side, c, earlier, errors, form)
        extra = []
        if near:
            nv = lossless_tail._neighbour_levels(near, known, x, c)
            (a, b), (e, f) = _pairs(p)
            s1, s2 = nv[:, a] + nv[:, b], nv[:, e] + nv[:, f]
            if name in ("edge", "edge+median"):
                d1, d2 = np.abs(nv[:, a] - nv[:, b]), np.abs(nv[:, e] - nv[:, f])
                extra.append(np.where(d1 <= d2, s1, s2))
            if name in ("median", "edge+median"):
                srt = np.sort(nv, axis=1)
                extra.append(srt[:, 1] + srt[:, 2])
            if name in ("minmax", "median+minmax"):
                extra += [nv.min(1), nv.max(1)]
            if name in ("median+minmax", "median+col", "median+col+act", "mca+errcol", "mca+ring"):
                srt = np.sort(nv, axis=1)
                extra.append(srt[:, 1] + srt[:, 2])
            if name in ("median+col", "median+col+act", "mca+errcol", "mca+ring"):
                for e in lossless_tail.COLOURS[: len(earlier)]:
                    srt = np.sort(lossless_tail._neighbour_levels(near, known, x, e), axis=1)
                    extra.append(srt[:, 1] + srt[:, 2])
            if name == "edge-side" and side is not None:
                sv = np.stack([side[i, j, c].astype(np.int64) for i, j in near], 1)
                d1, d2 = np.abs(sv[:, a] - sv[:, b]), np.abs(sv[:, e] - sv[:, f])
                extra.append(np.where(d1 <= d2, s1, s2))
        if name == "mca+errcol" and near and errors is not None:
            for e in lossless_tail.COLOURS[: len(earlier)]:
                extra.append(np.stack([np.where(known[a, b], errors[a, b, e], 0) for a, b in near], 1).sum(1))
        if name == "mca+ring" and near:
            h = max(abs(v) for v in p.offsets[0])
            ring = (
                [(2 * h, 0), (-2 * h, 0), (0, 2 * h), (0, -2 * h)]
                if p.offsets[0][1] != 0
                else [(-h, -h), (-h, h), (h, -h), (h, h)]
            )
            hh, ww = known.shape
            for di, dj in ring:
                ni, nj = np.clip(p.rows + di, 0, hh - 1), np.clip(p.cols + dj, 0, ww - 1)
                extra.append(
                    np.where(
                        known[ni, nj], x[ni, nj, c].astype(np.int64), x[p.rows, p.cols, c] * 0 + feats[:, 0]
                    )
                )
        if name in ("colour-act", "median+col+act", "mca+errcol", "mca+ring") and len(earlier) > 1:
            activity = activity + 16 * np.abs(earlier[1])
        if extra:
            feats = np.concatenate([feats[:, :-1], np.stack(extra, 1), feats[:, -1:]], 1)
        return feats, activity

    return features


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--after", type=int, default=3)
    ap.add_argument("--variants", nargs="*", default=VARIANTS)
    args = ap.parse_args()
    photos = cache(args)

    def tail_bytes(name: str, px: np.ndarray, side: np.ndarray) -> int:
        lossless_tail._features = SHIPPED if name == "form 3" else variant(name)
        return len(lossless_tail.encode_passes(px, side, form=3).to_bytes())

    compare_tail_sizes(["form 3"] + args.variants, tail_bytes, photos, args.json)
    lossless_tail._features = SHIPPED


if __name__ == "__main__":
    main()
