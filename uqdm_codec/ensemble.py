"""Mirror ensembles: the network's prediction averaged over the state and its mirror images.

A photo mirrored is still a photo, so the network's prediction on the mirrored state, mirrored
back, is a second estimate of the same priors with partly independent errors; their average has
smaller location error (docs/MODEL.md section 16). The decoder must average exactly what the
encoder did, so the set of mirrors is part of the file (header flags, FORMAT.md 1) and the
average is a fixed sequence of IEEE double operations: no library reduction, the same on every
machine. Numpy only.

In the Haar basis a mirror moves coefficients and flips the sign of the orientations that
difference across the mirrored axis (FORMAT.md 5.3.1): left-right negates LH and HH (orientations 0
and 2 of a detail band), top-bottom HL and HH (1 and 2). That holds exactly because the padded
image's sides are multiples of 2^levels, so every Haar block maps onto a Haar block.
"""

from __future__ import annotations

import numpy as np

from .errors import UqdmError, is_whole

MIRROR_SETS: dict[int, tuple[str, ...]] = {
    1: ("",),  # the network once: no ensemble
    2: ("", "v"),  # and top-bottom
    4: ("", "v", "h", "hv"),  # and top-bottom, left-right, both (half a turn)
}
_NEGATED = {"h": (0, 2), "v": (1, 2)}  # detail orientations whose sign a mirror flips
_AXIS = {"h": -1, "v": -2}


def check_mirrors(mirrors: int) -> int:
    """`mirrors` as an int, or UqdmError naming the allowed values."""
    if not is_whole(mirrors) or mirrors not in MIRROR_SETS:  # True and 2.0 were taken as 1 and 2
        raise UqdmError(f"mirrors must be one of {sorted(MIRROR_SETS)}, not {mirrors!r}")
    return int(mirrors)


def mirror_bands(bands: list[np.ndarray], mirror: str, signed: bool) -> list[np.ndarray]:
    """The bands of the mirrored image (new arrays). `signed`: the bands hold Haar coefficients
    (orientations that difference across the axis change sign); otherwise per-coefficient values
    such as states or log-scales, which only move. Band 0 is LL, the others (3, C, h, w) details.
    Applying the same mirror twice gives the bands back exactly."""
    out = []
    for b, band in enumerate(bands):
        f = band if mirror else np.array(band)  # always a new array
        for ax in mirror:
            f = np.array(np.flip(f, axis=_AXIS[ax]))
            if signed and b > 0:
                for o in _NEGATED[ax]:
                    np.negative(f[o], out=f[o])
        out.append(f)
    return out


def mirror_image(image: np.ndarray, mirror: str) -> np.ndarray:
    """(..., H, W) mirrored (a copy)."""
    for ax in mirror:
        image = np.flip(image, axis=_AXIS[ax])
    return np.array(image)


class Average:
    """Running sum of float64 arrays in a fixed order, then one exact scaling by 1/n (n a power of
    two): ((a + b) + c) + d, elementwise, the same on every machine."""

    def __init__(self) -> None:
        self.sums: list[np.ndarray] | None = None
        self.count = 0

    def add(self, arrays: list[np.ndarray]) -> None:
        if self.sums is None:
            self.sums = [np.array(a, dtype=np.float64) for a in arrays]
        else:
            for s, a in zip(self.sums, arrays):
                np.add(s, a, out=s)
        self.count += 1

    def result(self) -> list[np.ndarray]:
        if self.sums is None or self.count & (self.count - 1):
            raise ValueError("an average over a power of two of terms, at least one")
        for s in self.sums:
            s *= 1.0 / self.count
        return self.sums
