"""Study: what each part of the lossless tail's form 9 buys, tail after step 3, real bytes.

    python scripts/tail_form9.py IMAGES... --cache F.npz [--variants V...] [--json F]

The cache is tail_edges.py's (each photo's 512 px centre crop, the image after step 3 and the bytes
of steps 1-3; seed = index). A variant is a form, then the parts of form 9 it goes without. Form 9
gives blue in raster order (colour order 2) the decoded red as a second guide beside green
(tail_green.py); the defaults build it up from form 8:
- `8`: form 8 (uqdm 0.32);
- `9-features-nearby`: blue's weighted predictor also has 4 red-guided sub-predictions,
  2 (R + W - R_W), 2 (R + N - R_N), 2 (R + NE - R_NE), 2 (R + NW - R_NW);
- `9-nearby`: and as features red at the pixel, twice it plus the median pair of blue's
  differences to red at W, N, NW, NE, and those differences' guided mean; as a term their spread;
- `9`: and red at W, N, NW, NE, E and S as features, their spread (W, N, E, S) as a term: form 9
  as shipped.
In every variant the encoder keeps the smaller of red and blue in the passes and in raster order.
Prints the mean whole-file bits per pixel (steps 1-3 plus the tail) and the change from the first
variant. Encoder only (the tests check that form 9 decodes). docs/MODEL.md section 37.
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

VARIANTS = ["8", "9-features-nearby", "9-nearby", "9"]
FEATURES = tail_green.Grid.features
REMOVED: list[str] = []


def partial_features(self, at):
    """Form 9's features and terms without the parts named in REMOVED (the guide's 9 feature
    columns sit just before the 4 symbols and the constant; its 2 terms come last)."""
    feats, terms = FEATURES(self, at)
    if self.guide is None:
        return feats, terms
    f = feats.shape[1]
    block = list(range(f - 14, f - 5))  # r_0..r_6, the median pair, the guided mean
    if "features" in REMOVED:
        drop, drop_terms = block, 2
    else:  # "nearby": keep r_0, the median pair and the guided mean
        drop, drop_terms = block[1:7], 1
    keep = [j for j in range(f) if j not in drop]
    return feats[:, keep], terms[:, : terms.shape[1] - drop_terms]


def tail_bytes(variant: str, px: np.ndarray, side: np.ndarray) -> int:
    form, *removed = variant.split("-")
    REMOVED[:] = removed
    if removed:
        tail_green.Grid.features = partial_features
    try:
        return len(lt.encode(px, side, int(form)))
    finally:
        tail_green.Grid.features = FEATURES


def main() -> None:
    tail_study(__doc__, VARIANTS, tail_bytes)


if __name__ == "__main__":
    main()
