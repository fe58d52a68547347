"""Running the prior network over a whole image: inputs, tiling, device placement, priors out.

With an `ExactModel` every number here is computed the same way on every machine: the network's
inputs and outputs in float64 numpy with plain IEEE operations, the network itself in exact
integer arithmetic (exactnet.py), prior scales with `portable.exp`. Every network operation is
local and each tile's window reaches the network's receptive radius into its neighbours, so tiled
and untiled evaluation give identical integers: the tile size is a memory knob of each side, not
part of the file. A float `UQDM` can be run the same way (for calibration and comparisons); its
results depend on the machine.
"""

from __future__ import annotations

import numpy as np
import torch

from . import haar, portable
from .errors import UqdmError
from .exactmodel import ExactModel
from .exactnet import HEAD_SHIFT, CalibrationOps, FloatOps, graph
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
    """Keep every convolution a plain sum of products in float32: no TF32 or reduced-precision
    matmuls, and no cuDNN (it counts FFT and Winograd convolutions as deterministic, but those
    leave the integers), no NNPACK (Winograd/FFT on CPU). oneDNN's CPU convolutions are direct."""
    torch.backends.cudnn.enabled = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.set_float32_matmul_precision("highest")
    torch.backends.nnpack.set_flags(False)
    for backend in ("mkldnn.conv", "mkldnn.matmul", "cudnn.conv", "cuda.matmul"):  # torch >= 2.9
        group, name = backend.split(".")
        obj = getattr(getattr(torch.backends, group, None), name, None)
        if obj is not None and hasattr(obj, "fp32_precision"):
            try:
                obj.fp32_precision = "ieee"  # never TF32 or bf16 for float32 work
            except (RuntimeError, ValueError, AttributeError):
                pass


class Prediction:
    """Priors for the step leaving one state, float64 numpy arrays without a batch axis. Scales
    are computed when first used (a display needs only the locations)."""

    def __init__(self, locs, display, scale_units, raw_scales, pixel_unit, raw_pixel):
        self.locs: list[np.ndarray] = locs  # per Haar band
        self.display: np.ndarray = display  # (3, H, W), data units, in [-1, 1]; the pixel-step location
        self._units, self._raw, self._pixel = scale_units, raw_scales, (pixel_unit, raw_pixel)
        self._scales: list[np.ndarray] | None = None
        self._pixel_scale: np.ndarray | None = None

    @property
    def scales(self) -> list[np.ndarray]:
        """Per band: (0.55 c_out) * exp_p(G)."""
        if self._scales is None:
            self._scales = [u * portable.exp(g) for u, g in zip(self._units, self._raw)]
        return self._scales

    @property
    def pixel_scale(self) -> np.ndarray:
        """(3, H, W): (0.55 c) * exp_p(P), the pixel step's scales."""
        if self._pixel_scale is None:
            unit, raw = self._pixel
            self._pixel_scale = unit * portable.exp(raw)
        return self._pixel_scale


class PriorNetwork:
    """Evaluates a model on (padded) images of any size."""

    def __init__(self, model: ExactModel | UQDM, device=None, stats: dict[str, float] | None = None):
        configure_determinism()
        self.device = pick_device(device)
        self.model = model
        self.exact = isinstance(model, ExactModel)
        self.stats = stats  # float models only: record value ranges (calibration)
        if self.exact:
            self.denoiser = model.denoiser.to(self.device)
            self.precond = model.precond
            self.pixel_scale_unit = model.pixel_scale_unit
            first_loc, first_scale = model.first_loc, model.first_scale
        else:
            self.denoiser = model.denoiser.eval().to(self.device)
            table = model.precond.double().cpu().numpy()
            self.precond = np.concatenate([table, 0.55 * table[..., 2:3]], axis=-1)
            self.pixel_scale_unit = 0.55 * model.pixel_c_out
            first_loc = model.first_loc.detach().double().cpu().numpy()
            first_scale = portable.exp(model.first_log_scale.detach().double().cpu().numpy())
        self.first_loc, self.first_scale = first_loc, first_scale
        self.multiple = 2 ** len(model.config.network.widths)
        radius = receptive_radius(model.config.network)
        self.halo = -(-radius // self.multiple) * self.multiple

    @property
    def levels(self) -> int:
        return self.model.haar_levels

    def first_prior(self, shapes: list[tuple[int, ...]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Step 1's prior: one learned location and scale per band and colour, broadcast."""
        locs, scales = [], []
        for b, shape in enumerate(shapes):
            locs.append(np.broadcast_to(self.first_loc[b][:, None, None], shape).copy())
            scales.append(np.broadcast_to(self.first_scale[b][:, None, None], shape).copy())
        return locs, scales

    def blank_display(self, shape: tuple[int, int]) -> np.ndarray:
        """What the decoder shows before any step: inverse-Haar of the first prior's locations."""
        shapes = [b.shape for b in haar.forward(np.zeros((3, *shape)), self.levels)]
        return np.clip(haar.inverse(self.first_prior(shapes)[0]), -1.0, 1.0)

    def network_input(self, z_bands: list[np.ndarray], states: list[np.ndarray]):
        """(image, maps), float64: inverse-Haar of gain * z per coefficient (the linear estimate of
        x), and the c_skip maps grouped by resolution (D_1, D_2, ..., then LL_L with D_L)."""
        parts, cskips = [], []
        for b, (z, st) in enumerate(zip(z_bands, states)):
            pc = self.precond[b][st]
            parts.append(pc[..., 0] * z)
            c = pc[..., 1]
            cskips.append(c.reshape(-1, *c.shape[-2:]))
        image = haar.inverse(parts)
        levels = self.levels
        maps = [cskips[levels + 1 - (lv + 1)] for lv in range(levels - 1)]
        maps.append(np.concatenate([cskips[0], cskips[1]], axis=0))
        return image, maps

    def _evaluate(self, image: np.ndarray, maps: list[np.ndarray], step: int):
        """Raw network outputs (float64 numpy, band layout of Denoiser.forward) for one window."""
        dev = self.device

        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None].to(dev)

        with torch.inference_mode():
            if self.exact:
                qi, qm = self.denoiser.quantize_inputs(image, maps)
                bands, pixel = self.denoiser(put(qi), [put(m) for m in qm], step)
                unit = 2.0**-HEAD_SHIFT
            else:
                gamma = self.model.gamma_input(torch.tensor([step])).float().to(dev)
                ops = FloatOps(self.denoiser, gamma) if self.stats is None else None
                if ops is None:
                    ops = CalibrationOps(self.denoiser, gamma, self.stats)
                bands, pixel = graph(ops, put(image), [put(m) for m in maps], self.denoiser.config)
                unit = 1.0
        out = [b[0].double().cpu().numpy() * unit for b in bands]
        return out, pixel[0].double().cpu().numpy() * unit

    def predict(
        self, z_bands: list[np.ndarray], states: list[np.ndarray], step: int, tile: int = DEFAULT_TILE
    ) -> Prediction:
        """Priors for step `step` + 1 from the latent (Haar bands) and per-coefficient states."""
        if tile <= 0 or tile % self.multiple:
            raise UqdmError(f"tile size must be a positive multiple of {self.multiple}")
        image, maps = self.network_input(z_bands, states)
        _, h, w = image.shape
        raw_bands = [np.empty((2, *b.shape)) for b in z_bands]
        raw_pixel = np.empty((3, h, w))
        step_px = tile if h * w > tile * tile else max(h, w)
        for y0 in range(0, h, step_px):
            for x0 in range(0, w, step_px):
                y1, x1 = min(y0 + step_px, h), min(x0 + step_px, w)
                ys, xs = max(0, y0 - self.halo), max(0, x0 - self.halo)
                ye, xe = min(h, y1 + self.halo), min(w, x1 + self.halo)
                wmaps = [
                    m[..., ys >> (lv + 1) : ye >> (lv + 1), xs >> (lv + 1) : xe >> (lv + 1)]
                    for lv, m in enumerate(maps)
                ]
                bands, pixel = self._evaluate(image[:, ys:ye, xs:xe], wmaps, step)
                for b, out in enumerate(bands):
                    f = 2 ** haar.band_level(b, self.levels)
                    crop = out[..., (y0 - ys) // f : (y1 - ys) // f, (x0 - xs) // f : (x1 - xs) // f]
                    raw_bands[b][..., y0 // f : y1 // f, x0 // f : x1 // f] = crop
                raw_pixel[:, y0:y1, x0:x1] = pixel[:, y0 - ys : y1 - ys, x0 - xs : x1 - xs]
        return self.postprocess(z_bands, states, raw_bands, raw_pixel)

    def postprocess(self, z_bands, states, raw_bands, raw_pixel) -> Prediction:
        """Raw outputs (F, G) -> priors, per coefficient: loc = gain z + c_out F and
        scale = (0.55 c_out) e^G (EDM-style c_skip / c_out); float64, portable."""
        locs, units, raw_scales = [], [], []
        for b, (z, st, raw) in enumerate(zip(z_bands, states, raw_bands)):
            pc = self.precond[b][st]
            locs.append(pc[..., 0] * z + pc[..., 2] * raw[0])
            units.append(pc[..., 3])
            raw_scales.append(raw[1])
        display = np.clip(haar.inverse(locs), -1.0, 1.0)
        return Prediction(locs, display, units, raw_scales, self.pixel_scale_unit, raw_pixel)
