"""Study: class-adaptive predictors for the lossless tail (form 4 with one coefficient set per class).

    python scripts/tail_classes.py IMAGES... --cache F.npz [--variants ...] [--json F]

MRP and TMW-style lossless coders fit a different linear predictor for each class of pixels. Here
a class is something both sides know before the pixel: its activity quantile (`act2`, `act4`),
which pair of opposite neighbours differs least (`dir2`), that with a third class where neither
pair wins by a factor 2 (`dir3`), or both (`dir2act2`). A pass and colour is split only where every
class has at least MIN_CLASS pixels; each class costs its coefficients in the parameters (real
varints, counted), the activity bins and scales stay one set per pass and colour. The cache is
tail_edges.py's (original, image after step 3, bytes of steps 1-3). Real bytes: the whole file is
those steps' bytes plus the tail's parameters and ANS payloads. docs/MODEL.md section 33.
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

VARIANTS = ["act2", "act4", "dir2", "dir3", "dir2act2"]
MIN_CLASS = 4096


def classes(name: str, p: lt.Pass, near, known, x, c: int, activity: np.ndarray) -> tuple[np.ndarray, int]:
    """(class per pixel, extra parameter bytes for thresholds) for one pass and colour."""
    n = p.rows.size
    cls = np.zeros(n, np.int64)
    extra = 0
    if name in ("act2", "act4", "dir2act2"):
        q = 2 if name != "act4" else 4
        t = np.quantile(activity, np.linspace(0, 1, q + 1)[1:-1])
        cls = np.searchsorted(np.ceil(t), activity, side="right")
        extra += sum(len(put_varint(int(v))) for v in np.ceil(t))
    if name.startswith("dir") and near:
        nv = lt._neighbour_levels(near, known, x, c)
        (a, b), (e, f) = ((0, 3), (1, 2)) if p.offsets[0][1] != 0 else ((0, 1), (2, 3))
        d1, d2 = np.abs(nv[:, a] - nv[:, b]), np.abs(nv[:, e] - nv[:, f])
        if name == "dir3":
            d = np.where(2 * d1 < d2, 0, np.where(2 * d2 < d1, 1, 2))
            cls = d
        else:
            cls = cls * 2 + (d1 <= d2)
    return cls, extra


def encode_size(pixels: np.ndarray, side: np.ndarray, name: str | None) -> int:
    """Bytes of a form-4 tail whose pass-and-colour predictors are split into classes by `name`."""
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
            cls, extra = classes(name, p, near, known, x, c, activity) if name else (np.zeros(v.size, int), 0)
            counts = np.bincount(cls)
            if counts.size < 2 or counts[counts > 0].min() < MIN_CLASS:
                cls, extra = np.zeros(v.size, np.int64), 0
            params += b"\0" * extra
            mu = np.zeros(v.size)
            for k in np.unique(cls):
                sel = cls == k
                coef = lt._fit(feats[sel], v[sel], activity[sel])
                mu[sel] = lt._location(feats[sel], coef)
                for value in coef:
                    params += put_varint(lt._zigzag(int(value)))
            thresholds, codes = lt._choose_bins(v, mu, activity, 4)
            lt._put_increasing(params, thresholds)
            for code in codes:
                params += put_varint(int(code))
            k = v - np.rint(mu).astype(np.int64)
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
