"""Study: variants of the lossless tail's context model after step 7, at equal everything else.

    python scripts/tail_variants.py IMAGES... --cache F.npz [--crop 512]

Encodes each photo once (centre crop, seed = index, `--fast`) and keeps the original, the image
after step 7 and the bytes of steps 1-7 in F.npz (reused when present). Then prints the mean
lossless size in bpp over the photos (steps 1-7's real bytes plus the tail), for:
- base: uqdm_codec.lossless_tail's form 1, shipped in uqdm 0.23-0.25 (real bytes of its passes and
  parameters; form 2 of uqdm 0.26 is section 30's);
- side W: the activity also counts the side image's error at the 4 known neighbours,
  W x 4 x sum |n_k - S(n_k)| (real bytes);
- classes K: K predictor fits per pass and colour, one per activity quantile, each sending its
  coefficients (ideal code lengths, with base's the same way for reference: `classes 1`);
- form 2 (uqdm 0.26, section 30; real bytes) and three variants of it: `2 side-nb`, the earlier
  colours' side image also at the 4 neighbours; `2 err-col`, the activity also adds 24 x the
  earlier colours' coded |k| at the known neighbours; `2 no-k`, without the earlier colours'
  symbols.
docs/MODEL.md sections 27 and 30. Measured, not kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import load_crops, parser

from uqdm_codec import get_codec, lossless_tail

AFTER = 7
SHIPPED = lossless_tail._features


def cache(args) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(original, image after step AFTER, bytes of steps 1..AFTER) per photo."""
    if not args.cache.exists():
        codec, out = get_codec(), {}
        for seed, px in enumerate(load_crops(args.images, args.crop)):
            data = codec.encode(px, seed=seed, fast=True)
            level = list(codec.iter_decode(data, steps=AFTER))[-1]
            out |= {f"px{seed}": px, f"side{seed}": level.pixels, f"pre{seed}": np.array(level.nbytes)}
        np.savez_compressed(args.cache, **out)
    d = np.load(args.cache)
    return [(d[f"px{i}"], d[f"side{i}"], int(d[f"pre{i}"])) for i in range(len(args.images))]


def with_side_error(weight: float):
    """_features whose activity adds weight x 4 x the side image's error at the known neighbours."""

    def features(p, near, known, x, side, c, earlier, errors=None, form=1):
        feats, activity = SHIPPED(p, near, known, x, side, c, earlier, errors, form)
        if near and side is not None:
            ok = np.stack([known[a, b] for a, b in near], 1)
            err = np.stack([np.abs(x[a, b, c].astype(np.int64) - side[a, b, c]) for a, b in near], 1)
            activity = activity + np.rint(weight * 4 * (err * ok).sum(1)).astype(np.int64)
        return feats, activity

    return features


def form2_variant(name: str):
    """Form 2's _features with one change (see the docstring)."""

    def features(p, near, known, x, side, c, earlier, errors=None, form=2):
        feats, activity = SHIPPED(p, near, known, x, side, c, earlier, errors, form)
        done = lossless_tail.COLOURS[: len(earlier)]
        if errors is None or not near or not done:
            return feats, activity
        if name == "2 side-nb" and side is not None:
            extra = [side[a, b, e].astype(np.int64) for e in done for a, b in near]
            feats = np.concatenate([feats[:, :-1], np.stack(extra, 1), feats[:, -1:]], 1)
        elif name == "2 err-col":
            for e in done:
                ev = np.stack([np.where(known[a, b], np.abs(errors[a, b, e]), 0) for a, b in near], 1)
                activity = activity + 24 * ev.sum(1)
        elif name == "2 no-k":
            first = len(near) * (2 if side is not None else 1) + (side is not None)  # the symbols' column
            feats = np.delete(feats, np.arange(first, first + len(done)), axis=1)
        return feats, activity

    return features


def class_bits(px: np.ndarray, side: np.ndarray, classes: int) -> float:
    """Ideal bits of the tail with `classes` predictor fits per pass and colour (a pass with fewer
    than 4096 pixels per class keeps one); coefficients at 24 bits, bin parameters at 16."""
    h, w, _ = px.shape
    known = np.zeros((h, w), bool)
    total = 0.0
    for p in lossless_tail.passes(h, w):
        if p.rows.size == 0:
            continue
        near = lossless_tail._neighbour_index(p, h, w)
        earlier: list[np.ndarray] = []
        for c in lossless_tail.COLOURS:
            feats, act = SHIPPED(p, near, known, px, side, c, earlier, None, 1)
            v = px[p.rows, p.cols, c].astype(np.int64)
            k = classes if v.size >= 4096 * classes else 1
            cls = np.zeros(v.size, np.int64)
            if k > 1:
                cls = np.searchsorted(np.quantile(act, np.linspace(0, 1, k + 1)[1:-1]), act, side="right")
            mu = np.zeros(v.size)
            for q in range(k):
                sel = cls == q
                coef = lossless_tail._fit(feats[sel], v[sel], act[sel])
                mu[sel] = lossless_tail._location(feats[sel], coef)
                total += 24.0 * feats.shape[1]
            thresholds, codes = lossless_tail._choose_bins(v, mu, act, 1)
            scale = codes[lossless_tail._bins(act, thresholds)] / lossless_tail.SCALE_DENOM
            total += float(lossless_tail.logistic_bits(v, mu, scale).sum())
            total += 16.0 * (2 * thresholds.size + 1)
            earlier.append(v - np.rint(mu).astype(np.int64))
        known[p.rows, p.cols] = True
    return total


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cache", type=Path, required=True)
    args = ap.parse_args()
    photos = cache(args)

    def report(name: str, bits) -> None:
        sizes = [(8.0 * pre + bits(px, side)) / (px.shape[0] * px.shape[1]) for px, side, pre in photos]
        each = " ".join(f"{s:.3f}" for s in sizes)
        print(f"{name:12s} {np.mean(sizes):.4f} bpp  per photo {each}", flush=True)

    def real(px, side) -> float:
        return 8.0 * len(lossless_tail.encode_passes(px, side, form=1).to_bytes())

    report("base", real)
    for weight in (1.0, 4.0):
        lossless_tail._features = with_side_error(weight)
        report(f"side {weight:g}", real)
    lossless_tail._features = SHIPPED
    for k in (1, 4, 8):
        report(f"classes {k}", lambda px, side, k=k: class_bits(px, side, k))

    def real2(px, side) -> float:  # encoder only: the variants have no decoder
        return 8.0 * len(lossless_tail.encode_passes(px, side, form=2).to_bytes())

    report("form 2", real2)
    for name in ("2 side-nb", "2 err-col", "2 no-k"):
        lossless_tail._features = form2_variant(name)
        report(name, real2)
    lossless_tail._features = SHIPPED


if __name__ == "__main__":
    main()
