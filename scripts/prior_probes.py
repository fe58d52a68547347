"""Probes of codec-side changes measured on held-aside photos and not kept (docs/MODEL.md section 14).

    python scripts/prior_probes.py shape IMAGES...     # logistic prior vs a mixture of two, or a Gaussian
    python scripts/prior_probes.py flips IMAGES...     # the network averaged over the mirrored state
    python scripts/prior_probes.py skip IMAGES...      # skip colour-1/2 elements the colour context pins
    python scripts/prior_probes.py partial IMAGES...   # display filters on the images inside a layer
    python scripts/prior_probes.py checker IMAGES...   # the pixel step in two checkerboard halves
    python scripts/prior_probes.py lossless_colour IMAGES... [--spatial]
                                                       # the lossless layer given exact partners
    python scripts/prior_probes.py display_classes IMAGES...
                                                       # display filters per class of pixels
    python scripts/prior_probes.py head_refit IMAGES...  # a per-image refit of the D_1 / D_2 heads
    python scripts/prior_probes.py intervals IMAGES...   # priors truncated to the known intervals

Every probe drives the chain as the encoder does (`codec.ChainRun`: colour context and display
filters included; ideal code lengths), seed = image index, on centre crops (default 512 px).
Parameters a real codec would have to send (mixture weights, filter taps, predictor weights) are
fitted on the image itself and not counted: each figure is an optimistic bound. `flips` and `skip`
change the chain and report the BD-rate over the step points 1-7 and the lossless size against
the chain as shipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from study_common import load_crops  # noqa: E402

from uqdm_codec import container, ensemble, entropy, exactnet, get_codec, haar  # noqa: E402
from uqdm_codec import display_filter as dfilter  # noqa: E402
from uqdm_codec.accounting import direct_level_bits  # noqa: E402
from uqdm_codec.bench import bd_rate  # noqa: E402
from uqdm_codec.codec import ChainRun, Codec  # noqa: E402
from uqdm_codec.progression import psnr  # noqa: E402

GRID = 2.0 ** (np.arange(-12, 13) / 6)  # scale factors tried


# ----------------------------------------------------------------------------- the chain, varied


def chain_curve(
    codec: Codec, px: np.ndarray, seed: int, after_predict=None, keep=None
) -> list[tuple[float, float]]:
    """[(cumulative bpp, PSNR shown) after each Haar step] + [(lossless bpp, inf)], ideal bits.
    after_predict(run, i) may change the prediction before the filter is chosen; keep(run, i,
    prior) -> bool mask of the elements to code (the others keep their state)."""
    h, w = px.shape[:2]
    run = ChainRun(codec, px, seed)
    cum, curve, T = 0.0, [], codec.num_steps
    for i in range(1, T + 1):
        prior = run.prior(i)
        xs = run.values(i)
        _, coded = run.chain.coding_prior(prior, xs)
        p = coded.part(slice(None))
        k = entropy.quantise(xs, p)
        mask = keep(run, i, p) if keep is not None and i < T else np.ones(k.size, bool)
        bits = float(entropy.step_element_bits(k, p)[mask].sum())
        which = np.flatnonzero(mask)
        run.chain.apply(i, entropy.reconstruct(k, p)[which], which)
        cum += bits
        if i < T:
            run.predict(i)
            if after_predict is not None:
                after_predict(run, i)
            run.choose_filter(i, bits)
            curve.append((cum / (h * w), psnr(px, run.pred.image(h, w))))
    q = codec.model.schedule.pixel_quant
    levels = run.original.ravel().astype(np.int64)
    cum += entropy.levels_ideal_bits(levels, run.chain.pixel_tilde, p.loc, p.scale, q)
    return curve + [(cum / (h * w), float("inf"))]


def versus(pairs, label: str = "") -> dict:
    """Test curves against base curves (chain_curve's form), given as (base, test) per image: the
    BD-rate over steps 1-7 and the lossless bpp per image, printed as they come, and averaged."""
    rows = []
    for seed, (base, test) in enumerate(pairs):
        rows.append(
            {
                "bd_rate_steps_1_7": bd_rate(base[:-1], test[:-1]),
                "lossless_bpp": [base[-1][0], test[-1][0]],
                "steps": [base[:-1], test[:-1]],
            }
        )
        print(
            f"{label}image {seed}: BD-rate {rows[-1]['bd_rate_steps_1_7']:+.2f} %, lossless "
            f"{base[-1][0]:.4f} -> {test[-1][0]:.4f} bpp",
            flush=True,
        )
    bd = float(np.mean([r["bd_rate_steps_1_7"] for r in rows]))
    ll = np.mean([r["lossless_bpp"] for r in rows], axis=0)
    print(
        f"{label}mean: BD-rate {bd:+.2f} %, lossless {ll[0]:.4f} -> {ll[1]:.4f} bpp "
        f"({100 * (ll[1] / ll[0] - 1):+.2f} %)"
    )
    return {"bd_rate_steps_1_7": bd, "lossless_bpp": ll.tolist(), "images": rows}


def compare(codec: Codec, images: list[np.ndarray], **variant) -> dict:
    """The variant's curve against the shipped chain's, per image and averaged."""
    return versus(
        (chain_curve(codec, px, seed), chain_curve(codec, px, seed, **variant))
        for seed, px in enumerate(images)
    )


# ----------------------------------------------------------------------------- flips


def flips(axes: tuple[str, ...]):
    """after_predict: the locations, raw log-scales and pixel head averaged over the network's
    predictions on the state as is and mirrored along each of `axes`."""

    def hook(run: ChainRun, i: int) -> None:
        chain, pred = run.chain, run.pred
        locs = [a.copy() for a in pred.locs]
        raws = [a.astype(np.float64) for a in pred._raw]
        pixel = pred._pixel[1].astype(np.float64)
        for mirror in axes:  # "h", "v" or "hv" (both: the image turned half a turn)
            twin = chain.net.predict(
                ensemble.mirror_bands(chain.z, mirror, signed=True),
                ensemble.mirror_bands(chain.state, mirror, signed=False),
                i,
                chain.tile,
            )
            tl = ensemble.mirror_bands(twin.locs, mirror, signed=True)
            tr = ensemble.mirror_bands(twin._raw, mirror, signed=False)
            for b, (lo, ra) in enumerate(zip(tl, tr)):
                locs[b] += lo
                raws[b] += ra
            pixel += ensemble.mirror_image(twin._pixel[1], mirror)
        n = 1 + len(axes)
        pred.locs = [a / n for a in locs]
        pred._raw = [a / n for a in raws]
        pred._pixel = (pred._pixel[0], pixel / n)
        pred._scales = pred._pixel_scale = None

    return hook


# ----------------------------------------------------------------------------- skip


def skip(factor: float):
    """keep: colour-1/2 elements whose colour-conditioned scale is below factor * threshold * q
    are not coded (their partners' residuals were used for the condition as if they all came)."""

    def keep(run: ChainRun, i: int, p: entropy.StepPrior) -> np.ndarray:
        thr = run.codec.model.schedule.threshold
        return ~((run.chain.colours > 0) & (p.scale < factor * thr * p.quant_step))

    return keep


# ----------------------------------------------------------------------------- shape


def _cdf(kind: str, t: torch.Tensor, params: tuple[float, ...]) -> torch.Tensor:
    if kind == "gauss":
        return torch.special.ndtr(t / params[0])
    w, a, b = params
    return w * torch.sigmoid(t / a) + (1.0 - w) * torch.sigmoid(t / b)


def _bits(kind: str, bins: torch.Tensor, params) -> float:
    lo, hi, a, b = bins
    mass = (_cdf(kind, hi, params) - _cdf(kind, lo, params)).clamp_min(1e-300)
    norm = (_cdf(kind, b, params) - _cdf(kind, a, params)).clamp_min(1e-300)
    return float(-(torch.log2(mass) - torch.log2(norm)).sum())


def _best(kind: str, bins: torch.Tensor, candidates) -> tuple[float, tuple[float, ...]]:
    """The candidate with the fewest bits on a sample of at most 10^5 elements, then its bits on all."""
    n = bins.shape[1]
    sub = bins[:, torch.randperm(n, generator=torch.Generator().manual_seed(0))[:100_000]]
    params = min(candidates, key=lambda c: _bits(kind, sub, c))
    return _bits(kind, bins, params), params


def shape(codec: Codec, images: list[np.ndarray]) -> dict:
    """Code lengths of every step's coded elements (as coded: colour context and filters) under
    the logistic, a scale factor, a mixture of two logistics (w, a, b) and a Gaussian, each
    fitted per (step, band) on these images."""
    per: dict[str, list[np.ndarray]] = {}
    pixels = 0
    for seed, px in enumerate(images):
        run = ChainRun(codec, px, seed)
        pixels += px.shape[0] * px.shape[1]
        for i in range(1, codec.num_steps + 1):
            p, k = run.code_all(i, run.prior(i), run.values(i))
            band = run.chain._element_bands()
            s = p.scale
            a, b = (p.lower - p.loc) / s, (p.upper - p.loc) / s  # the prior's truncation
            lo = np.clip((k - p.dither - 0.5) * p.quant_step / s, a, b)
            hi = np.clip((k - p.dither + 0.5) * p.quant_step / s, a, b)
            for bd in np.unique(band):
                m = band == bd
                per.setdefault(f"step {i} band {bd}", []).append(np.stack([lo[m], hi[m], a[m], b[m]]))
            run.finish(i, float(entropy.step_element_bits(k, p).sum()))
        print(f"image {seed} coded", flush=True)
    small, large = GRID[GRID <= 1.0 + 1e-9], GRID[GRID >= 1.0 - 1e-9]
    mixtures = [(1.0, 1.0, 1.0)] + [(w, a, b) for w in (0.3, 0.5, 0.7, 0.85) for a in small for b in large]
    total = {"logistic": 0.0, "scale": 0.0, "mixture": 0.0, "gauss": 0.0}
    rows = {}
    for key, parts in per.items():
        bins = torch.from_numpy(np.concatenate(parts, axis=1))
        base = _bits("mix", bins, (1.0, 1.0, 1.0))
        scaled = _best("mix", bins, [(1.0, c, c) for c in GRID])
        mixed = _best("mix", bins, mixtures)
        gauss = _best("gauss", bins, [(c,) for c in GRID])
        rows[key] = {"bpp": base / pixels, "scale": scaled, "mixture": mixed, "gauss": gauss}
        for name, v in (("logistic", base), ("scale", scaled[0]), ("mixture", mixed[0]), ("gauss", gauss[0])):
            total[name] += v
        print(
            f"{key}: {base / pixels:.4f} bpp; scale {100 * (scaled[0] / base - 1):+.2f} %, mixture "
            f"{100 * (mixed[0] / base - 1):+.2f} %, Gaussian {100 * (gauss[0] / base - 1):+.2f} %",
            flush=True,
        )
    print(
        "all steps: " + ", ".join(f"{k} {100 * (v / total['logistic'] - 1):+.2f} %" for k, v in total.items())
    )
    return {"per_step_band": rows, "total_bits": total, "pixels": pixels}


# ----------------------------------------------------------------------------- partial


def partial(codec: Codec, images: list[np.ndarray]) -> dict:
    """PSNR of every image shown inside a Haar layer (2..T-1), as shown and filtered by the
    previous layer's filter, by this layer's, or by the best filter fitted on that image; per layer
    over all of them and over those whose chunk shows the network's image (`NETWORK` and `SHOW`,
    uqdm 0.20's encoder: most of them)."""
    rows = []
    for seed, px in enumerate(images):
        data = codec.encode(px, seed=seed)
        layers = container.parse(data).layers
        filters = {lay.index: lay.display_filter for lay in layers}
        target = entropy.pixels_to_data(px.transpose(2, 0, 1))
        for im in codec.iter_decode(data, every_chunk=True):
            if im.lossless or im.complete or not 2 <= im.layer < codec.num_steps:
                continue
            d = entropy.pixels_to_data(im.pixels.transpose(2, 0, 1))

            def shown(f, d=d, px=px):
                return psnr(px, entropy.data_to_pixels(dfilter.apply(f, d)).transpose(1, 2, 0))

            best = max(shown(f) for f in dfilter.fit(d, target))
            chunk = layers[im.layer - 1].chunks[im.chunks - 1]
            rows.append(
                [
                    seed,
                    im.layer,
                    8.0 * im.nbytes / (px.shape[0] * px.shape[1]),
                    shown(None),
                    shown(filters.get(im.layer - 1)),
                    shown(filters.get(im.layer)),
                    best,
                    float(chunk.network and chunk.show),
                ]
            )
        print(f"image {seed}: {sum(r[0] == seed for r in rows)} partial images", flush=True)
    arr = np.array(rows)
    out = {}
    for layer in np.unique(arr[:, 1]).astype(int):
        for label, sel in (("", arr[:, 1] == layer), (" network", (arr[:, 1] == layer) & (arr[:, 7] > 0))):
            if not sel.any():
                continue
            gain = (arr[sel, 4:7] - arr[sel, 3:4]).mean(axis=0)
            out[f"layer {layer}{label}"] = dict(
                zip(("previous filter", "this filter", "fitted", "images"), [*gain.tolist(), int(sel.sum())])
            )
            print(
                f"layer {layer}{label} ({int(sel.sum())} images): mean gain (dB) previous filter "
                f"{gain[0]:+.2f}, this layer's {gain[1]:+.2f}, fitted {gain[2]:+.2f}"
            )
    return {"gain_db": out, "points": rows}


# ----------------------------------------------------------------------------- checker


def _through_pixel_step(codec: Codec, px: np.ndarray, seed: int) -> tuple[ChainRun, entropy.StepPrior]:
    """The chain driven as the encoder drives it through the pixel step: (the run, the pixel
    step's prior as coded, i.e. moved by the colour context)."""
    run = ChainRun(codec, px, seed)
    for i in range(1, codec.num_steps + 1):
        p, k = run.code_all(i, run.prior(i), run.values(i))
        run.finish(i, float(entropy.step_element_bits(k, p).sum()))
    return run, p


def _second_half(h: int, w: int) -> np.ndarray:
    """(h, w) mask of the checkerboard half coded second."""
    return (np.add.outer(np.arange(h), np.arange(w)) % 2) == 1


def _neighbours(a: np.ndarray) -> list[np.ndarray]:
    """Of a (3, h, w) array, its up, down, left and right neighbours at every place (edges
    repeated), each (3, h, w)."""
    h, w = a.shape[1:]
    padded = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="edge")
    shifts = ((-1, 0), (1, 0), (0, -1), (0, 1))
    return [padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in shifts]


def checker(codec: Codec, images: list[np.ndarray]) -> dict:
    """Pixel step plus lossless layer, priced as coding the pixels at once from the pixel step's
    prior (accounting.direct_level_bits; within 0.3 % of the two layers: docs/MODEL.md section
    10), against the same with the second checkerboard half's locations a least-squares mix (per
    colour, fitted on the image) of its own location and the 4 neighbours' x~ in all three
    colours, and the best scale factor."""
    totals = np.zeros(3)
    for seed, px in enumerate(images):
        h, w = px.shape[:2]
        run, p = _through_pixel_step(codec, px, seed)
        x = entropy.pixels_to_data(px.transpose(2, 0, 1))
        loc, scale = p.loc.reshape(3, h, w), p.scale.reshape(3, h, w)
        second = _second_half(h, w)
        near = _neighbours(run.chain.pixel_tilde.reshape(3, h, w))
        new = loc.copy()
        for c in range(3):
            cols = (
                [loc[c][second]] + [n[c2][second] for n in near for c2 in range(3)] + [np.ones(second.sum())]
            )
            design = np.stack(cols, axis=1)
            new[c][second] = design @ np.linalg.lstsq(design, x[c][second], rcond=None)[0]
        levels = px.transpose(2, 0, 1)
        base = direct_level_bits(levels, loc, scale)
        after = min(
            direct_level_bits(levels, new, scale * f)[:, second].sum() for f in (0.6, 0.7, 0.8, 0.9, 1.0)
        )
        saved = base[:, second].sum() - after
        totals += [base.sum(), saved, h * w]
        print(
            f"image {seed}: pixels {base.sum() / (h * w):.3f} bpp, -{100 * saved / base.sum():.2f} %",
            flush=True,
        )
    saving = totals[1] / totals[0] * 100
    print(f"pixel coding {totals[0] / totals[2]:.3f} bpp; with the checkerboard context -{saving:.2f} %")
    return {"pixel_bpp": totals[0] / totals[2], "saving_percent": saving}


SCALE_FACTORS = (0.7, 0.8, 0.9, 1.0, 1.1)  # lossless_colour: scale factors tried per colour and half


def lossless_colour(codec: Codec, images: list[np.ndarray], spatial: bool = False) -> dict:
    """The lossless layer coded in three colour groups, colour c's location moved by a
    least-squares mix (per colour, fitted on the image) of its partners' exact residuals
    (x' - m') / s' and their residuals after the pixel step (x~' - m') / s', with its best scale
    factor, against the lossless layer as coded (the pixel step's prior as moved by the colour
    context of the pixel step, which knew the partners only to +-q/2). With `spatial`, the layer
    in two checkerboard halves, the second half's locations also moved by the 4 neighbours' exact
    residuals in all three colours (12 more taps), as a two-pass lossless layer could."""
    q = codec.model.schedule.pixel_quant
    totals, rows = np.zeros(3), []
    for seed, px in enumerate(images):
        h, w = px.shape[:2]
        run, p = _through_pixel_step(codec, px, seed)
        levels = px.transpose(2, 0, 1).reshape(3, -1).astype(np.int64)
        x = entropy.pixels_to_data(levels)
        xt = run.chain.pixel_tilde.reshape(3, -1)
        loc, scale = p.loc.reshape(3, -1), p.scale.reshape(3, -1)
        base = entropy.levels_element_bits(levels.ravel(), xt.ravel(), loc.ravel(), scale.ravel(), q)
        base = base.reshape(3, -1)
        exact = np.clip((x - loc) / scale, -8, 8)
        tilde = np.clip((xt - loc) / scale, -8, 8)
        saved = 0.0
        second = _second_half(h, w).ravel()
        halves = (~second, second) if spatial else (np.ones(h * w, bool),)
        if spatial:  # the 4 neighbours' exact residuals in all colours (first half decoded first)
            near = [n.reshape(3, -1) for n in _neighbours(exact.reshape(3, h, w))]
        for c in (0, 1, 2):
            for hi, half in enumerate(halves):
                cols = [exact[j][half] for j in range(c)] + [tilde[j][half] for j in range(c)]
                if spatial and hi == 1:
                    cols += [n[j][half] for n in near for j in range(3)]
                if not cols:
                    continue
                design = np.stack(cols, axis=1)
                beta = np.linalg.lstsq(design, exact[c][half], rcond=None)[0]
                new = loc[c][half] + scale[c][half] * (design @ beta)
                lv, xth, sh = levels[c][half], xt[c][half], scale[c][half]
                after = min(entropy.levels_element_bits(lv, xth, new, sh * f, q).sum() for f in SCALE_FACTORS)
                saved += base[c][half].sum() - after
        totals += [base.sum(), saved, h * w]
        rows.append({"lossless_layer_bpp": base.sum() / (h * w), "saving_bpp": saved / (h * w)})
        print(
            f"image {seed}: lossless layer {base.sum() / (h * w):.3f} bpp, "
            f"-{100 * saved / base.sum():.2f} % ({saved / (h * w):.3f} bpp)",
            flush=True,
        )
    saving = totals[1] / totals[0] * 100
    what = "exact colour partners and neighbours" if spatial else "exact colour partners"
    print(f"lossless layer {totals[0] / totals[2]:.3f} bpp; with {what} -{saving:.2f} %")
    return {
        "lossless_layer_bpp": totals[0] / totals[2],
        "saving_percent": saving,
        "saving_bpp": totals[1] / totals[2],
        "images": rows,
    }


# ----------------------------------------------------------------------------- display classes


def _window_columns(image: np.ndarray, radius: int) -> list[np.ndarray]:
    """Every channel of `image` (C, H, W) over a (2r+1)^2 window, edge-padded, one flat column each."""
    k = 2 * radius + 1
    h, w = image.shape[1:]
    padded = np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    return [
        padded[c, dy : dy + h, dx : dx + w].reshape(-1)
        for c in range(len(image))
        for dy in range(k)
        for dx in range(k)
    ]


def _class_fit(cols: list[np.ndarray], want: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """Per class and output colour, the least-squares map from `cols` (+ a bias) to `want` (3, N);
    its output (3, N). A class with fewer than 4 samples per tap keeps a zero correction."""
    design = np.stack(cols + [np.ones_like(cols[0])], axis=1)
    out = np.zeros_like(want)
    for c in np.unique(cls):
        sel = cls == c
        if sel.sum() < 4 * design.shape[1]:
            continue
        d = design[sel]
        g = d.T @ d
        g += np.eye(len(g)) * (1e-9 * np.trace(g) / len(g))
        for colour in range(3):
            out[colour, sel] = d @ np.linalg.solve(g, d.T @ want[colour, sel])
    return out


def _quantile_classes(v: np.ndarray, n: int) -> np.ndarray:
    return np.searchsorted(np.quantile(v, np.linspace(0, 1, n + 1)[1:-1]), v)


def display_classes(codec: Codec, images: list[np.ndarray]) -> dict:
    """After Haar steps 4..T-1: PSNR gain over the network's image of the filter the encoder sends,
    of one unquantised radius-2 / radius-3 filter fitted on the whole image, of radius-2 filters
    fitted per class of pixels (K quantiles of the image's local gradient activity; of the network's
    own pixel-scale prediction; activity x dominant direction, as VVC's adaptive loop filter
    classifies), and of a radius-2 filter that also sees the state's pixels (inverse Haar of z)."""
    out: dict = {}
    for seed, px in enumerate(images):
        h, w = px.shape[:2]
        run = ChainRun(codec, px, seed)
        target = run.x[:, :h, :w]

        def gain(img, corr, base, px=px, h=h, w=w):
            shown = np.clip(img + corr.reshape(3, h, w), -1.0, 1.0)
            return psnr(px, entropy.data_to_pixels(shown).transpose(1, 2, 0)) - base

        for i in range(1, codec.num_steps):
            p, k = run.code_all(i, run.prior(i), run.values(i))
            run.finish(i, float(entropy.step_element_bits(k, p).sum()))
            if i < 4:
                continue
            pred = run.pred
            sent, pred.filter = pred.filter, None
            img = pred.display_crop(h, w)
            pred.filter = sent
            base = psnr(px, entropy.data_to_pixels(img).transpose(1, 2, 0))
            want = (target - img).reshape(3, -1)
            r2 = _window_columns(img, 2)
            one = np.zeros(h * w, int)
            luma = img.mean(axis=0)
            gy, gx = np.gradient(luma)
            act = (np.abs(gx) + np.abs(gy)).reshape(-1)
            act = sum(c for c in _window_columns(act.reshape(1, h, w), 1)) / 9.0
            unc = np.log(pred.pixel_scale_crop(h, w).mean(axis=0)).reshape(-1)  # the network's own doubt
            direction = (np.abs(gx) > np.abs(gy)).reshape(-1).astype(int)
            state = haar.inverse([b.copy() for b in run.chain.z])[:, :h, :w]
            row = {
                "network_psnr": base,
                "sent": psnr(px, pred.image(h, w)) - base,
                "radius 2": gain(img, _class_fit(r2, want, one), base),
                "radius 3": gain(img, _class_fit(_window_columns(img, 3), want, one), base),
                "radius 2 + state r1": gain(img, _class_fit(r2 + _window_columns(state, 1), want, one), base),
            }
            for n in (2, 4, 8):
                row[f"activity {n}"] = gain(img, _class_fit(r2, want, _quantile_classes(act, n)), base)
            for n in (2, 4):
                row[f"scale {n}"] = gain(img, _class_fit(r2, want, _quantile_classes(unc, n)), base)
            row["activity 2 x direction 2"] = gain(
                img, _class_fit(r2, want, 2 * _quantile_classes(act, 2) + direction), base
            )
            out.setdefault(str(i), []).append(row)
        print(f"image {seed} done", flush=True)
    mean = {i: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} for i, rows in out.items()}
    for i, row in mean.items():
        print(f"after step {i}: " + ", ".join(f"{k} {v:+.3f}" for k, v in row.items()))
    return {"mean_gain_db": mean, "images": out}


# ----------------------------------------------------------------------------- head refit


class _HeadInputs:
    """Keeps the input (the activation) of each detail head of the exact network's last pass."""

    def __init__(self):
        self.inputs: dict[str, np.ndarray] = {}
        self._conv = exactnet.ExactOps.conv

    def __enter__(self):
        keep, conv = self.inputs, self._conv

        def hooked(ops, name, a, out, stride=1, film=None):
            if name.startswith("head.detail"):
                keep[name] = a[0].float().numpy().copy()
            return conv(ops, name, a, out, stride, film)

        exactnet.ExactOps.conv = hooked
        return self

    def __exit__(self, *exc):
        exactnet.ExactOps.conv = self._conv


def _band_bits(run: ChainRun, i: int, mask: int) -> np.ndarray:
    """Ideal bits of step i's elements (colour context fitted as the encoder fits it) with the band
    locations `mask` takes from the shown image; sets up the chain's coded elements for step i."""
    prior = run.chain.prior(i, run.pred, mask)
    xs = run.values(i)
    _, coded = run.chain.coding_prior(prior, xs)
    p = coded.part(slice(None))
    return entropy.step_element_bits(entropy.quantise(xs, p), p)


def head_refit(codec: Codec, images: list[np.ndarray]) -> dict:
    """Before Haar steps 4..T-1: bits of the D_1 and D_2 elements with the network's locations,
    with the locations the encoder uses (the shown image's where its band mask says so), and with
    the network's locations corrected per image by c_out times a least-squares linear map (per
    output channel, weights (c_out / scale)^2) from the features the band's head reads, 1x1 or 3x3:
    an instance-adaptive head whose weights are not counted."""
    levels = codec.net.levels
    heads = {levels: f"head.detail.{levels - 2}", levels - 1: f"head.detail.{levels - 3}"}
    totals: dict = {}
    for seed, px in enumerate(images):
        run = ChainRun(codec, px, seed)
        chain = run.chain
        with _HeadInputs() as hooked:
            for i in range(1, codec.num_steps - 1):
                p, k = run.code_all(i, run.prior(i), run.values(i))
                run.finish(i, float(entropy.step_element_bits(k, p).sum()))
                if i + 1 < 4:
                    continue
                row = totals.setdefault(str(i + 1), {})
                sent = _band_bits(run, i + 1, run.from_display)
                network = _band_bits(run, i + 1, 0)  # the coded elements are the same either way
                row["step"] = row.get("step", 0.0) + float(sent.sum())
                for band, head in heads.items():
                    feats = hooked.inputs[head]
                    on = chain.coded_band == band
                    figures = {"network": network[on].sum(), "sent": sent[on].sum()}
                    flat = chain.coded_flat[on]
                    loc0 = run.pred.locs[band].copy()
                    cout = codec.net.cout[band][run.pred._states[band]].reshape(-1)
                    scale = run.pred.scales[band].reshape(-1)
                    truth = run.x_bands[band].reshape(-1)
                    hw = feats.shape[1] * feats.shape[2]
                    for radius in (0, 1):
                        cols = np.stack(_window_columns(feats, radius) + [np.ones(hw)])
                        corr = np.zeros(loc0.size)
                        for o in range(loc0.size // hw):
                            f = flat[flat // hw == o]
                            if f.size < 4 * len(cols):
                                continue
                            a = cols[:, f % hw].T
                            wts = (cout[f] / scale[f]) ** 2
                            g = (a * wts[:, None]).T @ a
                            g += np.eye(len(g)) * (1e-6 * np.trace(g) / len(g))
                            beta = np.linalg.solve(
                                g, (a * wts[:, None]).T @ ((truth[f] - loc0.reshape(-1)[f]) / cout[f])
                            )
                            idx = o * hw + np.arange(hw)
                            corr[idx] = cout[idx] * (cols.T @ beta)
                        run.pred.locs[band] = loc0 + corr.reshape(loc0.shape)
                        figures[f"refit {2 * radius + 1}x{2 * radius + 1}"] = _band_bits(run, i + 1, 0)[
                            on
                        ].sum()
                        run.pred.locs[band] = loc0
                    for key, v in figures.items():
                        name = f"D_{levels + 1 - band} {key}"
                        row[name] = row.get(name, 0.0) + float(v)
        print(f"image {seed} done", flush=True)
    for i, row in totals.items():
        print(
            f"step {i}: "
            + ", ".join(f"{k} {100 * v / row['step']:.2f} %" for k, v in row.items() if k != "step")
        )
    return {"bits_by_step": totals}


# ----------------------------------------------------------------------------- intervals


class _Known:
    """Each Haar coefficient's known interval, the intersection of the bins [x~ - q/2, x~ + q/2] of
    every step that coded it (what uqdm 0.13 builds in, FORMAT.md 5.5; here in float64, without
    its margin), kept beside a chain that runs without them (the codec's `intervals` off)."""

    def __init__(self, chain):
        self.lo = [np.full(b.size, -haar.band_bound(j, chain.levels)) for j, b in enumerate(chain.z)]
        self.hi = [-a for a in self.lo]

    def of(self, chain) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lower, upper, re-coded?) of the step's coded elements, in natural order."""
        bands, flat = chain.coded_band, chain.coded_flat
        lo, hi, again = np.empty(flat.size), np.empty(flat.size), np.zeros(flat.size, bool)
        for b in range(len(self.lo)):
            sel = bands == b
            lo[sel], hi[sel] = self.lo[b][flat[sel]], self.hi[b][flat[sel]]
            again[sel] = chain.state[b].reshape(-1)[flat[sel]] > 0
        return lo, hi, again

    def narrow(self, chain, x_tilde: np.ndarray, q: np.ndarray) -> None:
        """After the step's elements are coded (call before chain.apply)."""
        bands, flat = chain.coded_band, chain.coded_flat
        for b in range(len(self.lo)):
            sel, f = bands == b, flat[bands == b]
            self.lo[b][f] = np.maximum(self.lo[b][f], x_tilde[sel] - 0.5 * q[sel])
            self.hi[b][f] = np.minimum(self.hi[b][f], x_tilde[sel] + 0.5 * q[sel])

    def move_locations(self, run: ChainRun, how: str) -> None:
        """The network's locations after a step: "clip" into the intervals (what the codec does), or
        "mean": the mean of its logistic (next step's scale) restricted to the interval."""
        new = []
        for b, a in enumerate(run.pred.locs):
            loc, lo, hi = a.reshape(-1), self.lo[b], self.hi[b]
            if how == "mean":
                sp = entropy.StepPrior(
                    loc, run.pred.band_scale(b), np.zeros(loc.size), hi - lo, np.full(loc.size, 1e9)
                )
                mean = np.clip(entropy.step_posterior_mean(0.5 * (lo + hi), sp), lo, hi)
                loc = np.where(run.chain.state[b].reshape(-1) > 0, mean, loc)
            new.append(np.clip(loc, lo, hi).reshape(a.shape))
        run.pred.locs = new


def _interval_bits(k: np.ndarray, p: entropy.StepPrior, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """-log2 P(k) under the prior truncated to [lo, hi] (inside [-B, B]) instead of [-B, B]."""
    xt = p.loc + (k - p.dither) * p.quant_step
    a = np.maximum(xt - 0.5 * p.quant_step, lo)
    b = np.minimum(xt + 0.5 * p.quant_step, hi)
    cdf = lambda v: entropy._sigmoid((v - p.loc) / p.scale)  # noqa: E731
    mass = np.maximum(cdf(b) - cdf(a), 0.0) / (cdf(hi) - cdf(lo))
    return -np.log2(np.maximum(mass, 1e-300))


def interval_curve(codec: Codec, px: np.ndarray, seed: int, truncate: bool, locations: str) -> list:
    """chain_curve (of a chain without the codec's intervals) with the known intervals used to
    truncate the priors (`truncate`) and to move the network's locations after every step
    (`locations`: "network" leaves them, "clip" or "mean" as _Known.move_locations; this changes
    the chain: the display, the filters and the next locations). Also returns per step the bits of
    the re-coded elements and their share."""
    h, w = px.shape[:2]
    run = ChainRun(codec, px, seed)
    known = _Known(run.chain)
    cum, curve, T, recoded = 0.0, [], codec.num_steps, []
    for i in range(1, T):  # the Haar steps
        prior = run.prior(i)  # sets the step's coded elements, which values() reads
        xs = run.values(i)
        p = run.chain.coding_prior(prior, xs)[1].part(slice(None))
        k = entropy.quantise(xs, p)
        xt = entropy.reconstruct(k, p)
        lo, hi, again = known.of(run.chain)
        bits = _interval_bits(k, p, lo, hi) if truncate else entropy.step_element_bits(k, p)
        recoded.append((float(bits[again].sum()) / (h * w), float(again.mean()) if k.size else 0.0))
        known.narrow(run.chain, xt, p.quant_step)
        run.chain.apply(i, xt, np.arange(k.size))
        cum += float(bits.sum())
        run.predict(i)
        if locations != "network":
            known.move_locations(run, locations)
        run.choose_filter(i, float(bits.sum()))
        curve.append((cum / (h * w), psnr(px, run.pred.image(h, w))))
    p, k = run.code_all(T, run.prior(T), run.values(T))  # the pixel step, as the encoder codes it
    cum += entropy.step_ideal_bits(k, p)
    q = codec.model.schedule.pixel_quant
    levels = run.original.ravel().astype(np.int64)
    cum += entropy.levels_ideal_bits(levels, run.chain.pixel_tilde, p.loc, p.scale, q)
    return curve + [(cum / (h * w), float("inf"))], recoded


def intervals(codec: Codec, images: list[np.ndarray]) -> dict:
    """uqdm 0.12's chain against the known intervals: truncating the priors alone (the chain and its
    symbols unchanged, only the bits move), with the network's locations clipped into the
    intervals as well (what uqdm 0.13 does), and with them moved to the interval's posterior mean."""
    was, codec.intervals = codec.intervals, False  # the probe keeps the intervals itself
    try:
        variants = {
            "truncate": (True, "network"),
            "truncate+clip": (True, "clip"),
            "truncate+mean": (True, "mean"),
        }
        base = [interval_curve(codec, px, seed, False, "network") for seed, px in enumerate(images)]
        out: dict = {"per_step_base": np.mean([r for _, r in base], axis=0).tolist()}  # (step, [bpp, share])
        for name, (truncate, locations) in variants.items():
            tests = [interval_curve(codec, px, seed, truncate, locations) for seed, px in enumerate(images)]
            out[name] = versus(((a, t) for (a, _), (t, _) in zip(base, tests)), f"{name}, ")
            for row, (_, rec) in zip(out[name]["images"], tests):
                row["recoded"] = rec
            rec = np.mean([r for _, r in tests], axis=0)  # (step, [bpp, share])
            out[name]["recoded"] = rec.tolist()
            print(
                f"{name}: re-coded elements' bpp per step "
                + ", ".join(f"{b:.4f} ({100 * sh:.0f} %)" for b, sh in rec)
            )
        print(
            "re-coded elements' bpp per step without intervals: "
            + ", ".join(f"{b:.4f} ({100 * sh:.0f} %)" for b, sh in out["per_step_base"])
        )
        return out
    finally:
        codec.intervals = was


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "probe",
        choices=(
            "shape",
            "flips",
            "skip",
            "partial",
            "checker",
            "lossless_colour",
            "display_classes",
            "head_refit",
            "intervals",
        ),
    )
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--flips",
        default="h",
        help="flips: the mirrors averaged with the state as is: h, v, hv (= h and v), or a comma list "
        "of mirrors, e.g. v,h,hv (hv = both axes at once)",
    )
    ap.add_argument("--spatial", action="store_true", help="lossless_colour: checkerboard halves")
    ap.add_argument("--factor", type=float, default=1.0, help="skip: times the coding threshold")
    args = ap.parse_args()
    codec = get_codec()
    images = load_crops(args.images, args.crop)
    if args.probe == "flips":
        mirrors = args.flips.split(",") if "," in args.flips else list(args.flips)
        result = compare(codec, images, after_predict=flips(tuple(mirrors)))
    elif args.probe == "skip":
        result = compare(codec, images, keep=skip(args.factor))
    elif args.probe == "lossless_colour":
        result = lossless_colour(codec, images, spatial=args.spatial)
    else:
        probes = {
            "shape": shape,
            "partial": partial,
            "checker": checker,
            "display_classes": display_classes,
            "head_refit": head_refit,
            "intervals": intervals,
        }
        result = probes[args.probe](codec, images)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
