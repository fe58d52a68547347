"""Study: what each part of the lossless tail's form 5 buys, tail after step 3, real bytes.

    python scripts/tail_form5.py IMAGES... --cache F.npz [--specs SPEC...] [--json F]

The cache is tail_edges.py's (each photo's 512 px centre crop, the image after step 3 and the bytes
of steps 1-3; seed = index). Each SPEC is a form, then optional `:NAME=VALUE` settings of
lossless_tail's encoder constants, kept for the specs after it, e.g. `5:CLASSES=1:MAX_SHIFT=0`.
The defaults build form 5 up from form 4 part by part:
- `4`: form 4 (uqdm 0.28);
- `5:CLASSES=1:SPLIT_PIXELS=...:MAX_SHIFT=0`: the activity's weights fitted per pass and colour;
- `...:CLASSES=2`: and two predictor classes in large passes;
- `...:SPLIT_PIXELS=32768`: and large edge passes in two halves, the second seeing 8 neighbours;
- `...:MAX_SHIFT=12`: and the coefficients' shift (form 5 as shipped).
Prints the mean whole-file bits per pixel (steps 1-3 plus the tail) and the change from form 4.
Encoder only (the tests check that form 5 decodes). docs/MODEL.md section 33.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import tail_study

from uqdm_codec import lossless_tail as lt

NEVER = 1 << 40
SPECS = [
    "4",
    f"5:CLASSES=1:SPLIT_PIXELS={NEVER}:MAX_SHIFT=0",
    "5:CLASSES=2",
    "5:SPLIT_PIXELS=32768",
    "5:MAX_SHIFT=12",
]


def tail_bytes(spec: str, px: np.ndarray, side: np.ndarray) -> int:
    """The tail's bytes with the spec's form, after setting its constants (they stay set)."""
    form, *settings = spec.split(":")
    for setting in settings:
        name, value = setting.split("=")
        setattr(lt, name, int(value))
    return len(lt.encode(px, side, int(form)))


def main() -> None:
    tail_study(__doc__, SPECS, tail_bytes, "--specs")


if __name__ == "__main__":
    main()
