"""`uqdm encode --psnr-index` then `uqdm truncate --psnr P`: what the index costs, and how the files
cut by it compare with `encode --psnr P` from the original (real bytes, every cut decoded).

    python scripts/psnr_index_report.py $(cat runs/held.txt) --targets 30 33 36 39 \
        --compare docs/bench/probes/encode-targets-held-0.40.json --json index.json

Set figures pool the images' bits over their pixels, as encode_targets.py's do. Each image is
encoded whole once with the index (seed 1, default settings, as encode_targets.py
encodes), then cut with files.truncate(psnr=P) for every target; each cut is decoded and its PSNR
checked against the index's promise (at least the entry, less than a hundredth of a dB above it).
--compare: encode_targets.py's JSON for the same images and seed, whose `bpp` is what `encode
--psnr` wrote and whose `chunk_boundary_bpp` is the first chunk boundary reaching the target
without the index (the cut here less the index's bytes must be that boundary).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uqdm_codec import files, get_codec  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402
from uqdm_codec.quality import psnr_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--targets", nargs="+", type=float, default=[30.0, 33.0, 36.0, 39.0])
    parser.add_argument("--compare", type=Path, help="encode_targets.py's JSON for the same images")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    compare = {}
    if args.compare:
        for row in json.loads(args.compare.read_text())["rows"]:
            compare[(row["image"], row["target"])] = row
    codec = get_codec(None, "cpu")
    rows, sizes = [], []
    for path in args.images:
        pixels = load_image(path).pixels
        h, w = pixels.shape[:2]
        data = codec.encode(pixels, seed=1, psnr_index=True)
        fi = files.info(data)
        index_bytes = fi.header_bytes - len(replace(fi.header, psnr_index=None).to_bytes())
        sizes.append(
            {
                "image": path.name,
                "pixels": h * w,
                "chunk_boundaries": len(fi.header.psnr_index or ()),
                "index_bytes": index_bytes,
                "file_bytes": len(data),
                "index_share_of_file": index_bytes / len(data),
            }
        )
        print(
            f"{path.name}: {len(fi.header.psnr_index or ())} boundaries, index {index_bytes} bytes",
            flush=True,
        )
        for target in args.targets:
            cut = files.truncate(data, psnr=target)
            promised = files.info(cut).psnr_table[len(cut)]
            d = codec.decode(cut).pixels.astype(np.int64) - pixels
            shown = psnr_of(int((d * d).sum()), h * w)
            if not (promised <= shown < promised + 0.01 or promised == shown):
                raise AssertionError(
                    f"{path.name} at {target} dB: the index promised {promised}, shown {shown}"
                )
            row = {
                "image": path.name,
                "pixels": h * w,
                "target": target,
                "bytes": len(cut),
                "bpp": 8 * len(cut) / (h * w),
                "psnr": shown,
                "index_bytes": index_bytes,
                "index_share": index_bytes / len(cut),
            }
            other = compare.get((path.name, target))
            if other is not None:
                row["boundary_without_index_bpp"] = other["chunk_boundary_bpp"]
                row["encode_psnr_bpp"] = other["bpp"]
                row["encode_psnr_psnr"] = other["psnr"]
                same = round(other["chunk_boundary_bpp"] * h * w / 8) == len(cut) - index_bytes
                row["same_boundary"] = same
            rows.append(row)
            print(f"  {target:g} dB: {len(cut)} bytes, {shown:.2f} dB", flush=True)
    summary = []
    for target in args.targets:
        mine = [r for r in rows if r["target"] == target]
        pixels = sum(r["pixels"] for r in mine)

        def pooled(key: str, rows=mine, pixels=pixels) -> float:  # the set's bits over its pixels
            return sum(r[key] * r["pixels"] for r in rows) / pixels

        entry = {
            "target": target,
            "images": len(mine),
            "bpp": pooled("bpp"),
            "mean_overshoot_db": float(np.mean([r["psnr"] - target for r in mine])),
            "mean_index_share": float(np.mean([r["index_share"] for r in mine])),
        }
        if all("encode_psnr_bpp" in r for r in mine):
            ours = entry["bpp"]
            entry["encode_psnr_bpp"] = pooled("encode_psnr_bpp")
            entry["boundary_without_index_bpp"] = pooled("boundary_without_index_bpp")
            entry["vs_encode_psnr"] = ours / entry["encode_psnr_bpp"] - 1
            entry["all_same_boundary"] = all(r["same_boundary"] for r in mine)
        summary.append(entry)
    print(
        "| target | truncate --psnr: bpp | dB above | index share | encode --psnr: bpp | truncate vs encode |"
    )
    print("|---|---|---|---|---|---|")
    for e in summary:
        vs = f"{100 * e['vs_encode_psnr']:+.1f} %" if "vs_encode_psnr" in e else ""
        enc = f"{e['encode_psnr_bpp']:.3f}" if "encode_psnr_bpp" in e else ""
        print(
            f"| {e['target']:g} dB | {e['bpp']:.3f} | {e['mean_overshoot_db']:.2f} | "
            f"{100 * e['mean_index_share']:.2f} % | {enc} | {vs} |"
        )
    print(
        f"index: {np.mean([s['index_bytes'] for s in sizes]):.1f} bytes per file "
        f"({min(s['index_bytes'] for s in sizes)}-{max(s['index_bytes'] for s in sizes)}), "
        f"{np.mean([s['chunk_boundaries'] for s in sizes]):.1f} chunk boundaries"
    )
    if args.json:
        args.json.write_text(json.dumps({"sizes": sizes, "summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
