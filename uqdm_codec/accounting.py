"""Where the bits go: per diffusion step and Haar band, the bits spent and the error they remove.

The chain is driven the way `codec.ideal_bits` drives it (same seed, same priors, every layer
whole): each step's prior, its symbols k, x_tilde, and the network's next prediction. Per layer
the real entropy-coded size is measured (the layer coded as one ANS stream, as in a file without
sub-step chunks, framing excluded); per band only the ideal code length sum(-log2 P(k)) exists,
because a layer is one stream over all bands (the two agree within 0.2 % from layer 3 on).

Error is measured against the original image's own Haar coefficients, in 8-bit levels squared,
as each band's share of the image MSE (the transform is orthonormal, so the shares add up to the
MSE of inverse-Haar of the estimates). A band's estimate before step i is the prior location
that step i codes against (the network's prediction from state i-1), after it the prediction
from state i; for the pixel step the estimate after is the per-pixel posterior mean the decoder
shows. "MSE removed" thus includes what the network infers for coefficients the step did not code.

Two oracles, each on the same symbols:
- scale: the bits if every scale of the (step, band) were multiplied by the one factor c that
  minimises the total over the images measured (a grid of factors). It is what recalibrating the
  scales per band would save, an in-sample bound: c far from 1 means miscalibrated scales.
- exact location: the bits with the prior centred on the true value, scale unchanged. What is
  left is the price of coding at that scale with a dither (the bin edge lands near the value);
  the gap to the real bits is what better locations could save at the same scales.
Besides: the share of each step's coded coefficients that an earlier step coded already, and what
the pixels would cost coded at once from the pixel step's prior (direct_level_bits), against the
pixel step and the lossless layer that split them.

The chain runs as `codec.ChainRun` drives it (the encoder's priors and display filters), and only
`_Chain`'s coding_prior / apply / posterior are called besides; which band each coded element
belongs to, and the state it leaves, are read from its coded_band, coded_flat and state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import entropy, haar, lossless_context
from .codec import ChainRun, Codec, _validate_pixels

LEVEL = 128.0  # data units -> 8-bit levels (entropy.pixels_to_data: one level is 2/256)
SCALE_FACTORS = tuple(float(2.0 ** (j / 6.0)) for j in range(-9, 10))  # 0.35 .. 2.83


def band_names(levels: int) -> list[str]:
    """Names of the bands in haar.forward order: LL_L, D_L, ..., D_1."""
    return [f"LL_{levels}", *[f"D_{lv}" for lv in range(levels, 0, -1)]]


@dataclass
class BandAccount:
    """One band in one step (band "pixel" for the pixel step, "lossless" for the last layer)."""

    step: int
    band: str
    coefficients: int  # in the band (padded image for Haar bands)
    coded: int
    recoded: int  # coded elements that an earlier step coded already (a refinement, not a first look)
    bits: float  # ideal: sum of -log2 P(k)
    bits_by_factor: list[float]  # the same with every scale times SCALE_FACTORS[j]
    bits_exact_loc: float | None  # prior location = true value, same scale (None: lossless layer)
    sse_before: float  # squared error of the estimate, 8-bit levels^2, summed
    sse_after: float
    values: int  # what the SSE is a share of: 3 x pixels of the (padded) image

    @property
    def mse_before(self) -> float:
        return self.sse_before / self.values

    @property
    def mse_after(self) -> float:
        return self.sse_after / self.values

    def best_factor(self) -> tuple[float, float]:
        """(c, bits at c) of the scale oracle."""
        j = int(np.argmin(self.bits_by_factor))
        return SCALE_FACTORS[j], self.bits_by_factor[j]


@dataclass
class LayerAccount:
    step: int  # 1..T, T + 1 = the lossless layer
    noise: float | None  # noise level after the step, 8-bit units (None: pixel step, lossless)
    real_bytes: int  # the layer as one ANS stream
    ideal_bits: float
    sse_shown: float  # squared error of the image shown after the layer (8-bit, rounded), summed


@dataclass
class Account:
    images: int
    pixels: int  # real pixels, summed over images
    sse_blank: float  # squared error of the image shown before any step
    direct_pixel_bits: float = 0.0  # the pixels coded at once from the pixel step's prior (see below)
    layers: list[LayerAccount] = field(default_factory=list)
    bands: list[BandAccount] = field(default_factory=list)


def _sse(a: np.ndarray, b: np.ndarray) -> float:
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) * LEVEL
    return float(np.vdot(d, d))


def _image_sse(shown_data: np.ndarray, pixels: np.ndarray, h: int, w: int) -> float:
    shown = entropy.data_to_pixels(shown_data[:, :h, :w]).astype(np.int64)
    d = shown - pixels.transpose(2, 0, 1).astype(np.int64)
    return float(np.sum(d * d))


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def direct_level_bits(levels: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """-log2 P(level) under the logistic(loc, scale) truncated to the data range: the cost of
    coding the pixels at once from the pixel step's prior, instead of a dithered step of 3 levels
    followed by the lossless layer (which gives up the 50 dB image between the two)."""
    lo = (entropy.pixels_to_data(levels) - 1.0 / 256.0 - loc) / scale
    hi = lo + (2.0 / 256.0) / scale
    # upper tail computed as such, where a difference of two sigmoids near 1 would cancel
    mass = np.where(lo > 0, _sigmoid(-lo) - _sigmoid(-hi), _sigmoid(hi) - _sigmoid(lo))
    norm = _sigmoid((1.0 - loc) / scale) - _sigmoid((-1.0 - loc) / scale)
    return -np.log2(np.maximum(mass / norm, 1e-300))


def _oracles(k: np.ndarray, prior: entropy.StepPrior, x: np.ndarray) -> tuple[list[float], float]:
    """(bits per scale factor, bits with the exact location) of a step's elements."""
    by_factor = [
        float(entropy.step_element_bits(k, replace(prior, scale=prior.scale * f)).sum())
        for f in SCALE_FACTORS
    ]
    exact = replace(prior, loc=x)
    return by_factor, float(entropy.step_element_bits(entropy.quantise(x, exact), exact).sum())


def account_image(codec: Codec, pixels: np.ndarray, seed: int = 0) -> Account:
    """The bits and the error of every (step, band) for one image (see the module doc)."""
    run = ChainRun(codec, pixels, seed)  # the chain as the encoder drives it, display filters included
    chain, x_bands = run.chain, run.x_bands
    pixels = _validate_pixels(pixels)
    h, w = pixels.shape[:2]
    T = codec.num_steps
    sched = codec.model.schedule
    names = band_names(chain.levels)
    bounds = [haar.band_bound(b, chain.levels) for b in range(len(x_bands))]
    padded_values = 3 * chain.hp * chain.wp

    def estimates(locs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.clip(loc, -bd, bd) for loc, bd in zip(locs, bounds)]

    before = estimates(codec.net.first_prior([b.shape for b in x_bands])[0])
    blank = np.clip(haar.inverse(before), -1.0, 1.0)
    acc = Account(1, h * w, _image_sse(blank, pixels, h, w))
    prior = None
    for i in range(1, T + 1):
        prior = run.prior(i)
        xs = run.values(i)
        _, prior = chain.coding_prior(prior, xs)  # as coded: colour context included
        if not sched.is_pixel_step(i):  # the state before the step, per coded element
            states = [
                chain.state[b].ravel()[chain.coded_flat[chain.coded_band == b]] for b in range(len(names))
            ]
            recoded = np.concatenate(states) > 0
        k = entropy.quantise(xs, prior)
        bits = entropy.step_element_bits(k, prior)
        real = len(entropy.encode_step(k, prior))
        xt = entropy.reconstruct(k, prior)
        shown = chain.posterior(i, xt, prior)
        chain.apply(i, xt, np.arange(k.size), shown)
        if sched.is_pixel_step(i):
            by_factor, exact = _oracles(k, prior, xs)
            x_real = xs  # the real pixels
            acc.bands.append(
                BandAccount(
                    i,
                    "pixel",
                    coefficients=k.size,
                    coded=k.size,
                    recoded=0,
                    bits=float(bits.sum()),
                    bits_by_factor=by_factor,
                    bits_exact_loc=exact,
                    sse_before=_sse(prior.loc, x_real),
                    sse_after=_sse(shown, x_real),
                    values=k.size,
                )
            )
            sse_shown = _image_sse(shown.reshape(3, h, w), pixels, h, w)
            acc.layers.append(LayerAccount(i, None, real, float(bits.sum()), sse_shown))
            continue
        band_of = chain.coded_band  # the band of each coded element (chain.prior sets a new array)
        # the display filter and the next step's prior locations the encoder would choose: the
        # estimates after the step are the locations the next step codes against
        run.finish(i, 8.0 * real)
        pred, from_display = run.pred, run.from_display
        shown_bands = pred.display_bands(h, w) if from_display else []
        after = estimates([shown_bands[b] if from_display >> b & 1 else a for b, a in enumerate(pred.locs)])
        for b, name in enumerate(names):
            sel = np.flatnonzero(band_of == b)
            by_factor, exact = _oracles(k[sel], prior.part(sel), xs[sel])
            acc.bands.append(
                BandAccount(
                    i,
                    name,
                    coefficients=x_bands[b].size,
                    coded=sel.size,
                    recoded=int(np.count_nonzero(recoded[sel])),
                    bits=float(bits[sel].sum()),
                    bits_by_factor=by_factor,
                    bits_exact_loc=exact,
                    sse_before=_sse(before[b], x_bands[b]),
                    sse_after=_sse(after[b], x_bands[b]),
                    values=padded_values,
                )
            )
        before = after
        noise = sched.levels[i - 1]
        sse_shown = _image_sse(pred.display_crop(h, w), pixels, h, w)
        acc.layers.append(LayerAccount(i, noise, real, float(bits.sum()), sse_shown))

    levels = pixels.transpose(2, 0, 1).ravel().astype(np.int64)
    q = sched.pixel_quant
    xt, loc, scale = chain.pixel_tilde, prior.loc, prior.scale
    ctx, coded_loc, coded_scale = lossless_context.encoder_prior(  # as the codec codes
        levels, xt, loc, scale, q, h, w, codec.lossless_context
    )
    bits = entropy.levels_element_bits(levels, xt, coded_loc, coded_scale, q)
    real = len(entropy.encode_levels(levels, xt, coded_loc, coded_scale, q)) + len(
        lossless_context.to_bytes(ctx)
    )
    by_factor = [
        float(entropy.levels_element_bits(levels, xt, loc, scale * f, q).sum()) for f in SCALE_FACTORS
    ]
    shown_before = shown  # the pixel step's posterior means: every pixel arrived
    acc.direct_pixel_bits = float(direct_level_bits(levels, loc, scale).sum())
    acc.bands.append(
        BandAccount(
            T + 1,
            "lossless",
            coefficients=levels.size,
            coded=levels.size,
            recoded=levels.size,
            bits=float(bits.sum()),
            bits_by_factor=by_factor,
            bits_exact_loc=None,
            sse_before=_sse(shown_before, x_real),
            sse_after=0.0,
            values=levels.size,
        )
    )
    acc.layers.append(LayerAccount(T + 1, None, real, float(bits.sum()), 0.0))
    return acc


def combine(accounts: list[Account]) -> Account:
    """Sums over images: bpp and MSE of the result are pixel-weighted means."""
    first = accounts[0]
    out = Account(
        sum(a.images for a in accounts),
        sum(a.pixels for a in accounts),
        sum(a.sse_blank for a in accounts),
        sum(a.direct_pixel_bits for a in accounts),
    )
    for k, layer in enumerate(first.layers):
        rows = [a.layers[k] for a in accounts]
        out.layers.append(
            LayerAccount(
                layer.step,
                layer.noise,
                sum(r.real_bytes for r in rows),
                sum(r.ideal_bits for r in rows),
                sum(r.sse_shown for r in rows),
            )
        )
    for k, band in enumerate(first.bands):
        rows = [a.bands[k] for a in accounts]
        exact = [r.bits_exact_loc for r in rows]
        out.bands.append(
            BandAccount(
                band.step,
                band.band,
                sum(r.coefficients for r in rows),
                sum(r.coded for r in rows),
                sum(r.recoded for r in rows),
                sum(r.bits for r in rows),
                [float(v) for v in np.sum([r.bits_by_factor for r in rows], axis=0)],
                None if None in exact else float(sum(exact)),
                sum(r.sse_before for r in rows),
                sum(r.sse_after for r in rows),
                sum(r.values for r in rows),
            )
        )
    return out


def account(codec: Codec, images: list[np.ndarray], seeds: list[int] | None = None) -> Account:
    seeds = list(range(len(images))) if seeds is None else seeds
    return combine([account_image(codec, img, seed=s) for img, s in zip(images, seeds)])


def _psnr(sse: float, values: int) -> str:
    return "exact" if sse == 0 else f"{10.0 * np.log10(255.0**2 * values / sse):.2f}"


def to_markdown(acc: Account, num_steps: int) -> str:
    """Two tables: per layer (real and ideal bits, the image shown), per step and band."""
    npx = acc.pixels
    values = 3 * npx
    lines = [
        "| layer | noise after | bpp (coded bytes) | bpp (ideal) | cumulative bpp | PSNR shown (dB) |",
        "|---|---|---|---|---|---|",
        f"| before step 1 | | | | 0 | {_psnr(acc.sse_blank, values)} |",
    ]
    cum = 0.0
    for layer in acc.layers:
        cum += 8.0 * layer.real_bytes / npx
        label = (
            "lossless" if layer.step > num_steps else "pixel" if layer.step == num_steps else str(layer.step)
        )
        noise = "" if layer.noise is None else f"{layer.noise:g}"
        lines.append(
            f"| {label} | {noise} | {8.0 * layer.real_bytes / npx:.4f} | {layer.ideal_bits / npx:.4f} | "
            f"{cum:.4f} | {_psnr(layer.sse_shown, values)} |"
        )
    last_two = sum(layer.ideal_bits for layer in acc.layers[-2:]) / npx
    lines += [
        "",
        f"Pixel step and lossless layer together: {last_two:.4f} bpp (ideal); the same pixels coded at "
        f"once from the pixel step's prior (discretised logistic, same location and scale): "
        f"{acc.direct_pixel_bits / npx:.4f} bpp.",
        "",
        "| step | band | coded % | re-coded % | bpp | % of step | bits / coded | MSE before | MSE after "
        "| MSE removed | removed per bpp | bpp, best scale x c | c | bpp, exact loc |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    step_bits = {layer.step: layer.ideal_bits for layer in acc.layers}
    for band in acc.bands:
        step = "lossless" if band.step > num_steps else "pixel" if band.step == num_steps else str(band.step)
        bpp = band.bits / npx
        removed = band.mse_before - band.mse_after
        c, best = band.best_factor()
        coded = band.coded > 0
        exact = "" if band.bits_exact_loc is None or not coded else f"{band.bits_exact_loc / npx:.4f}"
        lines.append(
            "| "
            + " | ".join(
                [
                    step,
                    band.band,
                    f"{100.0 * band.coded / band.coefficients:.1f}",
                    f"{100.0 * band.recoded / band.coded:.0f}" if coded and band.step < num_steps else "",
                    f"{bpp:.4f}" if coded else "",
                    f"{100.0 * band.bits / step_bits[band.step]:.0f}" if coded else "",
                    f"{band.bits / band.coded:.3f}" if coded else "",
                    f"{band.mse_before:.4g}",
                    f"{band.mse_after:.4g}",
                    f"{removed:.4g}",
                    f"{removed / bpp:.4g}" if coded and bpp > 0 else "",
                    f"{best / npx:.4f}" if coded else "",
                    f"{c:.2f}" if coded else "",
                    exact,
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def to_dict(acc: Account) -> dict:
    return {
        "images": acc.images,
        "pixels": acc.pixels,
        "sse_blank": acc.sse_blank,
        "direct_pixel_bits": acc.direct_pixel_bits,
        "scale_factors": list(SCALE_FACTORS),
        "layers": [layer.__dict__ for layer in acc.layers],
        "bands": [band.__dict__ for band in acc.bands],
    }
