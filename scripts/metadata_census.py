"""What EXIF and XMP the photos under a folder carry, and what they add to a .uqd header.

    python scripts/metadata_census.py ../shared/data --json metadata_census.json

For each image with metadata that load_image keeps: raw and stored (deflated, in the header)
bytes of its EXIF and XMP, the header bytes they add and those bytes in bits per pixel, and the
notes load_image gave (maker's notes dropped, GPS). No torch, no encoding: headers only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uqdm_codec import container  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")


def added_bytes(w: int, h: int, **extensions) -> int:
    """Header bytes that `extensions` add to an 8-step file's header of a w x h image."""
    header = container.Header(w, h, 8, 1, bytes(16), "uqdm-small", **extensions)
    return len(header.to_bytes()) - len(header.without_extensions().to_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path, help="write every image's row here")
    args = parser.parse_args()
    paths = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    rows = []
    for path in paths:
        loaded = load_image(path)
        if loaded.exif is None and loaded.xmp is None:
            continue
        h, w = loaded.pixels.shape[:2]
        both = added_bytes(w, h, exif=loaded.exif, xmp=loaded.xmp)
        rows.append(
            {
                "file": str(path),
                "width": w,
                "height": h,
                "exif_raw": len(loaded.exif or b""),
                "xmp_raw": len(loaded.xmp or b""),
                "exif_stored": added_bytes(w, h, exif=loaded.exif) if loaded.exif else 0,
                "xmp_stored": added_bytes(w, h, xmp=loaded.xmp) if loaded.xmp else 0,
                "added": both,
                "added_bpp": 8 * both / (w * h),
                "notes": loaded.notes,
            }
        )
    print(
        f"{len(paths)} images; {len(rows)} with metadata kept: "
        f"{sum(r['exif_raw'] > 0 for r in rows)} EXIF, {sum(r['xmp_raw'] > 0 for r in rows)} XMP; "
        f"{sum(any('maker' in n for n in r['notes']) for r in rows)} maker's notes left out"
    )
    for key in ("exif_stored", "xmp_stored", "added", "added_bpp"):
        v = np.array([r[key] for r in rows if r[key] > 0])
        if v.size:
            print(f"{key}: median {np.median(v):.3f}, p90 {np.percentile(v, 90):.3f}, max {v.max():.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
