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

import ctypes

import numpy as np
import torch

from . import display_filter, ensemble, entropy, haar, portable
from .display_filter import DisplayFilter
from .errors import UqdmError, option
from .exactmodel import ExactModel
from .exactnet import HEAD_SHIFT, CalibrationOps, FloatOps, graph
from .model import UQDM
from .network import receptive_radius

_LIBC: ctypes.CDLL | None | bool = False  # False: not looked up yet; None: not glibc


def release_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim; elsewhere nothing).
    Arrays above glibc's mmap threshold (which rises to 32 MB once such a block is freed) are
    mapped and unmapped on their own, but everything smaller (network activations of a tile,
    blocks of whole-image passes) comes from the heap, whose freed pages glibc keeps: after a
    network pass they were most of the process's resident memory, and the next large arrays,
    being mapped anew, came on top of them."""
    global _LIBC
    if _LIBC is False:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = None
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


DEFAULT_TILE = 1024  # core tile side (pixels, a multiple of 16); images up to tile^2 pixels run whole


def pick_device(spec: str | torch.device | None) -> torch.device:
    if isinstance(spec, torch.device):
        return spec
    if spec is not None and not isinstance(spec, str):
        raise UqdmError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, not {spec!r}")
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        asked = option("--device cuda", "device='cuda'")
        raise UqdmError(f"{asked} was asked for, but no CUDA device is available")
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
    nnpack = getattr(torch.backends, "nnpack", None)  # torch >= 2.2; before, batches under 16
    if nnpack is not None:  # never reached NNPACK (ours are 1 to 4 images)
        nnpack.set_flags(False)
    for backend in ("mkldnn.conv", "mkldnn.matmul", "cudnn.conv", "cuda.matmul"):  # torch >= 2.9
        group, name = backend.split(".")
        try:  # older torch: no such attribute (torch.backends.cuda.matmul raises AssertionError)
            obj = getattr(getattr(torch.backends, group, None), name, None)
            if obj is not None and hasattr(obj, "fp32_precision"):
                obj.fp32_precision = "ieee"  # never TF32 or bf16 for float32 work
        except (RuntimeError, ValueError, AttributeError, AssertionError):
            pass


def bands_image(bands: list[np.ndarray], levels: int, height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 image of inverse-Haar(bands) clipped to [-1, 1]: the decoder's
    display rounding, done in strips of rows (haar.window) so that no whole-image float64
    temporaries are made; the same values as transforming the whole image at once."""
    _, hp, wp = _image_shape(bands, levels)
    out = np.empty((height, width, 3), np.uint8)
    for r0, r1 in haar.strips(hp, wp, levels):
        if r0 >= height:
            break
        strip = np.clip(haar.inverse(haar.window(bands, levels, r0, r1, 0, wp)), -1.0, 1.0)
        r1 = min(r1, height)
        out[r0:r1] = entropy.data_to_pixels(strip[:, : r1 - r0, :width]).transpose(1, 2, 0)
    return out


def _image_shape(bands: list[np.ndarray], levels: int) -> tuple[int, int, int]:
    """(channels, height, width) of the padded image whose Haar bands these are."""
    c, h, w = bands[0].shape[-3:]
    return c, h << levels, w << levels


class Prediction:
    """Priors for the step leaving one state, numpy arrays without a batch axis: per Haar band the
    locations (float64) and the network's raw log-scale outputs, and the pixel head's raw output.
    Raw outputs of the exact network are integers times 2^-16 below 2^7 in magnitude, so they are
    kept as float32 (exact; float64 for float models). Scales are computed when first used, images
    each time they are asked for (in strips), so a prediction costs about 17 bytes per value."""

    def __init__(self, locs, states, unit_tables, raw_scales, pixel_unit, raw_pixel, levels: int):
        self.locs: list[np.ndarray] = locs  # per Haar band
        self.levels = levels
        self._states = states  # per band: each coefficient's state (uint8) when predicted
        self._units = unit_tables  # per band: 0.55 c_out by state
        self._raw, self._pixel = raw_scales, (pixel_unit, raw_pixel)
        self._scales: list[np.ndarray] | None = None
        self._pixel_scale: np.ndarray | None = None
        # the step's display filter (display_filter.py), set by the codec once the step is complete;
        # it applies to the image's own size, which is what the codec always asks for
        self.filter: DisplayFilter | None = None
        self._filtered: tuple[DisplayFilter, np.ndarray] | None = None  # display_crop's, as filtered
        self._display_bands: tuple[DisplayFilter | None, list[np.ndarray]] | None = None  # made for filter

    def band_scale(self, b: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Scales (0.55 c_out) * exp_p(G) of band b's coefficients start:stop in flat order (not
        cached unless `scales` was asked for: for passes over a band in blocks)."""
        if self._scales is not None:
            return self._scales[b].reshape(-1)[start:stop]
        st = self._states[b].reshape(-1)[start:stop]
        g = self._raw[b].reshape(-1)[start:stop].astype(np.float64)
        return self._units[b][st] * portable.exp(g)

    @property
    def scales(self) -> list[np.ndarray]:
        """Per band: (0.55 c_out) * exp_p(G)."""
        if self._scales is None:
            self._scales = [self.band_scale(b).reshape(g.shape) for b, g in enumerate(self._raw)]
        return self._scales

    @property
    def pixel_scale(self) -> np.ndarray:
        """(3, H, W): (0.55 c) * exp_p(P), the pixel step's scales."""
        if self._pixel_scale is None:
            self._pixel_scale = self.pixel_scale_crop(*self._pixel[1].shape[-2:])
        return self._pixel_scale

    def pixel_scale_crop(self, height: int, width: int) -> np.ndarray:
        """(3, height, width) of pixel_scale, not cached."""
        unit, raw = self._pixel
        return unit * portable.exp(raw[:, :height, :width].astype(np.float64))

    @property
    def display(self) -> np.ndarray:
        """(3, H, W), data units, in [-1, 1]: inverse-Haar of the locations, clipped; the pixel-step
        location. Computed on every access (callers that want pixels use image())."""
        _, hp, wp = _image_shape(self.locs, self.levels)
        return self.display_crop(hp, wp)

    def display_crop(self, height: int, width: int) -> np.ndarray:
        """(3, height, width) of display, computed in strips; filtered by `filter` if set (the
        filtered image is kept: the codec asks for it up to three times). Callers may not change it."""
        if self.filter is not None and self._filtered is not None and self._filtered[0] is self.filter:
            if self._filtered[1].shape == (3, height, width):
                return self._filtered[1]
        _, hp, wp = _image_shape(self.locs, self.levels)
        out = np.empty((3, height, width))
        for r0, r1 in haar.strips(hp, wp, self.levels):
            if r0 >= height:
                break
            strip = np.clip(haar.inverse(haar.window(self.locs, self.levels, r0, r1, 0, wp)), -1.0, 1.0)
            r1 = min(r1, height)
            out[:, r0:r1] = strip[:, : r1 - r0, :width]
        if self.filter is None:
            return out
        self._filtered = (self.filter, display_filter.apply(self.filter, out))
        return self._filtered[1]

    def display_bands(self, height: int, width: int) -> list[np.ndarray]:
        """Haar bands of the shown image (display_crop, filtered if the step has a filter), padded to
        the network's size by repeating edges as the encoder pads the original: the prior locations
        a later step may take instead of the network's (FORMAT.md 6.5). Made once."""
        if self._display_bands is None or self._display_bands[0] is not self.filter:
            _, hp, wp = _image_shape(self.locs, self.levels)
            shown = haar.extend(self.display_crop(height, width), hp, wp)
            self._display_bands = (self.filter, haar.forward(shown, self.levels))
        return self._display_bands[1]

    def image(self, height: int, width: int) -> np.ndarray:
        """(height, width, 3) uint8: the display as the decoder shows it."""
        if self.filter is not None:
            shown = entropy.data_to_pixels(self.display_crop(height, width))
            return np.ascontiguousarray(shown.transpose(1, 2, 0))
        return bands_image(self.locs, self.levels, height, width)


def _clipped(locs: list[np.ndarray], lower: list[np.ndarray], upper: list[np.ndarray]) -> list[np.ndarray]:
    """Band locations clipped to the known intervals (FORMAT.md 5.5), band by band."""
    return [np.clip(loc, lo, hi) for loc, lo, hi in zip(locs, lower, upper)]


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
        # per band, indexed by state: gain, c_skip, c_out, 0.55 c_out (one table per column, so
        # that indexing by a state array makes one array, not a (..., 4) one)
        self.gain, self.cskip, self.cout, self.units = (
            [np.ascontiguousarray(p[:, j]) for p in self.precond] for j in range(4)
        )
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
        """(image, maps) of the whole padded image (see _window_input)."""
        _, h, w = _image_shape(z_bands, self.levels)
        return self._window_input(z_bands, states, 0, h, 0, w)

    def _window_input(self, z_bands, states, ys: int, ye: int, xs: int, xe: int):
        """(image, maps), float64, of the window rows ys:ye, columns xs:xe (multiples of 2^levels,
        so this equals the window of the whole image's input): inverse-Haar of gain * z per
        coefficient (the linear estimate of x), and the c_skip maps grouped by resolution (D_1,
        D_2, ..., then LL_L with D_L). The tables are indexed per column of precond, so no
        (..., 4) temporaries are made."""
        levels = self.levels
        parts, cskips = [], []
        zw, sw = haar.window(z_bands, levels, ys, ye, xs, xe), haar.window(states, levels, ys, ye, xs, xe)
        for b, (z, st) in enumerate(zip(zw, sw)):
            parts.append(self.gain[b][st] * z)
            c = self.cskip[b][st]
            cskips.append(c.reshape(-1, *c.shape[-2:]))
        image = haar.inverse(parts)
        maps = [cskips[levels + 1 - (lv + 1)] for lv in range(levels - 1)]
        maps.append(np.concatenate([cskips[0], cskips[1]], axis=0))
        return image, maps

    def _evaluate(self, image: np.ndarray, maps: list[np.ndarray], step: int):
        """Raw network outputs for one window (band layout of Denoiser.forward) and their unit:
        float32 numpy arrays (the exact network's integers, or the float network's values) that
        the caller crops, then turns into float64 times the unit (exact: same values as converting
        the whole window first)."""
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
        return [b[0].cpu().numpy() for b in bands], pixel[0].cpu().numpy(), unit

    def _tiles(self, z_bands, states, step: int, tile: int):
        """Evaluate the network tile by tile. Yields ((y0, y1, x0, x1), raw band outputs, raw
        pixel output) for each core tile: a window reaching `halo` into the neighbours is
        evaluated and cropped to the core, which gives the same integers as the whole image."""
        if tile <= 0 or tile % self.multiple:
            raise UqdmError(f"tile size must be a positive multiple of {self.multiple}")
        _, h, w = _image_shape(z_bands, self.levels)
        step_px = tile if h * w > tile * tile else max(h, w)
        for y0 in range(0, h, step_px):
            for x0 in range(0, w, step_px):
                y1, x1 = min(y0 + step_px, h), min(x0 + step_px, w)
                ys, xs = max(0, y0 - self.halo), max(0, x0 - self.halo)
                ye, xe = min(h, y1 + self.halo), min(w, x1 + self.halo)
                window = self._window_input(z_bands, states, ys, ye, xs, xe)
                bands, pixel, unit = self._evaluate(*window, step)
                del window
                crops = haar.window(bands, self.levels, y0 - ys, y1 - ys, x0 - xs, x1 - xs)
                del bands
                crops = [c.astype(np.float64) * unit for c in crops]
                pixel = pixel[:, y0 - ys : y1 - ys, x0 - xs : x1 - xs].astype(np.float64) * unit
                yield (y0, y1, x0, x1), crops, pixel
                del pixel, crops
                release_memory()  # the tile's activations, before the next tile or the caller's arrays

    def _locs(self, z_core: list[np.ndarray], s_core: list[np.ndarray], raw: list[np.ndarray]):
        """loc = gain z + c_out F per coefficient of a tile (two products, then their sum)."""
        return [
            self.gain[b][st] * z + self.cout[b][st] * r[0]
            for b, (z, st, r) in enumerate(zip(z_core, s_core, raw))
        ]

    def predict(
        self,
        z_bands: list[np.ndarray],
        states: list[np.ndarray],
        step: int,
        tile: int = DEFAULT_TILE,
        mirrors: int = 1,
    ) -> Prediction:
        """Priors for step `step` + 1 from the latent (Haar bands) and per-coefficient states: the
        locations loc = gain z + c_out F and the raw outputs (F, G), scales (0.55 c_out) e^G
        coming later (EDM-style c_skip / c_out); float64, portable. mirrors > 1: the average of the
        predictions on the state and its mirror images (ensemble.py), in the order of MIRROR_SETS."""
        if mirrors == 1:
            return self._predict(z_bands, states, step, tile)
        locs, raws, pixel = ensemble.Average(), ensemble.Average(), ensemble.Average()
        for mirror in ensemble.MIRROR_SETS[ensemble.check_mirrors(mirrors)]:
            if not mirror:
                p = self._predict(z_bands, states, step, tile)
            else:
                z = ensemble.mirror_bands(z_bands, mirror, signed=True)
                st = ensemble.mirror_bands(states, mirror, signed=False)
                p = self._predict(z, st, step, tile)
                del z, st
                p.locs = ensemble.mirror_bands(p.locs, mirror, signed=True)
                p._raw = ensemble.mirror_bands(p._raw, mirror, signed=False)
                p._pixel = (p._pixel[0], ensemble.mirror_image(p._pixel[1], mirror))
            locs.add(p.locs)
            raws.add(p._raw)
            pixel.add([p._pixel[1]])
            del p
        kept = [np.array(st, dtype=np.uint8) for st in states]
        return Prediction(
            locs.result(),
            kept,
            self.units,
            raws.result(),
            self.pixel_scale_unit,
            pixel.result()[0],
            self.levels,
        )

    def _predict(
        self, z_bands: list[np.ndarray], states: list[np.ndarray], step: int, tile: int
    ) -> Prediction:
        """predict() of one network pass."""
        levels = self.levels
        _, h, w = _image_shape(z_bands, levels)
        raw_dtype = np.float32 if self.exact else np.float64  # float32 holds the exact outputs exactly
        locs = [np.empty(z.shape) for z in z_bands]
        raw_scales = [np.empty(z.shape, raw_dtype) for z in z_bands]
        raw_pixel = np.empty((3, h, w), raw_dtype)
        for (y0, y1, x0, x1), raw, pixel in self._tiles(z_bands, states, step, tile):
            core = (y0, y1, x0, x1)
            z_core, s_core = haar.window(z_bands, levels, *core), haar.window(states, levels, *core)
            for dst, loc in zip(haar.window(locs, levels, *core), self._locs(z_core, s_core, raw)):
                dst[...] = loc
            for dst, r in zip(haar.window(raw_scales, levels, *core), raw):
                dst[...] = r[1]
            raw_pixel[:, y0:y1, x0:x1] = pixel
        kept = [np.array(st, dtype=np.uint8) for st in states]  # a copy: the chain's states move on
        return Prediction(locs, kept, self.units, raw_scales, self.pixel_scale_unit, raw_pixel, levels)

    def display_image(
        self,
        z_bands: list[np.ndarray],
        states: list[np.ndarray],
        step: int,
        tile: int,
        height: int,
        width: int,
        mirrors: int = 1,
        known: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
    ) -> np.ndarray:
        """Prediction.image() of predict(...) without keeping any prediction: each tile's locations
        go straight to its pixels, (height, width, 3) uint8. An ensemble (mirrors > 1) needs the
        whole prediction first. `known`: per band the lower and upper ends of the intervals the
        locations are clipped to (FORMAT.md 5.5)."""
        if mirrors != 1:
            pred = self.predict(z_bands, states, step, tile, mirrors)
            if known is not None:
                pred.locs = _clipped(pred.locs, *known)
            return pred.image(height, width)
        levels = self.levels
        out = np.empty((height, width, 3), np.uint8)
        for (y0, y1, x0, x1), raw, _ in self._tiles(z_bands, states, step, tile):
            if y0 >= height or x0 >= width:
                continue
            core = (y0, y1, x0, x1)
            locs = self._locs(haar.window(z_bands, levels, *core), haar.window(states, levels, *core), raw)
            if known is not None:
                locs = _clipped(locs, *(haar.window(k, levels, *core) for k in known))
            display = np.clip(haar.inverse(locs), -1.0, 1.0)
            y1, x1 = min(y1, height), min(x1, width)
            out[y0:y1, x0:x1] = entropy.data_to_pixels(display[:, : y1 - y0, : x1 - x0]).transpose(1, 2, 0)
        return out
