"""Elementary functions that give the same bits on every machine (numpy float64, no libm).

`np.exp` and `np.log` are vectorised differently on different CPUs (AVX-512 and AVX2 builds of
NumPy disagree in the last bit, NumPy issue 23523), and the C library's `exp` differs between
platforms too. Anything a decoder must reproduce exactly (probability tables, prior scales, the
images it checks) therefore uses the functions below, built only from IEEE-754 operations that are
correctly rounded everywhere (+, -, *, /, rint, frexp, ldexp, comparisons), each a separate NumPy
ufunc call in a fixed order, so no compiler can fuse a multiply and an add. They are accurate to a
few units in the last place, not correctly rounded, but every machine computes the same ones.
docs/FORMAT.md section 8 specifies them for a second decoder.
"""

from __future__ import annotations

import numpy as np

# ln 2 split so that n * LN2_HI is exact for |n| < 2^21 (LN2_HI has 32 significant bits).
LN2_HI = 0.6931471803691238
LN2_LO = 1.9082149292705877e-10
SQRT_HALF = 0.7071067811865476
EXP_MAX = 709.782712893384  # ln(largest float64): beyond it the result is inf
EXP_MIN = -746.0  # below this exp underflows to 0

# exp: x = n ln2/32 + r, n = 32 m + j, e^x = 2^m * 2^(j/32) * e^r with |r| <= ln2/64.
EXP_SCALE = 46.16624130844683  # 32 / ln 2
EXP_STEP_HI = 0.02166084938653512  # ln2 / 32: 32 significant bits, so n * EXP_STEP_HI is exact
EXP_STEP_LO = 5.9631716539705866e-12  # ln2 / 32 - EXP_STEP_HI
# 2^(j/32), j = 0..31, correctly rounded
_EXP_TABLE = np.array([
    1.0, 1.0218971486541166, 1.0442737824274138, 1.0671404006768237, 1.0905077326652577,
    1.1143867425958924, 1.1387886347566916, 1.1637248587775775, 1.189207115002721, 1.215247359980469,
    1.241857812073484, 1.2690509571917332, 1.2968395546510096, 1.3252366431597413, 1.3542555469368927,
    1.383909881963832, 1.4142135623730951, 1.4451808069770467, 1.4768261459394993, 1.5091644275934228,
    1.5422108254079407, 1.5759808451078865, 1.6104903319492543, 1.645755478153965, 1.681792830507429,
    1.718619298122478, 1.7562521603732995, 1.7947090750031072, 1.8340080864093424, 1.8741676341103,
    1.9152065613971474, 1.9571441241754002,
])  # fmt: skip
# Taylor coefficients 1/k!, k = 0..6: the truncation error at |r| <= ln2/64 is below 2^-58.
_EXP_COEF = (
    1.0,
    1.0,
    0.5,
    0.16666666666666666,
    0.041666666666666664,
    0.008333333333333333,
    0.001388888888888889,
)
# 2 / (2k + 1) for the atanh series of log: log(m) = sum_k 2 f^(2k+1) / (2k + 1), f = (m-1)/(m+1).
_LOG_COEF = tuple(2.0 / (2 * k + 1) for k in range(12))


BLOCK = 1 << 14  # elements per pass: keeps the ~30 temporaries of a block in the CPU cache


def _blocked(fn):
    """Apply an elementwise function in blocks of BLOCK elements (same result, fewer cache misses)."""

    def wrapper(x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.size <= BLOCK:
            return fn(x)
        flat = np.ascontiguousarray(x).reshape(-1)
        out = np.empty_like(flat)
        for start in range(0, flat.size, BLOCK):
            out[start : start + BLOCK] = fn(flat[start : start + BLOCK])
        return out.reshape(x.shape)

    wrapper.__doc__ = fn.__doc__
    return wrapper


@_blocked
def exp(x) -> np.ndarray:
    """e^x: n = rint(x 32/ln 2) = 32 m + j, r = x - n ln2/32 in two parts (|r| <= ln2/64), a
    degree-6 Taylor polynomial of r by Horner's rule, times 2^(j/32) from a table, times 2^m by
    ldexp. x > 709.782712893384: inf; x < -746: 0; NaN: NaN."""
    xc = np.minimum(np.maximum(x, EXP_MIN), EXP_MAX)  # NaN passes through both
    n = np.rint(xc * EXP_SCALE)
    r = xc - n * EXP_STEP_HI
    r = r - n * EXP_STEP_LO
    p = r * _EXP_COEF[6]
    for c in _EXP_COEF[5:0:-1]:
        p = p + c
        p = p * r
    p = p + 1.0
    with np.errstate(invalid="ignore"):
        ni = n.astype(np.int64)
    out = np.ldexp(_EXP_TABLE[ni & 31] * p, (ni >> 5).astype(np.int32))
    big = x > EXP_MAX
    if big.any():
        out[big] = np.inf
    nan = np.isnan(p)
    if nan.any():
        out[nan] = np.nan
    return out


@_blocked
def log(x) -> np.ndarray:
    """ln x for x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)) (frexp, exact), then the atanh
    series in f = (m - 1)/(m + 1), |f| < 0.172. 0 gives -inf, negatives and NaN give NaN."""
    safe = np.where(x > 0, x, 1.0)
    safe = np.where(np.isfinite(safe), safe, 1.0)
    m, e = np.frexp(safe)
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)
    e = (e - low.astype(e.dtype)).astype(np.float64)
    f = (m - 1.0) / (m + 1.0)
    s = f * f
    p = np.full_like(s, _LOG_COEF[-1])
    for c in _LOG_COEF[-2::-1]:
        p = p * s
        p = p + c
    lm = p * f
    out = e * LN2_LO + lm
    out = out + e * LN2_HI
    out = np.where(x == 0, -np.inf, out)
    out = np.where(x == np.inf, np.inf, out)
    return np.where((x < 0) | np.isnan(x), np.nan, out)


def log1p(y) -> np.ndarray:
    """ln(1 + y) for y > -1, accurate for small y: log(u) corrected by (y - (u - 1)) / u, u = 1 + y."""
    y = np.asarray(y, dtype=np.float64)
    u = 1.0 + y
    corr = (y - (u - 1.0)) / np.where(u == 0, 1.0, u)
    return np.where(u == 1.0, y, log(u) + corr)


def sigmoid(t) -> np.ndarray:
    """1 / (1 + e^-t)."""
    return 1.0 / (1.0 + exp(-np.asarray(t, dtype=np.float64)))


def softplus(t) -> np.ndarray:
    """ln(1 + e^t) = max(t, 0) + ln(1 + e^-|t|), without overflow."""
    t = np.asarray(t, dtype=np.float64)
    return np.maximum(t, 0.0) + log1p(exp(-np.abs(t)))


def silu(t) -> np.ndarray:
    """t * sigmoid(t): the network's nonlinearity, for its lookup tables."""
    t = np.asarray(t, dtype=np.float64)
    return t * sigmoid(t)


def row_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis, left to right (np.sum's pairwise order is an implementation detail)."""
    out = a[..., 0].copy()
    for j in range(1, a.shape[-1]):
        out = out + a[..., j]
    return out
