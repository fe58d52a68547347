"""Write a golden tail file and its recorded decodes, for tests/test_lossless_tail.py's GOLDEN_TAILS.

    python scripts/golden_tail.py NAME.uqd RECORD.json [--form N] [--out tests/data]

Run it at the release whose form it should pin, before changing the tail: it encodes
kodim23[160:256, 280:408] (samples/) with the shipped model, seed 7 and `--tail on`, and records the
file's size, the SHA-256 of the decoded pixels after every step, the number of images a chunk-by-chunk
decode shows and the SHA-256 of all of them together. --form N writes an older form instead (to
check that the encoder still writes an earlier release's file byte for byte).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np

from uqdm_codec import get_codec, lossless_tail
from uqdm_codec.image_io import load_image

ROOT = Path(__file__).resolve().parent.parent


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("record")
    ap.add_argument("--form", type=int, default=lossless_tail.FORM)
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data")
    args = ap.parse_args()
    lossless_tail.FORM = args.form
    codec = get_codec()
    pixels = load_image(ROOT / "samples" / "kodim23.png").pixels[160:256, 280:408]
    data = codec.encode(pixels, seed=7, tail=True)
    images = list(codec.iter_decode(data, every_chunk=True))
    record = {
        "bytes": len(data),
        "steps": [sha(codec.decode(data, steps=n).pixels) for n in range(codec.num_steps + 1)],
        "levels": len(images),
        "every_chunk": hashlib.sha256(b"".join(im.pixels.tobytes() for im in images)).hexdigest(),
    }
    (args.out / args.name).write_bytes(data)
    (args.out / args.record).write_text(json.dumps(record, indent=1) + "\n")
    print(f"form {args.form}: {len(data)} bytes, {len(images)} images")


if __name__ == "__main__":
    main()
