"""Running the model over a whole image: tiling, device placement, numpy in and out.

Every network operation is local and each tile's window reaches the network's receptive radius
into its neighbours (but never past the image), so tiles join without seams. Tiled and untiled
results agree to float rounding, but not always bit for bit (the convolution library picks kernels
by tensor shape), so the tile size is part of a file's header and both sides use the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import haar
from .errors import UqdmError
from .model import UQDM
from .network import receptive_radius

DEFAULT_TILE = 1024  # core tile side (pixels, a multiple of 16); images up to tile^2 pixels run whole


def pick_device(spec: str | torch.device | None) -> torch.device:
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise UqdmError("--device cuda was asked for, but no CUDA device is available")
    if spec != "cpu" and not spec.startswith("cuda"):
        raise UqdmError(f"unknown device {spec!r} (use auto, cpu or cuda)")
    return torch.device(spec)


def configure_determinism() -> None:
    """TF32 and autotuned kernels change results between runs; both sides need the same numbers."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


@dataclass
class Prediction:
    """Priors for the step leaving one state, float64 numpy arrays without a batch axis."""

    locs: list[np.ndarray]  # per Haar band
    scales: list[np.ndarray]
    pixel_scale: np.ndarray  # (3, H, W)
    display: np.ndarray  # (3, H, W), data units, in [-1, 1]; also the pixel-step location


class PriorNetwork:
    """Evaluates a UQDM model on (padded) images of any size."""

    def __init__(self, model: UQDM, device=None):
        configure_determinism()
        self.device = pick_device(device)
        self.model = model.eval()
        self.denoiser = model.denoiser.to(self.device).to(memory_format=torch.channels_last)
        self.multiple = model.denoiser.multiple
        radius = receptive_radius(model.config.network)
        self.halo = -(-radius // self.multiple) * self.multiple

    @property
    def levels(self) -> int:
        return self.model.haar_levels

    def _on_device(self, t: torch.Tensor) -> torch.Tensor:
        return t.float().to(self.device).contiguous(memory_format=torch.channels_last)

    def first_prior(self, shapes: list[tuple[int, ...]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Step 1's prior: one learned location and scale per band and colour, broadcast."""
        locs, scales = [], []
        first_loc = self.model.first_loc.detach().cpu().double().numpy()
        first_scale = np.exp(self.model.first_log_scale.detach().cpu().double().numpy())
        for b, shape in enumerate(shapes):
            locs.append(np.broadcast_to(first_loc[b][:, None, None], shape).copy())
            scales.append(np.broadcast_to(first_scale[b][:, None, None], shape).copy())
        return locs, scales

    def blank_display(self, shape: tuple[int, int]) -> np.ndarray:
        """What the decoder shows before any step: inverse-Haar of the first prior's locations."""
        shapes = [b.shape for b in haar.forward(np.zeros((3, *shape)), self.levels)]
        return np.clip(haar.inverse(self.first_prior(shapes)[0]), -1.0, 1.0)

    @torch.inference_mode()
    def predict(
        self, z_bands: list[np.ndarray], states: list[np.ndarray], step: int, tile: int = DEFAULT_TILE
    ) -> Prediction:
        """Priors for step `step` + 1 from the latent (Haar bands) and per-coefficient states."""
        zt = [torch.from_numpy(b)[None] for b in z_bands]
        st = [torch.from_numpy(s)[None] for s in states]
        image, maps = self.model.network_input(zt, st)  # float64
        gamma = self.model.gamma_input(torch.tensor([step])).float().to(self.device)
        _, _, h, w = image.shape
        if tile <= 0 or tile % self.multiple:
            raise UqdmError(f"tile size must be a positive multiple of {self.multiple}")
        raw_bands = [torch.empty((1, 2, *b.shape), dtype=torch.float64) for b in z_bands]
        raw_pixel = torch.empty((1, 3, h, w), dtype=torch.float64)
        step_px = tile if h * w > tile * tile else max(h, w)
        for y0 in range(0, h, step_px):
            for x0 in range(0, w, step_px):
                y1, x1 = min(y0 + step_px, h), min(x0 + step_px, w)
                ys, xs = max(0, y0 - self.halo), max(0, x0 - self.halo)
                ye, xe = min(h, y1 + self.halo), min(w, x1 + self.halo)
                window = self._on_device(image[:, :, ys:ye, xs:xe])
                wmaps = [
                    self._on_device(
                        m[
                            ...,
                            ys // 2 ** (lv + 1) : ye // 2 ** (lv + 1),
                            xs // 2 ** (lv + 1) : xe // 2 ** (lv + 1),
                        ]
                    )
                    for lv, m in enumerate(maps)
                ]
                bands, pixel = self.denoiser(window, gamma, wmaps)
                for b, out in enumerate(bands):
                    f = 2 ** haar.band_level(b, self.levels)
                    crop = out[..., (y0 - ys) // f : (y1 - ys) // f, (x0 - xs) // f : (x1 - xs) // f]
                    raw_bands[b][..., y0 // f : y1 // f, x0 // f : x1 // f] = crop.double().cpu()
                px = pixel[..., y0 - ys : y1 - ys, x0 - xs : x1 - xs]
                raw_pixel[..., y0:y1, x0:x1] = px.double().cpu()
        locs, log_scales, pixel_log_scale, display = self.model.postprocess(zt, st, raw_bands, raw_pixel)
        return Prediction(
            [t[0].numpy() for t in locs],
            [torch.exp(t[0]).numpy() for t in log_scales],
            torch.exp(pixel_log_scale[0]).numpy(),
            display[0].numpy(),
        )
