"""The lossless tail: an exact interlaced lossless coder from exact neighbours (FORMAT.md 6.6).

The last layer of a file with the TAIL header flag codes the pixels with it, given the image after
step T-1, or after an earlier step S with EARLY_TAIL (`side`), in place of the later steps and the
lossless layer (docs/MODEL.md sections 26-27 and 31).
encode()/decode() give a standalone form of the same coder, for measurements and tests.

Order (FLIF / Adam7 style): the pixels on a 64-pixel lattice, then for each scale d = 64 .. 2,
h = d / 2: the centres of the known d-squares (rows and columns = h mod d), then the edge
midpoints (row = 0 mod d and column = h mod d, then row = h mod d and column = 0 mod d), each
pass in row-major order. Within a pass colours go G, R, B, each a group of its own.

Prediction, all in integers: the features of a pixel are its 4 neighbours at distance h (the
diagonals in a centre pass, the direct ones in an edge pass; mirrored back inside the image at its
edges, and an unknown one replaced by the floor of the known ones' mean), the side image at the
pixel and at those neighbours (when there is one), the symbols of the colours already coded at the
pixel, from form 2 on the levels of those colours at the pixel and at the neighbours (and their
side image at the pixel), from form 3 on the sum of the symbols coded at the known neighbours in
this colour (their signed errors: where the prediction ran low around a pixel it tends to run low
there), in form 4 the sum of the middle two of the 4 neighbours' levels in this colour and in each
colour coded before it at the pixel, and 1.
mu = clip(sum_k c_k f_k / 2^14, 0, 255) with integer coefficients c_k
sent per pass and colour. The symbol is k = v - rint(mu), coded under the step prior of entropy.py
(FORMAT.md 6.1) with location mu, dither mu - rint(mu), step 1 and known interval [-0.5, 255.5]: a
logistic discretised to the levels and truncated to [0, 255]. Its scale is s_b / 64 for the bin b
of the pixel's activity A = sum_k |4 n_k - sum n| (+ 16 |k_first|, the first colour's symbol, for
the later colours; from form 2 on + ERROR_WEIGHT times the known neighbours' |k| in this colour, CALIC's
error energy; in form 4, B's activity also adds 16 |k| of R, the second colour; the lattice pass
with a side image: 16 |side - side one row down|), b = the number of the pass and colour's
thresholds <= A.

Form 1 (files of uqdm 0.23-0.25) predicts R and B from the earlier colours' symbols alone: those
say how far G was from G's own prediction, not where G is, and G's prediction leans on G's side
image, which R's features cannot mirror. Given an early step's image that cost the tail 2-6 %
(docs/MODEL.md section 30). Form 2 (uqdm 0.26) lacks form 3's signed errors, which take 0.6-1 % off
the tail alone (section 31); form 3 (uqdm 0.27) lacks form 4's medians (section 32).

Form 5 (uqdm 0.29, section 33) keeps form 4's features and adds three things. Large edge passes are
split in two, and the second half also sees its 4 diagonal neighbours (the first half's pixels).
The activity is a weighted sum of separate terms, with weights sent per pass and colour and fitted
by the encoder, where form 4 fixed them. And a pass and colour may split its pixels by activity
into classes with a coefficient set each: the busy and the quiet half of a photo want different
mixes of the same neighbours.

Form 6 (uqdm 0.30, section 34) adds, for each colour coded before at the pixel, a feature (the
median of the neighbours' differences to that colour, plus that colour at the pixel) and an
activity term (the spread of those differences); and its encoder's scales go down to 0.022 where
form 5's stopped at 0.15, in bins of half as many pixels. Red and blue are busy wherever green is,
but their difference to green is often flat (as in photos that went through JPEG with subsampled
chroma), and there form 5 saw only the busy levels. Form 6 also splits large centre
passes in two, a checkerboard whose second half sees 4 more neighbours at distance d.

Form 7 (uqdm 0.31, section 35) may code green first in raster order (tail_green.py), where the
encoder estimates that smaller than green in the passes; red and blue then go in the passes as
before, seeing green everywhere. And for each colour coded before at the pixel it adds a guided
feature: the neighbours' differences to that colour weighed by how alike that colour is there and
at the pixel, which reads a colour difference along the earlier colour's edges.

Form 8 (uqdm 0.32, section 36) gives green in raster order a weighted predictor (tail_green.py):
sub-predictions weighed by their errors at the causal neighbours. And it may code red and blue in
raster order too, each with green as its side image, where that is smaller than the passes.

Form 9 (uqdm 0.33, section 37) gives blue in raster order red as a second guide beside green: red's
levels around the pixel, blue's differences to them, and 4 more sub-predictions.

Form 10 (uqdm 0.34, section 38) bounds every pixel by what the chain's known intervals say of it:
a 2 x 2 block's finest Haar coefficients lie in known intervals, so its decoded pixels bound the
rest (Intervals); each location is clipped into its pixel's bounds and each prior truncated to
them. Nothing more is sent: -1.8 % on Kodak's `--tail on` files.

Form 11 (uqdm 0.35, section 39) bounds the pixels of planes coded in raster order by every band's
known intervals: a block's coarser coefficients bound the sum of a child block once its siblings
are decoded (BlockSums, Intervals.sum_bounds), and that sum bounds the child's last pixels.

No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from . import entropy
from .container import TAIL_FORM, get_varint, put_varint
from .errors import FormatError

LEVELS = 6  # the first lattice has spacing 2^LEVELS
FRAC = 14  # fractional bits of the coefficients
SCALE_DENOM = 64  # a bin's scale is its code / 64 levels
COLOURS = (1, 0, 2)  # G, R, B
MAX_BINS = 16
PIXELS_PER_BIN = 2048  # fewer bins in small passes: their side information costs more than it saves
FINE_PIXELS_PER_BIN = 1024  # form 6 on: a bin's scale code is a byte or two, and finer bins pay
SCALES = np.exp(np.linspace(np.log(0.15), np.log(60.0), 48))  # what the encoders of forms 1-5 try
# form 6 on: the same steps, down to 0.022 (a nearly sure symbol: a pixel between equal neighbours)
FINE_SCALES = np.exp(np.log(0.15) + np.log(400.0) / 47 * np.arange(-15, 48))
# How encoders are told which lossless end to code (Codec.encode's `tail`, encode --tail): by name,
# or left to the codec (TAIL_DEFAULT: the tail for a grayscale image, codec.default_tail)
TAIL_NAMES = {"on": True, "off": False, "auto": None}
TAIL_DEFAULT = "default"
FORM = TAIL_FORM  # the feature set the encoder writes (FORMAT.md 6.6); 1: uqdm 0.23-0.25, ... 10: 0.34
FORMS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
# form 8: red and blue in raster order are entropy-coded (and the smaller tail kept) only where their
# estimated bits come within this fraction of the passes' real bytes for red and blue (the estimate
# was within 1.5 % of the real bytes on the decision sets' photos, docs/MODEL.md section 37)
RASTER_MARGIN = 0.03
# form 7 on: how the colours are coded, the parameters' first varint: all in the interlaced passes;
# green in raster order, red and blue in the passes; (form 8 on) all three in raster order, red and
# blue each with green as its side image
GREEN_ORDERS = ("interlaced", "raster", "all raster")
ERROR_WEIGHT = 48  # form 2 on: the activity's weight of the known neighbours' coded |k|
FIT_LIMIT = 1024.0  # a coefficient this large means a degenerate fit: refit with a ridge
WEIGHT_FRAC = 8  # form 5: fractional bits of the activity's term weights
MAX_WEIGHT = 1 << 20  # form 5: a term weight at or above this is corruption
CLASSES = 2  # form 5: predictor classes the encoder makes per pass and colour (at most MAX_CLASSES)
MAX_CLASSES = 8
SPLIT_PIXELS = 32768  # form 5 on: edge passes (form 6 on: centre passes too) this large are split in two
PIXELS_PER_CLASS = 4096  # form 5: a pass and colour is split only where each class gets this many
MAX_SHIFT = 12  # form 5: the coefficients' shift: at most this many of their FRAC bits dropped


@dataclass
class Pass:
    """One pass: the pixels it codes and the offsets of their 4 or 8 neighbours (none on the lattice)."""

    rows: np.ndarray
    cols: np.ndarray
    offsets: list[tuple[int, int]]


def passes(height: int, width: int, form: int = FORM) -> list[Pass]:
    """The 2 LEVELS + 1 passes, coarse to fine, and more from form 5 on; every pixel is in exactly
    one of them. From form 5 on the edge midpoints of a large scale are two passes, the second of
    which also sees its 4 diagonal neighbours (the first's pixels); from form 6 on its centres are
    two passes too, a checkerboard of the d-squares, the second also seeing its 4 direct
    neighbours at distance d (the first's pixels)."""

    def grid(r0: int, c0: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        r, c = np.meshgrid(np.arange(r0, height, step), np.arange(c0, width, step), indexing="ij")
        return r.ravel(), c.ravel()

    d = 2**LEVELS
    out = [Pass(*grid(0, 0, d), [])]
    for level in range(LEVELS, 0, -1):
        d, h = 2**level, 2 ** (level - 1)
        diagonal, direct = [(-h, -h), (-h, h), (h, -h), (h, h)], [(-h, 0), (h, 0), (0, -h), (0, h)]
        r0, c0 = grid(h, h, d)
        if form >= 6 and r0.size >= SPLIT_PIXELS:
            first = (r0 // d + c0 // d) % 2 == 0
            far = [(-d, 0), (d, 0), (0, -d), (0, d)]
            out += [Pass(r0[first], c0[first], diagonal), Pass(r0[~first], c0[~first], diagonal + far)]
        else:
            out.append(Pass(r0, c0, diagonal))
        r1, c1 = grid(0, h, d)
        r2, c2 = grid(h, 0, d)
        if form >= 5 and r1.size + r2.size >= SPLIT_PIXELS:
            out += [Pass(r1, c1, direct), Pass(r2, c2, direct + diagonal)]
        else:
            out.append(Pass(np.concatenate([r1, r2]), np.concatenate([c1, c2]), direct))
    return out


def _neighbour_index(p: Pass, height: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for di, dj in p.offsets:
        ni, nj = p.rows + di, p.cols + dj
        ni = np.clip(np.where((ni < 0) | (ni >= height), p.rows - di, ni), 0, height - 1)
        nj = np.clip(np.where((nj < 0) | (nj >= width), p.cols - dj, nj), 0, width - 1)
        out.append((ni, nj))
    return out


def _neighbour_levels(near, known: np.ndarray, x: np.ndarray, c: int) -> np.ndarray:
    """Colour c's levels at the 4 neighbours (n, 4), an unknown one replaced by the floor of the
    known ones' mean (0 if none is known)."""
    nv = np.stack([x[a, b, c] for a, b in near], 1).astype(np.int64)
    ok = np.stack([known[a, b] for a, b in near], 1)
    mean = (nv * ok).sum(1) // np.maximum(ok.sum(1), 1)
    return np.where(ok, nv, mean[:, None])


def _features(
    p: Pass,
    near,
    known: np.ndarray,
    x: np.ndarray,
    side: np.ndarray | None,
    c: int,
    earlier: list[np.ndarray],
    errors: np.ndarray | None = None,
    form: int = FORM,
) -> tuple[np.ndarray, np.ndarray]:
    """(features as int64 of shape (n, F), activity as int64) of colour c's pixels in pass p.
    `errors` (H, W, 3): the coded symbol k of every decoded element, for form 2 on; None for form 1."""
    n = p.rows.size
    feats: list[np.ndarray] = []
    activity = np.zeros(n, np.int64)
    if near:
        nv = _neighbour_levels(near, known, x, c)
        feats += list(nv.T)
        activity = _spread(nv)
    if side is not None:
        feats.append(side[p.rows, p.cols, c].astype(np.int64))
        feats += [side[a, b, c].astype(np.int64) for a, b in near]
        if not near:
            activity = 16 * _side_slope(p, side, c)
    feats += earlier
    if earlier:
        activity = activity + 16 * np.abs(earlier[0])
    earlier_nv: list[np.ndarray] = []  # the earlier colours' neighbour levels (form 2 on)
    if errors is not None:
        for e in COLOURS[: len(earlier)]:
            feats.append(x[p.rows, p.cols, e].astype(np.int64))
            if near:
                earlier_nv.append(_neighbour_levels(near, known, x, e))
                feats += list(earlier_nv[-1].T)
            if side is not None:
                feats.append(side[p.rows, p.cols, e].astype(np.int64))
        if near:
            ev = np.stack([np.where(known[a, b], errors[a, b, c], 0) for a, b in near], 1)
            activity = activity + ERROR_WEIGHT * np.abs(ev).sum(1)
            if form >= 3:
                feats.append(ev.sum(1))
    if form >= 4:
        if near:  # the middle two of the 4 neighbours, in this colour and in each earlier one
            feats.append(_middle_sum(nv))
            feats += [_middle_sum(v) for v in earlier_nv]
        if form >= 6 and near:  # the colour difference's median, added to each earlier colour
            feats += [
                _middle_sum(nv - ev) + 2 * x[p.rows, p.cols, e].astype(np.int64)
                for e, ev in zip(COLOURS, earlier_nv)
            ]
        if form >= 7 and near:  # each earlier colour's differences, weighed by its likeness at the pixel
            feats += [
                _guided(x[p.rows, p.cols, e].astype(np.int64), ev, nv) for e, ev in zip(COLOURS, earlier_nv)
            ]
        if len(earlier) > 1:
            activity = activity + 16 * np.abs(earlier[1])
    feats.append(np.ones(n, np.int64))
    return np.stack(feats, 1), activity


def _guided(level: np.ndarray, ev: np.ndarray, nv: np.ndarray) -> np.ndarray:
    """Form 7: 2 v_e + floor(2 sum_k w_k (n_k - e_k) / sum_k w_k), w_k = floor(1024 / (1 + |v_e - e_k|)):
    the neighbours' differences to an earlier colour e, each weighed by how alike e is there and at
    the pixel (where e has an edge, the neighbours on the pixel's side of it count), added to e at
    the pixel. Exact in int64; every w_k >= 4."""
    w = 1024 // (1 + np.abs(level[:, None] - ev))
    return 2 * level + (2 * (w * (nv - ev)).sum(1)) // w.sum(1)


def _middle_sum(nv: np.ndarray) -> np.ndarray:
    """The sum of the middle two of the 4 (8) levels per row (twice their median): form 4's one
    non-linear feature, which lets a least-squares predictor follow edges that a linear mix blurs."""
    s = np.sort(nv, axis=1)
    m = nv.shape[1] // 2
    return s[:, m - 1] + s[:, m]


def _spread(v: np.ndarray) -> np.ndarray:
    """sum_k |P v_k - (v_1 + .. + v_P)| per row of P neighbour values: how much they disagree."""
    return np.abs(v.shape[1] * v - v.sum(1)[:, None]).sum(1)


def _side_slope(p: Pass, side: np.ndarray, c: int) -> np.ndarray:
    """|S_c(y, x) - S_c(min(y + 1, H - 1), x)|: the lattice pass's only activity."""
    below = np.minimum(p.rows + 1, side.shape[0] - 1)
    return np.abs(side[p.rows, p.cols, c].astype(np.int64) - side[below, p.cols, c])


def _terms(
    p: Pass,
    near,
    feats: np.ndarray,
    known: np.ndarray,
    side: np.ndarray | None,
    c: int,
    earlier: list[np.ndarray],
    errors: np.ndarray,
    form: int = FORM,
) -> np.ndarray:
    """Form 5 on: the activity's terms (n, T) as int64, which the activity weighs with weights sent
    per pass and colour (_num_terms gives T), given the pixels' features (the levels of the
    neighbours, of the side image and of the earlier colours are read from their columns, in the
    order of FORMAT.md 6.6). In order: with neighbours, the spread of their levels
    sum |P n_k - sum n| and the sum of their |k| in this colour; without, and with a side image, its
    slope |side - side one row down|; |k| of each colour coded before at the pixel; with neighbours
    and a side image, the side image's spread at the neighbours and |P side - sum n|; with
    neighbours, the sum of their |k| in each colour coded before at the pixel; from form 6 on, with
    neighbours, the spread of the differences n_k - e_k to each colour e coded before (a busy colour
    whose difference to green is flat is easy to predict from green)."""
    out: list[np.ndarray] = []
    size, z = len(near), 1 if side is not None else 0
    nv = feats[:, :size]
    if near:
        out += [_spread(nv), _neighbour_errors(near, known, errors, c)]
    elif side is not None:
        out.append(_side_slope(p, side, c))
    out += [np.abs(e) for e in earlier]
    if near and side is not None:  # S_c at the pixel, then at the neighbours
        out.append(_spread(feats[:, size + 1 : 2 * size + 1]))
        out.append(np.abs(size * feats[:, size] - nv.sum(1)))
    if near:
        out += [_neighbour_errors(near, known, errors, e) for e in COLOURS[: len(earlier)]]
    if near and form >= 6:  # each earlier colour's block: its level, its neighbours' levels, (S_e)
        start, block = size * (1 + z) + z + len(earlier) + 1, 1 + size + z
        out += [
            _spread(nv - feats[:, start + j * block : start + j * block + size]) for j in range(len(earlier))
        ]
    return np.stack(out, 1) if out else np.zeros((feats.shape[0], 0), np.int64)


def _neighbour_errors(near, known: np.ndarray, errors: np.ndarray, c: int) -> np.ndarray:
    """The sum of |k| of colour c at the known ones of the neighbours."""
    return np.stack([np.where(known[a, b], np.abs(errors[a, b, c]), 0) for a, b in near], 1).sum(1)


def _num_terms(p: Pass, has_side: bool, earlier: int, form: int = FORM) -> int:
    if p.offsets:
        return 2 + earlier + (2 if has_side else 0) + earlier + (earlier if form >= 6 else 0)
    return (1 if has_side else 0) + earlier


def _weighted(terms: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """From form 5 on, the activity: sum_j w_j t_j, exact in int64 (terms < 2^15, weights < 2^20,
    at most 10 terms)."""
    total = np.zeros(terms.shape[0], np.int64)
    for j in range(terms.shape[1]):
        total += terms[:, j] * int(weights[j])
    return total


def _location(feats: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """mu = clip(sum c_k f_k / 2^FRAC, 0, 255), exact (an int64 sum, then a division by a power of 2)."""
    total = np.zeros(feats.shape[0], np.int64)
    for k in range(feats.shape[1]):
        total += feats[:, k] * int(coef[k])
    return np.clip(total.astype(np.float64) / 2.0**FRAC, 0.0, 255.0)


def _class_location(feats: np.ndarray, coefs: list[np.ndarray], cls: np.ndarray) -> np.ndarray:
    """Form 5: each pixel's location from its class's coefficients."""
    if len(coefs) == 1:
        return _location(feats, coefs[0])
    mu = np.zeros(feats.shape[0])
    for j, coef in enumerate(coefs):
        sel = cls == j
        mu[sel] = _location(feats[sel], coef)
    return mu


def _prior(mu: np.ndarray, scale: np.ndarray, bounds: Bounds | None = None) -> entropy.StepPrior:
    """The symbols' prior: a logistic at mu, discretised to the levels and truncated to 0..255, or
    (form 10) to the levels the known intervals leave (bounds, which mu then lies within)."""
    n = mu.size
    low, high = (np.zeros(n, np.int64), np.full(n, 255, np.int64)) if bounds is None else bounds
    return entropy.StepPrior(
        loc=mu,
        scale=scale,
        dither=mu - np.rint(mu),
        quant_step=np.ones(n),
        bound=np.full(n, 256.0),
        lower_known=low - 0.5,
        upper_known=high + 0.5,
    )


Bounds = tuple[np.ndarray, np.ndarray]  # form 10: each pixel's lowest and highest possible level

# form 10: 2 x - LL = s . (LH, HL, HH) for the pixels a, b, c, d of a 2 x 2 block (haar.analysis)
BLOCK_SIGNS = np.array([[1, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]], np.int64)

# form 11: a block's four rows over its children's sums (top left, top right, bottom left, bottom
# right): the block's own sum, then 2^m times its LH, HL and HH coefficients (m: its level)
_ROWS = np.concatenate([np.ones((1, 4), np.int64), BLOCK_SIGNS.T])
_CHILD_ROW, _CHILD_COL = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
_BIT = np.array([1, 2, 4, 8])
_ROWS_NONE = np.concatenate([_ROWS, np.zeros((1, 4), np.int64)])  # and row 4, "none"


def _combinations() -> tuple[np.ndarray, ...]:
    """For each child position q and set of unknown other children (a 4-bit mask), the (at most 4)
    combinations of the parent's rows that bound child q's sum: every row alone where every other
    child is complete, else the sums and differences of two rows whose coefficients vanish on the
    unknown children but not on q (four for one unknown child, two for two); none for three.
    As arrays (4, 16, 4): first row, second row (4: none), its sign, and the coefficient of child
    q (0: no combination)."""
    first = np.full((4, 16, 4), 4, np.int64)
    second = np.full((4, 16, 4), 4, np.int64)
    sign = np.ones((4, 16, 4), np.int64)
    own = np.zeros((4, 16, 4), np.int64)
    for q in range(4):
        for mask in range(16):
            unknown = [k for k in range(4) if mask >> k & 1]
            if q in unknown or len(unknown) == 3:
                continue
            if not unknown:
                found = [(r, 4, 1, _ROWS[r]) for r in range(4)]
            else:
                found = [
                    (r1, r2, g, _ROWS[r1] + g * _ROWS[r2])
                    for r1 in range(4)
                    for r2 in range(r1 + 1, 4)
                    for g in (1, -1)
                ]
                found = [f for f in found if f[3][q] and not f[3][unknown].any()]
                assert len(found) == (4 if len(unknown) == 1 else 2)
            for j, (r1, r2, g, c) in enumerate(found):
                first[q, mask, j], second[q, mask, j], sign[q, mask, j] = r1, r2, g
                own[q, mask, j] = c[q]
    return first, second, sign, own


_COMBO_FIRST, _COMBO_SECOND, _COMBO_SIGN, _COMBO_OWN = (a.reshape(64, *a.shape[2:]) for a in _combinations())
_COMBO_READS_SUM = (_COMBO_FIRST == 0) | (_COMBO_SECOND == 0)


class BlockSums:
    """Form 11: the level sums of a plane's 2^m x 2^m blocks (m = 1 .. L-1) and how many of their
    pixels are coded, brought up to date after each wavefront; a block is complete when all are."""

    def __init__(self, height: int, width: int, levels: int):
        shapes = [((height >> m) + 1, (width >> m) + 1) if m else (0, 0) for m in range(levels)]
        self.sum = [np.zeros(s, np.int64) for s in shapes]
        self.count = [np.zeros(s, np.int64) for s in shapes]

    def clear(self) -> None:
        """Back to no pixel coded (an encoder's next pass over the wavefronts)."""
        for a in (*self.sum, *self.count):
            a[:] = 0

    def add(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        for m in range(1, len(self.sum)):
            np.add.at(self.sum[m], (rows >> m, cols >> m), values)
            np.add.at(self.count[m], (rows >> m, cols >> m), 1)


@dataclass
class Intervals:
    """Form 10: what the chain's known intervals (FORMAT.md 5.5) after the tail's step say of the
    pixels: the finest Haar band's, D_1, in levels. A 2 x 2 block's three D_1 coefficients
    (LH, HL, HH) each lie in a known interval, so once one of its pixels is known the others are
    bounded; once three are, the fourth lies within the intersection of three bins. The tail
    truncates each pixel's prior to the levels left (and moves its location into them): where step
    T-1 coded D_1, a textured photo's last pixel of a block often has only 5-9 levels left.

    lower, upper: (3 orientations LH, HL, HH; 3 colours R, G, B; H2, W2), the chain's float32 ends
    times 128 (a level is 2/256 in data units; exact), float32 or float64: read as float64. Blocks
    that reach past the image (an odd height or width) give no bounds. Form 11 also reads the
    coarser bands (coarse_lower, coarse_upper: LL_L (3, ...) and D_L .. D_2 (3, 3, ...), the same
    units) through the sums of complete blocks (sum_bounds)."""

    lower: np.ndarray
    upper: np.ndarray
    # form 11: the coarser bands' ends, LL_L, D_L, ..., D_2 (as the chain holds them, times 128)
    coarse_lower: list[np.ndarray] | None = None
    coarse_upper: list[np.ndarray] | None = None
    _tables: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def can_bound(self) -> bool:
        """False if no interval is narrower than the whole band ([-256, 256] levels: the finest
        band's coefficients the chain has not coded yet, as after step 3), which bounds no pixel
        within 0..255 (every bound then lies outside it: a known level is 0..255, an interval 512
        levels wide): a tail may skip computing them, with the same result."""
        return bool((self.upper - self.lower < 512).any())

    def for_form(self, form: int) -> Intervals | None:
        """What a tail of this form reads: None where the finest band bounds nothing (can_bound;
        the coarser bands then bound too little to pay for their time: docs/MODEL.md section 39);
        else the finest band, and from form 11 on the coarser bands too, where given."""
        if not self.fine:
            return None
        if form < 11 or self.coarse_lower is None:
            return replace(self, coarse_lower=None, coarse_upper=None)
        return self

    @property
    def haar_levels(self) -> int:
        return 0 if self.coarse_lower is None else len(self.coarse_lower)

    def sum_bounds(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        c: int,
        level: np.ndarray,
        known: np.ndarray,
        sums: BlockSums,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Form 11 (FORMAT.md 6.6.5): (lowest, highest) level of colour c at pixels (rows, cols) that
        the block sums allow, float64 (-inf, inf where nothing bounds it). From the top: the sum of
        the pixel's 2^L block lies in a known interval (LL_L's); then for m = L-1 .. 0 the sum of
        its 2^m block N (the pixel itself at m = 0) is bounded by its parent's four rows (the
        parent's sum, as just bounded, and its three D_{m+1} coefficients: signed sums of the
        four children's sums), alone or two at a time (sum or difference), wherever every child
        but N that the combination reads is complete (its sum known: `sums`; at m = 0 its pixel:
        `known`). Every operation is one IEEE float64 operation in a fixed order: the same bounds
        on every machine. Parents that reach past the image bound nothing."""
        height, width = level.shape
        big = self.haar_levels
        top_ends, row_ends = self._sum_tables(c)
        inside = ((rows >> big) + 1 << big <= height) & ((cols >> big) + 1 << big <= width)
        ry, rx = np.where(inside, rows >> big, 0), np.where(inside, cols >> big, 0)
        ends = top_ends[:, ry, rx]
        low, high = np.where(inside, ends[0], -np.inf), np.where(inside, ends[1], np.inf)
        # what does not depend on the sums bounded above, for every level m = 0 .. L-1 at once
        m = np.arange(big)
        r, q = rows[:, None], cols[:, None]
        inside = ((r >> m + 1) + 1 << m + 1 <= height) & ((q >> m + 1) + 1 << m + 1 <= width)  # (n, L)
        py, px = np.where(inside, r >> m + 1, 0), np.where(inside, q >> m + 1, 0)
        child = 2 * ((r >> m) & 1) + ((q >> m) & 1)
        cy, cx = 2 * py[..., None] + _CHILD_ROW, 2 * px[..., None] + _CHILD_COL  # (n, L, 4)
        # a parent past the image (inside False) bounds nothing; its children's reads stay inside
        # the planes where a side (of the image or a region) is under 2^L pixels
        cy, cx = np.minimum(cy, (height - 1) >> m[:, None]), np.minimum(cx, (width - 1) >> m[:, None])
        n = rows.size
        value, done = np.empty((n, big, 4), np.int64), np.empty((n, big, 4), bool)
        raw = np.zeros((2, n, big, 5))  # each row's ends (row 0, the parent's sum, filled in below)
        for k in range(big):
            if k == 0:
                value[:, 0], done[:, 0] = level[cy[:, 0], cx[:, 0]], known[cy[:, 0], cx[:, 0]]
            else:
                value[:, k] = sums.sum[k][cy[:, k], cx[:, k]]
                done[:, k] = sums.count[k][cy[:, k], cx[:, k]] == 4**k
            raw[:, :, k, 1:4] = row_ends[k][:, :, py[:, k], px[:, k]].transpose(0, 2, 1)
        other = np.arange(4) != child[..., None]
        done &= other
        key = 16 * child + ((~done & other) * _BIT).sum(2)
        first, second, sign = _COMBO_FIRST[key], _COMBO_SECOND[key], _COMBO_SIGN[key]  # (n, L, 4)
        own, reads = _COMBO_OWN[key], _COMBO_READS_SUM[key]
        # each row's part from the complete children (integers, exact), then each combination's
        known_rows = np.where(done, value, 0) @ _ROWS_NONE.T  # (n, L, 5)
        base = (5 * np.arange(n * big)).reshape(n, big, 1)
        first, second = first + base, second + base
        rest = known_rows.ravel()[first] + sign * known_rows.ravel()[second]
        flat_lo, flat_hi = raw[0].ravel(), raw[1].ravel()
        lo1, hi1 = flat_lo[first], flat_hi[first]
        lo2 = np.where(sign > 0, flat_lo[second], -flat_hi[second])
        hi2 = np.where(sign > 0, flat_hi[second], -flat_lo[second])
        plain_lo, plain_hi = (lo1 + lo2) - rest, (hi1 + hi2) - rest  # combinations of D rows alone
        usable = (own != 0) & inside[..., None]
        div = np.where(own != 0, own, 1)
        for k in range(big - 1, -1, -1):  # the sums, from the top down
            parent = np.isfinite(low)
            sum_lo = (np.where(parent, low, 0.0)[:, None] + lo2[:, k]) - rest[:, k]  # row 0 is the first
            sum_hi = (np.where(parent, high, 0.0)[:, None] + hi2[:, k]) - rest[:, k]
            lo = np.where(reads[:, k], sum_lo, plain_lo[:, k])
            hi = np.where(reads[:, k], sum_hi, plain_hi[:, k])
            a = np.where(own[:, k] > 0, lo, hi) / div[:, k]
            b = np.where(own[:, k] > 0, hi, lo) / div[:, k]
            ok = usable[:, k] & (parent[:, None] | ~reads[:, k])
            low = np.where(ok, a, -np.inf).max(1)
            high = np.where(ok, b, np.inf).min(1)
        return low, high

    def _sum_tables(self, c: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Colour c's ends as sum_bounds reads them, made once per colour: the sum of each 2^L
        block, 2^L LL_L + 4^L 127.5 (2, H / 2^L, W / 2^L; float64), and per level m = 0 .. L-1 the
        rows of each 2^(m+1) block, 2^(m+1) D_(m+1) (2, 3, H / 2^(m+1), W / 2^(m+1); in the ends'
        type, float32 from the chain: exact, and half the memory)."""
        if c not in self._tables:
            assert self.coarse_lower is not None and self.coarse_upper is not None
            big = self.haar_levels
            ends = [(self.coarse_lower[0][c], self.coarse_upper[0][c])]
            top = np.stack([e.astype(np.float64) * 2.0**big + 4.0**big * 127.5 for e in ends[0]])
            rows = []
            for m in range(big):
                lo, hi = (
                    (self.lower, self.upper)
                    if m == 0
                    else (self.coarse_lower[big - m], self.coarse_upper[big - m])
                )
                factor = lo.dtype.type(2 ** (m + 1))  # exact in the ends' own type (float32 here)
                rows.append(np.stack([lo[:, c] * factor, hi[:, c] * factor]))
            self._tables[c] = (top, rows)
        return self._tables[c]

    @cached_property
    def fine(self) -> bool:
        """Whether the finest band bounds anything (can_bound), asked once."""
        return self.can_bound()

    def bounds(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        c: int,
        level: np.ndarray,
        known: np.ndarray,
        sums: BlockSums | None = None,
    ) -> Bounds:
        """(lowest, highest) level of colour c at pixels (rows, cols), given the colour's levels
        (H, W) and which pixels of it are known (H, W): those of the pixel's block bound it, and
        (form 11, with the plane's block sums) the coarser bands with its complete blocks
        (sum_bounds). All in float64 from the exact ends, the same on every machine; then rounded
        inward to levels and clipped to 0..255. FormatError where the known levels leave a pixel
        none (FORMAT.md 6.6.4: corruption)."""
        n = rows.size
        if self.fine:
            low, high = self._finest(rows, cols, c, level, known)
        else:  # every bound would lie outside 0..255
            low, high = np.full(n, -np.inf), np.full(n, np.inf)
        if sums is not None and self.haar_levels:
            # a pixel none of whose block mates is known has no combination at m = 0 (sum_bounds)
            height, width = level.shape
            top, left = rows & ~1, cols & ~1
            below, right = np.minimum(top + 1, height - 1), np.minimum(left + 1, width - 1)
            mate = known[top, left] | known[top, right] | known[below, left] | known[below, right]
            if mate.any():
                a, b = self.sum_bounds(rows[mate], cols[mate], c, level, known, sums)
                low[mate], high[mate] = np.maximum(low[mate], a), np.minimum(high[mate], b)
        low = np.clip(np.ceil(low), 0, 255).astype(np.int64)
        high = np.clip(np.floor(high), 0, 255).astype(np.int64)
        if (low > high).any():  # never for true levels; a damaged stream's can contradict them
            raise FormatError("lossless tail: decoded levels outside their known intervals")
        return low, high

    def _finest(
        self, rows: np.ndarray, cols: np.ndarray, c: int, level: np.ndarray, known: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Form 10's bounds from the finest band and the block's known pixels, float64."""
        height, width = level.shape
        n = rows.size
        br, bc = rows // 2, cols // 2
        whole = (2 * br + 1 < height) & (2 * bc + 1 < width)
        br, bc = np.where(whole, br, 0), np.where(whole, bc, 0)
        pos = 2 * (rows % 2) + cols % 2
        # a block past the image (whole False) has no known mates; its reads stay inside the plane
        # where a side is 1 pixel (a 1-pixel image or region)
        mates = [
            (np.minimum(2 * br + q // 2, height - 1), np.minimum(2 * bc + q % 2, width - 1)) for q in range(4)
        ]
        have = np.stack([known[r, q] for r, q in mates], 1) & whole[:, None]
        have[np.arange(n), pos] = False
        val = np.stack([level[r, q] for r, q in mates], 1).astype(np.float64)
        lo = self.lower[:, c, br, bc].T.astype(np.float64)  # (n, 3)
        hi = self.upper[:, c, br, bc].T.astype(np.float64)
        low, high = np.full(n, -np.inf), np.full(n, np.inf)
        count = have.sum(1)
        signs = BLOCK_SIGNS[pos]  # (n, 3)
        # three mates known: each coefficient alone gives s_j x = 2 V_j - sum of the others
        three = count == 3
        if three.any():
            rest = (np.where(have, val, 0.0)[:, :, None] * BLOCK_SIGNS[None]).sum(1)  # (n, 3), integers
            a, b = signs * (2 * lo - rest), signs * (2 * hi - rest)
            low = np.where(three, np.minimum(a, b).max(1), low)
            high = np.where(three, np.maximum(a, b).min(1), high)
        # one or two mates known: x - k = f . V with f = (s_x - s_k) / 2, k the first known mate
        first = np.argmax(have, 1)
        base = val[np.arange(n), first]
        f = (signs - BLOCK_SIGNS[first]) // 2  # two of its entries are +-1
        one = count == 1
        if one.any():
            a, b = _scaled(f, lo, hi)
            low = np.where(one, base + _sum3(a), low)
            high = np.where(one, base + _sum3(b), high)
        two = count == 2
        if two.any():
            # the second known mate k2 fixes e . V = k2 - k, e = (s_k2 - s_k) / 2; e and f share one
            # variable A (the rest: B in e, C in f): A = (k2 - k - e_B B) / e_A, within its interval
            later = have.copy()
            later[np.arange(n), first] = False
            second = np.argmax(later, 1)
            e = (BLOCK_SIGNS[second] - BLOCK_SIGNS[first]) // 2
            delta = val[np.arange(n), second] - base
            shared = (e != 0) & (f != 0)
            only_e = (e != 0) & ~shared
            eb_lo, eb_hi = (_sum3(v) for v in _scaled(e * only_e, lo, hi))  # e_B B: one term
            ea = (e * shared).sum(1)  # +-1
            a_lo = np.where(ea > 0, delta - eb_hi, -(delta - eb_lo))
            a_hi = np.where(ea > 0, delta - eb_lo, -(delta - eb_hi))
            a_lo = np.maximum(a_lo, _sum3(np.where(shared, lo, 0.0)))
            a_hi = np.minimum(a_hi, _sum3(np.where(shared, hi, 0.0)))
            fa = (f * shared).sum(1)
            c_lo, c_hi = (_sum3(v) for v in _scaled(f * ((f != 0) & ~shared), lo, hi))
            low = np.where(two, base + np.where(fa > 0, a_lo, -a_hi) + c_lo, low)
            high = np.where(two, base + np.where(fa > 0, a_hi, -a_lo) + c_hi, high)
        return low, high


def _sum3(v: np.ndarray) -> np.ndarray:
    """(v_1 + v_2) + v_3 per row of an (n, 3) float64 array: the order FORMAT.md 6.6.4 gives (a
    zero term leaves the sum of the other two exact)."""
    return v[:, 0] + v[:, 1] + v[:, 2]


def _scaled(f: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per entry, the interval of f V for V in [lo, hi] and f in {-1, 0, 1}."""
    return np.where(f > 0, lo, np.where(f < 0, -hi, 0.0)), np.where(f > 0, hi, np.where(f < 0, -lo, 0.0))


def _bins(activity: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return np.searchsorted(thresholds, activity, side="right")


# ----------------------------------------------------------------------------- encoder choices


def _fit(feats: np.ndarray, target: np.ndarray, activity: np.ndarray, normal: bool = False) -> np.ndarray:
    """Integer coefficients: least squares reweighted towards least absolute error. Features that
    are nearly collinear (form 2's levels of an earlier colour and its symbol, in a small pass of a
    noisy image) can give huge coefficients that cancel; then the fit is redone with a ridge.
    `normal` (form 5) solves each system by its normal equations instead of an SVD of the pixels'
    rows: a fit that differs in the last digits, and a form-5 tail of kodim23 encoded in 4.8 s
    instead of 5.9 s (the encoders of forms 1-4 keep the SVD, so that they still write their
    releases' files byte for byte)."""
    a = feats.astype(np.float64)
    t = target.astype(np.float64)
    act = activity / 16.0

    def solve(ridge: float) -> np.ndarray:
        """IRLS; with a ridge, rows sqrt(ridge x mean squared row norm) x I appended to each system."""
        rows = None
        if ridge:
            rows = np.sqrt(ridge * max(1.0, float((a * a).sum()) / a.shape[0])) * np.eye(a.shape[1])

        def lstsq(m: np.ndarray, y: np.ndarray) -> np.ndarray:
            if normal:
                gram = m.T @ m + (rows.T @ rows if rows is not None else 0.0)
                return np.linalg.lstsq(gram, m.T @ y, rcond=None)[0]
            if rows is not None:
                m, y = np.concatenate([m, rows]), np.concatenate([y, np.zeros(rows.shape[0])])
            return np.linalg.lstsq(m, y, rcond=None)[0]

        coef = lstsq(a, t)
        for _ in range(4):
            w = 1.0 / np.sqrt(np.abs(t - a @ coef) + 1.0 + 0.5 * act)
            coef = lstsq(a * w[:, None], t * w)
        return coef

    coef = solve(0.0)
    if np.abs(coef).max() >= FIT_LIMIT:
        coef = solve(1e-6)
    return np.clip(np.rint(coef * 2.0**FRAC), 1 - MAX_COEF, MAX_COEF - 1).astype(np.int64)


def logistic_bits(v: np.ndarray, m: np.ndarray, s: float, bounds: Bounds | None = None) -> np.ndarray:
    """Approximate -log2 P(v) (encoder choices only; the coder uses entropy.py's exact model), the
    ends (0 and 255, or form 10's bounds) taking the tails."""
    low, high = (0, 255) if bounds is None else bounds
    with np.errstate(over="ignore"):
        up = np.where(v >= high, 1.0, 1.0 / (1.0 + np.exp(-(v + 0.5 - m) / s)))
        dn = np.where(v <= low, 0.0, 1.0 / (1.0 + np.exp(-(v - 0.5 - m) / s)))
    return -np.log2(np.maximum(up - dn, 1e-12))


def _fit_weights(terms: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Form 5: non-negative integer term weights (WEIGHT_FRAC fractional bits) that predict 16 |k|
    by least squares with a constant, a negative weight dropped (set to 0) and the rest refitted."""
    a = np.concatenate([terms, np.ones((terms.shape[0], 1), np.int64)], 1).astype(np.float64)
    y = 16.0 * np.abs(k).astype(np.float64)
    active = list(range(terms.shape[1]))
    w = np.zeros(0)
    while active:
        w = np.linalg.lstsq(a[:, active + [terms.shape[1]]], y, rcond=None)[0][:-1]
        if (w >= 0).all():
            break
        active.pop(int(np.argmin(w)))
    out = np.zeros(terms.shape[1])
    out[active] = w[: len(active)] if active else 0.0
    return np.clip(np.rint(out * 2.0**WEIGHT_FRAC), 0, MAX_WEIGHT - 1).astype(np.int64)


def _choose_shift(
    feats: np.ndarray,
    v: np.ndarray,
    coefs: list[np.ndarray],
    cls: np.ndarray,
    activity: np.ndarray,
    form: int,
    bounds: Bounds | None = None,
) -> tuple[int, np.ndarray, np.ndarray]:
    """Form 5: (shift, thresholds, scale codes): how many low bits of the coefficients to drop
    (they are sent shifted), where the bytes saved outweigh the estimated bits lost: a small pass's
    coefficients can cost more than their precision buys. The coefficients are rounded to the chosen
    multiple of 2^shift; shifts are tried upwards until one estimates worse. The bins are chosen
    for the unshifted coefficients, then again for the shifted ones if the shift is not 0. Form 10:
    the locations clipped into the pixels' bounds, the priors truncated to them."""

    def location(rounded: list[np.ndarray]) -> np.ndarray:
        mu = _class_location(feats, rounded, cls)
        return mu if bounds is None else np.clip(mu, bounds[0], bounds[1])

    thresholds, codes = _choose_bins(v, location(coefs), activity, form, bounds)
    scale = codes[_bins(activity, thresholds)] / float(SCALE_DENOM)
    best, best_bits = 0, np.inf
    for shift in range(MAX_SHIFT + 1):
        rounded = [_round_coef(coef, shift) for coef in coefs]
        sent = sum(len(put_varint(_zigzag(int(z)))) for coef in rounded for z in coef >> shift)
        bits = float(logistic_bits(v, location(rounded), scale, bounds).sum()) + 8 * sent
        if bits >= best_bits:
            break
        best, best_bits = shift, bits
    if best:
        thresholds, codes = _choose_bins(
            v, location([_round_coef(c, best) for c in coefs]), activity, form, bounds
        )
    return best, thresholds, codes


def _round_coef(coef: np.ndarray, shift: int) -> np.ndarray:
    """coef rounded to a multiple of 2^shift (half away from zero), kept inside MAX_COEF."""
    if shift == 0:
        return coef
    half = 1 << (shift - 1)
    out = np.where(coef >= 0, (coef + half) >> shift, -((-coef + half) >> shift)) << shift
    return np.clip(out, -((MAX_COEF - 1) >> shift << shift), (MAX_COEF - 1) >> shift << shift)


def _class_cuts(activity: np.ndarray) -> np.ndarray:
    """Form 5: activity cuts that split a pass and colour into up to CLASSES predictor classes of
    about equal size, each of at least PIXELS_PER_CLASS pixels (none in a small pass)."""
    want = int(min(CLASSES, activity.size // PIXELS_PER_CLASS))
    if want < 2:
        return np.zeros(0, np.int64)
    qs = np.quantile(activity, np.linspace(0, 1, want + 1)[1:-1])
    cuts = np.unique(np.ceil(qs).astype(np.int64))
    cuts = cuts[cuts > activity.min()]
    while cuts.size:
        counts = np.bincount(_bins(activity, cuts), minlength=cuts.size + 1)
        if counts.min() >= PIXELS_PER_CLASS:
            break
        small = int(np.argmin(counts))  # merge the smallest class with a neighbour
        cuts = np.delete(cuts, min(small, cuts.size - 1))
    return cuts


def _choose_bins(
    v: np.ndarray, mu: np.ndarray, activity: np.ndarray, form: int, bounds: Bounds | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, scale codes): activity quantiles, and the best scale of a grid per bin (form 6
    on: a finer grid that goes lower, and bins of half as many pixels; form 10: for the priors
    truncated to the pixels' bounds)."""
    scales = FINE_SCALES if form >= 6 else SCALES
    per_bin = FINE_PIXELS_PER_BIN if form >= 6 else PIXELS_PER_BIN
    nbins = int(np.clip(v.size // per_bin, 1, MAX_BINS))
    qs = np.quantile(activity, np.linspace(0, 1, nbins + 1)[1:-1]) if nbins > 1 else np.zeros(0)
    thresholds = np.unique(np.ceil(qs).astype(np.int64))
    thresholds = thresholds[thresholds > activity.min()] if thresholds.size else thresholds
    which = _bins(activity, thresholds)
    codes = np.empty(thresholds.size + 1, np.int64)
    for b in range(codes.size):
        sel = which == b
        if not sel.any():
            codes[b] = SCALE_DENOM
            continue
        if form >= 8:
            part = None if bounds is None else (bounds[0][sel], bounds[1][sel])
            best = _best_scale(v[sel], mu[sel], scales, bounds=part)
        else:
            best = int(np.argmin([float(logistic_bits(v[sel], mu[sel], s).sum()) for s in scales]))
        codes[b] = max(1, int(round(scales[best] * SCALE_DENOM)))
    return thresholds, codes


def _best_scale(
    v: np.ndarray, mu: np.ndarray, scales: np.ndarray, stride: int = 3, bounds: Bounds | None = None
) -> int:
    """Form 8 on: the index of the scale of least estimated bits, by a search that tries every
    `stride`-th scale, then the neighbours of the best of those: the grid's best wherever the bits
    fall and rise once along the grid (a third of the evaluations; the encoders of forms 1-7 try
    every scale, to write their releases' files byte for byte)."""
    cost: dict[int, float] = {}

    def bits(i: int) -> float:
        if i not in cost:
            cost[i] = float(logistic_bits(v, mu, scales[i], bounds).sum())
        return cost[i]

    coarse = list(range(0, scales.size, stride))
    if coarse[-1] != scales.size - 1:
        coarse.append(scales.size - 1)
    c = min(coarse, key=bits)
    return min(range(max(0, c - stride + 1), min(scales.size, c + stride)), key=bits)


# ----------------------------------------------------------------------------- serialisation


def _put_increasing(params: bytearray, values: np.ndarray) -> None:
    """A count, then increasing integers as differences (the first from 0)."""
    params += put_varint(values.size)
    prev = 0
    for t in values:
        params += put_varint(int(t) - prev)
        prev = int(t)


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


class _Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def uint(self) -> int:
        got = get_varint(self.data, self.pos, limit=10)
        if got is None:
            raise FormatError("lossless tail ends early")
        value, self.pos = got
        return value

    def uints(self, count: int, limit: int) -> np.ndarray:
        """count varints as int64, each below limit (<= 2^62), else corruption."""
        values = [self.uint() for _ in range(count)]
        if any(v >= limit for v in values):
            raise FormatError("lossless tail parameter out of range")
        return np.array(values, np.int64)

    def sint(self) -> int:
        z = self.uint()
        return z // 2 if z % 2 == 0 else -(z + 1) // 2

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise FormatError("lossless tail ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


# ----------------------------------------------------------------------------- coder


def _num_features(p: Pass, has_side: bool, earlier: int, form: int = FORM) -> int:
    n = len(p.offsets) * (2 if has_side else 1) + (1 if has_side else 0) + earlier + 1
    if form >= 2:
        n += earlier * (1 + len(p.offsets) + (1 if has_side else 0))
    if form >= 3 and p.offsets:
        n += 1
    if form >= 4 and p.offsets:
        n += 1 + earlier
    if form >= 6 and p.offsets:
        n += earlier
    if form >= 7 and p.offsets:
        n += earlier
    return n


def _check_form(form: int) -> None:
    if form not in FORMS:
        raise ValueError(f"lossless tail form must be one of {FORMS}")


@dataclass
class Coded:
    """A coded tail: its parameters (what a layer header carries) and, per pass that codes any
    pixel, the number of elements (pixels x 3) and the ANS payload (one chunk each)."""

    params: bytes
    chunks: list[tuple[int, bytes]]

    def to_bytes(self) -> bytes:
        """A standalone form: the parameters' length and the parameters, then each payload's
        length in words and the payload."""
        out = bytearray()
        out += put_varint(len(self.params))
        out += self.params
        for _, payload in self.chunks:
            out += put_varint(len(payload) // 4)
            out += payload
        return bytes(out)


def encode_passes(
    pixels: np.ndarray, side: np.ndarray | None = None, form: int = FORM, intervals: Intervals | None = None
) -> Coded:
    """Losslessly code uint8 pixels (H, W, 3), optionally given a side image of the same shape
    that the decoder also has, with the feature set `form` (an earlier one only to reproduce older
    files). Form 7 codes green in raster order (tail_green.py) where that is estimated to cost fewer
    bits than green in the interlaced passes, else green in the passes too; its parameters begin
    with which (GREEN_ORDERS). Form 8 may code red and blue in raster order too, each guided by
    green, where that gives fewer bytes than the passes (entropy-coded only where the estimate says
    it may: RASTER_MARGIN). Form 10 given the chain's known intervals bounds each pixel by them
    (Intervals), form 11 its raster planes by the coarser bands' too; without them either codes as
    form 9."""
    _check_form(form)
    if intervals is not None and form < 10:
        raise ValueError("known intervals bound the levels from form 10 on")
    intervals = None if intervals is None else intervals.for_form(form)
    x = np.ascontiguousarray(pixels, dtype=np.uint8)
    if side is not None and side.shape != x.shape:
        raise ValueError("side image and pixels differ in shape")
    if form < 7:
        return _encode_interlaced(x, side, form)
    from . import tail_green  # it builds on this module

    raster = tail_green.encode(x[..., 1], None if side is None else side[..., 1], form, None, intervals, 1)
    if raster.bits >= _interlaced_green_bits(x, side, form, intervals):
        coded = _encode_interlaced(x, side, form, None, intervals)
        return Coded(put_varint(GREEN_ORDERS.index("interlaced")) + coded.params, coded.chunks)
    rest = _encode_interlaced(x, side, form, raster.symbols, intervals)
    n = x.shape[0] * x.shape[1]
    coded = Coded(
        put_varint(GREEN_ORDERS.index("raster")) + raster.params + rest.params,
        [(n, raster.payload)] + rest.chunks,
    )
    if form < 8:
        return coded
    red = tail_green.encode(x[..., 0], x[..., 1], form, None, intervals, 0)
    blue = tail_green.encode(x[..., 2], x[..., 1], form, x[..., 0] if form >= 9 else None, intervals, 2)
    if red.bits + blue.bits > (1.0 + RASTER_MARGIN) * 8.0 * (
        len(rest.params) + sum(len(p) for _, p in rest.chunks)
    ):
        return coded  # clearly larger by the estimate: not entropy-coded
    params = put_varint(GREEN_ORDERS.index("all raster")) + raster.params + red.params + blue.params
    alone = Coded(params, [(n, raster.payload), (n, red.payload), (n, blue.payload)])
    return alone if len(alone.to_bytes()) < len(coded.to_bytes()) else coded


def _encode_interlaced(
    x: np.ndarray,
    side: np.ndarray | None,
    form: int,
    green: np.ndarray | None = None,
    intervals: Intervals | None = None,
) -> Coded:
    """The interlaced passes; given green's symbols (H, W) from raster order, those of red and
    blue only, with green known everywhere and its symbols those given."""
    height, width, _ = x.shape
    known = np.zeros((height, width), bool)
    errors = np.zeros((height, width, 3), np.int64) if form >= 2 else None
    colours = COLOURS if green is None else COLOURS[1:]
    if green is not None:
        assert errors is not None
        errors[..., COLOURS[0]] = green
    params = bytearray()
    chunks = []
    for p in passes(height, width, form):
        if p.rows.size == 0:
            continue
        near = _neighbour_index(p, height, width)
        earlier: list[np.ndarray] = [] if green is None else [green[p.rows, p.cols]]
        ks, priors = [], []
        for c in colours:
            k, prior = _code_colour(params, p, near, known, x, side, c, earlier, errors, form, intervals)
            ks.append(k)
            priors.append(prior)
        n = p.rows.size
        groups = [np.arange(g * n, (g + 1) * n) for g in range(len(colours))]
        chunks.append((len(colours) * n, entropy.encode_step(np.concatenate(ks), _concat(priors), groups)))
        known[p.rows, p.cols] = True
    return Coded(bytes(params), chunks)


def _interlaced_green_bits(
    x: np.ndarray, side: np.ndarray | None, form: int, intervals: Intervals | None = None
) -> float:
    """Form 7's (and 8's) choice: the estimated bits of green in the interlaced passes (its parameters' bytes
    included), which do not depend on red and blue."""
    height, width, _ = x.shape
    known = np.zeros((height, width), bool)
    errors = np.zeros((height, width, 3), np.int64)
    params = bytearray()
    bits = 0.0
    for p in passes(height, width, form):
        if p.rows.size:
            near = _neighbour_index(p, height, width)
            k, prior = _code_colour(params, p, near, known, x, side, COLOURS[0], [], errors, form, intervals)
            ends = (np.rint(prior.lower_known + 0.5), np.rint(prior.upper_known - 0.5))
            bits += float(logistic_bits(k + np.rint(prior.loc), prior.loc, prior.scale, ends).sum())
            known[p.rows, p.cols] = True
    return bits + 8.0 * len(params)


def _code_colour(
    params: bytearray,
    p: Pass,
    near,
    known: np.ndarray,
    x: np.ndarray,
    side: np.ndarray | None,
    c: int,
    earlier: list[np.ndarray],
    errors: np.ndarray | None,
    form: int,
    intervals: Intervals | None = None,
) -> tuple[np.ndarray, entropy.StepPrior]:
    """The encoder's choices for colour c of pass p: its parameters (appended), its symbols k and
    their prior; k is appended to `earlier` and written into `errors`. With intervals (form 10)
    the locations are clipped into the pixels' bounds, which truncate the prior."""
    feats, activity = _features(p, near, known, x, side, c, earlier, errors, form)
    v = x[p.rows, p.cols, c].astype(np.int64)
    bounds = None if intervals is None else intervals.bounds(p.rows, p.cols, c, x[..., c], known)
    coef = _fit(feats, v, activity, normal=form >= 5)
    mu = _location(feats, coef)
    if form >= 5:
        assert errors is not None
        terms = _terms(p, near, feats, known, side, c, earlier, errors, form)
        weights = _fit_weights(terms, v - np.rint(mu).astype(np.int64))
        activity = _weighted(terms, weights)
        cuts = _class_cuts(activity)
        cls = _bins(activity, cuts)
        coefs = [
            _fit(feats[cls == j], v[cls == j], activity[cls == j] >> WEIGHT_FRAC, normal=True)
            for j in range(cuts.size + 1)
        ]
        shift, thresholds, codes = _choose_shift(feats, v, coefs, cls, activity, form, bounds)
        coefs = [_round_coef(coef, shift) for coef in coefs]
        mu = _class_location(feats, coefs, cls)
        _put_colour(params, weights, cuts, shift, coefs, thresholds, codes)
    else:
        thresholds, codes = _choose_bins(v, mu, activity, form)
        _put_colour(params, None, None, 0, [coef], thresholds, codes)
    if bounds is not None:
        mu = np.clip(mu, bounds[0], bounds[1])
    k = v - np.rint(mu).astype(np.int64)
    earlier.append(k)
    if errors is not None:
        errors[p.rows, p.cols, c] = k
    return k, _prior(mu, codes[_bins(activity, thresholds)] / float(SCALE_DENOM), bounds)


def _put_colour(
    params: bytearray,
    weights: np.ndarray | None,
    cuts: np.ndarray | None,
    shift: int,
    coefs: list[np.ndarray],
    thresholds: np.ndarray,
    codes: np.ndarray,
) -> None:
    """One pass and colour's parameters (FORMAT.md 6.6): from form 5 on (weights given) the term
    weights, the class cuts and the shift; the coefficients (shifted); the thresholds and codes."""
    if weights is not None:
        for w in weights:
            params += put_varint(int(w))
        _put_increasing(params, cuts)
        params += put_varint(shift)
    for coef in coefs:
        for value in coef >> shift:
            params += put_varint(_zigzag(int(value)))
    _put_increasing(params, thresholds)
    for code in codes:
        params += put_varint(int(code))


def encode(pixels: np.ndarray, side: np.ndarray | None = None, form: int = FORM) -> bytes:
    """encode_passes in its standalone form (Coded.to_bytes)."""
    return encode_passes(pixels, side, form).to_bytes()


def _concat(priors: list[entropy.StepPrior]) -> entropy.StepPrior:
    return entropy.StepPrior(
        *(
            np.concatenate([getattr(p, f) for p in priors])
            for f in ("loc", "scale", "dither", "quant_step", "bound")
        ),
        np.concatenate([p.lower_known for p in priors]),
        np.concatenate([p.upper_known for p in priors]),
    )


MAX_COEF = 1 << 31  # |c| below this: sum c f stays far inside int64 (and mu exact in float64)
MAX_THRESHOLD = 1 << 40
MAX_SCALE_CODE = 1 << 20


def _get_increasing(src: _Reader, limit: int, what: str) -> np.ndarray:
    """_put_increasing's inverse: fewer than `limit` values, strictly increasing, below MAX_THRESHOLD."""
    count = src.uint()
    if count >= limit:
        raise FormatError(f"lossless tail has too many {what}")
    values = np.cumsum(src.uints(count, MAX_THRESHOLD)).astype(np.int64)
    if (values >= MAX_THRESHOLD).any():
        raise FormatError("lossless tail parameter out of range")
    if (np.diff(values) <= 0).any():
        raise FormatError("invalid lossless tail parameters")
    return values


@dataclass
class _Colour:
    """One pass and colour's parameters: a coefficient set per predictor class, the activity's
    thresholds and scale codes, and from form 5 on the term weights and the class cuts."""

    coefs: list[np.ndarray]
    thresholds: np.ndarray
    codes: np.ndarray
    weights: np.ndarray | None
    cuts: np.ndarray

    def predict(self, feats: np.ndarray, activity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(location, scale) of the pass's pixels, given their features and activity."""
        mu = _class_location(feats, self.coefs, _bins(activity, self.cuts))
        return mu, self.codes[_bins(activity, self.thresholds)] / float(SCALE_DENOM)


class TailDecoder:
    """Decodes a tail chunk by chunk, in order: a pass each (in form 7 with green in raster order,
    green's chunk first, then red and blue per pass), given its parameters. image() is what a
    decoder shows: exact where decoded, the prediction in the first pass not yet decoded in full,
    the side image (or grey) elsewhere."""

    def __init__(
        self,
        params: bytes,
        height: int,
        width: int,
        side: np.ndarray | None = None,
        form: int = FORM,
        intervals: Intervals | None = None,
    ):
        _check_form(form)
        if side is not None and side.shape != (height, width, 3):
            raise ValueError("side image does not match the image's shape")
        if intervals is not None and form < 10:
            raise ValueError("known intervals bound the levels from form 10 on")
        intervals = None if intervals is None else intervals.for_form(form)
        self.height, self.width, self.side = height, width, side
        self.intervals = intervals  # form 10: the chain's, which bound the levels
        src = _Reader(params)
        self.green = None  # form 7 with green in raster order: its decoder (tail_green.py)
        self.raster: list[_Colour] = []  # form 8, all in raster order: red's and blue's parameters
        order = 0
        if form >= 7:
            order = src.uint()
            if order >= (3 if form >= 8 else 2):
                raise FormatError("lossless tail parameter out of range")
            if order:
                from . import tail_green  # it builds on this module

                has_side = side is not None
                counts = tail_green.num_terms(has_side, form), tail_green.num_features(has_side, form)
                colour = _read_colour(src, *counts, 5)
                self.green = tail_green.Decoder(
                    colour, height, width, None if side is None else side[..., 1], form, None, intervals, 1
                )
                # red's parameters, then blue's (from form 9 on guided by red too)
                if GREEN_ORDERS[order] == "all raster":
                    self.raster = [
                        _read_colour(
                            src,
                            tail_green.num_terms(True, form, guided),
                            tail_green.num_features(True, form, guided),
                            5,
                        )
                        for guided in (False, form >= 9)
                    ]
        self.lead = (0, 1, 3)[order]  # colours in raster order, green first: a chunk each, before the passes
        self.colours = COLOURS[self.lead :]  # the colours of the passes
        self.passes = [p for p in passes(height, width, form) if p.rows.size] if self.colours else []
        self.x = np.zeros((height, width, 3), np.uint8)
        self.known = np.zeros((height, width), bool)
        self.decoded = np.zeros((height, width, 3), bool)
        self.form = form
        self.errors = np.zeros((height, width, 3), np.int64) if form >= 2 else None  # coded k
        self.next = 0  # the next chunk to decode
        self.open = 0  # the first chunk not decoded in full
        skip = 3 - len(self.colours)
        self.params = [
            [_read_colour(src, *self._counts(p, e), form) for e in range(skip, 3)] for p in self.passes
        ]
        if src.pos != len(params):
            raise FormatError("bytes after the lossless tail's parameters")

    def _counts(self, p: Pass, earlier: int) -> tuple[int, int]:
        """(terms, features) of a pass's colour with `earlier` colours coded before it."""
        has_side = self.side is not None
        return _num_terms(p, has_side, earlier, self.form), _num_features(p, has_side, earlier, self.form)

    def _predict(
        self, p: Pass, near, x: np.ndarray, c: int, colour: _Colour, earlier: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, Bounds | None]:
        """(location, scale, form 10's bounds or None) of colour c's pixels in pass p, given the
        levels x decoded so far and the symbols of the colours before it (in form 5 the activity is
        the weighted sum of its terms)."""
        feats, activity = _features(p, near, self.known, x, self.side, c, earlier, self.errors, self.form)
        if colour.weights is not None:
            activity = _weighted(
                _terms(p, near, feats, self.known, self.side, c, earlier, self.errors, self.form),
                colour.weights,
            )
        mu, scale = colour.predict(feats, activity)
        if self.intervals is None:
            return mu, scale, None
        bounds = self.intervals.bounds(p.rows, p.cols, c, x[..., c], self.known)
        return np.clip(mu, bounds[0], bounds[1]), scale, bounds

    def _earlier(self, p: Pass) -> list[np.ndarray]:
        """The symbols of the colours coded before a pass's: green's, if it went first in raster order."""
        if self.green is None:
            return []
        assert self.errors is not None
        return [self.errors[p.rows, p.cols, COLOURS[0]]]

    def counts(self) -> list[int]:
        """Elements per chunk: what each chunk must declare."""
        return [self.height * self.width] * self.lead + [len(self.colours) * p.rows.size for p in self.passes]

    def decode_pass(self, payload: bytes, cut: bool = False) -> bool:
        """Decode the next chunk from its payload (a prefix of it if cut); True if every element
        of it was received. FormatError if the stream does not end where it should."""
        if self.next >= self.lead + len(self.passes):
            raise FormatError("more lossless tail chunks than passes")
        if self.next < self.lead:
            return self._decode_raster(payload, cut)
        p, per = self.passes[self.next - self.lead], self.params[self.next - self.lead]
        near = _neighbour_index(p, self.height, self.width)
        stream = entropy.StepStream(payload, cut)
        earlier = self._earlier(p)
        whole = True
        for c, colour in zip(self.colours, per):
            mu, scale, bounds = self._predict(p, near, self.x, c, colour, earlier)
            k, got = stream.group(_prior(mu, scale, bounds))
            v = k + np.rint(mu).astype(np.int64)
            if (v[got] < 0).any() or (v[got] > 255).any():
                raise FormatError("lossless tail decodes outside 0..255")
            self.x[p.rows[got], p.cols[got], c] = v[got]
            self.decoded[p.rows[got], p.cols[got], c] = True
            if self.errors is not None:
                self.errors[p.rows[got], p.cols[got], c] = k[got]
            earlier.append(k)
            if not got.all():
                whole = False
                break
        stream.finish()
        self.known[p.rows, p.cols] = whole
        self.next += 1
        self.open = self.next if whole else self.next - 1
        return whole

    def _decode_raster(self, payload: bytes, cut: bool) -> bool:
        """Green's chunk, or (all in raster order) red's or blue's, guided by the decoded green."""
        assert self.green is not None and self.errors is not None
        dec = self.green
        if self.next:
            from . import tail_green  # it builds on this module

            green = self.x[..., COLOURS[0]].copy()
            guide = self.x[..., 0].copy() if self.next == 2 and self.form >= 9 else None  # blue's: red
            c = COLOURS[self.next]
            dec = tail_green.Decoder(
                self.raster[self.next - 1],
                self.height,
                self.width,
                green,
                self.form,
                guide,
                self.intervals,
                c,
            )
        whole = dec.decode(payload, cut)
        levels, symbols, done = dec.plane()
        c = COLOURS[self.next]
        self.x[..., c], self.errors[..., c], self.decoded[..., c] = levels, symbols, done
        self.next += 1
        self.open = self.next if whole else self.next - 1
        return whole

    @property
    def complete(self) -> bool:
        return self.next == self.lead + len(self.passes) and bool(self.decoded.all())

    def image(self) -> np.ndarray:
        """Exact levels where decoded; in the first pass not decoded in full, rint(mu) for the rest
        (mu from the known neighbours, with the symbol of a colour not decoded at the pixel taken
        as 0, its level as that rint(mu)); the side image (or grey) elsewhere (FORMAT.md 7)."""
        base = self.side if self.side is not None else np.full_like(self.x, 128)
        out = np.where(self.decoded, self.x, base)
        if self.open < self.lead or self.open >= self.lead + len(self.passes):
            return out
        p, per = self.passes[self.open - self.lead], self.params[self.open - self.lead]
        near = _neighbour_index(p, self.height, self.width)
        earlier = self._earlier(p)
        x = self.x.copy()  # the open pass's colours: decoded levels, else their guesses (form 2)
        for c, colour in zip(self.colours, per):
            mu, _, _ = self._predict(p, near, x, c, colour, earlier)
            guess = np.rint(mu).astype(np.int64)
            have = self.decoded[p.rows, p.cols, c]
            value = np.where(have, self.x[p.rows, p.cols, c], guess)
            out[p.rows, p.cols, c] = value
            x[p.rows, p.cols, c] = value
            earlier.append(np.where(have, value - guess, 0))
        return out


def _read_colour(src: _Reader, num_terms: int, num_features: int, form: int) -> _Colour:
    """_put_colour's inverse, checking every value's range."""
    weights, cuts, shift = None, np.zeros(0, np.int64), 0
    if form >= 5:
        weights = src.uints(num_terms, MAX_WEIGHT)
        cuts = _get_increasing(src, MAX_CLASSES, "predictor classes")
        shift = src.uint()
        if shift > MAX_SHIFT:
            raise FormatError("lossless tail parameter out of range")
    sets = [[src.sint() << shift for _ in range(num_features)] for _ in range(cuts.size + 1)]
    if any(abs(z) >= MAX_COEF for coef in sets for z in coef):
        raise FormatError("lossless tail parameter out of range")
    coefs = [np.array(coef, np.int64) for coef in sets]
    thresholds = _get_increasing(src, MAX_BINS, "activity bins")
    codes = src.uints(thresholds.size + 1, MAX_SCALE_CODE)
    if (codes < 1).any():
        raise FormatError("invalid lossless tail parameters")
    return _Colour(coefs, thresholds, codes, weights, cuts)


def decode(
    data: bytes, height: int, width: int, side: np.ndarray | None = None, form: int = FORM
) -> np.ndarray:
    """Inverse of encode: the exact pixels (H, W, 3) uint8. FormatError on damaged data."""
    src = _Reader(data)
    size = src.uint()
    dec = TailDecoder(src.take(size), height, width, side, form)
    for _ in dec.counts():
        words = src.uint()
        dec.decode_pass(src.take(4 * words))
    if src.pos != len(data):
        raise FormatError("bytes after the lossless tail")
    return dec.x
