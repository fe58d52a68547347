"""Files decode identically on other machines: encode a folder of images here, then decode every
file in fresh processes under other CPU kernels / another Python environment, and compare the
image after every step with what the encoder computed.

    python scripts/portability.py ../shared/data/kodak --out runs/portability
    python scripts/portability.py ../shared/data/kodak --out runs/portability --decode-only \\
        --python runs/venv-torch214/bin/python --variant plain     # another torch version
    python3 scripts/portability.py IMAGES --out FILES --decode-only --variant plain --device cuda \\
        --reencode                      # on a GPU machine: decode there, and encode again there

`--tail` and `--limit N` choose the files made here; `--reencode` also encodes each original (found in
the folder) on `--device` and compares the bytes with the file made here.

Variants: `default` (ATEN_CPU_CAPABILITY=default: PyTorch's kernels for CPUs without AVX2),
`sse41` (ONEDNN_MAX_CPU_ISA=SSE41: oneDNN's convolutions for pre-AVX CPUs), `threads1`
(OMP_NUM_THREADS=1), `tile64` (64-pixel network tiles), `plain` (no change: for --python).
Prints one line per file and a summary; writes summary.json. Exits non-zero on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "default": ({"ATEN_CPU_CAPABILITY": "default"}, None),
    "sse41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, None),
    "threads1": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, None),
    "tile64": ({}, 64),
    "plain": ({}, None),
}

# Runs in the child: decode every layer of each file, print per-file CRCs of every step's image.
CHILD = """
import json, sys, time, zlib
import torch
import uqdm_codec
tile = int(sys.argv[1]) if sys.argv[1] != "none" else None
codec = uqdm_codec.get_codec(None, sys.argv[2], tile=tile)
for path in sys.argv[3:]:
    data = open(path, "rb").read()
    t = time.perf_counter()
    try:
        crcs = [zlib.crc32(im.pixels.tobytes()) for im in codec.iter_decode(data)]
        err = None
    except Exception as exc:  # a SyncError is the failure this script looks for
        crcs, err = [], f"{type(exc).__name__}: {exc}"
    print(json.dumps({"file": path, "crcs": crcs, "error": err, "seconds": time.perf_counter() - t,
                      "torch": torch.__version__}), flush=True)
"""


def encode_all(folder: Path, out: Path, tail: bool = False, limit: int | None = None) -> dict[str, dict]:
    import numpy as np

    import uqdm_codec
    from uqdm_codec.image_io import load_image

    codec = uqdm_codec.get_codec(None, "cpu")
    ref = {}
    for path in sorted(folder.glob("*.png"))[:limit]:
        pixels = load_image(path).pixels
        t = time.perf_counter()
        data = codec.encode(pixels, seed=1, tail=tail)
        enc_s = time.perf_counter() - t
        dest = out / f"{path.stem}.uqd"
        dest.write_bytes(data)
        t = time.perf_counter()
        images = list(codec.iter_decode(data))
        dec_s = time.perf_counter() - t
        assert np.array_equal(images[-1].pixels, pixels), f"{path.name}: not lossless"
        ref[dest.name] = {  # relative to --out: the folder may travel to another machine
            "source": path.name,
            "tail": tail,
            "crcs": [zlib.crc32(im.pixels.tobytes()) for im in images],
            "original": zlib.crc32(pixels.tobytes()),
            "encode_s": enc_s,
            "decode_s": dec_s,
            "bytes": len(data),
        }
        print(f"encoded {path.name}: {len(data)} bytes, encode {enc_s:.1f}s, decode {dec_s:.1f}s", flush=True)
    return ref


def reencode(folder: Path, out: Path, ref: dict[str, dict], device: str) -> dict[str, dict]:
    """Encode each original again on `device` with the settings of the file made here: the bytes
    must be the same (the encoder is as portable as the decoder)."""
    import uqdm_codec
    from uqdm_codec.image_io import load_image

    codec = uqdm_codec.get_codec(None, device)
    results = {}
    for name, r in ref.items():
        pixels = load_image(folder / r["source"]).pixels
        t = time.perf_counter()
        data = codec.encode(pixels, seed=1, tail=r.get("tail", False))
        seconds = time.perf_counter() - t
        same = data == (out / name).read_bytes()
        results[name] = {"same_bytes": same, "encode_s": seconds}
        verdict = "same bytes" if same else "DIFFERENT BYTES"
        print(f"re-encoded {r['source']} on {device}: {verdict}, {seconds:.1f}s", flush=True)
    return results


def decode_variant(python: str, variant: str, files: list[str], device: str = "cpu") -> dict[str, dict]:
    env_extra, tile = VARIANTS[variant]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **env_extra, "PYTHONPATH": path}
    cmd = [python, "-c", CHILD, str(tile) if tile else "none", device, *files]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    results = {}
    for line in run.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            results[r["file"]] = r
    if run.returncode != 0:
        print(run.stderr[-3000:], file=sys.stderr)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "portability")
    ap.add_argument("--variant", action="append", choices=list(VARIANTS), help="default: default and sse41")
    ap.add_argument("--python", default=sys.executable, help="interpreter of the decoding environment")
    ap.add_argument("--decode-only", action="store_true", help="reuse the files and reference.json in --out")
    ap.add_argument("--device", default="cpu", help="where the decoding process runs (cpu, cuda)")
    ap.add_argument("--tail", action="store_true", help="encode with the lossless tail")
    ap.add_argument("--limit", type=int, default=None, help="encode only the first N images")
    ap.add_argument("--reencode", action="store_true", help="also encode the originals on --device")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ref_path = args.out / "reference.json"
    if args.decode_only:
        ref = json.loads(ref_path.read_text())
    else:
        ref = encode_all(args.folder, args.out, args.tail, args.limit)
        ref_path.write_text(json.dumps(ref, indent=1))
    summary = {}
    failed = False
    files = {str(args.out / name): name for name in ref}
    for variant in args.variant or ["default", "sse41"]:
        got = {files[k]: v for k, v in decode_variant(args.python, variant, list(files), args.device).items()}
        same = 0
        for path, r in ref.items():
            g = got.get(path, {"crcs": [], "error": "no result"})
            ok = g["crcs"] == r["crcs"] and g["crcs"][-1:] == [r["original"]]
            same += ok
            if not ok:
                print(f"  MISMATCH {variant} {Path(path).name}: {g.get('error')}")
        torch_version = next(iter(got.values()), {}).get("torch", "?")
        secs = [g["seconds"] for g in got.values()]
        summary[variant] = {
            "identical": same,
            "files": len(ref),
            "device": args.device,
            "torch": torch_version,
            "mean_decode_s": sum(secs) / max(len(secs), 1),
        }
        print(
            f"{variant} on {args.device} (torch {torch_version}, {args.python}): "
            f"{same}/{len(ref)} identical at every step"
        )
        failed |= same != len(ref)
    if args.reencode:
        again = reencode(args.folder, args.out, ref, args.device)
        summary["reencode"] = {
            "device": args.device,
            "same_bytes": sum(r["same_bytes"] for r in again.values()),
            "files": len(again),
            "mean_encode_s": sum(r["encode_s"] for r in again.values()) / len(again),
        }
        failed |= summary["reencode"]["same_bytes"] != len(again)
    enc = [r["encode_s"] for r in ref.values()]
    dec = [r["decode_s"] for r in ref.values()]
    summary["encoder"] = {"mean_encode_s": sum(enc) / len(enc), "mean_decode_s": sum(dec) / len(dec)}
    print(
        f"encoder process: mean encode {summary['encoder']['mean_encode_s']:.2f}s, "
        f"full decode {summary['encoder']['mean_decode_s']:.2f}s per image"
    )
    (args.out / f"summary-{args.device}-{'-'.join(args.variant or ['default', 'sse41'])}.json").write_text(
        json.dumps(summary, indent=1)
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
