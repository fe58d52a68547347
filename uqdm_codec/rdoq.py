"""Rate-distortion optimised quantisation (RDOQ) of a Haar step's symbols, an encoder's choice.

The universal quantiser sends k = rint((x - m) / q + u); an encoder may instead send the symbol one
bin nearer the prior's mode where the bits it saves are worth more than the error it adds,
J = ((x~ - x) / q)^2 + lambda * bits. The decoder is unchanged (it reconstructs x~ = m + (k - u) q
whatever k was chosen), but x then lies outside its bin, so files that use it must not claim the
known intervals (FORMAT.md 5.5): only `Codec(intervals=False)` may use it. Measured and not kept
(docs/MODEL.md 53: about 1 % saved below 30 dB, 1-5 % lost above), so it is a measurement knob,
`Codec.rdoq`, and no option of `uqdm encode`.
"""

from __future__ import annotations

import numpy as np

from .colour import symbol_bits
from .entropy import StepPrior


def choose(x: np.ndarray, prior: StepPrior, lam: float) -> np.ndarray:
    """x~ of every element: the nearest sample, or the one a bin nearer the mode where that
    lowers ((x~ - x) / q)^2 + lam * bits."""
    loc, dither, q = prior.loc, prior.dither, prior.quant_step
    scale, lower, upper = prior.scale, prior.lower, prior.upper

    def cost(k: np.ndarray) -> np.ndarray:
        bits = symbol_bits(k, loc, scale, dither, q, lower, upper)
        return ((loc + (k - dither) * q - x) / q) ** 2 + lam * bits

    k = np.rint((x - loc) / q + dither)
    toward = k - np.sign(k - np.rint(dither))  # one bin nearer the mode's bin
    best = np.where((toward != k) & (cost(toward) < cost(k)), toward, k)
    return loc + (best - dither) * q
