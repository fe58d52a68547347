"""Dithered (universal) quantisation against rounding, for one logistic coefficient whose prior is
centred on the truth (the best case for both): bits and error of one step, and of halving an
interval already known (a coefficient coded again one noise level down).

    python scripts/dither_vs_rounding.py        # a few seconds

One step with step q: dither k = rint(x/q + u), rounding k = rint(x/q); bits -log2 P(k) under the
prior, error of the posterior mean over the bin. Refinement q -> q/2 given the first step's bin I1:
dithered with the prior truncated to I1 (the best a decoder could do), against splitting I1 in two
halves (nested rounding, at most 1 bit).
"""

from __future__ import annotations

import numpy as np


def sigmoid(t):
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def posterior_mean(a, b, s):
    """Mean of logistic(0, s) restricted to [a, b]."""

    def primitive(x):
        return x * sigmoid(x / s) - s * np.logaddexp(0.0, x / s)

    return (primitive(b) - primitive(a)) / np.maximum(sigmoid(b / s) - sigmoid(a / s), 1e-300)


def mass(a, b, s, lo=-np.inf, hi=np.inf):
    a, b = np.clip(a, lo, hi), np.clip(b, lo, hi)
    return (sigmoid(b / s) - sigmoid(a / s)) / (sigmoid(hi / s) - sigmoid(lo / s))


def main() -> None:
    rng = np.random.default_rng(0)
    n = 400_000
    print("one step, q = 1:  s/q | dither bits, MSE | rounding bits, MSE")
    for s in (0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 4.0):
        x, u = rng.logistic(0, s, n), rng.uniform(-0.5, 0.5, n)
        xt = np.rint(x + u) - u
        d_bits = -np.log2(mass(xt - 0.5, xt + 0.5, s)).mean()
        d_mse = ((posterior_mean(xt - 0.5, xt + 0.5, s) - x) ** 2).mean()
        k = np.rint(x)
        r_bits = -np.log2(mass(k - 0.5, k + 0.5, s)).mean()
        r_mse = ((posterior_mean(k - 0.5, k + 0.5, s) - x) ** 2).mean()
        print(f"  {s:4}: {d_bits:.3f}, {d_mse:.4f} | {r_bits:.3f}, {r_mse:.4f}")
    print("halving a known interval (q -> q/2):  s/q | dither bits, MSE | nested halves bits, MSE")
    for s in (0.35, 0.5, 1.0, 2.0):
        x, u = rng.logistic(0, s, n), rng.uniform(-0.5, 0.5, n)
        xt = np.rint(x + u) - u
        lo, hi = xt - 0.5, xt + 0.5
        u2 = rng.uniform(-0.5, 0.5, n)
        xt2 = (np.rint(x / 0.5 + u2) - u2) * 0.5
        a, b = xt2 - 0.25, xt2 + 0.25
        d_bits = -np.log2(mass(a, b, s, lo, hi)).mean()
        d_mse = ((posterior_mean(np.maximum(a, lo), np.minimum(b, hi), s) - x) ** 2).mean()
        mid = 0.5 * (lo + hi)
        left = x < mid
        a, b = np.where(left, lo, mid), np.where(left, mid, hi)
        n_bits = -np.log2(mass(a, b, s, lo, hi)).mean()
        n_mse = ((posterior_mean(a, b, s) - x) ** 2).mean()
        print(f"  {s:4}: {d_bits:.3f}, {d_mse:.4f} | {n_bits:.3f}, {n_mse:.4f}")


if __name__ == "__main__":
    main()
