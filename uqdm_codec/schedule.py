"""The noise schedule and the coefficients of the UQDM chain (plain floats, no torch).

The chain lives in the orthonormal Haar basis (haar.py). Every coefficient carries a state: the
index j of the last step that coded it (0 = never: it is still the pure noise z_0 drawn from the
shared seed). Haar step i (1..H) brings coefficients to the global noise level `levels[i-1]`, but
only those whose prior is uncertain enough for it to pay: a coefficient is coded when its prior
scale s >= threshold * q, q being the quantiser step its jump needs. Below that, universal
quantisation costs bits in proportion to s/q (a randomly placed bin edge falls next to the value
with probability ~ s/q) while buying almost no accuracy, so the coefficient keeps its state. The
decoder knows s, so the choice costs no side information. Step T = H+1 codes every pixel in the
pixel basis with quantiser step `pixel_step`, which leaves 2-4 possible levels per pixel for the
lossless layer.

Variance preserving: alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma), gamma = log(n^2) with n
the noise std in data units (x in [-1, 1]); pure noise has gamma = 10. A jump from noise n_t to n_s:

    q(z_s | z_t, x) = U(coef_z * z_t + coef_x * x  +-  delta / 2)

(uniform with the moments of the Gaussian diffusion posterior, VDM eq. 26). Divided by coef_x, the
jump sends x with dithered uniform quantisation of step q = delta / coef_x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_LEVELS = (128.0, 64.0, 32.0, 16.0, 8.0, 4.0, 2.0)
DEFAULT_PIXEL_STEP = 3.0
DEFAULT_THRESHOLD = 0.35
DEFAULT_HAAR_LEVELS = 4
GAMMA_START = 10.0  # gamma of pure noise
EXP_GAMMA_START = 22026.465794806718  # e^10, correctly rounded (a literal: no libm in the chain)


def gamma_of(noise: float) -> float:
    """gamma for a noise std in data units (inf -> pure noise)."""
    return GAMMA_START if math.isinf(noise) else 2.0 * math.log(noise)


@dataclass(frozen=True)
class StepCoefficients:
    coef_z: float
    coef_x: float
    delta: float
    quant_step: float  # delta / coef_x, data units


def _noise_sq(noise: float) -> float:
    """n^2 = e^gamma; pure noise has gamma = 10."""
    return EXP_GAMMA_START if math.isinf(noise) else noise * noise


def coefficients(noise_t: float, noise_s: float) -> StepCoefficients:
    """The jump's constants from +, -, *, / and sqrt only (all correctly rounded in IEEE-754, so
    every machine gets the same bits; decoders depend on them). With n^2 = e^gamma:
    alpha^2 = sigmoid(-gamma) = 1 / (1 + n^2), sigma^2 = n^2 / (1 + n^2) and
    e = -expm1(gamma_s - gamma_t) = 1 - n_s^2 / n_t^2."""
    nt2, ns2 = _noise_sq(noise_t), _noise_sq(noise_s)
    alpha_t = math.sqrt(1.0 / (1.0 + nt2))
    alpha_s = math.sqrt(1.0 / (1.0 + ns2))
    sigma_s = math.sqrt(ns2 / (1.0 + ns2))
    e = 1.0 - ns2 / nt2
    delta = math.sqrt(12.0 * e) * sigma_s
    coef_x = alpha_s * e
    return StepCoefficients(alpha_s * (1.0 - e) / alpha_t, coef_x, delta, delta / coef_x)


@dataclass(frozen=True)
class Schedule:
    levels: tuple[float, ...] = DEFAULT_LEVELS  # noise after each Haar step, 8-bit units
    pixel_step: float = DEFAULT_PIXEL_STEP  # quantiser step of the last step, 8-bit units
    threshold: float = DEFAULT_THRESHOLD
    haar_levels: int = DEFAULT_HAAR_LEVELS

    def __post_init__(self) -> None:
        if not self.levels or any(b >= a for a, b in zip(self.levels, self.levels[1:])):
            raise ValueError("schedule levels must be strictly decreasing and non-empty")
        if min(self.levels) <= 0 or self.pixel_step <= 0:
            raise ValueError("schedule levels and the pixel step must be positive")
        if not 0 <= self.threshold < 100:
            raise ValueError("threshold must be between 0 and 100")
        if not 1 <= self.haar_levels <= 8:
            raise ValueError("haar_levels must be between 1 and 8")

    @property
    def haar_steps(self) -> int:
        return len(self.levels)

    @property
    def num_steps(self) -> int:
        return len(self.levels) + 1

    @property
    def num_bands(self) -> int:
        return self.haar_levels + 1

    def noise(self, state: int) -> float:
        """Noise std (data units) of a coefficient last coded at step `state` (0: pure noise)."""
        return math.inf if state == 0 else self.levels[state - 1] / 127.5

    def is_pixel_step(self, i: int) -> bool:
        return i == self.num_steps

    def jump(self, j: int, i: int) -> StepCoefficients:
        """Coefficients for coding, at Haar step i, a coefficient whose state is j < i."""
        if not 0 <= j < i <= self.haar_steps:
            raise IndexError(f"no jump from state {j} at step {i}")
        return coefficients(self.noise(j), self.noise(i))

    @property
    def pixel_quant(self) -> float:
        return self.pixel_step / 127.5

    def jump_table(self) -> dict[str, list[list[float]]]:
        """coef_z, coef_x and quant_step indexed [j][i] (zero where j >= i), for vectorised use."""
        n = self.haar_steps + 1
        out = {k: [[0.0] * n for _ in range(n)] for k in ("coef_z", "coef_x", "quant_step")}
        for i in range(1, n):
            for j in range(i):
                c = self.jump(j, i)
                out["coef_z"][j][i], out["coef_x"][j][i], out["quant_step"][j][i] = (
                    c.coef_z,
                    c.coef_x,
                    c.quant_step,
                )
        return out

    def to_dict(self) -> dict:
        return {
            "levels": list(self.levels),
            "pixel_step": self.pixel_step,
            "threshold": self.threshold,
            "haar_levels": self.haar_levels,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Schedule:
        return cls(
            tuple(float(v) for v in d["levels"]),
            float(d["pixel_step"]),
            float(d["threshold"]),
            int(d["haar_levels"]),
        )
