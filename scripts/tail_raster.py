"""Estimate: the tail's colours coded in raster order instead of interlaced (not a codec).

    python scripts/tail_raster.py IMAGES... --cache F.npz [--json F]

The cache is tail_edges.py's (512 px centre crops, the image after step 3). Per photo and colour,
the estimated bits per pixel (the logistic model of the encoder's choices, parameters not counted)
of the shipped tail (`tail`) against a raster-order predictor fitted the same way (`raster`): each
pixel seen from 9 causal neighbours of its colour (W, N, NW, NE, WW, NN, and (-1, 2), (-2, -1),
(-2, 1); an edge replicated), the side image at the pixel and its 4 direct neighbours, the colours
coded before at the pixel and at W, N, NW, NE, the median pair of W, N, NW, NE, the coded errors at
W, N, NW, NE, a least-squares fit per colour with two activity classes and the tail's scale bins.
The errors are those of a first fit without them (an optimistic shortcut: a real coder would fit
on its own errors). A raster coder decodes one pixel at a time, or one wavefront (2i + j = t) at a
time: about 2H + W steps, where the tail has 15-19 passes. docs/MODEL.md section 34.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import finish_rows, load_tail_cache, parser, print_row
from tail_planes import colour_bits

from uqdm_codec import lossless_tail as lt

CAUSAL = [(0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-1, 2), (-2, -1), (-2, 1)]
AROUND = [(0, 1), (1, 0), (0, -1), (-1, 0)]
FORM = 6  # the encoder choices (bins, scales) of this form


def shifted(a: np.ndarray, di: int, dj: int) -> np.ndarray:
    """a[i + di, j + dj] with the edge replicated."""
    h, w = a.shape[:2]
    return a[np.clip(np.arange(h) + di, 0, h - 1)][:, np.clip(np.arange(w) + dj, 0, w - 1)]


def raster_bits(px: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Estimated bits of G, R and B coded in raster order (see the docstring)."""
    x, s = px.astype(np.int64), side.astype(np.int64)
    h, w, _ = x.shape
    errors = np.zeros_like(x)
    bits, done = np.zeros(3), []
    for g, c in enumerate(lt.COLOURS):
        near = [shifted(x[..., c], *o).ravel() for o in CAUSAL]
        feats = list(near) + [s[..., c].ravel()] + [shifted(s[..., c], *o).ravel() for o in AROUND]
        for e in done:
            feats += [x[..., e].ravel()] + [shifted(x[..., e], *o).ravel() for o in CAUSAL[:4]]
            feats.append(s[..., e].ravel())
        feats.append(lt._middle_sum(np.stack(near[:4], 1)))
        activity = 16 * sum(np.abs(near[a] - near[b]) for a, b in [(0, 2), (1, 2), (1, 3), (0, 4), (1, 5)])
        for e in done:
            activity = activity + 16 * np.abs(errors[..., e].ravel())
        v = x[..., c].ravel()
        a = np.stack(feats + [np.ones(h * w, np.int64)], 1)
        k = (
            (v - np.rint(lt._location(a, lt._fit(a, v, activity, normal=True))))
            .reshape(h, w)
            .astype(np.int64)
        )
        around = np.stack([shifted(k, *o).ravel() for o in CAUSAL[:4]], 1)
        a = np.concatenate([a[:, :-1], around, a[:, -1:]], 1)
        activity = activity + 48 * np.abs(around).sum(1)
        cls = lt._bins(activity, lt._class_cuts(activity))
        coefs = [
            lt._fit(a[cls == j], v[cls == j], activity[cls == j], normal=True) for j in range(cls.max() + 1)
        ]
        mu = lt._class_location(a, coefs, cls)
        thresholds, codes = lt._choose_bins(v, mu, activity, FORM)
        bits[g] = lt.logistic_bits(v, mu, codes[lt._bins(activity, thresholds)] / lt.SCALE_DENOM).sum()
        errors[..., c] = (v - np.rint(mu).astype(np.int64)).reshape(h, w)
        done.append(c)
    return bits


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cache", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for path, (px, side, _) in zip(args.images, load_tail_cache(args.cache, len(args.images))):
        n = px.shape[0] * px.shape[1]
        tail, raster = colour_bits(px, side, FORM) / n, raster_bits(px, side) / n
        row = {"image": path.name}
        for g, name in enumerate("GRB"):
            row[f"tail {name}"], row[f"raster {name}"] = tail[g], raster[g]
        row["tail"], row["raster"] = float(tail.sum()), float(raster.sum())
        print_row(row)
        rows.append(row)
    finish_rows(rows, args.json)


if __name__ == "__main__":
    main()
