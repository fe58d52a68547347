"""An image's alpha channel, carried exactly in a .uqd header (FORMAT.md 1.2).

The diffusion chain codes colour; transparency is coded beside it, losslessly, where every prefix
of the file has it: in the header, as each value's difference to its left neighbour (to the value
above it in the first column), modulo 256, deflated. The usual alpha planes (cut-outs, logos,
anti-aliased masks) are long runs of equal values, which those differences turn into runs of
zeros. No torch here.
"""

from __future__ import annotations

import zlib

import numpy as np

from .errors import FormatError


def max_stored(pixels: int) -> int:
    """The most bytes a stored plane of `pixels` values may take: deflate's worst case, and a margin."""
    return pixels + (pixels >> 10) + 1024


def is_opaque(plane: np.ndarray) -> bool:
    return bool(np.all(plane == 255))


def _differences(plane: np.ndarray) -> np.ndarray:
    d = plane.astype(np.uint8, copy=True)
    d[:, 1:] -= plane[:, :-1]  # uint8 arithmetic: modulo 256
    d[1:, 0] -= plane[:-1, 0]
    return d


def pack(plane: np.ndarray) -> bytes:
    """The (H, W) uint8 plane as the header stores it."""
    return zlib.compress(_differences(np.ascontiguousarray(plane, np.uint8)).tobytes(), 9)


def unpack(stored: bytes, width: int, height: int) -> np.ndarray:
    """The (height, width) uint8 plane from its stored bytes; FormatError unless they are one whole
    zlib stream of exactly width x height bytes (never more is inflated)."""
    n = width * height
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(stored, n + 1)
    except zlib.error:
        raise FormatError("corrupted .uqd header (its alpha channel does not inflate)") from None
    if len(raw) != n or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise FormatError("corrupted .uqd header (its alpha channel is not one stream of W x H bytes)")
    d = np.frombuffer(raw, np.uint8).reshape(height, width).copy()
    d[:, 0] = np.cumsum(d[:, 0], dtype=np.uint8)  # the first column from the top, modulo 256
    return np.cumsum(d, axis=1, dtype=np.uint8)  # each row from its first value
