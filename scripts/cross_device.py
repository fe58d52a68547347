"""Encode on one device, decode on another, and report what survives.

    python scripts/cross_device.py ../shared/data/kodak --encode cuda --decode cpu
    python scripts/cross_device.py ../shared/data/kodak --encode cpu --decode cuda

For every image: whether the full file decodes exactly, and if not, the first layer whose check
failed (the decoder stops there with SyncError rather than show a wrong image). Needs a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from uqdm_codec.bench import list_images  # noqa: E402
from uqdm_codec.codec import Codec  # noqa: E402
from uqdm_codec.errors import SyncError  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder")
    parser.add_argument("--encode", default="cuda")
    parser.add_argument("--decode", default="cpu")
    parser.add_argument("--model", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default="cross_device.json")
    args = parser.parse_args()
    enc, dec = Codec(args.model, args.encode), Codec(args.model, args.decode)
    rows = []
    for path in list_images(Path(args.folder))[: args.limit]:
        pixels = load_image(path).pixels
        data = enc.encode(pixels, seed=1)
        row = {"image": path.name, "exact": False, "steps_ok": 0, "error": None}
        try:
            for image in dec.iter_decode(data):
                if image.complete and not image.lossless:
                    row["steps_ok"] = image.steps
                if image.lossless:
                    row["exact"] = bool(np.array_equal(image.pixels, pixels))
        except SyncError as exc:
            row["error"] = str(exc)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "encode": args.encode,
        "decode": args.decode,
        "images": len(rows),
        "exact": sum(r["exact"] for r in rows),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['exact']} of {len(rows)} decode exactly ({args.encode} -> {args.decode})")


if __name__ == "__main__":
    main()
