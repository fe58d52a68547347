"""The coarse-to-fine noise schedule and the per-step coefficients of the UQDM chain (no torch).

The chain lives in the orthonormal Haar basis (haar.py) with `haar_levels` levels, i.e. bands
b = 0 (LL_L), 1 (D_L), ..., L (D_1). State i (0..T) gives every band a noise level: after step i a
band is at the global level `levels[i-1]` if it is active, else it is still pure noise (z_0, drawn
from the shared seed). Band b becomes active at the first step whose level is <= activation[b], so a
band joins only once the noise has come down to its amplitude: coding a band whose signal is far
below the noise costs bits (uniform noise leaks information linearly in the amplitude ratio) and
buys nothing. The last `pixel_steps` steps run in the pixel basis, every band being at one level.

Variance preserving: alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma), gamma = log(n^2) with n the
noise std in data units (x in [-1, 1]). Step t -> s of a coefficient is

    q(z_s | z_t, x) = U(coef_z * z_t + coef_x * x  +-  delta / 2)

(uniform with the moments of the Gaussian diffusion posterior, VDM eq. 26). Divided by coef_x: the
step sends x with dithered uniform quantisation of step `quant_step = delta / coef_x`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_LEVELS = (128.0, 64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 0.8)
# Activation thresholds (8-bit levels) for LL_4, D_4, D_3, D_2, D_1: about half the RMS amplitude of
# each band on the training photos (docs/MODEL.md).
DEFAULT_ACTIVATION = (math.inf, 80.0, 32.0, 16.0, 8.0)
GAMMA_START = 10.0  # gamma of pure noise


def gamma_of(noise: float) -> float:
    """gamma for a noise std in data units (inf -> pure noise)."""
    return GAMMA_START if math.isinf(noise) else 2.0 * math.log(noise)


@dataclass(frozen=True)
class StepCoefficients:
    noise_t: float  # data units; inf = pure noise
    noise_s: float
    coef_z: float
    coef_x: float
    delta: float
    quant_step: float  # delta / coef_x, data units


def coefficients(noise_t: float, noise_s: float) -> StepCoefficients:
    g_t, g_s = gamma_of(noise_t), gamma_of(noise_s)
    alpha_t, alpha_s = math.sqrt(_sigmoid(-g_t)), math.sqrt(_sigmoid(-g_s))
    sigma_s = math.sqrt(_sigmoid(g_s))
    e = -math.expm1(g_s - g_t)
    delta = math.sqrt(12.0 * e) * sigma_s
    coef_x = alpha_s * e
    return StepCoefficients(noise_t, noise_s, alpha_s * (1.0 - e) / alpha_t, coef_x, delta, delta / coef_x)


def alpha_of(noise: float) -> float:
    return math.sqrt(_sigmoid(-gamma_of(noise)))


@dataclass(frozen=True)
class Schedule:
    levels: tuple[float, ...] = DEFAULT_LEVELS
    activation: tuple[float, ...] = DEFAULT_ACTIVATION
    pixel_steps: int = 1

    def __post_init__(self) -> None:
        if not self.levels or any(b >= a for a, b in zip(self.levels, self.levels[1:])):
            raise ValueError("schedule levels must be strictly decreasing and non-empty")
        if min(self.levels) <= 0:
            raise ValueError("schedule levels must be positive")
        if len(self.activation) < 2 or not math.isinf(self.activation[0]):
            raise ValueError("activation needs one entry per band, the first (LL) infinite")
        if not 1 <= self.pixel_steps <= self.num_steps - 1:
            raise ValueError("pixel_steps must be between 1 and T-1")
        first_pixel = self.num_steps - self.pixel_steps + 1
        if any(math.isinf(n) for n in self.band_noise(first_pixel - 1)):
            raise ValueError("every band must be active before the pixel-basis steps")

    @property
    def num_steps(self) -> int:
        return len(self.levels)

    @property
    def haar_levels(self) -> int:
        return len(self.activation) - 1

    @property
    def num_bands(self) -> int:
        return len(self.activation)

    def noise(self, i: int) -> float:
        """Global noise level of state i in data units (inf for state 0)."""
        return math.inf if i == 0 else self.levels[i - 1] / 127.5

    def band_noise(self, i: int) -> list[float]:
        """Noise level (data units) of every band in state i; inf while a band is pure noise."""
        if i == 0:
            return [math.inf] * self.num_bands
        return [
            self.levels[i - 1] / 127.5 if any(lv <= act for lv in self.levels[:i]) else math.inf
            for act in self.activation
        ]

    def is_pixel_step(self, i: int) -> bool:
        return i > self.num_steps - self.pixel_steps

    def band_steps(self, i: int) -> list[tuple[int, StepCoefficients]]:
        """(band, coefficients) for each band that step i (Haar basis) moves."""
        before, after = self.band_noise(i - 1), self.band_noise(i)
        return [
            (b, coefficients(t, s))
            for b, (t, s) in enumerate(zip(before, after))
            if not (math.isinf(t) and math.isinf(s))
        ]

    def pixel_step(self, i: int) -> StepCoefficients:
        return coefficients(self.noise(i - 1), self.noise(i))

    def to_dict(self) -> dict:
        return {
            "levels": list(self.levels),
            "activation": [None if math.isinf(a) else a for a in self.activation],
            "pixel_steps": self.pixel_steps,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Schedule:
        return cls(
            levels=tuple(float(v) for v in d["levels"]),
            activation=tuple(math.inf if a is None else float(a) for a in d["activation"]),
            pixel_steps=int(d["pixel_steps"]),
        )


def _sigmoid(v: float) -> float:
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    ev = math.exp(v)
    return ev / (1.0 + ev)
