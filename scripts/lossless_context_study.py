"""What the lossless layer's spatial context (lossless_context.py) buys, in real file bytes.

    python scripts/lossless_context_study.py IMAGES... [--model M] [--crop 512] [--json F] [--no-check]

Encodes each image (centre crop, sides cut to multiples of 16, as scripts/rd_dense.py does; seed =
image index) with and without the context. The steps are byte-identical either way, so the
difference is the lossless layer's; prints it per image and in total, checks both files decode to
the original, and records the parameters' cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from study_common import load_crops  # noqa: E402

from uqdm_codec import container  # noqa: E402
from uqdm_codec.codec import Codec  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--model", default=None, help="default: the shipped weights")
    ap.add_argument("--crop", type=int, default=512, help="0: the whole image")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-check", action="store_true", help="skip decoding both files (half the time)")
    args = ap.parse_args(argv)
    images = load_crops(args.images, args.crop if args.crop else 1 << 30)
    on = Codec(args.model, device="cpu")
    off = Codec(on.model, device="cpu", lossless_context=False)
    rows = []
    for seed, (path, px) in enumerate(zip(args.images, images)):
        t0 = time.time()
        sizes = {}
        for name, codec in (("with", on), ("without", off)):
            data = codec.encode(px, seed=seed)
            if not args.no_check and not np.array_equal(codec.decode(data).pixels, px):
                raise SystemExit(f"{path}: the {name} file does not decode to the original")
            parsed = container.parse(data)
            sizes[name] = (len(data), parsed.layers[-1].size, parsed.layers[-1].lossless_context is not None)
        pixels = px.shape[0] * px.shape[1]
        row = {
            "image": str(path),
            "pixels": pixels,
            "file_bytes": {k: v[0] for k, v in sizes.items()},
            "lossless_layer_bytes": {k: v[1] for k, v in sizes.items()},
            "context_sent": sizes["with"][2],
            "layer_saving_percent": 100 * (1 - sizes["with"][1] / sizes["without"][1]),
            "file_saving_percent": 100 * (1 - sizes["with"][0] / sizes["without"][0]),
        }
        rows.append(row)
        print(
            f"{path.name}: lossless layer {8 * sizes['without'][1] / pixels:.3f} -> "
            f"{8 * sizes['with'][1] / pixels:.3f} bpp (-{row['layer_saving_percent']:.2f} %), file "
            f"{8 * sizes['without'][0] / pixels:.3f} -> {8 * sizes['with'][0] / pixels:.3f} bpp "
            f"(-{row['file_saving_percent']:.2f} %), {time.time() - t0:.0f} s",
            flush=True,
        )
    total = {k: sum(r[k]["without"] for r in rows) for k in ("file_bytes", "lossless_layer_bytes")}
    saved = {k: total[k] - sum(r[k]["with"] for r in rows) for k in total}
    summary = {
        "layer_saving_percent": 100 * saved["lossless_layer_bytes"] / total["lossless_layer_bytes"],
        "file_saving_percent": 100 * saved["file_bytes"] / total["file_bytes"],
        "mean_file_bpp_with": float(np.mean([8 * r["file_bytes"]["with"] / r["pixels"] for r in rows])),
        "mean_file_bpp_without": float(np.mean([8 * r["file_bytes"]["without"] / r["pixels"] for r in rows])),
    }
    print(
        f"all: lossless layer -{summary['layer_saving_percent']:.2f} %, lossless file "
        f"-{summary['file_saving_percent']:.2f} % (mean {summary['mean_file_bpp_without']:.3f} -> "
        f"{summary['mean_file_bpp_with']:.3f} bpp)"
    )
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "images": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
