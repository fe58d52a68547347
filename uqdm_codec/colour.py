"""Colour context: within a step, colour 1 is coded given colour 0, and colour 2 given both.

Why: the network predicts every coefficient from the noisy state, one colour at a time, and its
location errors in R, G and B are strongly correlated: an edge the state does not resolve yet is
in all three colours. Once the decoder has colour 0's sample x~ of a coefficient, its residual
r0 = (x~ - m) / s says which way the prediction erred, and colour 1's location at the same
position moves by beta * s * r0 while its scale narrows by a factor f; colour 2 moves by
s * (beta_20 r0 + beta_21 r1). Universal quantisation makes this free of side effects: x~ - x is
uniform whatever the location, so the chain's states (and the network's inputs) are distributed
exactly as without it, and only the bits change. Measured on held-aside training photos with
parameters fitted per image: 20 % fewer bits in the Haar steps (30-38 % in D_1 at steps 4-6),
3.5 % in the pixel step (docs/MODEL.md section 12).

The parameters are forward-adaptive: the encoder fits them per layer and band (least squares on the
normalised residuals, then a search over the scale factor) and sends them in the layer header,
5 bytes per band (FORMAT.md 6.4); a band whose saving would not pay for its bytes sends none.

Order: a step's elements are sorted by place (band, orientation, position), the colours of a place
next to each other in colour order, so an element's partners always come before it; within a
chunk, the symbols of its colour-0 elements come first, then colour 1's, then colour 2's, and each
colour's elements are conditioned just before they are decoded (FORMAT.md 6.3-6.4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .errors import FormatError

CLIP = 8.0  # a partner's residual, in prior scales, is clipped to +-CLIP
BETA_UNIT = 64.0  # beta = code / 64, code a signed byte
FACTOR_UNIT = 64.0  # f = code / 64, code an unsigned byte 1..255
ENTRY = struct.Struct("<bBbbB")  # b10, f1, b20, b21, f2
ENTRY_COST_BITS = 8.0 * ENTRY.size
FIT_SAMPLE = 1 << 15  # elements a band's scale search looks at
FACTOR_CODES = tuple(range(16, 81, 8))  # f from 0.25 to 1.25, then refined by 4, 2 and 1
MIN_FIT = 64  # fewer paired elements than this: no parameters


@dataclass(frozen=True)
class BandContext:
    """One band's parameters, as their codes in the file."""

    band: int
    b10: int = 0
    f1: int = 64
    b20: int = 0
    b21: int = 0
    f2: int = 64

    def beta(self, colour: int) -> tuple[float, float]:
        """(beta on colour 0's residual, beta on colour 1's) for a colour-1 or colour-2 element."""
        if colour == 1:
            return self.b10 / BETA_UNIT, 0.0
        return self.b20 / BETA_UNIT, self.b21 / BETA_UNIT

    def factor(self, colour: int) -> float:
        return (self.f1 if colour == 1 else self.f2) / FACTOR_UNIT


Context = tuple[BandContext, ...]  # bands ascending, each at most once


def to_bytes(ctx: Context) -> bytes:
    """The layer header's context block: a band mask, then each band's 5 bytes."""
    mask = 0
    for entry in ctx:
        mask |= 1 << entry.band
    return bytes([mask]) + b"".join(ENTRY.pack(e.b10, e.f1, e.b20, e.b21, e.f2) for e in ctx)


def parse(data: bytes, pos: int) -> tuple[Context, int] | None:
    """(context, next position) of the block at `pos`; None if the data ends inside it. Factor
    codes of 0 are corruption (FormatError); which bands are allowed is the chain's to check."""
    if pos >= len(data):
        return None
    mask = data[pos]
    bands = [b for b in range(8) if mask >> b & 1]
    end = pos + 1 + ENTRY.size * len(bands)
    if end > len(data):
        return None
    out = []
    for j, b in enumerate(bands):
        b10, f1, b20, b21, f2 = ENTRY.unpack_from(data, pos + 1 + ENTRY.size * j)
        if f1 == 0 or f2 == 0:
            raise FormatError("invalid colour context (scale factor 0) in a layer header")
        out.append(BandContext(b, b10, f1, b20, b21, f2))
    return tuple(out), end


def check(ctx: Context, bands: int) -> None:
    """A layer's context may only name bands the step has."""
    for entry in ctx:
        if entry.band >= bands:
            raise FormatError(f"colour context for band {entry.band}, but the step has {bands} band(s)")


# ----------------------------------------------------------------------------- partners


def partners(colour: np.ndarray, band: np.ndarray, flat: np.ndarray, sizes: list[int]) -> np.ndarray:
    """(2, n) int64: for every element, the position (in the step's natural order) of the element of
    colour 0 and of colour 1 at the same band, orientation and place, where the step codes one and
    it comes before in colour order; -1 elsewhere. `flat` is the element's index in its band array,
    `sizes[b]` the plane size (rows x columns) of band b, natural order being band by band with
    flat indices ascending (FORMAT.md 5.2)."""
    n = colour.size
    out = np.full((2, n), -1, np.int64)
    starts = np.concatenate([[0], np.cumsum(np.bincount(band, minlength=len(sizes)))])
    for b, hw in enumerate(sizes):
        s0, s1 = int(starts[b]), int(starts[b + 1])
        if s1 == s0:
            continue
        fl, col = flat[s0:s1].astype(np.int64), colour[s0:s1].astype(np.int64)
        for p in (0, 1):
            later = np.flatnonzero(col > p)
            want = fl[later] + (p - col[later]) * hw
            j = np.minimum(np.searchsorted(fl, want), fl.size - 1)
            hit = fl[j] == want
            out[p, s0 + later[hit]] = s0 + j[hit]
    return out


def places(colour: np.ndarray, band: np.ndarray, flat: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Each element's place (int64): its band, orientation and position without the colour,
    numbered band by band, then orientation, row and column, so that sorting by place gives the
    natural order of places (FORMAT.md 5.2)."""
    out = np.empty(colour.size, np.int64)
    starts = np.concatenate([[0], np.cumsum(np.bincount(band, minlength=len(sizes)))])
    offset = 0
    for b, hw in enumerate(sizes):
        s0, s1 = int(starts[b]), int(starts[b + 1])
        fl = flat[s0:s1].astype(np.int64)
        out[s0:s1] = offset + (fl // (3 * hw)) * hw + fl % hw
        offset += (1 if b == 0 else 3) * hw
    return out


def pixel_places(count: int) -> np.ndarray:
    """places() for the pixel step: (row, column) of each value in (colour, row, column) order."""
    return np.arange(count, dtype=np.int64) % (count // 3)


def pixel_partners(count: int) -> np.ndarray:
    """partners() for the pixel step: every pixel, (colour, row, column) order."""
    hw = count // 3
    out = np.full((2, count), -1, np.int64)
    idx = np.arange(count, dtype=np.int64)
    out[0, hw:] = idx[hw:] % hw
    out[1, 2 * hw :] = idx[2 * hw :] - hw
    return out


# ----------------------------------------------------------------------------- conditioning


def _residual(tilde: np.ndarray, loc: np.ndarray, scale: np.ndarray, at: np.ndarray) -> np.ndarray:
    """clip((x~ - m) / s, -CLIP, CLIP) of the elements `at` (0 where at is -1)."""
    ok = at >= 0
    j = np.where(ok, at, 0)
    r = np.clip((tilde[j] - loc[j]) / scale[j], -CLIP, CLIP)
    return np.where(ok, r, 0.0)


def condition(
    c: int,
    ctx: Context,
    colour: np.ndarray,
    band: np.ndarray,
    pairs: np.ndarray,
    tilde: np.ndarray,
    loc: np.ndarray,
    scale: np.ndarray,
    at: np.ndarray | None = None,
) -> None:
    """Move colour c's elements (c = 1, 2; all of them, or those at positions `at`) that have a
    partner coded in this step, in place: m <- m + s * t, s <- s * f, t = beta_c0 * r0
    (+ beta_21 * r1 for colour 2), each residual r = clip((x~ - m) / s, -8, 8) of the partner as
    it was coded (FORMAT.md 6.4)."""
    if not ctx:
        return
    at = np.flatnonzero(colour == c) if at is None else at[colour[at] == c]
    at = at[np.any(pairs[:c, at] >= 0, axis=0)]
    for entry in ctx:
        sel = at[band[at] == entry.band]
        if not sel.size:
            continue
        b0, b1 = entry.beta(c)
        t = b0 * _residual(tilde, loc, scale, pairs[0, sel])
        if c == 2:
            t = t + b1 * _residual(tilde, loc, scale, pairs[1, sel])
        loc[sel] = loc[sel] + scale[sel] * t
        scale[sel] = scale[sel] * entry.factor(c)


def sample_of(x: np.ndarray, loc: np.ndarray, dither: np.ndarray, q: np.ndarray) -> np.ndarray:
    """x~ = m + (k - u) q with k = rint((x - m) / q + u): the value a step's symbol gives x
    (entropy.quantise then entropy.reconstruct, written once for arrays)."""
    return loc + (np.rint((x - loc) / q + dither) - dither) * q


def condition_all(
    ctx, x, colour, band, pairs, loc, scale, dither, q, last: int = 2, choose=None
) -> np.ndarray:
    """The encoder's view of the conditioning: colours 1 .. `last` moved in turn (loc and scale in
    place), each on the x~ its partners were coded to, as a decoder will do chunk by chunk.
    Returns x~ of every element under the moved priors (colours after `last` unmoved).
    `choose(now)`, where given, returns the x~ the encoder picks for the elements `now` (a mask)
    under the priors as they stand then, instead of the nearest sample."""
    tilde = sample_of(x, loc, dither, q)
    if choose is not None:
        tilde[colour == 0] = choose(colour == 0)
    for c in range(1, last + 1):
        condition(c, ctx, colour, band, pairs, tilde, loc, scale)
        now = colour == c
        tilde[now] = sample_of(x[now], loc[now], dither[now], q[now]) if choose is None else choose(now)
    return tilde


# ----------------------------------------------------------------------------- fitting (encoder)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def approx_bits(x, loc, scale, dither, q, lower, upper) -> np.ndarray:
    """-log2 P(k) of the symbols x quantises to, the prior truncated to [lower, upper], in plain
    float arithmetic (the encoder's choices only; the coder uses entropy.step_element_bits' exact
    model)."""
    return symbol_bits(np.rint((x - loc) / q + dither), loc, scale, dither, q, lower, upper)


def symbol_bits(k, loc, scale, dither, q, lower, upper) -> np.ndarray:
    """approx_bits of given symbols k."""
    a, b = (lower - loc) / scale, (upper - loc) / scale
    lo = np.clip(((k - dither - 0.5) * q) / scale, a, b)
    hi = np.clip(((k - dither + 0.5) * q) / scale, a, b)
    mass = np.where(lo > 0, _sigmoid(-lo) - _sigmoid(-hi), _sigmoid(hi) - _sigmoid(lo))
    norm = np.where(a > 0, _sigmoid(-a) - _sigmoid(-b), _sigmoid(b) - _sigmoid(a))
    return -np.log2(np.maximum(mass / np.maximum(norm, 1e-300), 1e-12))


def _sample(at: np.ndarray) -> np.ndarray:
    return at if at.size <= FIT_SAMPLE else at[:: -(-at.size // FIT_SAMPLE)]


def _fit_band(c, x, loc, scale, dither, q, lower, upper, r0, r1):
    """(beta codes, factor code, bits saved) for colour c's paired elements of one band (arrays
    already restricted to them)."""
    target = np.clip((x - loc) / scale, -CLIP, CLIP)
    cols = [r0] if c == 1 else [r0, r1]
    design = np.stack(cols, axis=1)
    beta = np.linalg.lstsq(design, target, rcond=None)[0] if design.any() else np.zeros(len(cols))
    codes = [int(np.clip(np.rint(v * BETA_UNIT), -128, 127)) for v in beta]
    t = sum(code / BETA_UNIT * r for code, r in zip(codes, cols))
    s = _sample(np.arange(x.size))
    base = approx_bits(x[s], loc[s], scale[s], dither[s], q[s], lower[s], upper[s]).sum()
    moved = loc[s] + scale[s] * t[s]
    cost: dict[int, float] = {}

    def bits_at(f: int) -> float:
        if f not in cost:
            f_scale = scale[s] * (f / FACTOR_UNIT)
            cost[f] = approx_bits(x[s], moved, f_scale, dither[s], q[s], lower[s], upper[s]).sum()
        return cost[f]

    best = min(FACTOR_CODES, key=bits_at)
    for step in (4, 2, 1):  # coarse to fine: 9 + 6 evaluations instead of 65
        best = min((best - step, best, best + step), key=lambda f: bits_at(f) if 1 <= f <= 255 else np.inf)
    return codes, best, (base - bits_at(best)) * x.size / s.size


def fit(x, prior, colour, band, pairs, bands: int) -> Context:
    """The context an encoder sends for one step: per band, the parameters that minimise the
    (approximate) code length of colours 1 and 2 given the samples of the colours before them,
    kept where the saving exceeds the 5 bytes they cost. `prior` is the step's prior (arrays in
    natural order); nothing of it is changed."""
    loc, scale = prior.loc.copy(), prior.scale.copy()
    dither, q, lower, upper = prior.dither, prior.quant_step, prior.lower, prior.upper
    tilde = sample_of(x, loc, dither, q)
    fitted: dict[int, dict] = {b: {"gain": 0.0} for b in range(bands)}
    for c in (1, 2):
        paired = (colour == c) & np.any(pairs[:c] >= 0, axis=0)
        for b in range(bands):
            at = np.flatnonzero(paired & (band == b))
            if at.size < MIN_FIT:
                continue
            r0 = _residual(tilde, loc, scale, pairs[0, at])
            r1 = _residual(tilde, loc, scale, pairs[1, at]) if c == 2 else None
            codes, f, gain = _fit_band(
                c, x[at], loc[at], scale[at], dither[at], q[at], lower[at], upper[at], r0, r1
            )
            fitted[b][c] = (codes, f)
            fitted[b]["gain"] += gain
        if c == 1:  # colour 2's regressors: colour 1 as it will be coded
            trial = tuple(
                BandContext(b, fitted[b][1][0][0], fitted[b][1][1]) for b in range(bands) if 1 in fitted[b]
            )
            tilde = condition_all(trial, x, colour, band, pairs, loc, scale, dither, q, last=1)
    out = []
    for b in range(bands):
        got = fitted[b]
        if got["gain"] <= ENTRY_COST_BITS or (1 not in got and 2 not in got):
            continue
        (b10,), f1 = got.get(1, ((0,), 64))
        (b20, b21), f2 = got.get(2, ((0, 0), 64))
        out.append(BandContext(b, b10, f1, b20, b21, f2))
    return tuple(out)
