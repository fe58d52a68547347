"""Where the display filters (docs/MODEL.md section 13) gain, per step and band, and what a scale
correction on top of them would add.

    python scripts/filter_oracle.py IMAGES... [--crop 512] [--json out.json]

Each image (centre crop, sides cut to multiples of 16) runs through the chain as the encoder
drives it (colour context, display filters and priors from the shown image as the encoder chooses
them). After every Haar step it reports the PSNR of the network's image, of the image filtered by
a fitted radius-1 and radius-2 filter, and of what the encoder sends; for every step, the bits
(ideal code lengths, colour context included) of its coded elements per band with the network's
locations and with those of the image shown after the previous step (bands and pixel step), and,
as an oracle, with every scale of a (step, band) multiplied by the factor (grid 2^(j/12)) that
minimises them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from study_common import load_crops, parser  # noqa: E402

from uqdm_codec import display_filter, entropy, get_codec  # noqa: E402
from uqdm_codec.codec import ChainRun  # noqa: E402

FACTORS = 2.0 ** (np.arange(-6, 4) / 12)


def psnr(image: np.ndarray, original: np.ndarray) -> float:
    return 10 * np.log10(255.0**2 * original.size / max(display_filter.shown_sse(image, original), 1e-9))


def coded_bits(chain, prior, xs, at) -> np.ndarray:
    """Per element of `at`: ideal bits under `prior` with the colour context the encoder would fit."""
    _, coded = chain.coding_prior(prior, xs)
    p = coded.part(at)
    return entropy.step_element_bits(entropy.quantise(xs[at], p), p)


def study(codec, pixels: np.ndarray, seed: int, table: dict) -> None:
    h, w = pixels.shape[:2]
    T = codec.num_steps
    run = ChainRun(codec, pixels, seed)
    chain, x, original = run.chain, run.x, run.original
    for i in range(1, T + 1):
        row = table.setdefault(str(i), {})
        pred = run.pred
        if pred is not None and i < T:  # the same step with every band on the network's / shown image
            for name, mask in (("network", 0), ("shown", (1 << (chain.levels + 1)) - 1)):
                prior = chain.prior(i, pred, mask)
                xs = run.values(i)
                bits = coded_bits(chain, prior, xs, np.arange(xs.size))
                per_band = np.bincount(chain.coded_band, bits, minlength=chain.levels + 1)
                row[f"bits_{name}"] = (np.array(row.get(f"bits_{name}", 0.0)) + per_band).tolist()
        prior = run.prior(i)
        xs = run.values(i)
        if i == T:  # the pixel step: network's display against the shown (filtered) one
            sent, pred.filter = pred.filter, None
            unfiltered = replace(prior, loc=pred.display_crop(h, w).reshape(-1))
            pred.filter = sent
            for name, p in (("network", unfiltered), ("shown", prior)):
                bits = coded_bits(chain, p, xs, np.arange(xs.size)).sum()
                row[f"bits_{name}"] = [row.get(f"bits_{name}", [0.0])[0] + float(bits)]
        _, coded = chain.coding_prior(prior, xs)
        band = chain._element_bands()
        for b in np.unique(band):
            sel = np.flatnonzero(band == b)
            sp = coded.part(sel)
            trials = []
            for f in FACTORS:
                q = replace(sp, scale=sp.scale * f)
                trials.append(float(entropy.step_element_bits(entropy.quantise(xs[sel], q), q).sum()))
            key = f"scale_{b}"
            row[key] = (np.array(row.get(key, np.zeros(len(FACTORS)))) + np.array(trials)).tolist()
        p, k = run.code_all(i, prior, xs)
        if i == T:
            break
        run.predict(i)
        image = run.pred.display_crop(h, w)
        fits = display_filter.fit(image, x[:, :h, :w])
        gains = [psnr(image, original)] + [psnr(display_filter.apply(f, image), original) for f in fits]
        run.choose_filter(i, float(entropy.step_element_bits(k, p).sum()))
        gains.append(psnr(run.pred.display_crop(h, w), original))
        row["psnr"] = (np.array(row.get("psnr", np.zeros(4))) + np.array(gains)).tolist()
        row["sent"] = row.get("sent", []) + [run.pred.filter.radius if run.pred.filter else 0]


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__).parse_args(argv)
    codec = get_codec()
    table: dict = {}
    npx = 0
    for seed, px in enumerate(load_crops(args.images, args.crop)):
        npx += px.shape[0] * px.shape[1]
        study(codec, px, seed, table)
    n = len(args.images)
    print(
        "| after step | PSNR network | + radius-1 filter | + radius-2 filter | as sent "
        "| filters sent (radius) |"
    )
    print("|---|---|---|---|---|---|")
    for i, row in table.items():
        if "psnr" in row:
            a, r1, r2, sent = (v / n for v in row["psnr"])
            print(f"| {i} | {a:.2f} | {r1 - a:+.2f} | {r2 - a:+.2f} | {sent - a:+.2f} | {row['sent']} |")
    print("\n| step | band | bpp, network locations | bpp, shown image's | change |")
    print("|---|---|---|---|---|")
    for i, row in table.items():
        for b, (a, s) in enumerate(zip(row.get("bits_network", []), row.get("bits_shown", []))):
            if a > 0:
                name = "pixel" if int(i) == codec.num_steps else b
                print(f"| {i} | {name} | {a / npx:.4f} | {s / npx:.4f} | {100 * (s / a - 1):+.1f} % |")
    base = best = 0.0
    one = int(np.flatnonzero(FACTORS == 1.0)[0])
    for row in table.values():
        for key, trials in row.items():
            if key.startswith("scale_"):
                base += trials[one]
                best += min(trials)
    print(
        f"\nscale factor per (step, band), oracle: {base / npx:.4f} -> {best / npx:.4f} bpp "
        f"({100 * (best / base - 1):+.2f} %)"
    )
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
