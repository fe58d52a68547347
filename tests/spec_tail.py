"""The lossless tail of docs/FORMAT.md 6.6 (forms 1 to 11; the encoder writes 11), from the text alone.

Part of the second decoder (tests/spec_decoder.py); nothing here imports uqdm_codec. Pixels are
handled one group at a time (a pass's colour, or a raster plane's wavefront) with NumPy; the
bounds of 6.6.4 and 6.6.5 pixel by pixel in plain Python, as the text states them.
"""

from __future__ import annotations

import math

import numpy as np

from . import spec_container as sc

D = 6
SPLIT = 32768
G, R, B = 1, 0, 2  # colour indices; coding order G, R, B
INF = math.inf


class Corrupt(Exception):
    pass


# ----------------------------------------------------------------------------- passes (6.6)


def passes(h: int, w: int, form: int = 11) -> list[tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]]:
    """(rows, columns, neighbour offsets) of every pass with pixels, in pass order: centres split
    from form 6 on, edges from form 5 on, where they hold 32768 pixels or more."""
    out = []
    ys, xs = np.mgrid[0:h, 0:w]
    ys, xs = ys.reshape(-1), xs.reshape(-1)

    def add(mask, offsets):
        if mask.any():
            out.append((ys[mask], xs[mask], offsets))

    add((ys % 2**D == 0) & (xs % 2**D == 0), [])
    for level in range(D, 0, -1):
        d, hh = 2**level, 2 ** (level - 1)
        diag = [(-hh, -hh), (-hh, hh), (hh, -hh), (hh, hh)]
        cross = [(-hh, 0), (hh, 0), (0, -hh), (0, hh)]
        centres = (ys % d == hh) & (xs % d == hh)
        if form >= 6 and centres.sum() >= SPLIT:
            even = (ys // d + xs // d) % 2 == 0
            add(centres & even, diag)
            add(centres & ~even, diag + [(-d, 0), (d, 0), (0, -d), (0, d)])
        else:
            add(centres, diag)
        set_a = (ys % d == 0) & (xs % d == hh)
        set_b = (ys % d == hh) & (xs % d == 0)
        if form >= 5 and set_a.sum() + set_b.sum() >= SPLIT:
            add(set_a, cross)
            add(set_b, cross + diag)
        elif set_a.any() or set_b.any():
            out.append(
                (np.concatenate([ys[set_a], ys[set_b]]), np.concatenate([xs[set_a], xs[set_b]]), cross)
            )
    return out


def neighbour(y: np.ndarray, x: np.ndarray, dy: int, dx: int, h: int, w: int):
    yy, xx = y + dy, x + dx
    yy = np.where((yy < 0) | (yy >= h), y - dy, yy)
    xx = np.where((xx < 0) | (xx >= w), x - dx, xx)
    return np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)


def middle_two(values: list[np.ndarray]) -> np.ndarray:
    """M: the sum of the middle two of P values (sorted ascending)."""
    s = np.sort(np.stack(values), axis=0)
    p = len(values)
    return s[p // 2 - 1] + s[p // 2]


def spread(values: list[np.ndarray]) -> np.ndarray:
    total = sum(values)
    return sum(np.abs(len(values) * v - total) for v in values)


def guided(centre: np.ndarray, ns: list[np.ndarray], es: list[np.ndarray]) -> np.ndarray:
    """2 v_e + floor(2 sum w_k (n_k - e_k) / sum w_k), w_k = floor(1024 / (1 + |v_e - e_k|))."""
    ws = [1024 // (1 + np.abs(centre - e)) for e in es]
    num = sum(2 * wk * (n - e) for wk, n, e in zip(ws, ns, es))
    return 2 * centre + num // sum(ws)


# ----------------------------------------------------------------------------- parameters


class Params:
    """One pass's (or raster plane's) parameters of one colour (the layout from form 5 on)."""

    def __init__(self, r: sc.Reader, n_terms: int, n_features: int, form: int = 11):
        if form < 5:  # one set of coefficients, no weights, classes or shift; A is given whole
            self.weights, self.cuts = [1], []
            self.sets = [self.coefficients(r, n_features, 0)]
            self.scales(r)
            return
        self.weights = [r.varint() for _ in range(n_terms)]
        if any(v >= 2**20 for v in self.weights):
            raise Corrupt("weight")
        n_c = r.varint()
        if n_c >= 8:
            raise Corrupt("classes")
        self.cuts = list(np.cumsum([r.varint() for _ in range(n_c)]).tolist()) if n_c else []
        g = r.varint()
        if g > 12:
            raise Corrupt("shift")
        self.sets = [self.coefficients(r, n_features, g) for _ in range(n_c + 1)]
        self.scales(r)

    @staticmethod
    def coefficients(r: sc.Reader, n: int, g: int) -> np.ndarray:
        zs = [r.varint() for _ in range(n)]
        return np.array([(z // 2 if z % 2 == 0 else -(z + 1) // 2) * 2**g for z in zs], np.int64)

    def scales(self, r: sc.Reader) -> None:
        n_t = r.varint()
        if n_t >= 16:
            raise Corrupt("thresholds")
        self.thresholds = list(np.cumsum([r.varint() for _ in range(n_t)]).tolist()) if n_t else []
        self.codes = [r.varint() for _ in range(n_t + 1)]
        if any(not 1 <= c < 2**20 for c in self.codes):
            raise Corrupt("scale code")

    def prior(self, features: list[np.ndarray], terms: list[np.ndarray]):
        """(mu, s) of every pixel: activity, class, location, scale (6.6)."""
        f = np.stack(
            [np.asarray(v, np.int64) * np.ones_like(features[0], np.int64) for v in features], axis=1
        )
        a = np.zeros(f.shape[0], np.int64)
        for wj, tj in zip(self.weights, terms):
            a = a + wj * np.asarray(tj, np.int64)
        cls = np.searchsorted(np.array(self.cuts, np.int64), a, side="right")
        coefficients = np.stack(self.sets)[cls]
        total = (coefficients * f).sum(axis=1)  # exact in int64
        mu = np.clip(total.astype(np.float64) / 16384, 0, 255)
        b = np.searchsorted(np.array(self.thresholds, np.int64), a, side="right")
        return mu, np.array(self.codes, np.float64)[b] / 64


def pass_counts(p: int, e: int, form: int = 11) -> tuple[int, int]:
    """(N, F) of a pass and colour with a side image."""
    z = 1
    f = p * (1 + z) + z + e + 1
    if form >= 2:
        f += e * (1 + p + z)
    if p:
        f += (form >= 3) + (1 + e) * (form >= 4) + e * (form >= 6) + e * (form >= 7)
        n = 2 + 2 * e + 2 + e * (form >= 6)
    else:
        n = e + 1
    return n, f


# ----------------------------------------------------------------------------- bounds (6.6.4, 6.6.5)

SIGNS = [(1, 1, 1), (-1, 1, -1), (1, -1, -1), (-1, -1, 1)]  # s(p) for a, b, c, d


def interval(f: int, lo: float, hi: float) -> tuple[float, float]:
    if f == 1:
        return lo, hi
    if f == -1:
        return -hi, -lo
    return 0.0, 0.0


def mate_bounds(p: int, known: dict[int, int], v: list[tuple[float, float]]) -> tuple[float, float]:
    """6.6.4 before rounding: position p, known mates {position: level}, the block's 3 intervals."""
    sp = SIGNS[p]
    if not known:
        return -INF, INF
    if len(known) == 1:
        ((k, xk),) = known.items()
        f = [(sp[j] - SIGNS[k][j]) // 2 for j in range(3)]
        parts = [interval(f[j], *v[j]) for j in range(3)]
        lo = xk + ((parts[0][0] + parts[1][0]) + parts[2][0])
        hi = xk + ((parts[0][1] + parts[1][1]) + parts[2][1])
        return lo, hi
    if len(known) == 2:
        k, k2 = sorted(known)
        f = [(sp[j] - SIGNS[k][j]) // 2 for j in range(3)]
        e = [(SIGNS[k2][j] - SIGNS[k][j]) // 2 for j in range(3)]
        delta = known[k2] - known[k]
        a = next(j for j in range(3) if e[j] != 0 and f[j] != 0)
        b = next(j for j in range(3) if j != a and e[j] != 0)
        c = next(j for j in range(3) if j != a and f[j] != 0)
        lb, ub = interval(e[b], *v[b])
        if e[a] == 1:
            lo_a, hi_a = delta - ub, delta - lb
        else:
            lo_a, hi_a = -(delta - lb), -(delta - ub)
        lo_a, hi_a = max(lo_a, v[a][0]), min(hi_a, v[a][1])
        lc, uc = interval(f[c], *v[c])
        f_lo, f_hi = (lo_a, hi_a) if f[a] == 1 else (-hi_a, -lo_a)
        return (known[k] + f_lo) + lc, (known[k] + f_hi) + uc
    lows, highs = [], []
    for j in range(3):
        rj = sum(SIGNS[q][j] * xq for q, xq in known.items())
        t, t2 = sp[j] * (2 * v[j][0] - rj), sp[j] * (2 * v[j][1] - rj)
        lows.append(min(t, t2))
        highs.append(max(t, t2))
    return max(lows), min(highs)


def rounded(lo: float, hi: float) -> tuple[int, int]:
    lo = 0 if lo == -INF else min(max(math.ceil(lo), 0), 255)
    hi = 255 if hi == INF else min(max(math.floor(hi), 0), 255)
    return lo, hi


class Intervals:
    """The known intervals after step TS in levels (x 128), per band [LL_4, D_4, .., D_1]."""

    def __init__(self, lower: list[np.ndarray], upper: list[np.ndarray]):
        self.lower = [lo.astype(np.float64) * 128 for lo in lower]
        self.upper = [hi.astype(np.float64) * 128 for hi in upper]
        self.active = not (np.all(self.lower[4] == -256) and np.all(self.upper[4] == 256))

    def finest(self, c: int, by: int, bx: int) -> list[tuple[float, float]]:
        return [(self.lower[4][j, c, by, bx], self.upper[4][j, c, by, bx]) for j in range(3)]

    def band(self, level: int, c: int, by: int, bx: int) -> list[tuple[float, float]]:
        """The 3 detail intervals of D_level's coefficient (block of size 2^level at (by, bx))."""
        b = 5 - level
        return [(self.lower[b][j, c, by, bx], self.upper[b][j, c, by, bx]) for j in range(3)]


def passes_bounds(
    iv: Intervals, c: int, y: int, x: int, plane: np.ndarray, known_mask: np.ndarray, h: int, w: int
):
    """6.6.4 for a pixel coded in the passes: mates known when of an earlier pass."""
    by, bx = y // 2, x // 2
    if 2 * by + 1 >= h or 2 * bx + 1 >= w:
        return -INF, INF
    p = 2 * (y % 2) + (x % 2)
    known = {}
    for q in range(4):
        yy, xx = 2 * by + q // 2, 2 * bx + q % 2
        if q != p and known_mask[yy, xx]:
            known[q] = int(plane[yy, xx])
    return mate_bounds(p, known, iv.finest(c, by, bx))


def raster_bounds(
    iv: Intervals,
    c: int,
    y: int,
    x: int,
    plane: np.ndarray,
    h: int,
    w: int,
    sums: bool = True,
    levels: int = 4,
):
    """6.6.5 (and 6.6.4 in raster order) before rounding, for pixel (y, x) of wavefront 2y + x."""
    t = 2 * y + x

    def done(yy: int, xx: int) -> bool:
        return 2 * yy + xx < t

    # 6.6.4: known mates are the positions before p
    by, bx = y // 2, x // 2
    p = 2 * (y % 2) + (x % 2)
    if 2 * by + 1 >= h or 2 * bx + 1 >= w:
        lo10, hi10 = -INF, INF
    else:
        known = {q: int(plane[2 * by + q // 2, 2 * bx + q % 2]) for q in range(p)}
        lo10, hi10 = mate_bounds(p, known, iv.finest(c, by, bx))
    if not sums:  # form 10
        return lo10, hi10
    # 6.6.5: sums
    size = 2**levels
    yb, xb = y // size, x // size
    if (yb + 1) * size - 1 < h and (xb + 1) * size - 1 < w:
        lo_ll, hi_ll = iv.lower[0][c, yb, xb], iv.upper[0][c, yb, xb]
        j_hi = (2**levels * lo_ll + 4**levels * 127.5, 2**levels * hi_ll + 4**levels * 127.5)
    else:
        j_hi = (-INF, INF)
    for m in range(levels - 1, -1, -1):
        side = 2 ** (m + 1)
        py, px = y // side, x // side
        if (py + 1) * side - 1 >= h or (px + 1) * side - 1 >= w:
            j_hi = (-INF, INF)
            continue
        half = 2**m
        children = [(2 * py + q // 2, 2 * px + q % 2) for q in range(4)]  # block positions, size 2^m
        n = 2 * ((y // half) % 2) + (x // half) % 2

        # a block's last pixel in wavefront order is its bottom-right one
        complete = [done((cy + 1) * half - 1, (cx + 1) * half - 1) for cy, cx in children]
        sums = [
            int(plane[cy * half : (cy + 1) * half, cx * half : (cx + 1) * half].sum()) for cy, cx in children
        ]
        unknown = [q for q in range(4) if q != n and not complete[q]]
        rows_w = [(1, 1, 1, 1)] + [tuple(SIGNS[k][j] for k in range(4)) for j in range(3)]
        d = iv.band(m + 1, c, py, px)
        rows_iv = [j_hi] + [(side * d[j][0], side * d[j][1]) for j in range(3)]
        finite = j_hi[0] != -INF and j_hi[1] != INF
        combos = []  # (w, A, B)
        if not unknown:
            for r in range(4):
                if r == 0 and not finite:
                    continue
                combos.append((rows_w[r], *rows_iv[r]))
        elif len(unknown) <= 2:
            for r1 in range(4):
                for r2 in range(r1 + 1, 4):
                    if r1 == 0 and not finite:
                        continue
                    for g in (1, -1):
                        wv = tuple(rows_w[r1][k] + g * rows_w[r2][k] for k in range(4))
                        if all(wv[k] == 0 for k in unknown) and wv[n] != 0:
                            a1, b1 = rows_iv[r1]
                            a2, b2 = rows_iv[r2]
                            combos.append((wv, a1 + a2, b1 + b2) if g == 1 else (wv, a1 - b2, b1 - a2))
        lows, highs = [], []
        for wv, a, b in combos:
            rr = sum(wv[k] * sums[k] for k in range(4) if k != n and wv[k] != 0)
            a2, b2 = a - rr, b - rr
            wn = wv[n]
            lo, hi = (a2 / wn, b2 / wn) if wn > 0 else (b2 / wn, a2 / wn)
            lows.append(lo)
            highs.append(hi)
        j_hi = (max(lows), min(highs)) if combos else (-INF, INF)
    return max(lo10, j_hi[0]), min(hi10, j_hi[1])


# ----------------------------------------------------------------------------- symbols


def located(mu: np.ndarray, bounds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """6.6.4: mu' = mu clipped to the pixel's bounds, and the bounds (lo, hi) as arrays."""
    lo = np.array([b[0] for b in bounds], np.float64)
    hi = np.array([b[1] for b in bounds], np.float64)
    if (lo > hi).any():
        raise Corrupt("bounds cross")
    return np.minimum(np.maximum(mu, lo), hi), lo, hi


def decode_pixels(coder, decode_group, mu, s, bounds):
    """6.6 with 6.6.4: v = rint(mu') + k, k coded as a step symbol; and which were received."""
    mu2, lo, hi = located(mu, bounds)
    centre = np.rint(mu2)
    k, got = decode_group(coder, mu2, s, mu2 - centre, np.ones_like(mu2), lo - 0.5, hi + 0.5)
    v = centre.astype(np.int64) + k
    if ((v[got] < 0) | (v[got] > 255)).any():
        raise Corrupt("level outside 0..255")
    return v, k, got


# ----------------------------------------------------------------------------- raster planes (6.6.1-6.6.3)


class Raster:
    """One plane coded in raster order (form 8 features; blue of O = 2 with red as a second guide)."""

    OFFSETS = [(0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-2, -1), (-2, 1)]

    def __init__(self, h: int, w: int, side: np.ndarray, guide: np.ndarray | None, predictor: bool = True):
        self.h, self.w, self.side, self.guide, self.predictor = h, w, side, guide, predictor
        self.sums = True  # form 11: bounded by block sums too
        self.plane = np.zeros((h, w), np.int64)
        self.k = np.zeros((h, w), np.int64)
        self.decoded = np.zeros((h, w), bool)
        self.m = 18 if guide is not None else 14
        self.err = np.zeros((self.m, h, w), np.int64)

    def clipped(self, a: np.ndarray, y, x, dy, dx):
        return a[np.clip(y + dy, 0, self.h - 1), np.clip(x + dx, 0, self.w - 1)]

    def level(self, y, x, dy, dx):
        yy, xx = y + dy, x + dx
        inside = (yy >= 0) & (yy < self.h) & (xx >= 0) & (xx < self.w)
        yc, xc = np.clip(yy, 0, self.h - 1), np.clip(xx, 0, self.w - 1)
        return np.where(inside, self.plane[yc, xc], self.side[yc, xc]), np.where(inside, self.k[yc, xc], 0)

    def features(self, y, x):
        ns, ks = zip(*(self.level(y, x, dy, dx) for dy, dx in self.OFFSETS))
        n = list(ns)
        s = [
            self.clipped(self.side, y, x, dy, dx)
            for dy, dx in [(0, 0), (0, -1), (-1, 0), (-1, -1), (-1, 1), (0, 1), (1, 0)]
        ]
        feats = [*n, *s, middle_two(n[:4])]
        feats.append(2 * s[0] + middle_two([n[i] - s[i + 1] for i in range(4)]))
        feats.append(guided(s[0], n[:4], s[1:5]))
        n1, n2, n3, n4, n5, n6 = n[:6]
        sub = [
            2 * (n2 + n1 - n3), 2 * (n1 + n4 - n2), 2 * n2, 2 * n1, n2 + n4, 2 * n4, 2 * n3,
            2 * (2 * n1 - n5), 2 * (2 * n2 - n6), n1 + n2,
            2 * (s[0] + n1 - s[1]), 2 * (s[0] + n2 - s[2]), 2 * (s[0] + n4 - s[4]), 2 * (s[0] + n3 - s[3]),
        ]  # fmt: skip
        r = None
        if self.guide is not None:
            r = [
                self.clipped(self.guide, y, x, dy, dx)
                for dy, dx in [(0, 0), (0, -1), (-1, 0), (-1, -1), (-1, 1), (0, 1), (1, 0)]
            ]
            sub += [
                2 * (r[0] + n[0] - r[1]),
                2 * (r[0] + n[1] - r[2]),
                2 * (r[0] + n[3] - r[4]),
                2 * (r[0] + n[2] - r[3]),
            ]
        errs = []
        for i in range(self.m):
            total = 0
            for dy, dx in self.OFFSETS:
                yy, xx = y + dy, x + dx
                inside = (yy >= 0) & (yy < self.h) & (xx >= 0) & (xx < self.w)
                total = total + np.where(
                    inside, self.err[i, np.clip(yy, 0, self.h - 1), np.clip(xx, 0, self.w - 1)], 0
                )
            errs.append(total)
        weights = [2**30 // (1 + e) ** 2 for e in errs]
        q = sum(wi * pi for wi, pi in zip(weights, sub)) // sum(weights)
        best = np.argmin(np.stack(errs), axis=0)  # the first of least error
        b = np.choose(best, sub)
        if self.predictor:  # form 8 on
            feats += [q, b]
        if r is not None:
            feats += [
                *r,
                2 * r[0] + middle_two([n[i] - r[i + 1] for i in range(4)]),
                guided(r[0], n[:4], r[1:5]),
            ]
        feats += [*ks[:4], np.ones_like(y)]
        terms = [
            np.abs(n1 - n3), np.abs(n2 - n3), np.abs(n2 - n4), np.abs(n1 - n5), np.abs(n2 - n6),
            np.abs(ks[0]) + np.abs(ks[1]) + np.abs(ks[2]) + np.abs(ks[3]),
            spread([n[i] - s[i + 1] for i in range(4)]), spread([s[1], s[2], s[5], s[6]]),
        ]  # fmt: skip
        if self.predictor:
            terms.append(np.min(np.stack(errs), axis=0))
        if r is not None:
            terms += [spread([n[i] - r[i + 1] for i in range(4)]), spread([r[1], r[2], r[5], r[6]])]
        return feats, terms, sub

    def decode(self, coder, decode_group, params: Params, iv: Intervals | None, colour: int):
        h, w = self.h, self.w
        for t in range(2 * (h - 1) + (w - 1) + 1):
            y = np.arange(max(0, (t - w + 2) // 2), min(h - 1, t // 2) + 1)
            y = y[(t - 2 * y >= 0) & (t - 2 * y < w)]
            if not y.size:
                continue
            x = t - 2 * y
            feats, terms, sub = self.features(y, x)
            mu, s = params.prior(feats, terms)
            if iv is not None and iv.active:
                bounds = [
                    rounded(*raster_bounds(iv, colour, yy, xx, self.plane, h, w, self.sums))
                    for yy, xx in zip(y.tolist(), x.tolist())
                ]
            else:
                bounds = [(0, 255)] * y.size
            v, k, got = decode_pixels(coder, decode_group, mu, s, bounds)
            self.plane[y[got], x[got]], self.k[y[got], x[got]] = v[got], k[got]
            self.decoded[y[got], x[got]] = True
            if not got.all():  # a cut chunk: decoding ends at the first group not received whole
                return False
            for i in range(self.m):
                self.err[i, y, x] = np.abs(sub[i] - 2 * v)
        return True


# ----------------------------------------------------------------------------- the tail


def decode_tail(
    data: bytes,
    record: sc.Record,
    side: np.ndarray,
    iv: Intervals,
    decode_group,
    source,
    show,
    form: int = 11,
):
    """A tail layer of form 1 to 11, given the side image (3, H, W levels): (the exact levels once
    the layer is complete, else None; the candidate of chunk `show` (section 7), or None)."""
    _, h, w = side.shape
    r = sc.Reader(record.fields["tail"])
    order = r.varint() if form >= 7 else 0
    if order > (2 if form >= 8 else 1):
        raise Corrupt("green order")
    plan = passes(h, w, form)
    levels = np.zeros((3, h, w), np.int64)
    symbols = np.zeros((3, h, w), np.int64)
    decoded = np.zeros((3, h, w), bool)
    shown = None
    if order == 2:  # 6.6.2: three planes in raster order
        params = [Params(r, 9, 25), Params(r, 9, 25), Params(r, 11, 34) if form >= 9 else Params(r, 9, 25)]
        if r.pos != len(r.data):
            raise Corrupt("parameters not consumed")
        for j, (chunk, colour, p) in enumerate(zip(record.chunks, (G, R, B), params)):
            coder = source(data, chunk)
            plane_side = side[G] if colour == G else levels[G]  # red and blue: guided by green
            raster = Raster(h, w, plane_side, levels[R] if colour == B and form >= 9 else None)
            raster.sums = form >= 11
            whole = raster.decode(coder, decode_group, p, iv, colour)
            levels[colour], decoded[colour] = raster.plane, raster.decoded
            coder.finish()
            if j == show:  # exact levels where decoded, the side image elsewhere
                shown = np.where(decoded, levels, side)
            if not whole:
                break
        return (levels if decoded.all() else None), shown
    green_raster = order == 1
    if green_raster:
        green_params = Params(r, 9, 25) if form >= 8 else Params(r, 8, 23)
    pass_params = []
    for _, _, offsets in plan:
        pass_params.append(
            {
                c: Params(r, *pass_counts(len(offsets), e, form), form)
                for c, e in ((G, 0), (R, 1), (B, 2))
                if c != G or not green_raster
            }
        )
    if r.pos != len(r.data):
        raise Corrupt("parameters not consumed")
    known = np.zeros((h, w), bool)  # pixels of earlier passes
    chunks = list(record.chunks)
    if green_raster:
        if not chunks:
            return None, None
        coder = source(data, chunks.pop(0))
        raster = Raster(h, w, side[G], None, predictor=form >= 8)
        raster.sums = form >= 11
        whole = raster.decode(coder, decode_group, green_params, iv, G)
        levels[G], symbols[G], decoded[G] = raster.plane, raster.k, raster.decoded
        coder.finish()
        if not whole:  # nothing is predicted while green is not whole
            return None, (np.where(decoded, levels, side) if show == 0 else None)
        if show == 0:  # then the first pass's red and blue are
            shown = open_pass(
                levels, symbols, side, known, decoded, plan, pass_params[0], iv, green_raster, form
            )
    first = 1 if green_raster else 0  # the chunk index of pass 0
    for index, ((ys, xs, offsets), per) in enumerate(zip(plan, pass_params)):
        if not chunks:
            return None, shown
        chunk = chunks.pop(0)
        coder = source(data, chunk)
        coded: list[int] = [G] if green_raster else []
        whole = True
        for colour in (G, R, B):
            if colour not in per or not whole:
                continue
            feats, terms = pass_features(levels, symbols, side, known, ys, xs, offsets, colour, coded, form)
            mu, s = per[colour].prior(feats, terms)
            bounds = passes_bound_list(iv, colour, ys, xs, levels[colour], known, h, w)
            v, k, got = decode_pixels(coder, decode_group, mu, s, bounds)
            levels[colour, ys[got], xs[got]], symbols[colour, ys[got], xs[got]] = v[got], k[got]
            decoded[colour, ys[got], xs[got]] = True
            coded.append(colour)
            whole = bool(got.all())
        coder.finish()
        if not whole:  # a cut chunk: this pass is the open one
            if show == first + index:
                shown = open_pass(
                    levels, symbols, side, known, decoded, plan[index:], per, iv, green_raster, form
                )
            return None, shown
        known[ys, xs] = True
        if show == first + index:
            rest = plan[index + 1 :]
            nxt = pass_params[index + 1] if rest else None
            shown = open_pass(levels, symbols, side, known, decoded, rest, nxt, iv, green_raster, form)
    return levels, shown


def passes_bound_list(iv: Intervals, colour: int, ys, xs, plane, known, h: int, w: int):
    if not iv.active:
        return [(0, 255)] * ys.size
    return [
        rounded(*passes_bounds(iv, colour, y, x, plane, known, h, w))
        for y, x in zip(ys.tolist(), xs.tolist())
    ]


def open_pass(
    levels, symbols, side, known, decoded, rest, per, iv, green_raster, form: int = 11
) -> np.ndarray:
    """7 inside a tail: exact levels where decoded; in the first pass not decoded in full, rint(mu')
    of each element not decoded (computed colour by colour, a colour not decoded at the pixel
    counting as its own rint(mu') with symbol 0); the side image elsewhere."""
    _, h, w = side.shape
    shown = np.where(decoded, levels, side)
    if not rest:
        return shown
    ys, xs, offsets = rest[0]
    tmp_levels, tmp_symbols = levels.copy(), symbols.copy()
    coded: list[int] = [G] if green_raster else []
    for colour in (G, R, B):
        if colour not in per:
            continue
        feats, terms = pass_features(
            tmp_levels, tmp_symbols, side, known, ys, xs, offsets, colour, coded, form
        )
        mu, _ = per[colour].prior(feats, terms)
        bounds = passes_bound_list(iv, colour, ys, xs, tmp_levels[colour], known, h, w)
        guess = np.rint(located(mu, bounds)[0]).astype(np.int64)
        missing = ~decoded[colour, ys, xs]
        tmp_levels[colour, ys[missing], xs[missing]] = guess[missing]
        tmp_symbols[colour, ys[missing], xs[missing]] = 0
        shown[colour, ys, xs] = tmp_levels[colour, ys, xs]
        coded.append(colour)
    return shown


def pass_features(levels, symbols, side, known, ys, xs, offsets, colour, coded, form: int = 11):
    """6.6's features and activity terms of colour `colour` in a pass (before form 5 the activity
    itself, as the one term)."""
    h, w = known.shape
    p = len(offsets)
    pos = [neighbour(ys, xs, dy, dx, h, w) for dy, dx in offsets]
    is_known = [known[yy, xx] for yy, xx in pos]
    count = sum(k.astype(np.int64) for k in is_known) if p else None

    def nbrs(c):
        raw = [levels[c][yy, xx] for yy, xx in pos]
        if not p:
            return []
        tot = sum(np.where(k, v, 0) for k, v in zip(is_known, raw))
        fill = np.where(count > 0, tot // np.maximum(count, 1), 0)
        return [np.where(k, v, fill) for k, v in zip(is_known, raw)]

    def nbr_symbols(c):
        return [np.where(k, symbols[c][yy, xx], 0) for k, (yy, xx) in zip(is_known, pos)]

    n = nbrs(colour)
    s_here = side[colour][ys, xs]
    s_n = [side[colour][yy, xx] for yy, xx in pos]
    earlier = coded  # in coding order
    feats = [*n, s_here, *s_n]
    feats += [symbols[e][ys, xs] for e in earlier]
    e_n = {e: nbrs(e) for e in earlier}
    if form >= 2:
        for e in earlier:
            feats += [levels[e][ys, xs], *e_n[e], side[e][ys, xs]]
    kc = nbr_symbols(colour) if p else []
    if p and form >= 3:
        feats.append(sum(kc))
    if p and form >= 4:
        feats.append(middle_two(n))
        feats += [middle_two(e_n[e]) for e in earlier]
    if p and form >= 6:
        feats += [middle_two([a - b for a, b in zip(n, e_n[e])]) + 2 * levels[e][ys, xs] for e in earlier]
    if p and form >= 7:
        feats += [guided(levels[e][ys, xs], n, e_n[e]) for e in earlier]
    feats.append(np.ones_like(ys))
    below = side[colour][np.minimum(ys + 1, h - 1), xs]
    if form < 5:  # forms 1-4: the activity, whole
        a = sum(np.abs(4 * v - sum(n)) for v in n) if p else 16 * np.abs(s_here - below)
        if colour in (R, B):
            a = a + 16 * np.abs(symbols[G][ys, xs])
        if p and form >= 2:
            a = a + 48 * sum(np.abs(k) for k in kc)
        if form == 4 and colour == B:
            a = a + 16 * np.abs(symbols[R][ys, xs])
        return feats, [a]
    if p:
        terms = [spread(n), sum(np.abs(k) for k in kc)]
        terms += [np.abs(symbols[e][ys, xs]) for e in earlier]
        terms += [spread(s_n), np.abs(p * s_here - sum(n))]
        terms += [sum(np.abs(k) for k in nbr_symbols(e)) for e in earlier]
        if form >= 6:
            terms += [spread([a - b for a, b in zip(n, e_n[e])]) for e in earlier]
    else:
        terms = [np.abs(s_here - below)] + [np.abs(symbols[e][ys, xs]) for e in earlier]
    return feats, terms
