"""How closely `truncate --bpp X` meets a budget on one image, and what chunking costs at the steps.

    python scripts/truncation_report.py samples/kodim23.png --crop 384x256
    python scripts/truncation_report.py samples/kodim23.png --json report.json

Encodes the image (top-left crop with --crop) twice with the same seed: with the default chunk
policy and without sub-step chunks (`Codec(..., chunking=None)`). Reports the chunked file's
chunk points, where truncation lands for 60 budgets spread geometrically between the end of
the first layer and the whole file (how many land more than 3 % below the budget, and the worst;
`truncate` cuts inside a chunk where the budget ends in one) and the mean PSNR of the images
decoded from those truncated files,
and per step the bytes of both files: the unchunked step point, the end of the chunked file's
chunk with the network flag (the last before the step's tail, which must fit in the former), the
bytes of the step still missing at the unchunked step point, and the chunked step's end; with PSNR
of what a decoder shows at the unchunked step point's byte count in each file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from uqdm_codec import container, files  # noqa: E402
from uqdm_codec.codec import ChunkPolicy, Codec  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402
from uqdm_codec.progression import psnr  # noqa: E402


def budgets_of(data: bytes, count: int = 60) -> list[int]:
    """Byte budgets spread geometrically from the end of the first layer to the whole file."""
    fi = files.info(data)
    return [int(x) for x in np.geomspace(fi.layers[0].end, len(data), count)]


def landing(data: bytes, budgets: int = 60) -> dict:
    """Where truncation lands for budgets spread geometrically from the first layer to the end."""
    fi = files.info(data)
    got = []
    for x in budgets_of(data, budgets):
        got.append(len(files.truncate(data, max_bytes=x)) / x)
    got = np.array(got)
    return {
        "budgets": budgets,
        "below_3pct": int(np.sum(got < 0.97)),
        "worst_miss_pct": float(100 * (1 - got.min())),
        "levels": len(fi.cut_points),
        "chunks": sum(layer.chunks for layer in fi.layers),
    }


def shown(codec: Codec, data: bytes, pixels: np.ndarray) -> list[tuple[int, float]]:
    """(bytes, PSNR) of the image a decoder shows at every cut point of a file."""
    return [(im.nbytes, psnr(pixels, im.pixels)) for im in codec.iter_decode(data, every_chunk=True)]


def truncated_psnr(codec: Codec, data: bytes, pixels: np.ndarray, budgets: list[int]) -> list[float]:
    """PSNR of what a decoder shows from `truncate` to each budget (cut chunks included)."""
    return [psnr(pixels, codec.decode(files.truncate(data, max_bytes=b)).pixels) for b in budgets]


def psnr_at(points: list[tuple[int, float]], nbytes: int) -> float | None:
    at = [p for b, p in points if b <= nbytes]
    return max(at) if at else None


def step_points(
    data: bytes, flat: bytes, points: list[tuple[int, float]], flat_points: list[tuple[int, float]]
) -> list[dict]:
    """Per step: where the unchunked file ends it; in the chunked file, where the chunk with the
    network flag ends (the last one before the tail, Haar steps only: it must fit in the former),
    how many bytes of the step are still missing at the unchunked end, and where the step ends;
    and PSNR of what a decoder shows at the unchunked end, in either file."""
    parsed = container.parse(data)
    flat_ends = files.info(flat).cut_points[1:]  # one chunk per layer: the layer ends
    cuts = files.info(data).cut_points
    rows = []
    for i, (flat_end, layer, ends) in enumerate(zip(flat_ends, parsed.layers, parsed.chunk_offsets), start=1):
        net = [end for chunk, end in zip(layer.chunks, ends) if chunk.network]
        rows.append(
            {
                "step": i,
                "unchunked_end": flat_end,
                "network_chunk_end": net[0] if net else None,
                "fits": net[0] <= flat_end if net else None,
                "missing_at_unchunked_end": ends[-1] - max(c for c in cuts if c <= flat_end),
                "chunked_end": ends[-1],
                "psnr_unchunked": psnr_at(flat_points, flat_end),
                "psnr_chunked_at_unchunked_end": psnr_at(points, flat_end),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("image")
    parser.add_argument("--crop", default=None, help="WxH: use the top-left W x H pixels")
    parser.add_argument("--model", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-psnr", action="store_true", help="skip decoding (bytes only)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--min-bytes", type=int, default=None, help="ChunkPolicy.min_bytes (at 768x512)")
    parser.add_argument("--min-floor", type=int, default=None, help="ChunkPolicy.min_floor")
    parser.add_argument("--growth", type=float, default=None, help="ChunkPolicy.growth")
    parser.add_argument("--max-tail-pieces", type=int, default=None, help="ChunkPolicy.max_tail_pieces")
    args = parser.parse_args()
    pixels = load_image(args.image).pixels
    if args.crop:
        w, h = (int(v) for v in args.crop.lower().split("x"))
        pixels = np.ascontiguousarray(pixels[:h, :w])
    h, w = pixels.shape[:2]
    knobs = ("min_bytes", "min_floor", "growth", "max_tail_pieces")
    tuned = {k: getattr(args, k) for k in knobs if getattr(args, k) is not None}
    chunked = Codec(args.model, "cpu", chunking=ChunkPolicy(**tuned))
    plain = Codec(args.model, "cpu", chunking=None)
    t0 = time.perf_counter()
    data = chunked.encode(pixels, seed=args.seed)
    encode_s = time.perf_counter() - t0
    flat = plain.encode(pixels, seed=args.seed)
    report = {
        "image": args.image,
        "size": f"{w}x{h}",
        "bytes": len(data),
        "bytes_unchunked": len(flat),
        "overhead_pct": 100 * (len(data) / len(flat) - 1),
        "encode_s": encode_s,
        **landing(data),
    }
    print(
        f"{args.image} {w}x{h}: {report['levels']} levels ({report['chunks']} chunks), "
        f"{len(data)} bytes ({report['overhead_pct']:+.2f} % vs {len(flat)} without sub-step chunks), "
        f"encode {encode_s:.1f} s"
    )
    print(
        f"truncate: {report['below_3pct']} of {report['budgets']} budgets land more than 3 % below, "
        f"worst {report['worst_miss_pct']:.1f} % below"
    )
    if not args.no_psnr:
        points, flat_points = shown(chunked, data, pixels), shown(plain, flat, pixels)
        rows = step_points(data, flat, points, flat_points)
        report["steps"] = rows
        print("step  unchunked end  network chunk end  missing there  chunked end  PSNR unchunked  chunked")
        for r in rows:
            net = (
                "-"
                if r["network_chunk_end"] is None
                else f"{r['network_chunk_end']} " + ("(fits)" if r["fits"] else "(LATE)")
            )
            chunked_psnr = r["psnr_chunked_at_unchunked_end"]
            print(
                f"{r['step']:>4}  {r['unchunked_end']:>13}  {net:>17}  {r['missing_at_unchunked_end']:>13}  "
                f"{r['chunked_end']:>11}  {r['psnr_unchunked']:>14.2f}  "
                + (f"{chunked_psnr:>7.2f}" if chunked_psnr is not None else f"{'-':>7}")
            )
        gaps = [
            r["psnr_chunked_at_unchunked_end"] - r["psnr_unchunked"]
            for r in rows[1:-1]
            if r["psnr_chunked_at_unchunked_end"] is not None
        ]
        report["step_point_psnr_gap_mean"] = float(np.mean(gaps)) if gaps else None
        print(f"mean PSNR gap at the step points 2..{len(rows) - 1}: {np.mean(gaps):+.3f} dB")
        lossy = [x for x in budgets_of(data) if x < len(flat)]  # not the exact image (infinite PSNR)
        report["budget_psnr_mean"] = float(np.mean(truncated_psnr(chunked, data, pixels, lossy)))
        report["budget_psnr_mean_chunk_points"] = float(np.mean([psnr_at(points, x) for x in lossy]))
        report["budget_psnr_mean_unchunked"] = float(np.mean([psnr_at(flat_points, x) for x in lossy]))
        print(
            f"mean PSNR at the budgets short of the whole file: {report['budget_psnr_mean']:.2f} dB "
            f"(truncate's files, cut chunks included); at the chunk points below each budget "
            f"{report['budget_psnr_mean_chunk_points']:.2f} dB; at the step points of the file "
            f"without sub-step chunks {report['budget_psnr_mean_unchunked']:.2f} dB"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
