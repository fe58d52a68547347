"""Compare models by what a decoder really shows at every prefix of their files, not only at steps.

    python scripts/rd_dense.py runs/a/uqdm-small.safetensors runs/b/uqdm-small.safetensors \
        --images ../shared/data/train/bsds500/test_100007.jpg ... --json out.json

Each model (float weights are made exact as export_weights.py does, calibrated on the same
training crops) encodes every image with the same seed; the file is decoded after every chunk
(`iter_decode(every_chunk=True)`), giving the (bytes, PSNR) of every decodable prefix. BD-rate
of each model against the first is computed per image over the PSNR range both cover, then averaged;
besides, the lossless bpp and the number of decodable levels. Step-point curves of models with
different numbers of steps are not comparable by interpolation (a schedule with fewer steps skips
a point, and the straight line across the gap flatters it); every chunk is a real point.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from study_common import load_crops  # noqa: E402

from uqdm_codec import files  # noqa: E402
from uqdm_codec.bench import bd_rate  # noqa: E402
from uqdm_codec.codec import ChunkPolicy, Codec  # noqa: E402
from uqdm_codec.exactmodel import from_float, load_codec_model  # noqa: E402
from uqdm_codec.model import MODEL_FORMAT, load_model  # noqa: E402
from uqdm_codec.progression import psnr  # noqa: E402
from uqdm_codec.train import calibration_crops  # noqa: E402

PSNR_BANDS = [(20, 25), (25, 30), (30, 35), (35, 40), (40, 45)]  # where on the curve a change gains


def codec_for(path: Path, data: Path) -> Codec:
    if json.loads(path.with_suffix(".json").read_text()).get("format") != MODEL_FORMAT:
        return Codec(load_codec_model(path))  # an exact model
    return Codec(from_float(load_model(path), calibration_crops(data, 16, 256)))


def dense_curve(
    codec: Codec, pixels: np.ndarray, seed: int, mirrors: int = 1, cuts: int = 0
) -> tuple[list[tuple[float, float]], float, int, list[tuple[float, float]]]:
    """Every chunk's (bpp, PSNR), the lossless bpp, the number of levels; with `cuts`, also the
    (bpp, PSNR) of `cuts` files truncated at budgets spaced evenly in log-bytes between the end of
    layer 1 and the start of the lossless layer, as `uqdm truncate` cuts them (inside chunks)."""
    data = codec.encode(pixels, seed=seed, mirrors=mirrors)
    npx = pixels.shape[0] * pixels.shape[1]
    points, levels = [], 0
    for image in codec.iter_decode(data, every_chunk=True):
        levels += 1
        if image.lossless:
            continue
        points.append((8.0 * image.nbytes / npx, psnr(pixels, image.pixels)))
    cut_points = []
    if cuts:
        layers = files.info(data).layers
        lo, hi = layers[0].end, layers[-2].end
        for budget in np.unique(np.geomspace(lo, hi, cuts).astype(int)):
            part = files.truncate(data, max_bytes=int(budget))
            cut_points.append((8.0 * len(part) / npx, psnr(pixels, codec.decode(part).pixels)))
    return [p for p in points if p[0] > 0], 8.0 * len(data) / npx, levels, cut_points


def _has_cuts(result: dict) -> bool:
    """Whether a result holds truncated-file points for every image (runs without --cuts, and
    older --reuse files, do not)."""
    return all(result.get("cut_curves") or [[]])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="the first is the anchor")
    ap.add_argument("--images", nargs="+", type=Path, required=True)
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/train"), help="calibration photos")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--reuse", type=Path, help="an earlier --json: models measured there are not re-run")
    ap.add_argument(
        "--mirrors",
        nargs="+",
        type=int,
        default=[1],
        help="encode with each of these mirror ensembles (1, 2, 4); a run with mirrors m > 1 is named "
        "MODEL#mirrors=m",
    )
    ap.add_argument(
        "--intervals",
        nargs="+",
        type=int,
        default=[1],
        help="1: priors truncated to the known intervals (the codec's default), 0: to the band's bound "
        "only (uqdm 0.12's files); a run with 0 is named MODEL#intervals=0",
    )
    ap.add_argument(
        "--network-every",
        nargs="+",
        type=int,
        default=[None],
        help="the encoder also offers the network's image at every n-th chunk of a Haar layer "
        "(ChunkPolicy.network_every; 0: only before the tail, as uqdm 0.19; default the codec's); "
        "named MODEL#network-every=n",
    )
    ap.add_argument(
        "--growth",
        nargs="+",
        type=float,
        default=[None],
        help="the encoder's chunk growth (ChunkPolicy.growth; default the codec's); named MODEL#growth=g",
    )
    ap.add_argument(
        "--tail-choice",
        nargs="+",
        type=int,
        default=[None],
        help="1: the encoder keeps the closer of the network's image and the means at the tail's head "
        "too, 0: always the network's there (ChunkPolicy.choose_at_tail; uqdm 0.19-0.20: 0; default the "
        "codec's); named MODEL#tail-choice=b",
    )
    ap.add_argument(
        "--rdoq",
        nargs="+",
        type=float,
        default=[0.0],
        help="the encoder's RDOQ lambda for the Haar steps (Codec.rdoq; needs --intervals 0); named "
        "MODEL#rdoq=l",
    )
    ap.add_argument("--rdoq-until", type=int, help="the last Haar step RDOQ is used in (default: all)")
    ap.add_argument(
        "--cuts",
        type=int,
        default=0,
        help="also decode this many truncated files per image (uqdm truncate's cut chunks) and report "
        "the BD-rate over them",
    )
    ap.add_argument(
        "--bare",
        action="store_true",
        help="the network alone: no colour context, display filters, lossless context or known "
        "intervals (what the trainer's estimate measures); runs are named MODEL#bare",
    )
    args = ap.parse_args(argv)
    done = json.loads(args.reuse.read_text()) if args.reuse else {}
    images = load_crops(args.images, args.crop)
    results = {}
    runs = [
        (
            model,
            m,
            iv,
            ne,
            g,
            tc,
            rq,
            str(model)
            + ("" if m == 1 else f"#mirrors={m}")
            + ("" if iv else "#intervals=0")
            + (f"#network-every={ne}" if ne is not None else "")
            + (f"#growth={g}" if g is not None else "")
            + (f"#tail-choice={tc}" if tc is not None else "")
            + (f"#rdoq={rq:g}" if rq else "")
            + (f"#until={args.rdoq_until}" if rq and args.rdoq_until is not None else "")
            + ("#bare" if args.bare else ""),
        )
        for model in args.models
        for iv in args.intervals
        for m in args.mirrors
        for ne in args.network_every
        for g in args.growth
        for tc in args.tail_choice
        for rq in args.rdoq
        if not (rq and iv)  # RDOQ moves x out of its bin: no known intervals
    ]
    codecs: dict[Path, Codec] = {}
    for model, mirrors, intervals, every, growth, tail_choice, rdoq, name in runs:
        if name in done:  # same images and seeds are the caller's promise
            results[name] = done[name]
            continue
        t0 = time.time()
        if model not in codecs:
            codecs[model] = codec_for(model, args.data)
        codec = codecs[model]
        codec.intervals = bool(intervals) and not args.bare
        codec.rdoq, codec.rdoq_until = rdoq, args.rdoq_until
        policy = ChunkPolicy()  # the codec's default, then this run's changes
        if every is not None:
            policy = replace(policy, network_every=every)
        if growth is not None:
            policy = replace(policy, growth=growth)
        if tail_choice is not None:
            policy = replace(policy, choose_at_tail=bool(tail_choice))
        codec.chunking = policy
        codec.colour_context = codec.display_filters = codec.lossless_context = not args.bare
        curves = [dense_curve(codec, px, seed, mirrors, args.cuts) for seed, px in enumerate(images)]
        results[name] = {
            "steps": codec.num_steps,
            "curves": [c[0] for c in curves],
            "cut_curves": [c[3] for c in curves],
            "lossless_bpp": float(np.mean([c[1] for c in curves])),
            "levels": float(np.mean([c[2] for c in curves])),
            "seconds": round(time.time() - t0, 1),
        }
        print(
            f"{name}: {results[name]['lossless_bpp']:.3f} bpp lossless, {time.time() - t0:.0f} s", flush=True
        )
    anchor = results[runs[0][-1]]
    for name, res in results.items():
        per_image = [bd_rate(a, t) for a, t in zip(anchor["curves"], res["curves"])]
        res["bd_rate_per_image"] = per_image
        res["bd_rate_mean"] = float(np.mean([b for b in per_image if b is not None]))
        cut_bd = ""
        if _has_cuts(anchor) and _has_cuts(res):
            per_cut = [bd_rate(a, t) for a, t in zip(anchor["cut_curves"], res["cut_curves"])]
            res["cut_bd_rate_per_image"] = per_cut
            res["cut_bd_rate_mean"] = float(np.mean([b for b in per_cut if b is not None]))
            cut_bd = f", truncated files: BD-rate {res['cut_bd_rate_mean']:+.2f} %"
        print(
            f"{name}: {res['steps']} steps, lossless {res['lossless_bpp']:.3f} bpp, "
            f"levels {res['levels']:.0f}, BD-rate vs first {res['bd_rate_mean']:+.2f} % "
            f"(per image {', '.join(f'{b:+.1f}' for b in per_image if b is not None)}){cut_bd}"
        )
    print("BD-rate vs first within PSNR bands (mean over the images covering the band):")
    print("  " + "".join(f"{lo}-{hi} dB".rjust(11) for lo, hi in PSNR_BANDS) + "  run")
    for name, res in results.items():
        row = []
        for band in PSNR_BANDS:
            per = [bd_rate(a, t, band) for a, t in zip(anchor["curves"], res["curves"])]
            per = [b for b in per if b is not None]
            row.append(f"{np.mean(per):+.2f} %".rjust(11) if per else "-".rjust(11))
        res["bd_rate_bands"] = {f"{lo}-{hi}": r.strip() for (lo, hi), r in zip(PSNR_BANDS, row)}
        print("  " + "".join(row) + f"  {name}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
