"""Measure the entropy coder and the fine-grained progression on a folder of images (Kodak).

    python scripts/kodak_report.py ../shared/data/kodak --out runs/kodak_report.json

Per image, with the default model and real file bytes:
- coder overhead: each layer's bytes in a file without sub-step chunks, divided by the ideal code
  length sum(-log2 P(k)) / 8 under the exact model (issue 2: <= 1.01);
- progression (issue 5): decodable levels (chunk cut points), whether PSNR rises monotonically
  through them, PSNR of the chunked file at the byte counts of the unchunked file's step points,
  and where `truncate --bpp X` lands for 60 budgets X spread between the first layer and the full
  stream (fraction within 3 % below X).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from uqdm_codec import files  # noqa: E402
from uqdm_codec.bench import list_images, psnr  # noqa: E402
from uqdm_codec.codec import Codec, ideal_bits  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402


def measure(chunked: Codec, plain: Codec, pixels: np.ndarray, seed: int) -> dict:
    npx = pixels.shape[0] * pixels.shape[1]
    t0 = time.perf_counter()
    data = chunked.encode(pixels, seed=seed)
    encode_s = time.perf_counter() - t0
    flat = plain.encode(pixels, seed=seed)
    ideal = ideal_bits(plain, pixels, seed=seed)
    flat_layers = files.info(flat).layers
    layer_bytes = [layer.bytes for layer in flat_layers]
    ratio = [b / (i / 8.0) if i > 0 else None for b, i in zip(layer_bytes, ideal)]

    # every decodable prefix of the chunked file: bytes and PSNR of what the decoder shows
    t0 = time.perf_counter()
    points = [(img.nbytes, psnr(pixels, img.pixels)) for img in chunked.iter_decode(data, every_chunk=True)]
    every_chunk_s = time.perf_counter() - t0
    lossy = [(b, p) for b, p in points if np.isfinite(p)]
    monotone = all(p2 >= p1 - 1e-9 for (_, p1), (_, p2) in zip(lossy, lossy[1:]))
    drops = [p1 - p2 for (_, p1), (_, p2) in zip(lossy, lossy[1:]) if p2 < p1]

    # the unchunked file's step points against the chunked file at the same byte budget
    steps_flat = [(img.nbytes, psnr(pixels, img.pixels)) for img in plain.iter_decode(flat)][1:-1]
    versus = []
    for nbytes, p in steps_flat:
        below = [q for b, q in points if b <= nbytes]
        versus.append(
            {"bpp": 8 * nbytes / npx, "psnr_steps": p, "psnr_chunked": max(below) if below else None}
        )

    fi = files.info(data)
    first, full = fi.layers[0].end, len(data)
    budgets = np.geomspace(8 * first / npx, 8 * full / npx, 60)
    landed = []
    for x in budgets:
        got = 8 * len(files.truncate(data, bpp=float(x))) / npx
        landed.append(got / x)
    landed = np.array(landed)
    return {
        "bpp": 8 * len(data) / npx,
        "layer_bytes_unchunked": layer_bytes,
        "ideal_bytes": [i / 8.0 for i in ideal],
        "coder_ratio": ratio,
        "coder_ratio_total": sum(layer_bytes) / (sum(ideal) / 8.0),
        "levels": len(fi.cut_points),
        "monotone": monotone,
        "largest_psnr_drop": max(drops) if drops else 0.0,
        "points": [{"bpp": 8 * b / npx, "psnr": p} for b, p in points],
        "step_points": versus,
        "truncate_within_3pct": float(np.mean(landed >= 0.97)),
        "truncate_worst": float(landed.min()),
        "chunk_overhead_full": len(data) / len(flat) - 1.0,
        "encode_s": encode_s,
        "decode_every_chunk_s": every_chunk_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder")
    parser.add_argument("--model", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default="kodak_report.json")
    args = parser.parse_args()
    chunked = Codec(args.model, "cpu")
    plain = Codec(args.model, "cpu", chunking=None)  # one chunk per layer, natural order
    rows = []
    for k, path in enumerate(list_images(Path(args.folder))[: args.limit]):
        t0 = time.perf_counter()
        row = {"image": path.name, **measure(chunked, plain, load_image(path).pixels, seed=k)}
        rows.append(row)
        print(
            f"{path.name}: levels {row['levels']}, monotone {row['monotone']}, "
            f"coder {row['coder_ratio_total']:.4f}, "
            f"truncate within 3% {row['truncate_within_3pct']:.2f} ({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
    ratios = np.array([row["coder_ratio"] for row in rows], dtype=float)  # None (empty layer) -> nan
    gap_rows = [  # per image, per step point: chunked minus unchunked PSNR (None: nothing below)
        [v["psnr_chunked"] - v["psnr_steps"] if v["psnr_chunked"] else None for v in row["step_points"]]
        for row in rows
    ]
    gaps = [g for gr in gap_rows for g in gr if g is not None]
    summary = {
        "images": len(rows),
        "coder_ratio_per_layer_max": np.nanmax(ratios, axis=0).tolist(),
        "coder_ratio_per_layer_mean": np.nanmean(ratios, axis=0).tolist(),
        "coder_ratio_total_max": max(r["coder_ratio_total"] for r in rows),
        "levels_min": min(r["levels"] for r in rows),
        "levels_mean": float(np.mean([r["levels"] for r in rows])),
        "monotone_files": sum(r["monotone"] for r in rows),
        "largest_psnr_drop": max(r["largest_psnr_drop"] for r in rows),
        "step_point_psnr_gap_mean": float(np.mean(gaps)),
        "step_point_psnr_gap_mean_per_step": np.nanmean(np.array(gap_rows, dtype=float), axis=0).tolist(),
        "step_points_no_worse": f"{sum(g >= 0 for g in gaps)}/{len(gaps)}",
        "step_point_psnr_gap_min": float(np.min(gaps)),
        "truncate_within_3pct_mean": float(np.mean([r["truncate_within_3pct"] for r in rows])),
        "truncate_worst": min(r["truncate_worst"] for r in rows),
        "chunk_overhead_full_mean": float(np.mean([r["chunk_overhead_full"] for r in rows])),
        "encode_s_mean": float(np.mean([r["encode_s"] for r in rows])),
        "decode_every_chunk_s_mean": float(np.mean([r["decode_every_chunk_s"] for r in rows])),
    }
    Path(args.out).write_text(json.dumps({"summary": summary, "images": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
