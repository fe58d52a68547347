"""Study: the lossless tail's scale context, fitted per pass and colour instead of fixed weights.

    python scripts/tail_scales.py IMAGES... --cache F.npz [--variants ...] [--json F]

Form 4 bins each pixel by one activity, a sum of terms with fixed weights (the 4 neighbours'
spread, 16 |k| of the earlier colours at the pixel, 48 x the known neighbours' |k| in this colour,
on the lattice the side image's slope). Here the terms are kept apart and the weights fitted per
pass and colour, by least squares of the residual's |k| on them (non-negative, 8 fractional bits,
sent as varints and counted), and the bins are the quantiles of that prediction of |k|:
- `fit`: the same terms as form 4;
- `fit+`: and three more: the side image's own spread at the 4 neighbours, |side - the neighbours'
  mean| at the pixel, and the earlier colours' |k| at the known neighbours;
- `fit+log`: `fit+` with the terms' square roots as well (a concave prediction);
- `fit+/irls`: `fit+`, then the coefficients refitted with the fitted activity guiding the fit's
  reweighting (floor(A / 256) in place of the activity);
- `fit+/actN`: that, with the pass and colour split into N predictor classes at the fitted
  activity's quantiles where each gets MIN_CLASS pixels (the cuts' bytes counted).
The cache is tail_edges.py's. Real bytes. docs/MODEL.md section 33.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import chunk_bytes, tail_study

from uqdm_codec import lossless_tail as lt
from uqdm_codec.container import put_varint

VARIANTS = ["fit", "fit+", "fit+log", "fit+/irls", "fit+/act2", "fit+/act3"]
WFRAC = 8
MIN_CLASS = 4096


def terms(name, p, near, known, x, side, c, earlier, errors) -> np.ndarray:
    """The activity's terms (n, T) as int64, before any weight."""
    n = p.rows.size
    out = []
    if near:
        nv = lt._neighbour_levels(near, known, x, c)
        out.append(np.abs(4 * nv - nv.sum(1)[:, None]).sum(1))
        out.append(np.stack([np.where(known[a, b], np.abs(errors[a, b, c]), 0) for a, b in near], 1).sum(1))
    elif side is not None:
        below = np.minimum(p.rows + 1, side.shape[0] - 1)
        out.append(np.abs(side[p.rows, p.cols, c].astype(np.int64) - side[below, p.cols, c]))
    for e in earlier:
        out.append(np.abs(e))
    if name != "fit":
        if near and side is not None:
            sv = np.stack([side[a, b, c].astype(np.int64) for a, b in near], 1)
            out.append(np.abs(4 * sv - sv.sum(1)[:, None]).sum(1))
            out.append(np.abs(4 * side[p.rows, p.cols, c].astype(np.int64) - nv.sum(1)))
        if near:
            for e in lt.COLOURS[: len(earlier)]:
                out.append(
                    np.stack([np.where(known[a, b], np.abs(errors[a, b, e]), 0) for a, b in near], 1).sum(1)
                )
    if name == "fit+log":
        out += [np.rint(16 * np.sqrt(t)).astype(np.int64) for t in list(out)]
    if not out:
        out.append(np.zeros(n, np.int64))
    return np.stack(out, 1)


def fitted_activity(t: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, int]:
    """(activity, parameter bytes): non-negative least squares of 16 |k| on the terms and 1."""
    a = np.concatenate([t, np.ones((t.shape[0], 1), np.int64)], 1).astype(np.float64)
    y = 16.0 * np.abs(k)
    active = list(range(t.shape[1]))
    while True:  # drop the most negative term weight until none is negative
        w = np.linalg.lstsq(a[:, active + [t.shape[1]]], y, rcond=None)[0][:-1]
        if not active or (w >= 0).all():
            break
        active.pop(int(np.argmin(w)))
    full = np.zeros(a.shape[1])
    full[active] = w if active else 0.0
    q = np.clip(np.rint(full * 2**WFRAC), 0, None).astype(np.int64)
    q[-1] = 0
    act = (t * q[:-1]).sum(1)
    return act, sum(len(put_varint(int(v))) for v in q[:-1])


def encode_size(pixels: np.ndarray, side: np.ndarray, name: str | None) -> int:
    x = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width, _ = x.shape
    known = np.zeros((height, width), bool)
    errors = np.zeros((height, width, 3), np.int64)
    params = bytearray()
    total = 0
    for p in lt.passes(height, width, 4):  # form 4's passes, whatever the current form
        if p.rows.size == 0:
            continue
        near = lt._neighbour_index(p, height, width)
        earlier: list[np.ndarray] = []
        ks, priors = [], []
        for c in lt.COLOURS:
            feats, activity = lt._features(p, near, known, x, side, c, earlier, errors, 4)
            v = x[p.rows, p.cols, c].astype(np.int64)
            coef = lt._fit(feats, v, activity)
            mu = lt._location(feats, coef)
            for value in coef:
                params += put_varint(lt._zigzag(int(value)))
            k = v - np.rint(mu).astype(np.int64)
            if name:
                t = terms(name.split("/")[0], p, near, known, x, side, c, earlier, errors)
                activity, extra = fitted_activity(t, k)
                params += b"\0" * extra
                if "/" in name:
                    del params[len(params) - sum(len(put_varint(lt._zigzag(int(q)))) for q in coef) - extra :]
                    params += b"\0" * extra
                    cls = np.zeros(v.size, np.int64)
                    nc = int(name.split("/act")[1]) if "/act" in name else 1
                    nc = max(1, min(nc, v.size // MIN_CLASS))
                    if nc > 1:
                        cuts = np.unique(
                            np.quantile(activity, np.linspace(0, 1, nc + 1)[1:-1]).astype(np.int64)
                        )
                        cls = np.searchsorted(cuts, activity, side="left")
                        params += b"\0" * sum(len(put_varint(int(q))) for q in cuts)
                    for j in np.unique(cls):
                        sel = cls == j
                        coef = lt._fit(feats[sel], v[sel], activity[sel] // 256)
                        mu[sel] = lt._location(feats[sel], coef)
                        for value in coef:
                            params += put_varint(lt._zigzag(int(value)))
                    k = v - np.rint(mu).astype(np.int64)
            thresholds, codes = lt._choose_bins(v, mu, activity, 4)
            lt._put_increasing(params, thresholds)
            for code in codes:
                params += put_varint(int(code))
            scale = codes[lt._bins(activity, thresholds)] / float(lt.SCALE_DENOM)
            ks.append(k)
            priors.append(lt._prior(mu, scale))
            earlier.append(k)
            errors[p.rows, p.cols, c] = k
        total += chunk_bytes(ks, priors)
        known[p.rows, p.cols] = True
    return total + len(put_varint(len(params))) + len(params)


def main() -> None:
    tail_study(
        __doc__,
        VARIANTS,
        lambda name, px, side: encode_size(px, side, None if name == "form 4" else name),
        baseline="form 4",
    )


if __name__ == "__main__":
    main()
