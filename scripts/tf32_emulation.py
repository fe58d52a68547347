"""Does the trainer's estimate move when convolutions round their inputs to TF32, as cuDNN does on
a GPU by default (torch.backends.cudnn.allow_tf32)? Same crops, same seed, on the CPU.

    python scripts/tf32_emulation.py runs/held.txt weights/uqdm-small-float.safetensors

docs/MODEL.md section 29: 14.5112 -> 14.5107 bpp (corrected), so GPU evaluations and training are
not hurt by TF32 convolutions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uqdm_codec.model import load_model  # noqa: E402
from uqdm_codec.train import chain_estimates, holdout_batch  # noqa: E402


def to_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 rounded to TF32's 10 mantissa bits (to nearest, ties away from zero)."""
    if x.dtype != torch.float32:
        return x
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=Path, help="a file listing the photos")
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    if not args.photos.is_file():
        ap.error(f"{args.photos}: no such list of photos")
    val = torch.from_numpy(holdout_batch([Path(p) for p in args.photos.read_text().split()]))
    conv2d = F.conv2d

    def conv2d_tf32(input, weight, bias=None, *rest, **kw):
        return conv2d(to_tf32(input), to_tf32(weight), bias, *rest, **kw)

    for spec in args.models:
        model = load_model(spec).eval()
        for mode, conv in (("fp32", conv2d), ("tf32", conv2d_tf32)):
            F.conv2d = conv
            try:
                bare, corrected = chain_estimates(model, val, 5)
            finally:
                F.conv2d = conv2d
            totals = f"bare {bare['nelbo_bpp']:.4f} corrected {corrected['nelbo_bpp']:.4f} bpp"
            print(f"{spec} {mode}: {totals}", flush=True)


if __name__ == "__main__":
    main()
