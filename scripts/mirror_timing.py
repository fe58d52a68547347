"""Encode and decode time and file size of one image with each mirror ensemble (docs/MODEL.md 16).

    python scripts/mirror_timing.py samples/kodim23.png [--json out.json]
    python scripts/mirror_timing.py samples/kodim23.png --mirrors 1 --chunking 0.03,0 0.12,1   # section 23

Run it with nothing else on the machine: the figures are wall-clock seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from uqdm_codec import get_codec  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--mirrors", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument(
        "--chunking",
        nargs="+",
        default=[None],
        metavar="GROWTH,EVERY",
        help="encoder chunk policies to time (ChunkPolicy growth and network_every; default the codec's)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    codec = get_codec()
    default_policy = codec.chunking
    px = load_image(args.image).pixels
    codec.encode(np.zeros((16, 16, 3), np.uint8), seed=0)  # warm-up
    results = {}
    for policy, m in [(p, m) for p in args.chunking for m in args.mirrors]:
        codec.chunking = default_policy
        if policy is not None:
            growth, every = policy.split(",")
            codec.chunking = replace(default_policy, growth=float(growth), network_every=int(every))
        name = f"{m}" if policy is None else f"{m} chunking {policy}"
        t0 = time.perf_counter()
        data = codec.encode(px, seed=5, mirrors=m)
        encode_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = codec.decode(data)
        decode_s = time.perf_counter() - t0
        if not np.array_equal(out.pixels, px):
            raise SystemExit(f"mirrors {name}: the decoded image is not the original")
        bpp = 8 * len(data) / (px.shape[0] * px.shape[1])
        results[name] = {"bpp": bpp, "encode_s": round(encode_s, 2), "decode_s": round(decode_s, 2)}
        print(f"mirrors {name}: {bpp:.3f} bpp, encode {encode_s:.1f} s, decode {decode_s:.1f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
