"""Encode on one device, decode on another (both directions), compare every step's image.

    python scripts/cross_device.py ../shared/data/kodak --devices cuda cpu --out cross_device.json

For every image and every ordered pair (a, b) of the given devices: encode on a, decode every
layer on b, and check that the image after every step equals the one decoded on a (and that the
last is the original). Reports encode and full-decode seconds per image on each device. With the
exact network every pair should be identical (docs/FORMAT.md section 8); a decoder that disagreed
would stop with SyncError rather than show a wrong image. `--devices cpu cpu` runs it without a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from uqdm_codec.bench import list_images  # noqa: E402
from uqdm_codec.codec import Codec  # noqa: E402
from uqdm_codec.errors import SyncError  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder")
    parser.add_argument("--devices", nargs=2, default=["cuda", "cpu"])
    parser.add_argument("--model", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default="cross_device.json")
    args = parser.parse_args()
    codecs = {d: Codec(args.model, d) for d in dict.fromkeys(args.devices)}
    a, b = args.devices
    rows = []
    for path in list_images(Path(args.folder))[: args.limit]:
        pixels = load_image(path).pixels
        row: dict = {"image": path.name}
        for enc, dec in ((a, b), (b, a)):
            data, enc_s = _timed(lambda enc=enc, pixels=pixels: codecs[enc].encode(pixels, seed=1))
            ref, ref_s = _timed(
                lambda enc=enc, data=data: [im.pixels for im in codecs[enc].iter_decode(data)]
            )
            try:
                got, dec_s = _timed(
                    lambda dec=dec, data=data: [im.pixels for im in codecs[dec].iter_decode(data)]
                )
                same = len(got) == len(ref) and all(np.array_equal(x, y) for x, y in zip(got, ref))
                error = None
            except SyncError as exc:
                same, dec_s, error = False, None, str(exc)
            row[f"{enc}->{dec}"] = {
                "identical_every_step": same,
                "exact": bool(np.array_equal(ref[-1], pixels)),
                "crc_last": zlib.crc32(ref[-1].tobytes()),
                "error": error,
                "encode_s": enc_s,
                "decode_s_on_encoder": ref_s,
                "decode_s": dec_s,
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"devices": args.devices, "images": len(rows), "rows": rows}
    for pair in (f"{a}->{b}", f"{b}->{a}"):
        ok = sum(r[pair]["identical_every_step"] and r[pair]["exact"] for r in rows)
        enc_s = np.mean([r[pair]["encode_s"] for r in rows])
        dec_s = np.mean([r[pair]["decode_s_on_encoder"] for r in rows])
        summary[pair] = {"identical": ok, "mean_encode_s": float(enc_s), "mean_decode_s": float(dec_s)}
        print(
            f"{pair}: {ok}/{len(rows)} identical at every step; on {pair.split('->')[0]}: "
            f"encode {enc_s:.2f}s, decode {dec_s:.2f}s per image"
        )
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
