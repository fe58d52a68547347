"""The rate-distortion curve of files made by `encode --psnr P`, swept over P, against the curve of
the step points that `uqdm bench` reports (real bytes, PSNR over R, G and B).

    python scripts/target_curve.py ../shared/data/kodak --baselines docs/bench/results.json --json curve.json

Each image is encoded whole once (default settings, seed 1) with the error of the image on screen
recorded at every chunk boundary (Codec.encode_judged). Up to uqdm 0.39 the file `encode --psnr P`
writes was the shortest prefix ending on a chunk boundary that reaches P, so one encode gives every
target's size and PSNR (`targets` in the JSON). Since 0.40 it may end inside that boundary's chunk
(cut_judge.py): with --inside, each target's cut is searched for on the whole file as the encoder
searches it (the same bytes as `encode --psnr P`: tests/test_quality.py), `inside` in the JSON, and
BD-rates are given for both. Per target the bpp and PSNR are averaged over the images,
as the bench averages the baselines per setting, and BD-rates are taken against the baselines'
mean curves stored in a bench result (`--baselines`), with the same `bench.bd_rate`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uqdm_codec import bench, container, files, get_codec  # noqa: E402
from uqdm_codec.codec import _DecodeSession  # noqa: E402
from uqdm_codec.cut_judge import CutSession, shortest_cut  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402
from uqdm_codec.quality import Encoded, psnr_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--baselines", type=Path, required=True, help="a uqdm bench results.json")
    parser.add_argument(
        "--targets", type=float, nargs=3, default=[24.0, 46.0, 0.5], metavar=("LO", "HI", "STEP")
    )
    parser.add_argument("--inside", action="store_true", help="also cut inside chunks, as uqdm 0.40")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reuse", type=Path, help="a JSON this script wrote: its images, not encoded again")
    args = parser.parse_args()
    lo, hi, step = args.targets
    results = json.loads(args.baselines.read_text())
    if args.reuse:
        saved = json.loads(args.reuse.read_text())
        targets, per_image = saved["targets"], saved["images"]
    else:
        targets = [float(t) for t in np.arange(lo, hi + step / 2, step)]
        per_image = encode_all(args.folder, targets, args.inside)
    out = {"targets": targets, **analyse(targets, per_image, results), "images": per_image}
    if args.inside:
        print("cut inside chunks:")
        inside = [{**im, "targets": im["inside"]} for im in per_image]
        out["inside"] = analyse(targets, inside, results)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


def encode_all(folder: Path, targets: list[float], inside: bool = False) -> list[dict]:
    """Per image: the (bpp, PSNR) of the file each target gives (cut at a chunk boundary; with
    `inside`, also cut inside a chunk), and of each step point."""
    codec = get_codec(None, "cpu")
    per_image = []
    for path in bench.list_images(folder):
        pixels = load_image(path).pixels
        n = pixels.shape[0] * pixels.shape[1]
        whole = codec.encode_judged(pixels, seed=1)
        fi = files.info(whole.data)
        curve = [(8.0 * c / n, psnr_of(e, n)) for c, e in zip(fi.cut_points, whole.screen)]
        steps = [curve[fi.cut_points.index(layer.end)] for layer in fi.layers[: fi.header.coded_steps]]
        picks = [next(p for p in curve if p[1] >= t) for t in targets]
        row = {"image": path.name, "targets": picks, "steps": steps}
        print(path.name, " ".join(f"{t:g}:{b:.3f}" for t, (b, _) in zip(targets, picks)), flush=True)
        if inside:
            row["inside"] = cut_inside(codec, pixels, whole, targets)
            print("  inside:", " ".join(f"{t:g}:{b:.3f}" for t, (b, _) in zip(targets, row["inside"])))
        per_image.append(row)
    return per_image


def cut_inside(codec, pixels: np.ndarray, whole: Encoded, targets: list[float]) -> list[tuple[float, float]]:
    """(bpp, PSNR) of the file `encode --psnr` writes for each target, from the whole (untiled) file:
    its first chunk boundary reaching the target, shortened by cut_judge.shortest_cut. One decode
    session walks the file once, the targets taken in ascending order, each search starting from
    it at the boundary before its chunk (the encoder decodes that prefix afresh for its one target)."""
    n = whole.width * whole.height
    cuts = files.info(whole.data).cut_points
    parsed = container.parse(whole.data[: cuts[0]])
    session = _DecodeSession(codec, parsed.header, parsed.header_size)
    applied, out = cuts[0], []
    if sorted(targets) != list(targets):
        raise ValueError("targets must ascend")
    for t in targets:
        k = next((k for k, e in enumerate(whole.screen) if psnr_of(e, n) >= t), len(cuts) - 1)
        judge = None
        if k:
            if cuts[k - 1] > applied:
                applied = cuts[k - 1]
                for _ in session.advance(container.parse(whole.data[:applied])):
                    pass
            judge = CutSession(codec, pixels, session, applied)
        at = Encoded(whole.data[: cuts[k]], whole.screen[: k + 1], whole.width, whole.height)
        got = shortest_cut(codec, pixels, at, t, judge) if k else at
        out.append((8.0 * len(got.data) / n, psnr_of(got.screen[-1], n)))
    return out


def mean_points(curves: list[list]) -> list[tuple[float, float]]:
    n = min(len(c) for c in curves)
    return [
        (float(np.mean([c[k][0] for c in curves])), float(np.mean([c[k][1] for c in curves])))
        for k in range(n)
    ]


def analyse(targets: list[float], per_image: list[dict], results: dict) -> dict:
    """BD-rates two ways. Mean curves (the bench's convention): bpp and PSNR averaged per target,
    and per step, against the baselines averaged per setting. Per image (no averaging convention,
    which favours neither a fixed-quality nor a fixed-rate sweep): each image's achievable points
    (every target's file and every step point) and its step points alone, against its own baseline
    points, the BD-rates then averaged over the images."""
    lossy = [p for p in mean_points([im["targets"] for im in per_image]) if math.isfinite(p[1])]
    step_mean = mean_points([im["steps"] for im in per_image])
    own = {im["name"]: im["baselines"] for im in results["images"]}
    rows = {}
    for name, pts in results["summary"]["baselines"].items():
        anchor = [(p["bpp"], p["psnr"]) for p in pts]
        achievable, stepwise = [], []
        for im in per_image:
            base = [tuple(p) for p in own[im["image"]][name]]
            steps = [tuple(p) for p in im["steps"]]
            points = sorted({*(tuple(p) for p in im["targets"] if math.isfinite(p[1])), *steps})
            a, s = bench.bd_rate(base, points), bench.bd_rate(base, steps)
            if a is not None and s is not None:
                achievable.append(a)
                stepwise.append(s)
        rows[name] = {
            "mean_curve_psnr_targets": bench.bd_rate(anchor, lossy),
            "mean_curve_step_points": bench.bd_rate(anchor, step_mean),
            "per_image_achievable": float(np.mean(achievable)),
            "per_image_step_points": float(np.mean(stepwise)),
            "images": len(achievable),
        }
        r = rows[name]
        print(
            f"BD-rate against {name}: mean curves: --psnr files {r['mean_curve_psnr_targets']:+.1f} %, "
            f"step points {r['mean_curve_step_points']:+.1f} %; per image: achievable "
            f"{r['per_image_achievable']:+.1f} %, step points {r['per_image_step_points']:+.1f} %"
        )
    return {"mean_curve": lossy, "step_curve": step_mean, "bd_rate_percent": rows}


if __name__ == "__main__":
    main()
