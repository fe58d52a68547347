"""Probe: would a lossless tail coded from exact neighbours beat the chain's own lossless end?

    python scripts/lossless_tail_probe.py IMAGES... [--crop 512] [--after 5 6 7 8] [--json F]

For each photo (centre crop), the shipped model encodes a real file (`--fast`, seed = index)
and the decoder's image after every step is kept with the real bytes of its prefix. The tail
is an interlaced lossless coder in the FLIF / Adam7 manner, simple enough to write in numpy:
a 64-pixel lattice first, then at each scale the centres of the known squares (their 4 diagonal
neighbours known), then the edge midpoints (their 4 direct neighbours known), down to single
pixels. Per pass and colour (G, then R, then B), the value is predicted by a least-squares fit
(reweighted towards least absolute error) from the 4 known neighbours, the colours already coded
at the same pixel and, when the tail follows step s, the decoder's image after step s at the
pixel and at the 4 neighbours; its code length is that of a logistic discretised to the 256
levels, with one scale per bin of local activity (16 quantile bins). Ideal code lengths; the
fitted coefficients, bin edges and scales are counted at 16 bits each. Prints, per photo, in
bits per pixel: the chain's lossless file, PNG, JPEG 2000 reversible, WebP lossless and JPEG XL
lossless (real bytes), the tail alone, and the prefix up to step s plus the tail given its image.
`--rich`: each pass also sees the next ring of 8 known pixels, and the activity adds the mean
coded error of the 4 nearest (CALIC's error energy).
`--exact`: the tail's real bytes from uqdm_codec.lossless_tail (integer coefficients, real ANS
payloads, every parameter in its varint), each file decoded back and checked (section 27), in the
form the encoder writes (form 5 since uqdm 0.29, 4 in 0.28, 3 in 0.27, 2 in 0.26, sections 30-33;
sections 26-27 measured form 1).
Measured, not kept (docs/MODEL.md sections 26 and 27).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import finish_rows, load_crops, parser, print_row

from uqdm_codec import get_codec, lossless_tail
from uqdm_codec.bench import baseline_settings

LOSSLESS = ("PNG", "JPEG 2000 reversible", "WebP lossless", "JPEG XL lossless")
SCALES = lossless_tail.SCALES
logistic_bits = lossless_tail.logistic_bits  # -log2 P(v) under a logistic discretised to 0..255


def binned_bits(v: np.ndarray, m: np.ndarray, activity: np.ndarray, bins: int = 16) -> float:
    """Code length with one logistic scale per activity-quantile bin (the best of a grid)."""
    edges = np.quantile(activity, np.linspace(0, 1, bins + 1)[1:-1])
    which = np.searchsorted(edges, activity)
    total = 16.0 * (2 * bins - 1)
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += min(float(logistic_bits(v[sel], m[sel], s).sum()) for s in SCALES)
    return total


def _neighbours(i, j, offsets, shape):
    """Row and column indices of the neighbours, mirrored back inside the image at its edges."""
    h, w = shape
    out = []
    for di, dj in offsets:
        ni, nj = i + di, j + dj
        ni = np.where((ni < 0) | (ni >= h), i - di, ni)
        nj = np.where((nj < 0) | (nj >= w), j - dj, nj)
        out.append((np.clip(ni, 0, h - 1), np.clip(nj, 0, w - 1)))
    return out


def code_pass(
    x: np.ndarray,
    side: np.ndarray | None,
    i,
    j,
    offsets,
    known: np.ndarray,
    err: np.ndarray | None = None,
) -> float:
    """Bits of one pass: pixels (i, j) given their known neighbours at `offsets` (and `side`).
    The first 4 offsets are the nearest, whose spread sets the activity; with `err` (the coded
    pixels' absolute prediction errors, updated here), their mean error adds to it."""
    n = len(i)
    if n == 0:  # a pass of a scale the image is too small for
        return 0.0
    near = _neighbours(i, j, offsets, known.shape)
    ok = np.stack([known[a, b] for a, b in near], 1) if near else np.zeros((n, 0), bool)
    bits, residuals = 0.0, []
    for c in (1, 0, 2):
        feats: list[np.ndarray] = []
        activity = np.zeros(n)
        if near:
            nv = np.stack([x[a, b, c] for a, b in near], 1)
            mean = (nv * ok).sum(1) / np.maximum(ok.sum(1), 1)
            nv = np.where(ok, nv, mean[:, None])
            feats += list(nv.T)
            near4 = nv[:, :4]
            activity = np.abs(near4 - near4.mean(1, keepdims=True)).mean(1)
        if side is not None:
            feats.append(side[i, j, c])
            if near:
                feats += [side[a, b, c] for a, b in near]
            else:
                below = np.clip(i + 1, 0, side.shape[0] - 1)
                activity = np.abs(side[i, j, c] - side[below, j, c])
        feats += residuals
        if residuals:
            activity = activity + np.abs(residuals[0])
        feats.append(np.ones(n))
        a = np.stack(feats, 1)
        t = x[i, j, c]
        coef, *_ = np.linalg.lstsq(a, t, rcond=None)
        for _ in range(4):  # towards least absolute error: a logistic's log-loss is L1-like
            w = 1.0 / np.sqrt(np.abs(t - a @ coef) + 1.0 + 0.5 * activity)
            coef, *_ = np.linalg.lstsq(a * w[:, None], t * w, rcond=None)
        m = np.clip(a @ coef, 0, 255)
        if err is not None and near:
            ev = np.stack([err[a_, b_, c] for a_, b_ in near[:4]], 1)
            energy = (ev * ok[:, :4]).sum(1) / np.maximum(ok[:, :4].sum(1), 1)
            bits += binned_bits(t, m, np.log(activity + 0.7 * energy + 0.5)) + 16.0 * len(coef)
        else:
            bits += binned_bits(t, m, np.log(activity + 0.5)) + 16.0 * len(coef)
        if err is not None:
            err[i, j, c] = np.abs(t - m)
        residuals.append(t - m)
    return bits


def _ring(a: int, b: int) -> list[tuple[int, int]]:
    """The 8 offsets (+-a, +-b) and (+-b, +-a)."""
    return [(sa * a, sb * b) for sa in (-1, 1) for sb in (-1, 1)] + [
        (sb * b, sa * a) for sa in (-1, 1) for sb in (-1, 1)
    ]


def interlaced_bits(
    pixels: np.ndarray, side: np.ndarray | None = None, levels: int = 6, rich: bool = False
) -> float:
    """Ideal code length of the whole image in interlaced passes, coarse to fine. rich: 8 more
    known neighbours per pass (the next ring) and the neighbours' coded errors in the activity."""
    x = pixels.astype(np.float64)
    side = None if side is None else side.astype(np.float64)
    h, w, _ = x.shape
    known = np.zeros((h, w), bool)
    err = np.zeros_like(x) if rich else None
    d = 2**levels
    i, j = (a.ravel() for a in np.meshgrid(np.arange(0, h, d), np.arange(0, w, d), indexing="ij"))
    bits = 8.0 * 3 * len(i) if side is None else code_pass(x, side, i, j, [], known, err)
    known[i, j] = True
    if err is not None and side is None:
        err[i, j] = 8.0  # sent raw: no prediction, a typical error
    for level in range(levels, 0, -1):
        d, half = 2**level, 2 ** (level - 1)
        i, j = (a.ravel() for a in np.meshgrid(np.arange(half, h, d), np.arange(half, w, d), indexing="ij"))
        diag = [(-half, -half), (-half, half), (half, -half), (half, half)]
        if rich:  # the lattice points of the next ring
            diag += _ring(half, 3 * half)
        assert not known[i, j].any()  # every pixel is coded once
        bits += code_pass(x, side, i, j, diag, known, err)
        known[i, j] = True
        a1 = np.meshgrid(np.arange(0, h, d), np.arange(half, w, d), indexing="ij")
        a2 = np.meshgrid(np.arange(half, h, d), np.arange(0, w, d), indexing="ij")
        i = np.concatenate([a1[0].ravel(), a2[0].ravel()])
        j = np.concatenate([a1[1].ravel(), a2[1].ravel()])
        cross = [(-half, 0), (half, 0), (0, -half), (0, half)]
        if rich:  # the known points of the next ring: lattice points and square centres
            cross += _ring(half, 2 * half)
        assert not known[i, j].any()
        bits += code_pass(x, side, i, j, cross, known, err)
        known[i, j] = True
    assert known.all()
    return bits


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--after", type=int, nargs="+", default=[5, 6, 7, 8])
    ap.add_argument("--rich", action="store_true", help="12 neighbours and their errors (interlaced_bits)")
    ap.add_argument("--exact", action="store_true", help="real bytes of uqdm_codec.lossless_tail")
    args = ap.parse_args()
    codec = get_codec()
    baselines = baseline_settings()
    rows = []

    def tail_bits(px: np.ndarray, side: np.ndarray | None) -> float:
        if not args.exact:
            return interlaced_bits(px, side, rich=args.rich)
        data = lossless_tail.encode(px, side)
        assert np.array_equal(lossless_tail.decode(data, px.shape[0], px.shape[1], side), px)
        return 8.0 * len(data)

    for seed, (path, px) in enumerate(zip(args.images, load_crops(args.images, args.crop))):
        npx = px.shape[0] * px.shape[1]
        data = codec.encode(px, seed=seed, fast=True)
        levels = {lv.layer: lv for lv in codec.iter_decode(data)}
        row = {"image": path.name, "chain": 8.0 * len(data) / npx}
        for name in LOSSLESS:
            if name in baselines:
                size, rec = baselines[name][0](px)
                assert np.array_equal(rec, px)
                row[name] = 8.0 * size / npx
        row["tail alone"] = tail_bits(px, None) / npx
        for s in args.after:
            lv = levels[s]
            shown = lv.pixels if lv.shown is None else lv.shown
            row[f"step {s} prefix"] = 8.0 * lv.nbytes / npx
            row[f"step {s} + tail"] = (8.0 * lv.nbytes + tail_bits(px, shown)) / npx
        rows.append(row)
        print_row(row)
    finish_rows(rows, args.json)


if __name__ == "__main__":
    main()
