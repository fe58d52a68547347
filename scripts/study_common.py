"""What the measurement scripts share: their command line and how they crop the photos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from uqdm_codec import entropy
from uqdm_codec import lossless_tail as lt
from uqdm_codec.bench import center_crop
from uqdm_codec.container import put_varint
from uqdm_codec.image_io import load_image


def parser(doc: str | None) -> argparse.ArgumentParser:
    """IMAGES... [--crop 512] [--json FILE], described by the script's docstring's first line."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--json", type=Path)
    return ap


def load_crops(paths: list[Path], crop: int) -> list[np.ndarray]:
    """Each photo centre-cropped to at most crop x crop, its sides then cut to multiples of 16."""
    images = []
    for path in paths:
        px = center_crop(load_image(path).pixels, crop)
        h, w = px.shape[:2]
        images.append(np.ascontiguousarray(px[: h - h % 16, : w - w % 16]))
    return images


def print_row(row: dict) -> None:
    """One photo's figures on one line: `name  key value  key value ...`."""
    print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else str(v) for k, v in row.items()), flush=True)


def finish_rows(rows: list[dict], out: Path | None) -> dict:
    """Print the mean of every figure over the photos, and save rows and means to `out` (JSON)."""
    keys = [k for k in rows[0] if k != "image"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    print("mean  " + "  ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    if out:
        out.write_text(json.dumps({"images": rows, "mean": mean}, indent=1) + "\n")
    return mean


def load_tail_cache(path: Path, count: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """tail_edges.py's cache: per photo (original, image after step S, bytes of steps 1..S)."""
    d = np.load(path)
    return [(d[f"px{i}"], d[f"side{i}"], int(d[f"pre{i}"])) for i in range(count)]


def chunk_bytes(ks: list[np.ndarray], priors: list[entropy.StepPrior]) -> int:
    """A tail pass's bytes in the standalone form: the ANS payload of its three colours (each a
    group) and the varint of its length in words, as lossless_tail.encode_passes codes it."""
    n = ks[0].size
    groups = [np.arange(g * n, (g + 1) * n) for g in range(len(ks))]
    payload = entropy.encode_step(np.concatenate(ks), lt._concat(priors), groups)
    return len(put_varint(len(payload) // 4)) + len(payload)


def tail_study(
    doc: str | None, variants: list[str], tail_bytes, flag: str = "--variants", baseline: str | None = None
) -> None:
    """The tail studies' command line: IMAGES... --cache F.npz [FLAG NAME...] [--json F], then
    compare_tail_sizes over the named variants (`variants` by default) on the cached photos, after
    `baseline` if given (always measured, the variants' reference)."""
    ap = parser(doc)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument(flag, nargs="*", default=variants, dest="names")
    args = ap.parse_args()
    names = ([baseline] if baseline else []) + args.names
    compare_tail_sizes(names, tail_bytes, load_tail_cache(args.cache, len(args.images)), args.json)


def compare_tail_sizes(
    names: list[str], tail_bytes, photos: list[tuple[np.ndarray, np.ndarray, int]], out: Path | None
) -> dict[str, list[float]]:
    """Per variant name, each photo's whole file in bits per pixel (the cached steps' bytes plus
    tail_bytes(name, original, side image)), printed with the change from the first name's mean
    and saved to `out` (JSON, name -> sizes)."""
    sizes: dict[str, list[float]] = {}
    for name in names:
        sizes[name] = [
            8.0 * (pre + tail_bytes(name, px, side)) / (px.shape[0] * px.shape[1]) for px, side, pre in photos
        ]
        mean = float(np.mean(sizes[name]))
        change = 100 * (mean / float(np.mean(sizes[names[0]])) - 1)
        each = " ".join(f"{s:.3f}" for s in sizes[name])
        print(f"{name:12s} {mean:.4f} bpp ({change:+.2f} %)  per photo {each}", flush=True)
    if out:
        out.write_text(json.dumps(sizes, indent=1) + "\n")
    return sizes
