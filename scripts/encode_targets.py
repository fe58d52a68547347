"""`uqdm encode --psnr P`: how close to the target the files land, how much a chunk-boundary cut
saves over a cut at whole steps, and how much encoding time stopping early saves (real bytes).

    python scripts/encode_targets.py $(cat runs/held.txt) --targets 30 33 36 39 --json targets.json

Each image is encoded whole once (seed 1, recording the error of the image on screen at every chunk
boundary), then once per target; every target's file must be a prefix of the whole file, and its
image is decoded once to check the PSNR the encoder reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uqdm_codec import files, get_codec  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402
from uqdm_codec.quality import Target, psnr_of  # noqa: E402


def measured_psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b
    mse = float((d * d).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--targets", nargs="+", type=float, default=[30.0, 33.0, 36.0, 39.0])
    parser.add_argument("--fast", action="store_true", help="encode with --fast")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    codec = get_codec(None, "cpu")
    rows = []
    for path in args.images:
        pixels = load_image(path).pixels
        n = pixels.shape[0] * pixels.shape[1]
        t0 = time.perf_counter()
        whole = codec.encode_judged(pixels, seed=1, fast=args.fast)
        whole_s = time.perf_counter() - t0
        fi = files.info(whole.data)
        cuts, psnrs = fi.cut_points, [psnr_of(e, n) for e in whole.screen]
        step_ends = [fi.header_bytes] + [layer.end for layer in fi.layers]
        for k, target in enumerate(args.targets):
            t0 = time.perf_counter()
            got = codec.encode_judged(pixels, seed=1, fast=args.fast, target=Target(psnr=target))
            seconds = time.perf_counter() - t0
            if not whole.data.startswith(got.data):
                raise AssertionError(f"{path}: the {target} dB file is not a prefix of the whole file")
            step_cut = next(e for e in step_ends if psnrs[cuts.index(e)] >= target)
            row = {
                "image": path.name,
                "pixels": n,
                "target": target,
                "bytes": len(got.data),
                "bpp": 8.0 * len(got.data) / n,
                "psnr": got.psnr,
                "whole_step_bpp": 8.0 * step_cut / n,
                "whole_step_psnr": psnrs[cuts.index(step_cut)],
                "seconds": seconds,
                "whole_file_seconds": whole_s,
                "lossless_bpp": 8.0 * len(whole.data) / n,
            }
            if k == 0:  # the encoder's PSNR is what a decoder shows
                row["decoded_psnr"] = measured_psnr(codec.decode(got.data).pixels, pixels)
                if abs(row["decoded_psnr"] - got.psnr) > 1e-9:
                    raise AssertionError(f"{path}: decoded {row['decoded_psnr']} dB, encoder said {got.psnr}")
            rows.append(row)
            print(
                f"{path.name:40s} {target:5.1f} dB: {row['bpp']:.3f} bpp at {row['psnr']:.2f} dB "
                f"(whole steps {row['whole_step_bpp']:.3f} bpp at {row['whole_step_psnr']:.2f}) "
                f"{seconds:5.1f} s of {whole_s:5.1f}",
                flush=True,
            )
    summary = []
    for target in args.targets:
        sel = [r for r in rows if r["target"] == target]
        bits = sum(r["bytes"] for r in sel) * 8.0
        px = sum(r["pixels"] for r in sel)
        summary.append(
            {
                "target": target,
                "images": len(sel),
                "bpp": bits / px,
                "mean_psnr": float(np.mean([r["psnr"] for r in sel])),
                "mean_overshoot_db": float(np.mean([r["psnr"] - target for r in sel])),
                "max_overshoot_db": float(max(r["psnr"] - target for r in sel)),
                "whole_step_bpp": sum(r["whole_step_bpp"] * r["pixels"] for r in sel) / px,
                "mean_whole_step_overshoot_db": float(np.mean([r["whole_step_psnr"] - target for r in sel])),
                "seconds": float(np.mean([r["seconds"] for r in sel])),
                "whole_file_seconds": float(np.mean([r["whole_file_seconds"] for r in sel])),
            }
        )
    for s in summary:
        print(
            f"{s['target']:5.1f} dB: {s['bpp']:.3f} bpp, +{s['mean_overshoot_db']:.2f} dB (max "
            f"+{s['max_overshoot_db']:.2f}); whole steps {s['whole_step_bpp']:.3f} bpp, "
            f"+{s['mean_whole_step_overshoot_db']:.2f} dB; "
            f"{s['seconds']:.1f} s vs {s['whole_file_seconds']:.1f} s"
        )
    if args.json:
        args.json.write_text(json.dumps({"fast": args.fast, "summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
