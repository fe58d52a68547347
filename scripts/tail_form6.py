"""Study: what each part of the lossless tail's form 6 buys, tail after step 3, real bytes.

    python scripts/tail_form6.py IMAGES... --cache F.npz [--variants V...] [--json F]

The cache is tail_edges.py's (each photo's 512 px centre crop, the image after step 3 and the bytes
of steps 1-3; seed = index). A variant is a form, then the parts of form 6 it goes without. The
defaults build form 6 up from form 5 part by part:
- `5`: form 5 (uqdm 0.29);
- `6-features-scales-bins-split`: only form 6's new activity terms (the spread of each colour's
  difference to the colours coded before it);
- `6-scales-bins-split`: and its new features (the median of the neighbours' colour difference,
  plus the earlier colour at the pixel);
- `6-bins-split`: and its encoder's scale grid, which goes down to 0.022 where form 5's stopped at
  0.15;
- `6-split`: and its encoder's bins of 1024 pixels instead of 2048;
- `6`: and large centre passes split in two, a checkerboard whose second half also sees its 4
  direct neighbours at distance d (form 6 as shipped).
`6-features` (form 6 without the new features) is another choice.
Prints the mean whole-file bits per pixel (steps 1-3 plus the tail) and the change from the first
variant. Encoder only (the tests check that form 6 decodes). docs/MODEL.md section 34.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import tail_study

from uqdm_codec import lossless_tail as lt

VARIANTS = ["5", "6-features-scales-bins-split", "6-scales-bins-split", "6-bins-split", "6-split", "6"]
FEATURES, FINE_SCALES, FINE_PIXELS_PER_BIN, PASSES = (
    lt._features,
    lt.FINE_SCALES,
    lt.FINE_PIXELS_PER_BIN,
    lt.passes,
)


def form_5_passes(height: int, width: int, form: int = lt.FORM) -> list[lt.Pass]:
    """Form 6's passes less its centre split: form 5's."""
    return PASSES(height, width, 5)


def without_new_features(p, near, known, x, side, c, earlier, errors=None, form=lt.FORM):
    """Form 6's features less the colour-difference medians (the last columns before the 1s)."""
    feats, activity = FEATURES(p, near, known, x, side, c, earlier, errors, form)
    if near and earlier:
        feats = np.concatenate([feats[:, : -1 - len(earlier)], feats[:, -1:]], 1)
    return feats, activity


def tail_bytes(variant: str, px: np.ndarray, side: np.ndarray) -> int:
    form, *removed = variant.split("-")
    lt._features = without_new_features if "features" in removed else FEATURES
    lt.FINE_SCALES = lt.SCALES if "scales" in removed else FINE_SCALES
    lt.FINE_PIXELS_PER_BIN = lt.PIXELS_PER_BIN if "bins" in removed else FINE_PIXELS_PER_BIN
    lt.passes = form_5_passes if "split" in removed else PASSES
    try:
        return len(lt.encode(px, side, int(form)))
    finally:
        lt._features, lt.FINE_SCALES, lt.FINE_PIXELS_PER_BIN = FEATURES, FINE_SCALES, FINE_PIXELS_PER_BIN
        lt.passes = PASSES


def main() -> None:
    tail_study(__doc__, VARIANTS, tail_bytes)


if __name__ == "__main__":
    main()
