"""Spatial context of the lossless layer: the second checkerboard half is coded given the first.

Why: after the pixel step every pixel is known to within +-1.5 levels, and what is left is mostly
sensor and film noise; but part of it is spatially correlated (JPEG blocks and chroma upsampling in
the training photos, film grain and scanner filtering in Kodak), and the pixel step's prior, which
knew the neighbours only to +-q/2, cannot see it. The lossless layer therefore codes the pixels
whose row + column is even (half A, every colour) first and the others (half B) after them; a
half-B pixel's four neighbours are all in half A, so when it is decoded their exact residuals
r = clip((x - m) / s, +-8) (m, s: the pixel step's prior as moved by the colour context) are known,
and its location moves by s * sum_t beta_t r_t over the 12 taps (up, down, left and right
neighbour, in each of the three colours) while its scale narrows by a factor f. Measured on
held-aside training photos before it was built: 3-4 % of the lossless layer (docs/MODEL.md 14).

The parameters are forward-adaptive: the encoder fits them per colour (least squares on the
residuals, then a search over f) and sends them in the lossless layer's header, 13 bytes per
colour (FORMAT.md 6.2); an image whose saving would not pay for them sends none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import entropy
from .errors import FormatError

CLIP = 8.0  # a neighbour's residual, in prior scales, is clipped to +-CLIP
BETA_UNIT = 64.0  # beta = code / 64, code a signed byte
FACTOR_UNIT = 64.0  # f = code / 64, code an unsigned byte 1..255
TAPS = 12  # (up, down, left, right) x (colour 0, 1, 2), in that order: tap t = 3 * neighbour + colour
SIZE = 1 + 3 * (TAPS + 1)  # the header block when parameters are sent
FIT_SAMPLE = 1 << 15  # elements a colour's scale search looks at
FACTOR_CODES = tuple(range(16, 81, 8))  # f from 0.25 to 1.25, then refined by 4, 2 and 1
MIN_FIT = 64  # fewer half-B elements of a colour than this: no parameters
_OFFSETS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # (dy, dx) of up, down, left, right


@dataclass(frozen=True)
class LosslessContext:
    """The parameters as their codes in the file: per colour 12 beta codes and a factor code."""

    betas: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    factors: tuple[int, int, int]


def to_bytes(ctx: LosslessContext | None) -> bytes:
    """The lossless layer header's context block: 0, or 1 then per colour 12 betas and a factor."""
    if ctx is None:
        return b"\x00"
    out = bytearray([1])
    for c in range(3):
        out += np.array(ctx.betas[c], np.int8).tobytes() + bytes([ctx.factors[c]])
    return bytes(out)


def parse(data: bytes, pos: int) -> tuple[LosslessContext | None, int] | None:
    """(context, next position) of the block at `pos`; None if the data ends inside it. A flag
    other than 0 or 1, or a factor code of 0, is corruption (FormatError)."""
    if pos >= len(data):
        return None
    flag = data[pos]
    if flag == 0:
        return None, pos + 1
    if flag != 1:
        raise FormatError(f"invalid lossless context flag {flag}")
    if len(data) < pos + SIZE:
        return None
    betas, factors = [], []
    for c in range(3):
        start = pos + 1 + c * (TAPS + 1)
        betas.append(tuple(int(b) for b in np.frombuffer(data[start : start + TAPS], np.int8)))
        factors.append(data[start + TAPS])
    if 0 in factors:
        raise FormatError("invalid lossless context: a scale factor code of 0")
    return LosslessContext(tuple(betas), tuple(factors)), pos + SIZE


def second_half(height: int, width: int) -> np.ndarray:
    """Which of the layer's elements (natural order: colour, row, column) are in half B."""
    yx = np.add.outer(np.arange(height), np.arange(width)) % 2 == 1
    return np.tile(yx.ravel(), 3)


def halves(order: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The layer's element order: `order`'s half-A elements, then its half-B ones (each kept in order)."""
    b = second[order]
    return np.concatenate([order[~b], order[b]])


def groups(part: np.ndarray, second: np.ndarray) -> list[np.ndarray]:
    """Positions in `part` of a chunk's two groups: its half-A elements, then its half-B ones."""
    b = second[part]
    return [np.flatnonzero(~b), np.flatnonzero(b)]


def features(
    at: np.ndarray, levels: np.ndarray, known: np.ndarray, loc: np.ndarray, scale: np.ndarray, h: int, w: int
) -> np.ndarray:
    """(len(at), 12): the neighbours' residuals of elements `at` (natural-order positions); 0 for a
    neighbour outside the image or not known (yet)."""
    n = h * w
    rest = at % n
    y, x = rest // w, rest % w
    out = np.zeros((at.size, TAPS))
    for j, (dy, dx) in enumerate(_OFFSETS):
        yy, xx = y + dy, x + dx
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        spot = np.where(inside, yy * w + xx, 0)
        for c in range(3):
            e = c * n + spot
            ok = inside & known[e]
            r = (entropy.pixels_to_data(levels[e]) - loc[e]) / scale[e]
            out[:, 3 * j + c] = np.where(ok, np.clip(r, -CLIP, CLIP), 0.0)
    return out


def moved(
    ctx: LosslessContext, at: np.ndarray, feats: np.ndarray, loc: np.ndarray, scale: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """(location, scale) of elements `at` given their features: m + s * t, s * f, where
    t = (((b_0 r_0) + b_1 r_1) + ...) + b_11 r_11 in IEEE double, summed in tap order."""
    colour = at // n
    beta = np.array(ctx.betas, np.float64)[colour] / BETA_UNIT
    t = np.zeros(at.size)
    for k in range(TAPS):
        t = t + beta[:, k] * feats[:, k]
    s = scale[at]
    return loc[at] + s * t, s * (np.array(ctx.factors, np.float64)[colour] / FACTOR_UNIT)


def _bits(levels, x_tilde, loc, scale, q) -> float:
    return float(entropy.levels_element_bits(levels, x_tilde, loc, scale, q).sum())


def _half_b(levels: np.ndarray, loc: np.ndarray, scale: np.ndarray, h: int, w: int):
    """(positions, features) of half B with every half-A level known, as the encoder sees it."""
    second = second_half(h, w)
    at = np.flatnonzero(second)
    return at, features(at, levels, ~second, loc, scale, h, w)


def _fit(levels, x_tilde, loc, scale, q, h, w, at, feats) -> LosslessContext | None:
    """The encoder's parameters for an image (levels, x~, m, s of every element in natural order;
    half B's positions and features): per colour, the least-squares fit of a half-B element's
    residual on its neighbours', rounded to 1/64, then the factor code that minimises the code
    length of a sample of up to 32768 of its elements (16, 24, .., 80, then refined by 4, 2 and 1);
    None unless the saving over all of half B exceeds the block's bytes."""
    n = h * w
    if at.size < 3 * MIN_FIT:
        return None
    target = np.clip((entropy.pixels_to_data(levels[at]) - loc[at]) / scale[at], -CLIP, CLIP)
    colour = at // n
    betas, factors = [], []
    rng = np.random.default_rng(0)
    for c in range(3):
        rows = np.flatnonzero(colour == c)
        beta = np.linalg.lstsq(feats[rows], target[rows], rcond=None)[0]
        betas.append(tuple(int(b) for b in np.clip(np.rint(beta * BETA_UNIT), -127, 127)))
        sample = rows if rows.size <= FIT_SAMPLE else np.sort(rng.choice(rows, FIT_SAMPLE, replace=False))
        trial = LosslessContext(tuple(betas) + ((0,) * TAPS,) * (2 - c), (64, 64, 64))
        e = at[sample]
        m, s = moved(trial, e, feats[sample], loc, scale, n)
        costs: dict[int, float] = {}

        def cost(code: int, e=e, m=m, s=s, costs=costs) -> float:
            if not 1 <= code <= 255:
                return np.inf
            if code not in costs:
                costs[code] = _bits(levels[e], x_tilde[e], m, s * (code / FACTOR_UNIT), q)
            return costs[code]

        best = min(FACTOR_CODES, key=cost)
        for step in (4, 2, 1):
            best = min((best - step, best, best + step), key=cost)
        factors.append(best)
    ctx = LosslessContext(tuple(betas), tuple(factors))
    m, s = moved(ctx, at, feats, loc, scale, n)
    before = _bits(levels[at], x_tilde[at], loc[at], scale[at], q)
    after = _bits(levels[at], x_tilde[at], m, s, q)
    return ctx if before - after > 8 * SIZE else None


def _moved_all(ctx, at, feats, loc, scale, n) -> tuple[np.ndarray, np.ndarray]:
    if ctx is None:
        return loc, scale
    m, s = moved(ctx, at, feats, loc, scale, n)
    loc, scale = loc.copy(), scale.copy()
    loc[at], scale[at] = m, s
    return loc, scale


def encoder_prior(
    levels: np.ndarray,
    x_tilde: np.ndarray,
    loc: np.ndarray,
    scale: np.ndarray,
    q: float,
    h: int,
    w: int,
    spatial: bool = True,
) -> tuple[LosslessContext | None, np.ndarray, np.ndarray]:
    """(context, location, scale of every element as the encoder codes it): the fitted parameters,
    and half B's prior moved given all of half A (which every half-B element's group follows,
    FORMAT.md 6.2); with `spatial` False or no parameters worth sending, the prior unchanged."""
    if not spatial:
        return None, loc, scale
    at, feats = _half_b(levels, loc, scale, h, w)
    ctx = _fit(levels, x_tilde, loc, scale, q, h, w, at, feats)
    return (ctx, *_moved_all(ctx, at, feats, loc, scale, h * w))
