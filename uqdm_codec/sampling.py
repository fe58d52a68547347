"""Generative reconstruction: the paper's ancestral decoding of the steps a file does not hold.

The image a decoder shows after N < T steps is the denoiser's posterior mean, which is blurry at
low rates: every detail the file has not pinned down yet is averaged away. UQDM is a generative
model, so the decoder can instead draw the remaining reverse steps from the model's prior
p(z_s | z_t) = logistic * U(-delta/2, delta/2) and show where that chain ends: a sharp, plausible
image consistent with everything received, at no extra bits (Yang, Will & Mandt, ICLR 2025).

In the chain's x-units (FORMAT.md 5.2-5.4) a coded element moves z <- coef_z z + coef_x x~, and the
prior of x~ is the element's truncated logistic(m, s) convolved with U(-q/2, q/2), q = delta /
coef_x. Drawing from it is therefore: x from the logistic truncated to [-B, B] (inverse CDF), then
x~ = x + q (v - 1/2), exactly what the encoder's dithered quantiser produces from a true x. Steps
run with the same coded-element rule as coding (chain.prior), so the network sees the state maps
it was trained on. The chain ends at the display image of the last Haar state. The pixel step is
not sampled: its prior is independent per-pixel noise, and drawing it (SAMPLE_PIXELS) measured on
six Kodak images cost 0.03-0.95 dB at steps 1-6 and pushed the finest band's energy above the
original's (1.11-1.13 x at steps 5-6, against 1.03-1.05 without): grain, not texture. Scaling the
prior scales down (a temperature) was measured too and not kept: at 0.8 the samples lose most of
their detail (the network grows confident and stops coding the fine bands) while staying 0.8-2.4
dB below the mean. See scripts/sampling_report.py and the README.

The randomness comes from PCG64 seeded by (file seed, user seed, step) (randomness.py), drawn for
every element of a step whether or not it arrived, so one seed gives one image on every run, and
an element's draws do not depend on how much of its step arrived. The network is the exact one
and the draws use portable functions, so a sample is the same on every machine too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from . import entropy, portable, randomness
from .errors import UqdmError

if TYPE_CHECKING:  # inference imports torch; checking a --recon value should not
    from .inference import Prediction

RECONS = ("mean", "sample")
SAMPLE_PIXELS = False  # whether the pixel step is sampled too (measured: worse; see the module doc)


class Chain(Protocol):
    """What sampling needs of codec._Chain (a fork of it: sampling moves its state)."""

    seed: int
    h: int
    w: int
    received: np.ndarray

    def prior(self, i: int, pred: Prediction | None) -> entropy.StepPrior: ...

    def apply(self, i: int, x_tilde: np.ndarray, which: np.ndarray) -> None: ...

    def predict(self, step: int) -> Prediction: ...


def check_recon(recon: str) -> str:
    """The reconstruction name, or a one-line error naming the choices."""
    if recon not in RECONS:
        raise UqdmError(f"unknown reconstruction {recon!r} (use {' or '.join(RECONS)})")
    return recon


def check_seed(seed: int | None) -> int:
    """A sampling seed: a non-negative integer below 2^64 (None: 0, so decoding is repeatable)."""
    return 0 if seed is None else randomness.check_seed(seed, "sampling seed")


def draw_x(prior: entropy.StepPrior, v: np.ndarray) -> np.ndarray:
    """x ~ logistic(loc, scale) truncated to [lower, upper] (the band's bound, or the interval the
    value is known to lie in), by inverse CDF of v ~ U[0, 1). Both tails are computed directly
    (p and 1 - p), so a location near a bound loses no precision. Portable functions only
    (FORMAT.md 8.1): one (file, seed) gives the same sample on every machine."""
    s = prior.scale
    lower = portable.sigmoid((prior.lower - prior.loc) / s)  # F(lower)
    upper_tail = portable.sigmoid((prior.loc - prior.upper) / s)  # 1 - F(upper)
    mass = np.maximum(1.0 - lower - upper_tail, 0.0)
    p, p_bar = lower + v * mass, upper_tail + (1.0 - v) * mass
    with np.errstate(divide="ignore", invalid="ignore"):
        x = prior.loc + s * (portable.log(p) - portable.log(p_bar))
    return np.clip(x, prior.lower, prior.upper)


def draw_x_tilde(prior: entropy.StepPrior, u: np.ndarray) -> np.ndarray:
    """x~ ~ truncated logistic * U(-q/2, q/2): what the step would have received for a true x drawn
    from the prior (u: the (2, n) uniforms of randomness.sampling_uniforms)."""
    return draw_x(prior, u[0]) + prior.quant_step * (u[1] - 0.5)


def ancestral(
    chain: Chain,
    first: int,
    haar_steps: int,
    pred: Prediction | None,
    prior: entropy.StepPrior | None,
    seed: int,
    pixels: bool | None = None,
) -> np.ndarray:
    """Run the reverse chain from `first` (the first Haar step not complete) to the last Haar step
    with drawn values, and return the image it ends at, (3, >=H, >=W) data units.

    `pred` is the prediction from state first-1 (None before step 1). If step `first` arrived in
    part, `prior` is its prior and chain.received marks what arrived: the rest is drawn. `chain`
    must be a fork; it is consumed. `pixels`: also draw the pixel step (default SAMPLE_PIXELS)."""
    for i in range(first, haar_steps + 1):
        if prior is None:
            prior = chain.prior(i, pred)
        missing = np.flatnonzero(~chain.received)
        u = randomness.sampling_uniforms(chain.seed, seed, i, len(prior))
        chain.apply(i, draw_x_tilde(prior.part(missing), u[:, missing]), missing)
        pred, prior = chain.predict(i), None
    if pred is None:  # nothing to sample: the caller's mean is the answer
        raise ValueError("ancestral() needs a step to sample or a prediction to show")
    if not (SAMPLE_PIXELS if pixels is None else pixels):
        return pred.display
    prior = chain.prior(haar_steps + 1, pred)  # the pixel step: every real pixel, natural order
    u = randomness.sampling_uniforms(chain.seed, seed, haar_steps + 1, len(prior))
    return draw_x(prior, u[0]).reshape(3, chain.h, chain.w)
