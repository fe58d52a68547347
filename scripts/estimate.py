"""The trainer's estimate for float models on centre crops of given photos: bare and corrected
negative ELBO (bpp) and the corrected cumulative bpp after each step, with the evaluation's seed.

    python scripts/estimate.py PHOTO_LIST weights/uqdm-small-float.safetensors runs/x/uqdm-small.safetensors

PHOTO_LIST is a file of whitespace-separated image paths (e.g. runs/held.txt). Cheaper than real
bytes (about a minute for six photos and three models on one core) and blind to what the codec adds
per image, but it shows which photos a run moved: docs/MODEL.md section 28 used it to find why a
GPU run was better on its own held-aside photos and worse on ours.

--tf32 adds, per model, the same estimate with every convolution's inputs and weights rounded to
TF32, as cuDNN does on a GPU by default (torch.backends.cudnn.allow_tf32): section 29 found
14.5112 -> 14.5107 bpp on runs/held.txt, so TF32 does not hurt GPU evaluations.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from uqdm_codec.model import load_model  # noqa: E402
from uqdm_codec.train import chain_estimates, holdout_batch  # noqa: E402


def to_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 rounded to TF32's 10 mantissa bits (to nearest, ties away from zero)."""
    if x.dtype != torch.float32:
        return x
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


@contextmanager
def tf32_convolutions():
    """Within: F.conv2d (which nn.Conv2d calls) rounds its inputs and weights to TF32."""
    conv2d = F.conv2d

    def rounded(input, weight, bias=None, *rest, **kw):
        return conv2d(to_tf32(input), to_tf32(weight), bias, *rest, **kw)

    F.conv2d = rounded
    try:
        yield
    finally:
        F.conv2d = conv2d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=Path, help="a file listing the photos")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--size", type=int, default=256, help="centre crop side")
    ap.add_argument("--filter-from", type=int, default=5, help="as the shipped model's --filter-from")
    ap.add_argument("--tf32", action="store_true", help="also with TF32-rounded convolutions")
    args = ap.parse_args()
    if not args.photos.is_file():
        ap.error(f"{args.photos}: no such list of photos")
    paths = [Path(p) for p in args.photos.read_text().split()]
    val = torch.from_numpy(holdout_batch(paths, args.size))
    modes = [("", nullcontext)] + ([(" (TF32 convolutions)", tf32_convolutions)] if args.tf32 else [])
    for spec in args.models:
        model = load_model(spec).eval()
        for label, context in modes:
            with context():
                bare, corrected = chain_estimates(model, val, args.filter_from)
            steps = [round(v, 3) for v in corrected["bpp"]]
            totals = f"bare {bare['nelbo_bpp']:.4f} corrected {corrected['nelbo_bpp']:.4f} bpp"
            print(f"{spec}{label}: {totals}, after each step {steps}", flush=True)


if __name__ == "__main__":
    main()
