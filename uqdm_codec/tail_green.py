"""Forms 7 to 11 of the lossless tail: a plane in raster order, one wavefront at a time (FORMAT.md
6.6.1 to 6.6.5).

The interlaced tail predicts its coarse passes from neighbours far apart; a raster-order coder
sees every pixel's causal neighbours at distance 1 and 2. On smooth and edged photos that codes
green (43-48 % of the tail) 2-5 % smaller; on grainy ones, where interpolating between known
neighbours on both sides beats extrapolating from one, it loses (docs/MODEL.md section 35), so the
encoder estimates green's bits both ways and codes green in the cheaper order. In form 7 red and
blue stay interlaced (they see green at every neighbour either way, and lost 4-5 % in raster order
then).

Pixels go in wavefronts t = 2i + j (row i, column j), by increasing row within one: each causal
neighbour used (W, N, NW, NE, WW, NN, NNW, NNE) has 2 di + dj < 0, so it lies in an earlier
wavefront, and a wavefront's pixels are predicted, coded and decoded together (about 2H + W
wavefronts, one entropy-coded group each). The predictor is the tail's: integer features,
coefficients per activity class, a logistic whose scale is binned by a weighted activity; its
features and terms are those of `Grid.features`.

Form 8 (FORMAT.md 6.6.2) adds JPEG XL's self-correcting idea: simple sub-predictions (N, W,
N + W - NW, ..., the side image plus a neighbour's difference to it), each weighed by how wrong it
was at the 8 causal neighbours. A linear predictor mixes its features the same way everywhere in a
class; this mix changes from pixel to pixel. Green's bytes: -2.6 % and -4.1 % on the decision sets
(docs/MODEL.md section 36). With it, red and blue in raster order, each coded here with the decoded
green as its side image (the colour-difference sub-predictions then read R - G and B - G), beat
the interlaced passes on some photos, and the encoder may choose that. Form 9 gives blue's raster
coder the decoded red as a second guide (docs/MODEL.md section 37); form 10 bounds each level by
the chain's known intervals and its 2 x 2 block's coded pixels (lossless_tail.Intervals); form 11
by the coarser bands' too, through the sums of the blocks already coded (lossless_tail.BlockSums).

No torch here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import entropy
from . import lossless_tail as lt

# W, N, NW, NE, WW, NN, NNW, NNE: the causal neighbours whose levels are features
CAUSAL = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-2, -1), (-2, 1))
# the pixel, W, N, NW, NE, E, S: where the side image's green is a feature
SIDE_AT = ((0, 0), (0, -1), (-1, 0), (-1, -1), (-1, 1), (0, 1), (1, 0))
PAD = 2  # rows above and columns either side that the padded planes hold (one row below)
NO_SIDE = 128  # an outside neighbour's level without a side image


def num_features(has_side: bool, form: int = lt.FORM, has_guide: bool = False) -> int:
    """8 levels, (7 side values), the median pair, (the side-difference median and its guided
    mean), (form 8: the weighted predictor and the best sub-predictor), (form 9's blue: 7 guide
    values, the guide-difference median and its guided mean), 4 errors, 1."""
    return 14 + (9 if has_side else 0) + (2 if form >= 8 else 0) + (9 if has_guide else 0)


def num_terms(has_side: bool, form: int = lt.FORM, has_guide: bool = False) -> int:
    """5 gradients, the errors' sum, (2 side spreads), (form 8: the best sub-predictor's error),
    (form 9's blue: 2 guide spreads)."""
    return 6 + (2 if has_side else 0) + (1 if form >= 8 else 0) + (2 if has_guide else 0)


def num_sub_predictors(has_side: bool, has_guide: bool = False) -> int:
    """Form 8: the weighted predictor's sub-predictors (Grid.sub_predictions)."""
    return (14 if has_side else 10) + (4 if has_guide else 0)


class Grid:
    """Green's padded planes (levels, coded symbols, side image, from form 8 on the sub-predictors'
    errors) and its wavefronts.

    Outside the image a neighbour's level is the side image's green at the nearest pixel (128
    without one), its symbol 0 and its sub-predictors' errors 0; the side image is extended by its
    edge pixels."""

    def __init__(
        self,
        height: int,
        width: int,
        side: np.ndarray | None,
        form: int = lt.FORM,
        guide: np.ndarray | None = None,
        intervals: lt.Intervals | None = None,
        colour: int = 1,
    ):
        if guide is not None and (side is None or form < 9):
            raise ValueError("a second guide needs a side image and form 9")
        if intervals is not None and form < 10:
            raise ValueError("known intervals bound the levels from form 10 on")
        self.height, self.width, self.form = height, width, form
        # form 10: the chain's known intervals bound each level (lossless_tail.Intervals) once a
        # pixel of its 2 x 2 block is coded; `colour` is the plane's (0, 1, 2: R, G, B)
        self.intervals, self.colour = intervals, colour
        self.coded = np.zeros((height, width), bool)
        # form 11: the coarser bands bound a level too, through the sums of its complete blocks
        self.sums = None
        if intervals is not None and form >= 11 and intervals.haar_levels:
            self.sums = lt.BlockSums(height, width, intervals.haar_levels)
        self.stride = width + 2 * PAD
        pad = ((PAD, 1), (PAD, PAD))
        # form 9, blue in raster order: red, a second guide beside the side image (green)
        self.guide = None if guide is None else np.pad(guide.astype(np.int64), pad, mode="edge").ravel()
        if side is not None:
            self.side = np.pad(side.astype(np.int64), pad, mode="edge").ravel()
            self.level = self.side.copy()
        else:
            self.side = None
            self.level = np.full((height + PAD + 1) * self.stride, NO_SIDE, np.int64)
        self.error = np.zeros_like(self.level)
        # form 8: |sub-prediction - 2 level| of each coded pixel (half levels, at most 1020), per
        # sub-predictor; int16 to keep a 1024 x 1024 region's planes at 29 MB
        self.sub_error = np.zeros(
            (self.level.size, num_sub_predictors(side is not None, guide is not None)), np.int16
        )
        self._sub = np.zeros((0, self.sub_error.shape[1]), np.int64)  # the last features() call's
        i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        t = (2 * i + j).ravel()
        self.order = np.lexsort((i.ravel(), t))  # raster index of the pixels in coding order
        self.at = ((i.ravel() + PAD) * self.stride + j.ravel() + PAD)[self.order]  # padded index
        ends = np.cumsum(np.bincount(t))
        self.fronts = [slice(int(a), int(b)) for a, b in zip(np.r_[0, ends[:-1]], ends) if b > a]
        self._causal = [di * self.stride + dj for di, dj in CAUSAL]
        self._side_at = [di * self.stride + dj for di, dj in SIDE_AT]

    def restart(self) -> None:
        """No pixel coded yet: the planes a pass over the wavefronts fills (symbols, and from form
        10 on which pixels are coded and their blocks' sums) cleared, the levels kept."""
        self.error[:] = 0
        self.coded[:] = False
        if self.sums is not None:
            self.sums.clear()

    def set_levels(self, green: np.ndarray) -> None:
        """The encoder's: every level known (features read only the causal ones), and so every
        sub-predictor's error."""
        self.level[self.at] = green.ravel()[self.order]
        if self.form >= 8:
            self.sub_error[self.at] = np.abs(self.sub_predictions(self.at) - 2 * self.level[self.at, None])

    def sub_predictions(self, at: np.ndarray) -> np.ndarray:
        """Form 8: the weighted predictor's sub-predictors at padded indices `at`, in half levels
        (n, P): 2 (N + W - NW), 2 (W + NE - N), 2 N, 2 W, N + NE, 2 NE, 2 NW, 2 (2 W - WW),
        2 (2 N - NN), W + N, and with a side image S 2 (S + W - S_W), 2 (S + N - S_N),
        2 (S + NE - S_NE), 2 (S + NW - S_NW), and with a guide R (form 9's blue) the same 4 with R
        for S."""
        w, n, nw, ne, ww, nn = (self.level[at + o] for o in self._causal[:6])
        sub = [2 * (n + w - nw), 2 * (w + ne - n), 2 * n, 2 * w, n + ne, 2 * ne]
        sub += [2 * nw, 2 * (2 * w - ww), 2 * (2 * n - nn), w + n]
        for plane in (self.side, self.guide):  # the side image's 4, then the guide's
            if plane is not None:
                here, c = plane[at], self._causal
                for level, o in ((w, c[0]), (n, c[1]), (ne, c[3]), (nw, c[2])):
                    sub.append(2 * (here + level - plane[at + o]))
        return np.stack(sub, 1)

    def levels(self) -> np.ndarray:
        """The green plane (H, W) as the padded plane holds it."""
        plane = self.level.reshape(-1, self.stride)
        return plane[PAD : PAD + self.height, PAD : PAD + self.width]

    def features(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features (n, F), terms (n, T)) as int64 of the pixels at padded indices `at`.

        Features: the 8 causal levels; with a side image its green at the pixel, W, N, NW, NE, E
        and S; the sum of the middle two of W, N, NW, NE; with a side image, twice its green at the
        pixel plus the sum of the middle two of the differences W - S_W, N - S_N, NW - S_NW,
        NE - S_NE, and those differences' mean weighed by how alike the side image is there and at
        the pixel (lossless_tail._guided); from form 8 on the weighted predictor
        floor(sum_i w_i P_i / sum_i w_i), w_i = floor(2^30 / (1 + E_i)^2), over the sub-predictions
        P_i (sub_predictions) with E_i the sum of sub-predictor i's errors at the 8 causal
        neighbours (JPEG XL's self-correcting idea: trust what was right nearby), and P_i of the
        least E_i (the first on a tie); with a guide (form 9's blue: red) its values at the pixel,
        W, N, NW, NE, E and S, twice its value at the pixel plus the sum of the middle two of the
        differences to it at W, N, NW, NE, and those differences' guided mean; the coded symbols k
        at W, N, NW, NE; 1.
        Terms: |W - NW|, |N - NW|, |N - NE|, |W - WW|, |N - NN|; the sum of |k| at W, N, NW, NE;
        with a side image, the spread of those 4 differences and the spread of the side image's
        green at W, N, E, S (lossless_tail._spread); from form 8 on the least E_i; with a guide the
        same two spreads of the guide."""
        n = [self.level[at + o] for o in self._causal]
        near = np.stack(n[:4], 1)
        e = [self.error[at + o] for o in self._causal[:4]]
        terms = [np.abs(n[0] - n[2]), np.abs(n[1] - n[2]), np.abs(n[1] - n[3])]
        terms += [np.abs(n[0] - n[4]), np.abs(n[1] - n[5]), np.abs(np.stack(e, 1)).sum(1)]
        feats = list(n)
        if self.side is None:
            feats.append(lt._middle_sum(near))
        else:
            values, pair, spreads = self._guided_by(self.side, at, near)
            feats += values + [lt._middle_sum(near)] + pair
            terms += spreads
        if self.form >= 8:
            sub = self.sub_predictions(at)
            err = sum(self.sub_error[at + o].astype(np.int64) for o in self._causal)
            weight = (1 << 30) // (1 + err) ** 2
            feats.append((weight * sub).sum(1) // weight.sum(1))
            feats.append(sub[np.arange(at.size), np.argmin(err, 1)])
            terms.append(err.min(1))
            self._sub = sub
        if self.guide is not None:
            values, pair, spreads = self._guided_by(self.guide, at, near)
            feats += values + pair
            terms += spreads
        feats += e
        feats.append(np.ones(at.size, np.int64))
        return np.stack(feats, 1), np.stack(terms, 1)

    def _guided_by(
        self, plane: np.ndarray, at: np.ndarray, near: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """What a guide plane (the side image, or form 9's second guide) gives the pixels at `at`,
        whose levels at W, N, NW, NE are `near`: its values at the pixel, W, N, NW, NE, E and S;
        twice its value at the pixel plus the median pair of the differences near - guide, and
        their guided mean; the spread of those differences and of its values at W, N, E, S."""
        g = [plane[at + o] for o in self._side_at]
        gn = np.stack(g[1:5], 1)
        diff = near - gn
        pair = [2 * g[0] + lt._middle_sum(diff), lt._guided(g[0], gn, near)]
        return g, pair, [lt._spread(diff), lt._spread(np.stack([g[1], g[2], g[5], g[6]], 1))]

    def with_symbols(
        self, at: np.ndarray, feats: np.ndarray, terms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """features(at) from a copy of it made before the symbols were known: only the 4 symbols at
        W, N, NW, NE (the features' last columns but the constant) and the sum of their sizes (the
        6th term) read the coded symbols, so these are replaced from the current planes."""
        e = np.stack([self.error[at + o] for o in self._causal[:4]], 1)
        feats, terms = feats.copy(), terms.copy()
        feats[:, -5:-1] = e
        terms[:, 5] = np.abs(e).sum(1)
        return feats, terms

    def run(
        self,
        predict: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
        take: Callable[[slice, np.ndarray, np.ndarray, lt.Bounds | None], tuple[np.ndarray, np.ndarray]],
        known: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> bool:
        """Every wavefront in turn: predict(features, terms) -> (location, what take needs: the
        encoder's activity, the decoder's scale), then take(its slice of the coding order, location,
        that, bounds) -> (k, received); the levels rint(location) + k and symbols k received go
        into the planes. False once a wavefront is not received in full (a cut chunk): the rest
        stays unknown. Form 10 with intervals: each pixel's bounds (lossless_tail.Intervals, from
        the coded pixels of its block), its location clipped into them; else bounds is None.

        known: the encoder's, whose levels (set_levels) and so every feature but the symbols' are
        known in advance: every pixel's (features, terms) in coding order, computed at once, whose
        symbol columns each wavefront then brings up to date (with_symbols): the same numbers as
        features() gives, in a fraction of its time."""
        for sl in self.fronts:
            at = self.at[sl]
            if known is None:
                mu, extra = predict(*self.features(at))
            else:
                mu, extra = predict(*self.with_symbols(at, known[0][sl], known[1][sl]))
            bounds = None
            if self.intervals is not None:
                rows, cols = np.divmod(self.order[sl], self.width)
                bounds = self.intervals.bounds(rows, cols, self.colour, self.levels(), self.coded, self.sums)
                mu = np.clip(mu, bounds[0], bounds[1])
            k, got = take(sl, mu, extra, bounds)
            if self.intervals is not None:
                self.coded[rows[got], cols[got]] = True
            at, k = at[got], k[got]
            self.error[at] = k
            if known is None:  # else the levels and the sub-predictors' errors are there already
                self.level[at] = np.rint(mu[got]).astype(np.int64) + k
                if self.form >= 8:
                    self.sub_error[at] = np.abs(self._sub[got] - 2 * self.level[at, None])
            if self.sums is not None:
                self.sums.add(rows[got], cols[got], self.level[at])
            if known is None and not got.all():
                return False
        return True


@dataclass
class Coded:
    """A plane coded in raster order: its parameters, its symbols k as a plane (H, W), the
    estimated bits of both (lossless_tail.logistic_bits, the encoder's choices), and its chunk's
    payload, entropy-coded only when asked for (an order the encoder does not choose is never
    coded)."""

    params: bytes
    symbols: np.ndarray
    bits: float
    code: Callable[[], bytes] = field(repr=False)

    @cached_property
    def payload(self) -> bytes:
        return self.code()


def encode(
    green: np.ndarray,
    side: np.ndarray | None,
    form: int = lt.FORM,
    guide: np.ndarray | None = None,
    intervals: lt.Intervals | None = None,
    colour: int = 1,
) -> Coded:
    """Code a green plane (H, W) uint8 in raster order, given the side image's green (or None),
    (form 9, blue in raster order) a second guide plane, red, and (form 10) the chain's known
    intervals, the plane being colour `colour` (0, 1, 2: R, G, B) of them."""
    height, width = green.shape
    grid = Grid(height, width, side, form, guide, intervals, colour)
    grid.set_levels(green)
    v = green.ravel()[grid.order].astype(np.int64)
    chosen = choose(grid, v)
    mu, scale, bounds = chosen.mu, chosen.scale, chosen.bounds
    k = v - np.rint(mu).astype(np.int64)
    params = bytearray()
    lt._put_colour(params, chosen.weights, chosen.cuts, 0, chosen.coefs, chosen.thresholds, chosen.codes)
    groups = [np.arange(sl.start, sl.stop) for sl in grid.fronts]
    plane = np.zeros(v.size, np.int64)
    plane[grid.order] = k
    bits = float(lt.logistic_bits(v, mu, scale, bounds).sum()) + 8.0 * len(params)
    return Coded(
        bytes(params),
        plane.reshape(height, width),
        bits,
        lambda: entropy.encode_step(k, lt._prior(mu, scale, bounds), groups),
    )


@dataclass
class Choices:
    """The encoder's choices for a plane in raster order (its parameters: term weights, class
    cuts, coefficients, scale bins) and what they give each pixel, in coding order: its location,
    activity and (form 10 with intervals) bounds."""

    weights: np.ndarray
    cuts: np.ndarray
    coefs: list[np.ndarray]
    thresholds: np.ndarray
    codes: np.ndarray
    mu: np.ndarray
    activity: np.ndarray
    bounds: lt.Bounds | None

    @property
    def scale(self) -> np.ndarray:
        return self.codes[lt._bins(self.activity, self.thresholds)] / float(lt.SCALE_DENOM)


def choose(grid: Grid, v: np.ndarray) -> Choices:
    """The encoder's choices for the plane whose levels are set in `grid` (v: them in coding order).

    The coefficients come from a first least-squares fit without the symbol features and a second
    one given that fit's symbols (the symbols a wavefront coder makes depend on the coefficients,
    so the fit sees close stand-ins); the term weights, classes and scale bins are then chosen as
    in a form-5 pass, the bins on the symbols really coded."""
    feats, terms = grid.features(grid.at)
    plain = np.r_[0 : feats.shape[1] - 5, feats.shape[1] - 1]  # without the 4 symbols
    first = lt._location(feats[:, plain], lt._fit(feats[:, plain], v, 16 * terms[:, :5].sum(1), normal=True))
    grid.error[grid.at] = v - np.rint(first).astype(np.int64)
    feats, terms = grid.features(grid.at)
    weights = lt._fit_weights(terms, v - np.rint(first).astype(np.int64))
    activity = lt._weighted(terms, weights)
    cuts = lt._class_cuts(activity)
    cls = lt._bins(activity, cuts)
    coefs = [
        lt._fit(feats[cls == j], v[cls == j], activity[cls == j] >> lt.WEIGHT_FRAC, normal=True)
        for j in range(cuts.size + 1)
    ]
    mu, activity, bounds = _run_known(grid, feats, terms, v, weights, coefs, cuts)
    thresholds, codes = lt._choose_bins(v, mu, activity, grid.form, bounds)
    return Choices(weights, cuts, coefs, thresholds, codes, mu, activity, bounds)


def _run_known(
    grid: Grid,
    feats: np.ndarray,
    terms: np.ndarray,
    v: np.ndarray,
    weights: np.ndarray,
    coefs: list[np.ndarray],
    cuts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, lt.Bounds | None]:
    """The encoder's pass over the wavefronts (Grid.run with every level known): every pixel's
    location, activity and (form 10 with intervals, else None) bounds in coding order."""
    grid.restart()
    mu, activity = np.zeros(v.size), np.zeros(v.size, np.int64)
    low, high = np.zeros(v.size, np.int64), np.full(v.size, 255, np.int64)

    def predict(f: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = lt._weighted(t, weights)
        return lt._class_location(f, coefs, lt._bins(a, cuts)), a

    def take(
        sl: slice, m: np.ndarray, a: np.ndarray, bounds: lt.Bounds | None
    ) -> tuple[np.ndarray, np.ndarray]:
        mu[sl], activity[sl] = m, a
        if bounds is not None:
            low[sl], high[sl] = bounds
        return v[sl] - np.rint(m).astype(np.int64), np.ones(m.size, bool)

    grid.run(predict, take, (feats, terms))
    return mu, activity, None if grid.intervals is None else (low, high)


class Decoder:
    """Decodes green's chunk (a prefix of it if cut), given its parameters."""

    def __init__(
        self,
        colour: lt._Colour,
        height: int,
        width: int,
        side: np.ndarray | None,
        form: int = lt.FORM,
        guide: np.ndarray | None = None,
        intervals: lt.Intervals | None = None,
        plane: int = 1,
    ):
        self.colour, self.grid = colour, Grid(height, width, side, form, guide, intervals, plane)
        self.received = np.zeros(height * width, bool)  # in coding order (a cut group's need not be a prefix)

    def decode(self, payload: bytes, cut: bool = False) -> bool:
        """True if every pixel was received. FormatError if the stream does not end where it should."""
        stream, colour = entropy.StepStream(payload, cut), self.colour

        def predict(f: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return colour.predict(f, lt._weighted(t, colour.weights))  # (location, scale)

        def take(
            sl: slice, m: np.ndarray, scale: np.ndarray, bounds: lt.Bounds | None
        ) -> tuple[np.ndarray, np.ndarray]:
            k, got = stream.group(lt._prior(m, scale, bounds))
            v = k + np.rint(m).astype(np.int64)
            if (v[got] < 0).any() or (v[got] > 255).any():
                raise lt.FormatError("lossless tail decodes outside 0..255")
            self.received[sl] = got
            return k, got

        whole = self.grid.run(predict, take)
        stream.finish()
        return whole

    def plane(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(levels, symbols, decoded) as planes (H, W): what was received, 0 / False elsewhere."""
        g = self.grid
        done = np.zeros(g.height * g.width, bool)
        done[g.order[self.received]] = True
        done = done.reshape(g.height, g.width)
        err = g.error.reshape(-1, g.stride)[PAD : PAD + g.height, PAD : PAD + g.width]
        return np.where(done, g.levels(), 0), np.where(done, err, 0), done
