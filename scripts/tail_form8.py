"""Study: what each part of the lossless tail's form 8 buys, tail after step 3, real bytes.

    python scripts/tail_form8.py IMAGES... --cache F.npz [--variants V...] [--json F]

The cache is tail_edges.py's (each photo's 512 px centre crop, the image after step 3 and the bytes
of steps 1-3; seed = index). A variant is a form, then the parts of form 8 it goes without. The
defaults build form 8 up from form 7 part by part (tail_green.py):
- `7`: form 7 (uqdm 0.31);
- `8-more-n8-best-allraster`: green in raster order gets the weighted predictor, over the
  sub-predictors 2 (N + W - NW), 2 (W + NE - N), 2 N, 2 W, N + NE, 2 NE (and the 4 side ones),
  each weighed by its errors at W, N, NW, NE;
- `8-more-n8-allraster`: and the sub-predictor of least error as a feature, its error sum as an
  activity term;
- `8-more-allraster`: and the errors summed over all 8 causal neighbours (WW, NN, NNW, NNE too);
- `8-allraster`: and 4 more sub-predictors (2 NW, 2 (2 W - WW), 2 (2 N - NN), W + N);
- `8`: and the encoder's choice of red and blue in raster order too, each with green as its side
  image, where that gives fewer bytes than the passes: form 8 as shipped.
Prints the mean whole-file bits per pixel (steps 1-3 plus the tail) and the change from the first
variant. Encoder only (the tests check that form 8 decodes). docs/MODEL.md section 36.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import tail_study

from uqdm_codec import lossless_tail as lt
from uqdm_codec import tail_green

VARIANTS = ["7", "8-more-n8-best-allraster", "8-more-n8-allraster", "8-more-allraster", "8-allraster", "8"]
FEATURES, SUB, COUNT = (
    tail_green.Grid.features,
    tail_green.Grid.sub_predictions,
    tail_green.num_sub_predictors,
)
ENCODE = tail_green.encode
MORE = slice(6, 10)  # the 4 sub-predictors added last
REMOVED: list[str] = []


def fewer_sub_predictions(self, at):
    return np.delete(SUB(self, at), MORE, 1)


def partial_features(self, at):
    """Form 7's features and terms, then the parts of form 8's that the variant keeps."""
    self.form = 7
    try:
        feats, terms = FEATURES(self, at)
    finally:
        self.form = 8
    sub = self.sub_predictions(at)
    near = self._causal[:4] if "n8" in REMOVED else self._causal
    err = sum(self.sub_error[at + o].astype(np.int64) for o in near)
    weight = (1 << 30) // (1 + err) ** 2
    extra = [(weight * sub).sum(1) // weight.sum(1)]
    if "best" not in REMOVED:
        extra.append(sub[np.arange(at.size), np.argmin(err, 1)])
        terms = np.concatenate([terms, err.min(1)[:, None]], 1)
    self._sub = sub
    return np.concatenate([feats[:, :-5], np.stack(extra, 1), feats[:, -5:]], 1), terms


def green_only(plane, side, form, guide=None):
    """tail_green.encode for green; for red and blue (guided by the photo's own green) a stand-in
    far too large to be chosen, so that the tail keeps red and blue in the passes."""
    if side is not None and np.shares_memory(side, green_only.image):
        return tail_green.Coded(b"", np.zeros(0), np.inf, lambda: bytes(1 << 24))
    return ENCODE(plane, side, form, guide)


green_only.image = np.zeros(0)


def tail_bytes(variant: str, px: np.ndarray, side: np.ndarray) -> int:
    form, *removed = variant.split("-")
    REMOVED[:] = removed
    if "allraster" in removed:
        green_only.image = px
        tail_green.encode = green_only
    if set(removed) - {"allraster"}:
        tail_green.Grid.features = partial_features
    if "more" in removed:
        tail_green.Grid.sub_predictions = fewer_sub_predictions
        tail_green.num_sub_predictors = lambda has_side, has_guide=False: COUNT(has_side, has_guide) - 4
    try:
        return len(lt.encode(px, side, int(form)))
    finally:
        tail_green.Grid.features, tail_green.Grid.sub_predictions = FEATURES, SUB
        tail_green.num_sub_predictors, tail_green.encode = COUNT, ENCODE


def main() -> None:
    tail_study(__doc__, VARIANTS, tail_bytes)


if __name__ == "__main__":
    main()
