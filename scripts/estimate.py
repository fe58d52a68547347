"""The trainer's estimate for float models on centre crops of given photos: bare and corrected
negative ELBO (bpp) and the corrected cumulative bpp after each step, with the evaluation's seed.

    python scripts/estimate.py PHOTO_LIST weights/uqdm-small-float.safetensors runs/x/uqdm-small.safetensors

PHOTO_LIST is a file of whitespace-separated image paths (e.g. runs/held.txt). Cheaper than real
bytes (about a minute for six photos and three models on one core) and blind to what the codec adds
per image, but it shows which photos a run moved: docs/MODEL.md section 28 used it to find why a
GPU run was better on its own held-aside photos and worse on ours.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from uqdm_codec.model import load_model  # noqa: E402
from uqdm_codec.train import chain_estimates, holdout_batch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=Path, help="a file listing the photos")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--size", type=int, default=256, help="centre crop side")
    ap.add_argument("--filter-from", type=int, default=5, help="as the shipped model's --filter-from")
    args = ap.parse_args()
    if not args.photos.is_file():
        ap.error(f"{args.photos}: no such list of photos")
    paths = [Path(p) for p in args.photos.read_text().split()]
    val = torch.from_numpy(holdout_batch(paths, args.size))
    for spec in args.models:
        bare, corrected = chain_estimates(load_model(spec).eval(), val, args.filter_from)
        steps = [round(v, 3) for v in corrected["bpp"]]
        totals = f"bare {bare['nelbo_bpp']:.4f} corrected {corrected['nelbo_bpp']:.4f} bpp"
        print(f"{spec}: {totals}, after each step {steps}", flush=True)


if __name__ == "__main__":
    main()
