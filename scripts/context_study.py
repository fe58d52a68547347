"""What the colour context buys, and two contexts that were measured and not kept.

    python scripts/context_study.py IMAGES... --json out.json [--crop 512]

1. Real files: each image encoded with and without the colour context (`Codec(colour_context=
   False)`), decoded after every chunk; BD-rate per image over all those points and the lossless
   size (as scripts/rd_dense.py does for models).
2. Ideal code lengths per (step, band), from the chain as the encoder drives it without the
   context: the bits as coded without it; with the colour context as the encoder fits it
   (colour.fit, per image); with a scale that also grows with the colour-0 residual,
   s * (f + g |r0|), f and g searched per image (not kept: it adds little); and, for the colour-0
   elements, an upper bound of a spatial context: their location moved by a least-squares
   combination of the four same-band neighbours' residuals, as if all four were known (a two-pass
   checkerboard would know them for half of the elements; not kept: it saves little).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from rd_dense import dense_curve  # noqa: E402
from study_common import load_crops, parser  # noqa: E402

from uqdm_codec import colour, entropy, get_codec, haar  # noqa: E402
from uqdm_codec.bench import bd_rate  # noqa: E402
from uqdm_codec.codec import Codec, _Chain  # noqa: E402


def bits(x, loc, scale, prior, at) -> float:
    p = entropy.StepPrior(
        loc[at],
        scale[at],
        prior.dither[at],
        prior.quant_step[at],
        prior.bound[at],
        prior.lower[at],
        prior.upper[at],
    )
    return float(entropy.step_element_bits(entropy.quantise(x[at], p), p).sum())


def hetero_bits(x, prior, chain, ctx) -> float:
    """Colour-1 elements with partners: location as the context moves it, scale s * (f + g |r0|)."""
    loc, scale = prior.loc.copy(), prior.scale.copy()
    tilde = entropy.reconstruct(entropy.quantise(x, prior), prior)
    band = chain._element_bands()
    colour.condition(1, ctx, chain.colours, band, chain.pairs, tilde, loc, prior.scale.copy())
    at = np.flatnonzero((chain.colours == 1) & (chain.pairs[0] >= 0))
    if not at.size:
        return 0.0
    r0 = np.abs(np.clip((tilde - prior.loc)[chain.pairs[0, at]] / prior.scale[chain.pairs[0, at]], -8, 8))
    best = None
    for f in np.arange(0.2, 1.05, 0.05):
        for g in np.arange(0.0, 0.6, 0.05):
            scale[at] = prior.scale[at] * (f + g * np.minimum(r0, 4.0))
            b = bits(x, loc, scale, prior, at)
            best = b if best is None else min(best, b)
    return best


def spatial_bits(x, prior, chain, shapes) -> tuple[float, float]:
    """(bits, bits with the 4-neighbour context) of the colour-0 elements of a Haar step."""
    tilde = entropy.reconstruct(entropy.quantise(x, prior), prior)
    r = np.clip((x - prior.loc) / prior.scale, -8, 8)
    rt = np.clip((tilde - prior.loc) / prior.scale, -8, 8)
    base = new = 0.0
    for b, shape in enumerate(shapes):
        at = np.flatnonzero((chain.coded_band == b) & (chain.colours == 0))
        if at.size < 64:
            continue
        hh, ww = shape[-2], shape[-1]
        flat = chain.coded_flat[at].astype(np.int64)
        o, y, xx = flat // (3 * hh * ww), (flat % (hh * ww)) // ww, flat % ww
        key = (o * hh + y) * ww + xx
        srt = np.argsort(key)
        feats = []
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            yy, xn = y + dy, xx + dx
            ok = (yy >= 0) & (yy < hh) & (xn >= 0) & (xn < ww)
            want = (o * hh + np.clip(yy, 0, hh - 1)) * ww + np.clip(xn, 0, ww - 1)
            j = np.clip(np.searchsorted(key[srt], want), 0, at.size - 1)
            hit = ok & (key[srt][j] == want)
            feats.append(np.where(hit, rt[at[srt[j]]], 0.0))
        X = np.stack(feats, axis=1)
        beta = np.linalg.lstsq(X, r[at], rcond=None)[0]
        loc = prior.loc.copy()
        loc[at] += (X @ beta) * prior.scale[at]
        base += bits(x, prior.loc, prior.scale, prior, at)
        trials = []
        for f in 2.0 ** (np.arange(-10, 3) / 8):
            scale = prior.scale.copy()
            scale[at] *= f
            trials.append(bits(x, loc, scale, prior, at))
        new += min(trials)
    return base, new


def study_image(codec: Codec, pixels: np.ndarray, seed: int, table: dict) -> None:
    h, w = pixels.shape[:2]
    chain = _Chain(codec.net, h, w, seed, codec.tile)
    x = entropy.pixels_to_data(pixels.transpose(2, 0, 1))
    x_bands = haar.forward(x, chain.levels)
    pred = None
    for i in range(1, codec.num_steps + 1):
        prior = chain.prior(i, pred).part(slice(None))
        xs = chain.elements(i, x, x_bands)
        ctx, coded = chain.coding_prior(prior, xs)
        pixel = i == codec.num_steps
        band = chain._element_bands()
        for b in range(chain._context_bands()):
            at = np.flatnonzero(band == b)
            if not at.size:
                continue
            row = table.setdefault(f"{i}/{'pixel' if pixel else b}", dict.fromkeys(("plain", "colour"), 0.0))
            row["plain"] += bits(xs, prior.loc, prior.scale, prior, at)
            row["colour"] += bits(xs, coded.loc, coded.scale, prior, at)
        tot = table.setdefault(
            f"{i}/all", dict.fromkeys(("colour1_f", "colour1_fg", "space0", "space0_ctx"), 0.0)
        )
        one = np.flatnonzero((chain.colours == 1) & (chain.pairs[0] >= 0))
        tot["colour1_f"] += bits(xs, coded.loc, coded.scale, prior, one)
        tot["colour1_fg"] += hetero_bits(xs, prior, chain, ctx)
        if not pixel:
            base, new = spatial_bits(xs, prior, chain, [z.shape for z in chain.z])
            tot["space0"] += base
            tot["space0_ctx"] += new
        k = entropy.quantise(xs, prior)  # the chain moves on as without the context
        chain.apply(i, entropy.reconstruct(k, prior), np.arange(k.size))
        if not pixel:
            pred = chain.predict(i)


def main(argv: list[str] | None = None) -> None:
    ap = parser(__doc__)
    args = ap.parse_args(argv)
    images = load_crops(args.images, args.crop)
    codec = get_codec()
    plain = Codec(codec.model, colour_context=False)
    real = {}
    for name, c in (("plain", plain), ("colour", codec)):
        curves = [dense_curve(c, px, seed) for seed, px in enumerate(images)]
        real[name] = {"curves": [cv for cv, _, _ in curves], "lossless_bpp": [b for _, b, _ in curves]}
    per_image = [bd_rate(a, t) for a, t in zip(real["plain"]["curves"], real["colour"]["curves"])]
    print(
        f"real files, every chunk: BD-rate of the colour context {np.mean(per_image):+.2f} % "
        f"(per image {', '.join(f'{b:+.1f}' for b in per_image)}); lossless "
        f"{np.mean(real['plain']['lossless_bpp']):.3f} -> {np.mean(real['colour']['lossless_bpp']):.3f} bpp"
    )
    table: dict = {}
    for seed, px in enumerate(images):
        study_image(codec, px, seed, table)
    npx = sum(px.shape[0] * px.shape[1] for px in images)
    print("| step/band | bpp without | bpp with colour context | change |")
    print("|---|---|---|---|")
    for key, row in table.items():
        if "plain" in row and row["plain"] > 0:
            change = 100 * (row["colour"] / row["plain"] - 1)
            print(f"| {key} | {row['plain'] / npx:.4f} | {row['colour'] / npx:.4f} | {change:+.1f} % |")
    sums = {
        k: sum(r.get(k, 0.0) for r in table.values())
        for k in ("colour1_f", "colour1_fg", "space0", "space0_ctx")
    }
    print(
        f"scale s*(f + g|r0|) instead of s*f, colour-1 elements with a partner: "
        f"{100 * (sums['colour1_fg'] / sums['colour1_f'] - 1):+.2f} %"
    )
    space = 100 * (sums["space0_ctx"] / sums["space0"] - 1)
    print(f"spatial context (upper bound), colour-0 Haar elements: {space:+.2f} %")
    if args.json:
        args.json.write_text(
            json.dumps({"real": real, "bd_rate_per_image": per_image, "ideal": table}, indent=1)
        )


if __name__ == "__main__":
    main()
