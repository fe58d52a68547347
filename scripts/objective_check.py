"""How well does the trainer's loss predict the codec? For each model, on the trainer's 6 held-aside
256 px crops: the trainer's bare chain, its `--corrections` chain (fits per crop), the same with
every fit pooled over the 6 crops (one colour context and one display filter for all of them, as
if they were one image), and the real bytes of the codec (train.codec_evaluation).

    python scripts/objective_check.py weights/uqdm-small-float.safetensors runs/v12c-3000.safetensors \
        --json docs/bench/v12c-estimates.json

Written for run v12c (docs/MODEL.md section 19), whose corrected estimate fell 0.9 % while the
codec's files did not shrink. Float weights only (the trainer's chain runs the float network).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uqdm_codec import corrections, objective  # noqa: E402
from uqdm_codec.model import load_model  # noqa: E402
from uqdm_codec.train import calibration_crops, codec_evaluation, held_aside, holdout_batch, list_images  # noqa: E402


@contextmanager
def pooled_fits():
    """Every least-squares fit of corrections.py over the whole batch instead of per crop."""
    sums, fit = corrections._sums, objective.display_filter

    def pooled_sums(a, b):
        return sums(a, b).sum().expand(a.shape[0])

    def pooled_filter(image, target, radius=corrections.FILTER_RADIUS):
        b, c, h, w = image.shape  # the crops side by side as one image
        side = fit(*(t.permute(1, 2, 0, 3).reshape(1, c, h, b * w) for t in (image, target)), radius)
        return side.reshape(c, h, b, w).permute(2, 0, 1, 3)

    corrections._sums, objective.display_filter = pooled_sums, pooled_filter
    try:
        yield
    finally:
        corrections._sums, objective.display_filter = sums, fit


def chain(model, val, corrected: bool, filter_from: int = 1) -> dict:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        cm = objective.run_chain(model, val, generator=gen, corrections=corrected, filter_from=filter_from)
    return {
        "bpp": [round(v, 4) for v in cm["bpp"]],
        "psnr": [round(v, 2) for v in cm["psnr"]],
        "lossless_bpp": round(cm["nelbo_bpp"], 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="float weights (.safetensors, uqdm-model/3)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--filter-from", type=int, default=1, help="as uqdm train --filter-from")
    args = ap.parse_args()
    val = holdout_batch(held_aside(list_images(args.data), 6))
    calibration = calibration_crops(args.data, 16, 256, 6)
    out = {}
    for path in args.models:
        model = load_model(path)
        rec = {"bare": chain(model, torch.from_numpy(val), False)}
        rec["corrected"] = chain(model, torch.from_numpy(val), True, args.filter_from)
        with pooled_fits():
            rec["corrected_pooled"] = chain(model, torch.from_numpy(val), True, args.filter_from)
        rec["codec"] = codec_evaluation(model, val, calibration)
        out[path] = rec
        lossless = {k: v.get("lossless_bpp", v.get("codec_lossless_bpp")) for k, v in rec.items()}
        print(path, "lossless bpp", lossless, flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
