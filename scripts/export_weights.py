"""Turn float weights into the shipped exact model (integer network, exactnet.py).

    python scripts/export_weights.py weights/uqdm-small-float.safetensors --data ../shared/data/train

Calibrates the integer network's value ranges on crops of training photos (the held-aside
validation photos of `uqdm train` excluded; never Kodak), writes weights/<name>.safetensors + .json
(format uqdm-exact/1) and prints its fingerprint. With --float-copy, also stores the float weights
as weights/<name>-float.safetensors (float16), the starting point of further training.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uqdm_codec.exactmodel import from_float, load_codec_model, save_exact  # noqa: E402
from uqdm_codec.model import load_model, save_model  # noqa: E402
from uqdm_codec.train import calibration_crops  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="float weights (.safetensors, uqdm-model/3)")
    parser.add_argument("--data", default="../shared/data/train", help="training photos for calibration")
    parser.add_argument("--count", type=int, default=16, help="calibration crops")
    parser.add_argument("--size", type=int, default=256, help="calibration crop side")
    parser.add_argument("--name", default="uqdm-small")
    parser.add_argument("--dest", default=str(Path(__file__).resolve().parent.parent / "weights"))
    parser.add_argument("--float-copy", action="store_true", help="also store the float weights (fp16)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model(args.source)
    model.config = type(model.config)(**{**model.config.__dict__, "name": args.name})
    dest = Path(args.dest) / f"{args.name}.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if args.float_copy:
        save_model(model, Path(args.dest) / f"{args.name}-float.safetensors", dtype=torch.float16)
    t0 = time.time()
    crops = calibration_crops(Path(args.data), args.count, args.size)
    exact = from_float(model, crops)
    save_exact(exact, dest)
    shipped = load_codec_model(dest)
    print(
        f"calibrated on {len(crops)} crops of {args.size}px in {time.time() - t0:.0f}s; wrote {dest} "
        f"({dest.stat().st_size / 1e6:.1f} MB), fingerprint {shipped.fingerprint.hex()}"
    )


if __name__ == "__main__":
    main()
