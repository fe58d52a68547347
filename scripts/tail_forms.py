"""Lossless tail, forms 1 (uqdm 0.23-0.25), 2 (0.26), 3 (0.27), 4 (0.28) and 5 (0.29): real `--tail on` files.

    python scripts/tail_forms.py IMAGES... [--crop 512] [--json F]

Each photo (centre crop; `--crop 100000` for whole images) is encoded with the shipped model,
`--fast`, seed = index and `--tail on`, once per form of the tail: form 1 (the R and B predictors
see the symbols of the colours coded before them), form 2 (they also see those colours' levels at
the pixel and its neighbours, and every activity adds the neighbours' coded errors), form 3
(every predictor also sees the sum of the neighbours' signed errors in its colour), form 4 (and
the median of the neighbours in its colour and the earlier ones) and form 5 (large edge passes
split, fitted activity weights, predictor classes, shifted coefficients; FORMAT.md 6.6).
Every file is decoded back and must equal the original; steps 1-7 are the same bytes in all.
Prints the whole files' bits per pixel and each form's change from the one before (docs/MODEL.md
sections 30 to 33).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from study_common import finish_rows, load_crops, parser, print_row

from uqdm_codec import container, get_codec, lossless_tail


def main() -> None:
    args = parser(__doc__).parse_args()
    codec = get_codec()
    rows = []
    for seed, (path, px) in enumerate(zip(args.images, load_crops(args.images, args.crop))):
        npx = px.shape[0] * px.shape[1]
        row: dict = {"image": path.name}
        for form in lossless_tail.FORMS:
            lossless_tail.FORM = form  # what the encoder writes
            data = codec.encode(px, seed=seed, fast=True, tail=True)
            assert container.parse_header(data)[0].tail_form == form
            assert np.array_equal(codec.decode(data).pixels, px)
            row[f"form {form}"] = 8.0 * len(data) / npx
        for form in lossless_tail.FORMS[1:]:
            row[f"{form} vs {form - 1} %"] = 100.0 * (row[f"form {form}"] / row[f"form {form - 1}"] - 1.0)
        lossless_tail.FORM = lossless_tail.FORMS[-1]
        rows.append(row)
        print_row(row)
    finish_rows(rows, args.json)


if __name__ == "__main__":
    main()
