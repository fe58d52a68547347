"""Accounting: the lossless tail's bits per colour, against JPEG XL on the same planes.

    python scripts/tail_planes.py IMAGES... --cache F.npz [--form N] [--json F]

The cache is tail_edges.py's (each photo's 512 px centre crop and the image after step 3). Per
photo, in bits per pixel of the crop, with the tail's form N (the current one by default):
- `tail G`, `tail R`, `tail B`: the estimated code length of each colour in the tail after step 3
  (the logistic model of the encoder's choices, parameters not counted);
- `jxl G`: JPEG XL lossless (effort 7) of the green plane alone;
- `jxl R-G`, `jxl B-G`: JPEG XL lossless of the colour differences alone (16-bit planes, offset
  256), which it codes without green;
- `tail R-G`: the tail's estimate for the plane R - G + 128 (clipped to 0..255) coded alone, as
  its first colour and without a side image.
JPEG XL's colour differences cost far less than the tail's R and B given green on photos that went
through JPEG's subsampled chroma: the tail's red was predicted and binned by red's own busy
neighbours, where its difference to green was flat. docs/MODEL.md section 34.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import imagecodecs
import numpy as np
from study_common import finish_rows, load_tail_cache, parser, print_row

from uqdm_codec import entropy
from uqdm_codec import lossless_tail as lt


def colour_bits(pixels: np.ndarray, side: np.ndarray | None, form: int) -> np.ndarray:
    """The tail's estimated bits of G, R and B (in that order), from the priors its encoder codes with."""
    seen = []
    encode_step = entropy.encode_step

    def spy(k, prior, groups):
        seen.append((k, prior.loc, prior.scale))
        return encode_step(k, prior, groups)

    entropy.encode_step = spy
    try:
        lt.encode(pixels, side, form)
    finally:
        entropy.encode_step = encode_step
    bits = np.zeros(3)
    for k, mu, scale in seen:
        v, n = k + np.rint(mu).astype(np.int64), k.size // 3
        for g in range(3):
            part = slice(g * n, (g + 1) * n)
            bits[g] += lt.logistic_bits(v[part], mu[part], scale[part]).sum()
    return bits


def jxl_bits(plane: np.ndarray) -> float:
    return 8.0 * len(imagecodecs.jpegxl_encode(np.ascontiguousarray(plane), lossless=True, effort=7))


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--form", type=int, default=lt.FORM)
    args = ap.parse_args()
    rows = []
    for path, (px, side, _) in zip(args.images, load_tail_cache(args.cache, len(args.images))):
        n = px.shape[0] * px.shape[1]
        g, r, b = (px[..., c].astype(np.int32) for c in (1, 0, 2))
        tail = colour_bits(px, side, args.form) / n
        diff = np.clip(r - g + 128, 0, 255).astype(np.uint8)
        row = {"image": path.name, "tail G": tail[0], "tail R": tail[1], "tail B": tail[2]}
        row["jxl G"] = jxl_bits(g.astype(np.uint8)) / n
        row["jxl R-G"] = jxl_bits((r - g + 256).astype(np.uint16)) / n
        row["jxl B-G"] = jxl_bits((b - g + 256).astype(np.uint16)) / n
        row["tail R-G"] = colour_bits(np.repeat(diff[..., None], 3, 2), None, args.form)[0] / n
        print_row(row)
        rows.append(row)
    finish_rows(rows, args.json)


if __name__ == "__main__":
    main()
