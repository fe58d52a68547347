"""Study: what each part of the lossless tail's form 7 buys, tail after step 3, real bytes.

    python scripts/tail_form7.py IMAGES... --cache F.npz [--variants V...] [--json F]

The cache is tail_edges.py's (each photo's 512 px centre crop, the image after step 3 and the bytes
of steps 1-3; seed = index). A variant is a form, then the parts of form 7 it goes without. The
defaults build form 7 up from form 6 part by part:
- `6`: form 6 (uqdm 0.30);
- `7-guided-sideguided-choice`: green in raster order always (tail_green.py), red and blue in form
  6's interlaced passes after it;
- `7-guided-sideguided`: and the encoder's choice, per tail, of the interlaced green where that is
  estimated smaller;
- `7-sideguided`: and red's and blue's guided features (each earlier colour's neighbour
  differences weighed by how alike that colour is there and at the pixel);
- `7`: and green's guided feature (the same, with the side image's green as the guide): form 7 as
  shipped.
Prints the mean whole-file bits per pixel (steps 1-3 plus the tail) and the change from the first
variant. Encoder only (the tests check that form 7 decodes). docs/MODEL.md section 35.
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

VARIANTS = ["6", "7-guided-sideguided-choice", "7-guided-sideguided", "7-sideguided", "7"]
FEATURES, GREEN_FEATURES, GREEN_BITS = lt._features, tail_green.Grid.features, lt._interlaced_green_bits
SIDE_GUIDED = 8 + 7 + 2  # green's column of the side-guided mean (with a side image)


def without_guided(p, near, known, x, side, c, earlier, errors=None, form=lt.FORM):
    """The interlaced features less the guided means (the last columns before the 1s)."""
    feats, activity = FEATURES(p, near, known, x, side, c, earlier, errors, form)
    if near and earlier and form >= 7:
        feats = np.concatenate([feats[:, : -1 - len(earlier)], feats[:, -1:]], 1)
    return feats, activity


def green_without_guided(self, at):
    feats, terms = GREEN_FEATURES(self, at)
    if self.side is not None:
        feats = np.delete(feats, SIDE_GUIDED, 1)
    return feats, terms


def tail_bytes(variant: str, px: np.ndarray, side: np.ndarray) -> int:
    form, *removed = variant.split("-")
    lt._features = without_guided if "guided" in removed else FEATURES
    tail_green.Grid.features = green_without_guided if "sideguided" in removed else GREEN_FEATURES
    lt._interlaced_green_bits = (lambda *_: np.inf) if "choice" in removed else GREEN_BITS
    try:
        return len(lt.encode(px, side, int(form)))
    finally:
        lt._features, lt._interlaced_green_bits = FEATURES, GREEN_BITS
        tail_green.Grid.features = GREEN_FEATURES


def main() -> None:
    tail_study(__doc__, VARIANTS, tail_bytes)


if __name__ == "__main__":
    main()
