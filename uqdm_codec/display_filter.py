"""Display filter: a small linear filter the encoder fits to the image it codes and sends with a
step, which the decoder applies to the network's image after that step.

Why: the network predicts R, G and B of every pixel from a state whose noise is independent per
colour, and the image it shows still carries some of that noise, mostly as pixel-scale colour
speckle. A cross-colour filter over a 3x3 or 5x5 neighbourhood, fitted by least squares against
the original, removes much of it: on held-aside training photos +0.5 dB after step 5 and +1.0 dB
after steps 6 and 7 (docs/MODEL.md section 13). The image after the last Haar step is also the
pixel step's prior location, so the same filter takes about 9 % off the bits of the pixel step and
the lossless layer. Like the colour context it has no side effects on the chain: the network's
inputs, the Haar priors and the states are unchanged, only what is shown (and the pixel prior).

Exactness (FORMAT.md 6.5): taps and bias are integers, the arithmetic is float64 with every
product and sum rounded once, in a fixed order, so every machine computes the same image.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import entropy
from .errors import FormatError

TAP_UNIT = 2.0**-14  # a tap is code * 2^-14, code a signed 16-bit integer
BIAS_UNIT = 2.0**-16  # data units (pixels span [-1, 1])
MAX_RADIUS = 2
FIT_PIXELS = 1 << 17  # pixels (whole rows) the least-squares fit looks at
STRIP_VALUES = 1 << 15  # pixels per strip of rows in apply(): a memory-traffic knob only
_I16 = struct.Struct("<h")


def taps_per_colour(radius: int) -> int:
    """Taps of one output colour: every input colour over a (2r+1) x (2r+1) window."""
    return 3 * (2 * radius + 1) ** 2


def block_size(radius: int) -> int:
    """Bytes of the layer header's filter block with this radius byte (FORMAT.md 2)."""
    return 1 + 2 * (3 * taps_per_colour(radius) + 3) if radius else 1


@dataclass(frozen=True)
class DisplayFilter:
    """out_c = clip(L_c + sum_{c', dy, dx} taps[c][c', dy, dx] L_c'(y+dy, x+dx) + bias_c, -1, 1):
    codes as stored, taps in the order (c, c', dy, dx), dy and dx from -radius to radius."""

    radius: int
    taps: tuple[int, ...]
    bias: tuple[int, int, int]

    @property
    def nbytes(self) -> int:
        return len(to_bytes(self))


def to_bytes(f: DisplayFilter | None) -> bytes:
    """The layer header's filter block: the radius byte (0: no filter), then the taps and the three
    biases as little-endian int16."""
    if f is None:
        return b"\x00"
    return bytes([f.radius]) + struct.pack(f"<{len(f.taps) + 3}h", *f.taps, *f.bias)


def parse(data: bytes, pos: int) -> tuple[DisplayFilter | None, int] | None:
    """(filter or None, next position) of the block at `pos`; None if the data ends inside it."""
    if pos >= len(data):
        return None
    radius = data[pos]
    if radius == 0:
        return None, pos + 1
    if radius > MAX_RADIUS:
        raise FormatError(f"invalid display filter (radius {radius}) in a layer header")
    end = pos + block_size(radius)
    if end > len(data):
        return None
    values = struct.unpack_from(f"<{3 * taps_per_colour(radius) + 3}h", data, pos + 1)
    return DisplayFilter(radius, tuple(values[:-3]), tuple(values[-3:])), end


def _padded(image: np.ndarray, radius: int) -> np.ndarray:
    return np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="edge")


def apply(f: DisplayFilter | None, image: np.ndarray) -> np.ndarray:
    """The filtered (3, H, W) image (data units, float64); `image` itself is not changed. Outside
    the image a neighbour is the nearest edge pixel. Order of the arithmetic (FORMAT.md 6.5): per
    output colour an accumulator starts at 0.0 and adds tap * neighbour for c', dy, dx ascending
    (zero taps skipped: adding +0.0 changes nothing), then out = (L_c + acc) + bias, clipped."""
    if f is None:
        return image
    r = f.radius
    h, w = image.shape[1:]
    padded = _padded(image, r)
    taps = np.array(f.taps, np.int64).reshape(3, 3, 2 * r + 1, 2 * r + 1) * TAP_UNIT  # exact
    bias = np.array(f.bias, np.float64)[:, None, None] * BIAS_UNIT
    used = [(c2, dy, dx) for c2 in range(3) for dy in range(2 * r + 1) for dx in range(2 * r + 1)]
    used = [u for u in used if taps[:, u[0], u[1], u[2]].any()]
    out = np.empty_like(image)
    rows = max(1, STRIP_VALUES // max(w, 1))  # strips that stay in cache; the same result
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        acc = np.zeros((3, y1 - y0, w))
        term = np.empty_like(acc)
        # all three output colours at once: the same operations, element by element; a zero tap of
        # one colour there adds +0.0 * v = +-0.0, which changes nothing
        for c2, dy, dx in used:
            np.multiply(taps[:, c2, dy, dx, None, None], padded[c2, y0 + dy : y1 + dy, dx : dx + w], out=term)
            acc += term
        acc += image[:, y0:y1]  # L + acc: addition commutes, so acc + L is the same sum
        acc += bias
        np.clip(acc, -1.0, 1.0, out=out[:, y0:y1])
    return out


# ----------------------------------------------------------------------------- fitting (encoder)


def _rows(h: int, w: int) -> np.ndarray:
    step = max(1, -(-h * w // FIT_PIXELS))
    return np.arange(0, h, step)


def fit(image: np.ndarray, target: np.ndarray, radii: tuple[int, ...] = (1, 2)) -> list[DisplayFilter]:
    """For each radius, the least-squares taps (on a sample of whole rows) that bring `image`
    closest to `target`, both (3, H, W) in data units; quantised, then each bias refitted to the
    quantised taps. One set of normal equations serves every radius (a smaller window's columns
    are a subset of the largest's)."""
    h, w = image.shape[1:]
    big = max(radii)
    k = 2 * big + 1
    rows = _rows(h, w)
    padded = _padded(image, big)
    cols = [
        padded[c2][rows[:, None] + dy, dx : dx + w].reshape(-1)
        for c2 in range(3)
        for dy in range(k)
        for dx in range(k)
    ]
    design = np.stack(cols + [np.full(rows.size * w, 1.0)], axis=1)
    del cols
    gram = design.T @ design
    wants = [(target[c, rows] - image[c, rows]).reshape(-1) for c in range(3)]
    moments = [design.T @ want for want in wants]
    n = design.shape[0]
    out = []
    for radius in radii:
        off = big - radius
        span = range(off, off + 2 * radius + 1)
        use = [c2 * k * k + dy * k + dx for c2 in range(3) for dy in span for dx in span] + [3 * k * k]
        g = gram[np.ix_(use, use)]
        g = g + np.eye(len(use)) * (1e-9 * np.trace(g) / len(use))
        taps, bias = [], []
        for c in range(3):
            beta = np.linalg.solve(g, moments[c][use])
            codes = np.clip(np.rint(beta[:-1] / TAP_UNIT), -32768, 32767)
            # the bias that is best for the quantised taps: mean of what they leave
            rest = (moments[c][-1] - gram[-1, use[:-1]] @ (codes * TAP_UNIT)) / n
            taps.extend(int(v) for v in codes)
            bias.append(int(np.clip(np.rint(rest / BIAS_UNIT), -32768, 32767)))
        out.append(DisplayFilter(radius, tuple(taps), (bias[0], bias[1], bias[2])))
    return out


def shown_sse(image: np.ndarray, original: np.ndarray) -> float:
    """Squared error (8-bit levels) of `image` (data units) as the decoder shows it."""
    return float(np.sum((entropy.data_to_pixels(image) - original) ** 2))


Saving = Callable[[DisplayFilter, np.ndarray], tuple[float, int]]


def choose(
    image: np.ndarray,
    original: np.ndarray,
    db_per_bit: float,
    saving: Saving | None = None,
    radii: tuple[int, ...] = (1, 2),
) -> tuple[DisplayFilter | None, int, float]:
    """The encoder's choice for one step: (the filter worth most, if any is worth its bytes, what
    `saving` said with it, the squared error of the image then shown). A filter is worth its gain
    in dB converted to bits at the step's own rate `db_per_bit` (a step that gained nothing makes
    any gain count), plus the bits `saving(filter, filtered image)` says it saves later steps,
    less its own bits; `saving` also returns a code passed back with the choice (0 without it).
    `original` is (3, H, W) 8-bit levels, `image` the network's display in data units."""
    base = shown_sse(image, original)
    best: tuple[DisplayFilter | None, int, float] = (None, 0, base)
    if base <= 0:
        return best
    best_worth = 0.0
    for f in fit(image, entropy.pixels_to_data(original), radii):
        shown = apply(f, image)
        sse = shown_sse(shown, original)
        if sse <= 0:
            continue
        saved, code = saving(f, shown) if saving else (0.0, 0)
        worth = 10.0 * np.log10(base / sse) / max(db_per_bit, 1e-12) + saved - 8.0 * f.nbytes
        if worth > best_worth:
            best, best_worth = (f, code, sse), worth
    return best
