"""Byte identity across code changes: save what this checkout encodes and decodes, then check that
another checkout produces exactly the same (the format fixes every bit, so an optimisation must not
change one).

    python scripts/identity_check.py --save runs/identity     # with the old code
    python scripts/identity_check.py --check runs/identity    # with the new code; exit 1 on change

For each case (synthetic images, one with 96-pixel network tiles; a ~0.9 MP photo-like image
built from a Kodak photo, tiled at 512; a training photo) it records the .uqd bytes (fixed seed) and
a CRC of every image a decoder shows: after every chunk (iter_decode with every_chunk), after a cut
in the middle of a chunk, and after 3 steps.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

DATA = ROOT.parent / "shared" / "data"


def cases() -> dict[str, tuple[callable, int]]:
    """name -> (pixel maker, network tile)."""
    from big_image import photo_like
    from conftest import synthetic_image

    from uqdm_codec.image_io import load_image

    return {
        "synth237x301": (lambda: synthetic_image(237, 301, seed=5), 1024),
        "synth160x208_tile96": (lambda: synthetic_image(160, 208, seed=6), 96),
        "photo1152x768_tile512": (lambda: photo_like((1152, 768), DATA / "kodak" / "kodim05.png"), 512),
        "astronaut": (lambda: load_image(DATA / "train" / "misc" / "skimage_astronaut.png").pixels, 1024),
    }


def record(name: str, make, tile: int) -> tuple[bytes, dict]:
    import uqdm_codec

    codec = uqdm_codec.get_codec(None, "cpu", tile=tile)
    pixels = make()
    t = time.perf_counter()
    data = codec.encode(pixels, seed=7)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    shown, last = [], None
    for im in codec.iter_decode(data, every_chunk=True):
        crc = zlib.crc32(im.pixels.tobytes())
        shown.append([im.layer, im.chunks, im.steps, im.complete, im.lossless, im.nbytes, crc])
        last = im.pixels
    t_dec = time.perf_counter() - t
    cut = codec.decode(data[: int(len(data) * 0.6)])
    three = codec.decode(data, steps=3)
    info = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "lossless": bool(np.array_equal(last, pixels)),
        "shown": shown,
        "cut": [cut.layer, cut.chunks, zlib.crc32(cut.pixels.tobytes())],
        "steps3": zlib.crc32(three.pixels.tobytes()),
    }
    print(
        f"{name}: {len(data)} bytes, {len(shown)} images, encode {t_enc:.1f} s, decode {t_dec:.1f} s",
        flush=True,
    )
    return data, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path)
    mode.add_argument("--check", type=Path)
    ap.add_argument("--only", nargs="*", help="case names (default: all)")
    args = ap.parse_args(argv)
    folder = args.save or args.check
    folder.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name, (make, tile) in cases().items():
        if args.only and name not in args.only:
            continue
        data, info = record(name, make, tile)
        if args.save:
            (folder / f"{name}.uqd").write_bytes(data)
            (folder / f"{name}.json").write_text(json.dumps(info) + "\n")
            continue
        want = json.loads((folder / f"{name}.json").read_text())
        same_bytes = data == (folder / f"{name}.uqd").read_bytes()
        diffs = [k for k in want if want[k] != json.loads(json.dumps(info))[k]]
        ok = same_bytes and not diffs
        failures += not ok
        print(
            f"  {'IDENTICAL' if ok else 'DIFFERENT'}: bytes {'same' if same_bytes else 'differ'}"
            + (f", differing records: {diffs}" if diffs else ", every shown image the same")
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
