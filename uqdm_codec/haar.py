"""Orthonormal 2-D Haar transform, for numpy arrays and torch tensors alike.

The coarse-to-fine chain codes an image in this basis: the coarsest band first, finer detail bands
only once the noise level has come down to their amplitude. Being orthonormal, the transform keeps
noise white and variances unchanged, so the UQDM step formulas apply to each coefficient as is.

Layout: `forward(x, levels)` returns [LL_L, D_L, D_{L-1}, ..., D_1] where LL_L has shape
(..., C, H/2^L, W/2^L) and each D_l has shape (..., 3, C, H/2^l, W/2^l) holding the LH, HL and HH
orientations. H and W must be multiples of 2^L.
"""

from __future__ import annotations

import numpy as np


def _stack(parts, axis):
    if isinstance(parts[0], np.ndarray):
        return np.stack(parts, axis=axis)
    import torch

    return torch.stack(parts, dim=axis)


def _empty_like_upsampled(a):
    shape = (*a.shape[:-2], 2 * a.shape[-2], 2 * a.shape[-1])
    if isinstance(a, np.ndarray):
        return np.empty(shape, dtype=a.dtype)
    import torch

    return torch.empty(shape, dtype=a.dtype, device=a.device)


def analysis(x):
    """One level: x (..., C, H, W) -> (LL, D) with D (..., 3, C, H/2, W/2)."""
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    ll = (a + b + c + d) * 0.5
    lh = (a - b + c - d) * 0.5
    hl = (a + b - c - d) * 0.5
    hh = (a - b - c + d) * 0.5
    return ll, _stack([lh, hl, hh], axis=-4)


def synthesis(ll, detail):
    """Inverse of `analysis`."""
    lh, hl, hh = detail[..., 0, :, :, :], detail[..., 1, :, :, :], detail[..., 2, :, :, :]
    out = _empty_like_upsampled(ll)
    out[..., 0::2, 0::2] = (ll + lh + hl + hh) * 0.5
    out[..., 0::2, 1::2] = (ll - lh + hl - hh) * 0.5
    out[..., 1::2, 0::2] = (ll + lh - hl - hh) * 0.5
    out[..., 1::2, 1::2] = (ll - lh - hl + hh) * 0.5
    return out


def extend(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """x (..., h, w) extended to height x width by repeating its last row and column: how an image
    is padded to a multiple of 2^levels for the transform (FORMAT.md 5.1)."""
    h, w = x.shape[-2:]
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, height - h), (0, width - w)], mode="edge")


def forward(x, levels: int) -> list:
    details = []
    for _ in range(levels):
        x, d = analysis(x)
        details.append(d)
    return [x, *reversed(details)]


def inverse(bands: list):
    x = bands[0]
    for d in bands[1:]:
        x = synthesis(x, d)
    return x


def band_level(index: int, levels: int) -> int:
    """Haar level l of band `index` in the forward() list (LL_L and D_L are both level L)."""
    return levels if index == 0 else levels + 1 - index


def band_bound(index: int, levels: int) -> float:
    """Largest |coefficient| of band `index` for an image in [-1, 1]."""
    return float(2 ** band_level(index, levels))


def window(bands: list, levels: int, y0: int, y1: int, x0: int, x1: int) -> list:
    """Views of every band over image rows y0:y1 and columns x0:x1 (multiples of 2^levels). Haar
    mixes only pixels within a 2^levels block, so inverse() of these gives exactly those pixels of
    inverse() of the whole, and the same operations on the same values: strips and tiles can be
    transformed one at a time, without whole-image temporaries."""
    out = []
    for b, band in enumerate(bands):
        s = band_level(b, levels)
        out.append(band[..., y0 >> s : y1 >> s, x0 >> s : x1 >> s])
    return out


def strips(height: int, width: int, levels: int, values: int = 1 << 18) -> list[tuple[int, int]]:
    """Row ranges (multiples of 2^levels) covering a padded image of height x width, each with
    about `values` pixels per channel: the unit of work for whole-image elementwise passes."""
    m = 1 << levels
    rows = max(m, values // max(width, 1) // m * m)
    return [(r, min(r + rows, height)) for r in range(0, height, rows)]
