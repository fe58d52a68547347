"""Time and memory of encoding and decoding a big photo, against one Kodak image.

    python scripts/big_image.py --size 4000x3000                     # 12 MP, ~7 minutes on 2 cores
    python scripts/big_image.py --size 8192x8192 --no-reference      # 67 MP, the format's limit
    python scripts/big_image.py --size 1536x1024 --kodak ../shared/data/kodak/kodim05.png
    python scripts/big_image.py --image photo.png                    # a real photo instead

Images with a side over the codec's region side (1024) are coded as tiled files (FORMAT.md 1.1);
`--region` sets another side. The big image is a Kodak photo upscaled 2x (bicubic), mirror-tiled
to the size asked for, with a little Gaussian noise (sigma 2 levels, fixed seed), so it has the
detail and noise of a camera photo rather than flat repeats. Encoding and decoding (every layer)
each run in a fresh process, so each peak RSS (VmHWM) is that stage's alone and includes the
model, torch, reading the PNG and writing the result. Prints wall seconds, seconds per megapixel
and peak RSS for each, then the same for the Kodak image itself, and writes them as JSON with
--json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_KODAK = ROOT.parent / "shared" / "data" / "kodak" / "kodim05.png"


def photo_like(size: tuple[int, int], source: Path = DEFAULT_KODAK, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 of `size` = (width, height): `source` upscaled 2x, mirror-tiled, plus noise."""
    from PIL import Image

    w, h = size
    img = Image.open(source).convert("RGB")
    img = img.resize((2 * img.width, 2 * img.height), Image.Resampling.BICUBIC)
    base = np.asarray(img)
    row = np.concatenate([base, base[:, ::-1]] * -(-w // (2 * base.shape[1])), axis=1)[:, :w]
    out = np.concatenate([row, row[::-1]] * -(-h // (2 * base.shape[0])), axis=0)[:h]
    out = np.ascontiguousarray(out)
    rng = np.random.default_rng(seed)
    for r in range(0, h, 256):  # a block of rows at a time: no whole-image float64 temporaries
        block = out[r : r + 256]
        block[...] = np.clip(np.rint(block + rng.normal(0.0, 2.0, block.shape)), 0, 255)
    return out


def _peak_bytes() -> int:
    """This process's peak resident set size: VmHWM, which (unlike ru_maxrss, which keeps the
    parent's size at the fork) counts this program alone; ru_maxrss where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _stage(stage: str, src: str, dst: str, tile: int | None, region: int | None) -> None:
    """Child process: encode the PNG `src` to `dst`, or decode `src` (.uqd) completely to `dst`."""
    import uqdm_codec
    from uqdm_codec.image_io import load_image

    codec = uqdm_codec.get_codec(None, "cpu", tile=tile, region=region or "default")
    ready = _peak_bytes()
    t = time.perf_counter()
    if stage == "encode":
        pixels = load_image(src).pixels
        Path(dst).write_bytes(codec.encode(pixels, seed=1))
    else:
        image = codec.decode(Path(src).read_bytes())
        assert image.lossless
        np.save(dst, image.pixels)
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "peak_bytes": _peak_bytes(), "model_bytes": ready}))


def run_stage(stage: str, src: Path, dst: Path, tile: int | None, region: int | None) -> dict:
    cmd = [sys.executable, __file__, "--stage", stage, str(src), str(dst)]
    if tile:
        cmd += ["--tile", str(tile)]
    if region:
        cmd += ["--region", str(region)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(name: str, pixels: np.ndarray, work: Path, tile: int | None, region: int | None) -> dict:
    """Encode and decode `pixels` in child processes; check the decoded image is the original."""
    from PIL import Image

    png = work / f"{name}.png"
    Image.fromarray(pixels).save(png, compress_level=1)
    uqd, dec = work / f"{name}.uqd", work / f"{name}.npy"
    mp = pixels.shape[0] * pixels.shape[1] / 1e6
    enc = run_stage("encode", png, uqd, tile, region)
    decd = run_stage("decode", uqd, dec, tile, region)
    if not np.array_equal(np.load(dec), pixels):
        raise SystemExit(f"{name}: decoded image differs from the original")
    row = {
        "image": name,
        "width": pixels.shape[1],
        "height": pixels.shape[0],
        "megapixels": mp,
        "bytes": uqd.stat().st_size,
        "bpp": 8 * uqd.stat().st_size / (pixels.shape[0] * pixels.shape[1]),
        "encode_s": enc["seconds"],
        "encode_s_per_mp": enc["seconds"] / mp,
        "encode_peak_mb": enc["peak_bytes"] / 2**20,
        "decode_s": decd["seconds"],
        "decode_s_per_mp": decd["seconds"] / mp,
        "decode_peak_mb": decd["peak_bytes"] / 2**20,
        "model_mb": enc["model_bytes"] / 2**20,
    }
    print(
        f"{name:>12} {pixels.shape[1]}x{pixels.shape[0]} ({mp:.2f} MP, {row['bpp']:.2f} bpp): "
        f"encode {row['encode_s']:.1f} s ({row['encode_s_per_mp']:.1f} s/MP), "
        f"peak {row['encode_peak_mb']:.0f} MB; "
        f"decode {row['decode_s']:.1f} s ({row['decode_s_per_mp']:.1f} s/MP), "
        f"peak {row['decode_peak_mb']:.0f} MB (model and torch alone: {row['model_mb']:.0f} MB)",
        flush=True,
    )
    return row


def region_cost(pixels: np.ndarray, name: str, region: int | None) -> dict:
    """Bytes and step-point PSNR of the image coded in regions and untiled (same seed): what the
    region borders cost."""
    import uqdm_codec
    from uqdm_codec import files

    row: dict = {"image": name, "width": pixels.shape[1], "height": pixels.shape[0]}
    for label, side in (("regions", region or "default"), ("untiled", None)):
        codec = uqdm_codec.get_codec(None, "cpu", region=side)
        data = codec.encode(pixels, seed=0)
        fi = files.info(data)
        psnrs = []
        for level in list(codec.iter_decode(data))[1:-1]:  # after each step
            shown = level.pixels.astype(np.float64)
            psnrs.append(10 * np.log10(255.0**2 / np.mean((shown - pixels) ** 2)))
        row[label] = {"bytes": len(data), "layer_bpp": [la.bpp for la in fi.layers], "psnr": psnrs}
    a, b = row["regions"], row["untiled"]
    row["extra_percent"] = 100 * (a["bytes"] / b["bytes"] - 1)
    print(
        f"{name}: regions {a['bytes']} bytes, untiled {b['bytes']} ({row['extra_percent']:+.2f} %); "
        + "per step bpp / dB, regions vs untiled: "
        + ", ".join(
            f"{x:.3f}/{p:.2f} vs {y:.3f}/{q:.2f}"
            for x, p, y, q in zip(a["layer_bpp"], a["psnr"], b["layer_bpp"], b["psnr"])
        ),
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT of the synthetic photo")
    ap.add_argument("--image", type=Path, help="measure this photo instead of a synthetic one")
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK, help="source and reference image")
    ap.add_argument("--tile", type=int, default=None, help="network tile side (default: the codec's)")
    ap.add_argument("--region", type=int, default=None, help="region side (default: the codec's)")
    ap.add_argument("--no-reference", action="store_true", help="skip the Kodak image")
    ap.add_argument(
        "--region-cost",
        action="store_true",
        help="instead: the file's size coded in regions against untiled, and the PSNR after each step",
    )
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--stage", choices=["encode", "decode"], help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:
        _stage(args.stage, *args.paths, args.tile, args.region)
        return
    from uqdm_codec.image_io import load_image

    if args.image:
        big, name = load_image(args.image).pixels, args.image.stem
    else:
        w, h = (int(v) for v in args.size.lower().split("x"))
        big, name = photo_like((w, h), args.kodak), f"photo{w}x{h}"
    if args.region_cost:
        row = region_cost(big, name, args.region)
        if args.json:
            args.json.write_text(json.dumps(row, indent=2) + "\n")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(measure(name, big, Path(tmp), args.tile, args.region))
        del big
        if not args.no_reference:
            kodak = load_image(args.kodak).pixels
            rows.append(measure(args.kodak.stem, kodak, Path(tmp), args.tile, args.region))
    if len(rows) == 2:
        a, b = rows
        enc, dec = (a[f"{s}_s_per_mp"] / b[f"{s}_s_per_mp"] for s in ("encode", "decode"))
        print(f"per megapixel, {a['image']} / {b['image']}: encode {enc:.2f}x, decode {dec:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
