"""`uqdm bench DIR`: real bytes, PSNR and seconds for uqdm and for the codecs people use.

Every uqdm number comes from an actual .uqd file: the file is encoded, each layer's bpp is the
size of the file truncated after that layer (header and framing included), and each PSNR is that
of the image the decoder shows at that point. The baselines, encoded to bytes in memory, are
Pillow's JPEG (optimised Huffman tables), JPEG 2000 (OpenJPEG with the colour transform, as its
own command-line encoder uses for RGB), WebP and AVIF, and JPEG XL (libjxl through imagecodecs,
effort 7) for lossy; PNG, JPEG 2000 reversible, WebP lossless and JPEG XL lossless for lossless.
A codec this installation lacks is left out with a note, not an error.
"""

from __future__ import annotations

import functools
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from . import files
from .image_io import load_image

JPEG_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
WEBP_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
AVIF_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
J2K_BPP = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
# Butteraugli distances: 25 is libjxl's largest (0.1-0.15 bpp on Kodak), 0.3 gives about 4 bpp.
JXL_DISTANCES = (25.0, 16.0, 11.0, 8.0, 5.5, 4.0, 3.0, 2.2, 1.6, 1.2, 0.9, 0.65, 0.45, 0.3)
JXL_EFFORT = 7  # libjxl's default
LOSSY = ("JPEG", "JPEG 2000", "WebP", "AVIF", "JPEG XL")
LOSSLESS = ("PNG", "JPEG 2000 reversible", "WebP lossless", "JPEG XL lossless")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}

RoundTrip = Callable[[np.ndarray], tuple[int, np.ndarray]]  # pixels -> (bytes, decoded pixels)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _pillow(fmt: str, **params) -> RoundTrip:
    def round_trip(pixels: np.ndarray) -> tuple[int, np.ndarray]:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format=fmt, **params)
        size = buf.tell()
        buf.seek(0)
        with Image.open(buf) as im:
            return size, np.asarray(im.convert("RGB"))

    return round_trip


def _imagecodecs():
    """imagecodecs if it is installed with JPEG XL (the `bench` extra), else None."""
    try:
        import imagecodecs
    except ImportError:
        return None
    return imagecodecs if imagecodecs.JPEGXL.available else None


def _jpegxl(**params) -> RoundTrip:
    def round_trip(pixels: np.ndarray) -> tuple[int, np.ndarray]:
        codecs = _imagecodecs()
        if codecs is None:
            raise ImportError("imagecodecs with JPEG XL is not installed")
        data = codecs.jpegxl_encode(pixels, effort=JXL_EFFORT, **params)
        return len(data), np.asarray(codecs.jpegxl_decode(data))

    return round_trip


def _j2k_rate(bpp: float) -> dict:
    # mct=1: the RGB -> YCbCr transform, without which OpenJPEG codes R, G and B separately and
    # loses 1.7 (0.1 bpp) to 7 dB (4 bpp) on Kodak; Pillow's default is 0, opj_compress's is 1.
    return {"quality_mode": "rates", "quality_layers": [24.0 / bpp], "irreversible": True, "mct": 1}


def baseline_settings() -> dict[str, list[RoundTrip]]:
    """Every codec's settings, low rate to high; lossless codecs have one."""
    return {
        "JPEG": [_pillow("JPEG", quality=q, optimize=True) for q in JPEG_QUALITIES],
        "JPEG 2000": [_pillow("JPEG2000", **_j2k_rate(r)) for r in J2K_BPP],
        "WebP": [_pillow("WEBP", quality=q) for q in WEBP_QUALITIES],
        "AVIF": [_pillow("AVIF", quality=q) for q in AVIF_QUALITIES],
        "JPEG XL": [_jpegxl(distance=d) for d in JXL_DISTANCES],
        "PNG": [_pillow("PNG")],
        "JPEG 2000 reversible": [_pillow("JPEG2000", irreversible=False, mct=1)],
        "WebP lossless": [_pillow("WEBP", lossless=True, quality=100)],
        "JPEG XL lossless": [_jpegxl(lossless=True)],
    }


_PROBE = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)


@functools.cache
def missing_baselines() -> dict[str, str]:
    """Codecs this installation cannot run, each with why (a tiny image is round-tripped once)."""
    missing = {}
    for name, settings in baseline_settings().items():
        try:
            settings[0](_PROBE)
        except KeyError as exc:  # Image.save() of a format this Pillow has no writer for
            hint = " (11.3 and newer can)" if name == "AVIF" else ""
            fmt = exc.args[0] if exc.args else name
            missing[name] = f"Pillow {PIL.__version__} cannot write {fmt}{hint}"
        except (OSError, ValueError, ImportError) as exc:
            hint = " (pip install 'uqdm-codec[bench]')" if name.startswith("JPEG XL") else ""
            missing[name] = f"{type(exc).__name__}: {exc}{hint}"
    return missing


def baseline_notes() -> list[str]:
    """One line per reason: which codecs it leaves out."""
    by_reason: dict[str, list[str]] = {}
    for name, why in missing_baselines().items():
        by_reason.setdefault(why, []).append(name)
    return [f"{' and '.join(names)} left out: {why}" for why, names in by_reason.items()]


def baseline_points(pixels: np.ndarray) -> dict[str, list[tuple[float, float]]]:
    """(bpp, PSNR) per setting for each lossy baseline, and bpp of the lossless ones (under
    "lossless"); codecs this installation lacks are absent."""
    npx = pixels.shape[0] * pixels.shape[1]
    out: dict[str, list] = {}
    lossless: dict[str, float] = {}
    for name, settings in baseline_settings().items():
        if name in missing_baselines():
            continue
        points = [round_trip(pixels) for round_trip in settings]
        if name in LOSSLESS:
            size, rec = points[0]
            assert np.array_equal(rec, pixels), f"{name} was not lossless"
            lossless[name] = 8.0 * size / npx
        else:
            out[name] = [(8.0 * size / npx, psnr(pixels, rec)) for size, rec in points]
    out["lossless"] = lossless  # type: ignore[assignment]
    return out


@dataclass
class ImageResult:
    name: str
    width: int
    height: int
    layer_bpp: list[float]  # cumulative, after each layer (0 = header only)
    layer_psnr: list[float]
    encode_seconds: float
    decode_seconds: list[float]  # time until each layer's image is ready
    lossless_ok: bool
    baselines: dict = field(default_factory=dict)


def bench_image(
    codec,
    pixels: np.ndarray,
    name: str,
    seed: int = 0,
    baselines: bool = True,
    mirrors: int = 1,
    fast: bool = False,
    tail: bool = False,
    tail_after: int | None = None,
) -> ImageResult:
    t0 = time.perf_counter()
    data = codec.encode(pixels, seed=seed, mirrors=mirrors, fast=fast, tail=tail, tail_after=tail_after)
    enc = time.perf_counter() - t0
    fi = files.info(data)
    ends = [fi.header_bytes] + [layer.end for layer in fi.layers]
    npx = pixels.shape[0] * pixels.shape[1]
    bpps, psnrs, times = [], [], []
    lossless_ok = False
    t0 = time.perf_counter()
    for k, image in enumerate(codec.iter_decode(data)):
        times.append(time.perf_counter() - t0)
        bpps.append(8.0 * ends[k] / npx)
        psnrs.append(psnr(pixels, image.pixels))
        lossless_ok = image.lossless and np.array_equal(image.pixels, pixels)
    base = baseline_points(pixels) if baselines else {}
    return ImageResult(name, pixels.shape[1], pixels.shape[0], bpps, psnrs, enc, times, lossless_ok, base)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def center_crop(pixels: np.ndarray, size: int | None) -> np.ndarray:
    if not size:
        return pixels
    h, w = pixels.shape[:2]
    s_h, s_w = min(size, h), min(size, w)
    y, x = (h - s_h) // 2, (w - s_w) // 2
    return np.ascontiguousarray(pixels[y : y + s_h, x : x + s_w])


def _mean_curve(points_per_image: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Average bpp and average PSNR per setting, across images (the usual Kodak convention)."""
    n = min(len(p) for p in points_per_image)
    return [
        (
            float(np.mean([p[k][0] for p in points_per_image])),
            float(np.mean([p[k][1] for p in points_per_image])),
        )
        for k in range(n)
    ]


def psnr_at(curve: list[tuple[float, float]], bpp: float) -> float | None:
    """PSNR of a curve at `bpp` by linear interpolation in log-rate (None outside its range)."""
    pts = sorted(curve)
    rates = np.log([p[0] for p in pts])
    if not pts or not rates[0] <= math.log(bpp) <= rates[-1]:
        return None
    return float(np.interp(math.log(bpp), rates, [p[1] for p in pts]))


def bd_rate(
    anchor: list[tuple[float, float]],
    test: list[tuple[float, float]],
    psnr_range: tuple[float, float] | None = None,
) -> float | None:
    """Bjontegaard delta rate (%) of `test` against `anchor`: the average difference in log-rate
    over the PSNR range both curves cover (within `psnr_range` where given), with piecewise-linear
    interpolation of log-rate against PSNR (robust where a cubic fit of few, spread-out points is
    not). Negative = test saves bits."""

    def monotone(curve):
        pts, best = [], -math.inf
        for r, p in sorted(curve):
            if p > best:
                pts.append((r, p))
                best = p
        return pts

    a, t = monotone(anchor), monotone(test)
    if len(a) < 2 or len(t) < 2:
        return None
    lo = max(a[0][1], t[0][1])
    hi = min(a[-1][1], t[-1][1])
    if psnr_range is not None:
        lo, hi = max(lo, psnr_range[0]), min(hi, psnr_range[1])
    if hi <= lo:
        return None
    grid = np.linspace(lo, hi, 200)
    la = np.interp(grid, [p for _, p in a], np.log([r for r, _ in a]))
    lt = np.interp(grid, [p for _, p in t], np.log([r for r, _ in t]))
    return float((math.exp(float(np.mean(lt - la))) - 1.0) * 100.0)


def summarise(results: list[ImageResult], num_steps: int) -> dict:
    ours = _mean_curve([list(zip(r.layer_bpp, r.layer_psnr)) for r in results])
    # after each diffusion step (skip the 0-byte preview and the lossless end: a tail file has T-1 steps)
    lossy_ours = [p for p in ours[1 : num_steps + 1] if math.isfinite(p[1])]
    curves = {
        name: _mean_curve([r.baselines[name] for r in results])
        for name in LOSSY
        if results and results[0].baselines.get(name)
    }
    summary = {
        "images": len(results),
        "uqdm_layers": [
            {
                "layer": k,
                "bpp": b,
                "psnr": p,
                "decode_seconds": float(np.mean([r.decode_seconds[k] for r in results])),
                **{
                    f"psnr_minus_{name}": (None if psnr_at(c, b) is None else p - psnr_at(c, b))
                    for name, c in curves.items()
                },
            }
            for k, (b, p) in enumerate(ours)
        ],
        "encode_seconds": float(np.mean([r.encode_seconds for r in results])),
        "decode_seconds_full": float(np.mean([r.decode_seconds[-1] for r in results])),
        "lossless_ok": all(r.lossless_ok for r in results),
        "uqdm_lossless_bpp": float(np.mean([r.layer_bpp[-1] for r in results])),
        "baselines": {name: [{"bpp": b, "psnr": p} for b, p in c] for name, c in curves.items()},
        "bd_rate_percent": {name: bd_rate(c, lossy_ours) for name, c in curves.items()},
        "notes": baseline_notes() if results and results[0].baselines else [],
    }
    if results and results[0].baselines.get("lossless"):
        summary["lossless_bpp"] = {
            name: float(np.mean([r.baselines["lossless"][name] for r in results]))
            for name in results[0].baselines["lossless"]
        }
    return summary


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, pts in summary["baselines"].items():
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "o-", ms=3, label=name)
    layers = [p for p in summary["uqdm_layers"][1:] if math.isfinite(p["psnr"])]
    ax.plot(
        [p["bpp"] for p in layers],
        [p["psnr"] for p in layers],
        "s-",
        color="black",
        lw=2,
        label="uqdm (layers)",
    )
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (real file bytes)")
    ax.set_ylabel("PSNR-RGB (dB)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(
    folder: Path,
    codec,
    *,
    limit: int | None = None,
    crop: int | None = None,
    baselines: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
    mirrors: int = 1,
    fast: bool = False,
    tail: bool = False,
    tail_after: int | None = None,
) -> tuple[dict, list[ImageResult]]:
    """Every image of `folder` through uqdm (seed = its index; `mirrors`, `fast` and `tail` as for
    Codec.encode: fast files have the same layers, so the same figures but the encoding time; tail
    files end with the lossless tail after step T-1, every one of them, so that the curves align;
    tail_after S: after step S, an early tail)
    and, with `baselines`, the other codecs."""
    from .errors import UqdmError, is_whole

    for name, value in (("limit", limit), ("crop", crop)):  # 0 was 'all', -1 dropped the last image
        if value is not None and not (is_whole(value) and value >= 1):
            raise UqdmError(f"--{name} must be a whole number from 1, not {value!r}")
    paths = list_images(folder)[:limit]
    if not paths:
        raise UqdmError(f"{folder}: no images found")
    codec.encode(np.zeros((16, 16, 3), np.uint8), seed=0)  # warm-up: first calls pay for allocations
    results, skipped = [], []
    for k, path in enumerate(paths):
        try:
            pixels = center_crop(load_image(path).pixels, crop)
        except UqdmError as exc:  # one unreadable file does not end the others' benchmark
            skipped.append(str(exc))
            if progress:
                progress(k + 1, len(paths), path.name)
            continue
        results.append(
            bench_image(
                codec,
                pixels,
                path.name,
                seed=k,
                baselines=baselines,
                mirrors=mirrors,
                fast=fast,
                tail=tail,
                tail_after=tail_after,
            )
        )
        if progress:
            progress(k + 1, len(paths), path.name)
    if not results:
        raise UqdmError(f"{folder}: no image could be read ({skipped[0]})")
    summary = summarise(results, codec.num_steps)
    summary["skipped"] = skipped  # "NAME: why" of each image left out
    summary["mirrors"], summary["fast"], summary["tail"] = mirrors, fast, tail or tail_after is not None
    summary["tail_after"] = tail_after
    return summary, results


def save(summary: dict, results: list[ImageResult], out: Path) -> None:
    from .batch import make_folder

    make_folder(out, "--out")
    doc = {"summary": summary, "images": [r.__dict__ for r in results]}
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
