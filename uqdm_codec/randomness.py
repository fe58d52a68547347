"""Shared randomness: what encoder and decoder both draw from the seed in the file.

numpy's PCG64 on the CPU gives the same numbers on every machine and device, so a file encoded on
a GPU draws the same dither as its decoder on a CPU. Each draw has its own stream
(SeedSequence([seed, purpose, index])), so decoding step 3 never has to draw step 1's numbers.
"""

from __future__ import annotations

import numpy as np

from .errors import UqdmError, is_whole

_LATENT = 0
_DITHER = 1
_SAMPLE = 2


def _generator(seed: int, purpose: int, *index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, purpose, *(index or (0,))])))


SQRT12 = 3.4641016151377544  # sqrt(12), correctly rounded


def initial_latent(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """z_0: independent uniform noise with mean 0 and variance 1, float64. Uniform rather than
    Gaussian because PCG64's uniform doubles are plain bit arithmetic, while NumPy's normal sampler
    calls the C library's exp/log in its tails (not the same bits everywhere) and may change
    between NumPy versions. z_0 only enters the chain scaled by coef_z (< 0.005)."""
    return (_generator(seed, _LATENT).random(shape) - 0.5) * SQRT12


def dither(seed: int, step: int, shape: tuple[int, ...]) -> np.ndarray:
    """u ~ U(-1/2, 1/2) for step `step`, float64."""
    return _generator(seed, _DITHER, step).random(shape) - 0.5


def sampling_uniforms(seed: int, user_seed: int, step: int, count: int) -> np.ndarray:
    """(2, count) U[0, 1) for drawing step `step` of a generative reconstruction (sampling.py): row 0
    picks x by inverse CDF, row 1 its place in the quantiser bin. Not part of the format: only the
    decoder draws these, from the file's seed and the user's, so one (file, seed) gives one image."""
    return _generator(seed, _SAMPLE, user_seed, step).random((2, count))


def check_seed(seed: object, what: str = "seed") -> int:
    """`seed` as an int if it is one the format holds (8 bytes, 0 to 2^64 - 1); else a UqdmError.
    Out-of-range seeds used to be folded into range without a word, so two different seeds could
    make the same file."""
    if not is_whole(seed) or not 0 <= int(seed) < 2**64:
        raise UqdmError(f"the {what} must be an integer from 0 to 2^64 - 1, not {seed!r}")
    return int(seed)


def new_seed() -> int:
    """A fresh 63-bit seed for a new file (any 64-bit seed is valid; 63 bits keep it a signed
    int64 for tools that read the header as one)."""
    return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
