"""`uqdm encode --psnr P`: how close to the target the files land, how much the cut saves over the
first chunk boundary and the first whole step that reach the target, and how much encoding time
stopping early saves (real bytes).

    python scripts/encode_targets.py $(cat runs/held.txt) --targets 30 33 36 39 --json targets.json

Each image is encoded whole once (seed 1, recording the error of the image on screen at every chunk
boundary), then once per target; every target's file must be what `truncate` keeps of the whole
file at its size, and its image is decoded to check the PSNR the encoder reported. --tries 0 cuts
on chunk boundaries only, as uqdm 0.39 did (cut_judge.MAX_TRIES).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uqdm_codec import cut_judge, files, get_codec  # noqa: E402
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
    parser.add_argument("--tries", type=int, default=cut_judge.MAX_TRIES, help="cut_judge.MAX_TRIES")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cut_judge.MAX_TRIES = args.tries
    searching = [0.0]  # seconds spent in the search for a cut inside a chunk (decoding candidates)
    shortest_cut = cut_judge.shortest_cut

    def timed_cut(*a, **k):
        t = time.perf_counter()
        try:
            return shortest_cut(*a, **k)
        finally:
            searching[0] += time.perf_counter() - t

    cut_judge.shortest_cut = timed_cut
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
            t0, searching[0] = time.perf_counter(), 0.0
            got = codec.encode_judged(pixels, seed=1, fast=args.fast, target=Target(psnr=target))
            seconds = time.perf_counter() - t0
            if files.truncate(whole.data, max_bytes=len(got.data)) != got.data:
                raise AssertionError(f"{path}: the {target} dB file is not a cut of the whole file")
            step_cut = next(e for e in step_ends if psnrs[cuts.index(e)] >= target)
            chunk_cut = next(e for e, p in zip(cuts, psnrs) if p >= target)
            row = {
                "image": path.name,
                "pixels": n,
                "target": target,
                "bytes": len(got.data),
                "bpp": 8.0 * len(got.data) / n,
                "psnr": got.psnr,
                "chunk_boundary_bpp": 8.0 * chunk_cut / n,
                "chunk_boundary_psnr": psnrs[cuts.index(chunk_cut)],
                "whole_step_bpp": 8.0 * step_cut / n,
                "whole_step_psnr": psnrs[cuts.index(step_cut)],
                "seconds": seconds,
                "search_seconds": searching[0],
                "whole_file_seconds": whole_s,
                "lossless_bpp": 8.0 * len(whole.data) / n,
            }
            if k == 0 or got.data != whole.data[: len(got.data)]:  # what a decoder shows
                row["decoded_psnr"] = measured_psnr(codec.decode(got.data).pixels, pixels)
                if abs(row["decoded_psnr"] - got.psnr) > 1e-9:
                    raise AssertionError(f"{path}: decoded {row['decoded_psnr']} dB, encoder said {got.psnr}")
            rows.append(row)
            print(
                f"{path.name:40s} {target:5.1f} dB: {row['bpp']:.3f} bpp at {row['psnr']:.2f} dB "
                f"(chunk boundary {row['chunk_boundary_bpp']:.3f} at {row['chunk_boundary_psnr']:.2f}, "
                f"whole steps {row['whole_step_bpp']:.3f} at {row['whole_step_psnr']:.2f}) "
                f"{seconds:5.1f} s (search {searching[0]:.1f}) of {whole_s:5.1f}",
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
                "chunk_boundary_bpp": sum(r["chunk_boundary_bpp"] * r["pixels"] for r in sel) / px,
                "mean_chunk_boundary_overshoot_db": float(
                    np.mean([r["chunk_boundary_psnr"] - target for r in sel])
                ),
                "whole_step_bpp": sum(r["whole_step_bpp"] * r["pixels"] for r in sel) / px,
                "mean_whole_step_overshoot_db": float(np.mean([r["whole_step_psnr"] - target for r in sel])),
                "seconds": float(np.mean([r["seconds"] for r in sel])),
                "search_seconds": float(np.mean([r["search_seconds"] for r in sel])),
                "whole_file_seconds": float(np.mean([r["whole_file_seconds"] for r in sel])),
            }
        )
    for s in summary:
        print(
            f"{s['target']:5.1f} dB: {s['bpp']:.3f} bpp, +{s['mean_overshoot_db']:.2f} dB (max "
            f"+{s['max_overshoot_db']:.2f}); chunk boundaries {s['chunk_boundary_bpp']:.3f} bpp, "
            f"+{s['mean_chunk_boundary_overshoot_db']:.2f} dB; whole steps {s['whole_step_bpp']:.3f} bpp, "
            f"+{s['mean_whole_step_overshoot_db']:.2f} dB; "
            f"{s['seconds']:.1f} s (search {s['search_seconds']:.1f}) vs {s['whole_file_seconds']:.1f} s"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"fast": args.fast, "tries": args.tries, "summary": summary, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
