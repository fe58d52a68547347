"""The codec's model: the integer prior network plus every constant a decoder needs, as stored.

Training works on float weights (`model.UQDM`, format uqdm-model/3). The codec runs an
`ExactModel` (format uqdm-exact/1): the integer network of `exactnet.py`, the first step's prior as
float64 numbers, and the config. It is made once from float weights by `from_float` (calibrating
value ranges on photos, on this machine) and saved; decoders read the stored numbers and never
recompute them, so no libm, BLAS or device difference can reach a file's probabilities.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from . import haar, portable
from .errors import ModelError
from .exactnet import ExactDenoiser, export
from .model import (
    EXACT_FORMAT,
    MODEL_FORMAT,
    PIXEL_SIGMA_DATA,
    UQDM,
    ModelConfig,
    _preconditioning,
    load_model,
    read_config,
    resolve_model_path,
)
from .schedule import Schedule

PRIOR_SCALE_FACTOR = 0.55  # a coefficient's prior scale is 0.55 c_out e^G (G: the network's output)


class ExactModel:
    """Config, integer network and step 1's prior; `tensors` is exactly what the file holds."""

    def __init__(self, config: ModelConfig, tensors: dict[str, torch.Tensor]):
        self.config = config
        self.tensors = dict(tensors)
        try:
            net = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
            self.denoiser = ExactDenoiser(config.network, net)
            self.first_loc = tensors["first_loc"].to(torch.float64).numpy()
            self.first_scale = tensors["first_scale"].to(torch.float64).numpy()
        except KeyError as exc:
            raise ModelError(f"exact model is missing tensor {exc}") from None
        sched = config.schedule
        if self.first_loc.shape != (sched.num_bands, 3) or self.first_scale.shape != (sched.num_bands, 3):
            raise ModelError("exact model: first prior has the wrong shape")
        rows = {v.shape[0] for k, v in net.items() if k.endswith(".mul") and v.ndim == 2}
        if rows and rows != {sched.haar_steps}:  # one FiLM row per step (a net with no blocks has none)
            raise ModelError(
                f"exact model: its network is made for {'/'.join(map(str, sorted(rows)))} noise "
                f"levels, its config's schedule has {sched.haar_steps}; its config describes another network"
            )
        # precond[b, j] = (gain, c_skip, c_out, 0.55 c_out) of band b in state j: sqrt, * and / only
        self.precond = np.array(
            [
                [
                    (*p, PRIOR_SCALE_FACTOR * p[2])
                    for p in (_preconditioning(sched.noise(j), s) for j in range(sched.haar_steps + 1))
                ]
                for s in config.band_sigma
            ]
        )
        pixel_c_out = _preconditioning(sched.noise(sched.haar_steps), PIXEL_SIGMA_DATA)[2]
        self.pixel_scale_unit = PRIOR_SCALE_FACTOR * pixel_c_out
        self.fingerprint = _fingerprint(config, self.tensors)

    @property
    def schedule(self) -> Schedule:
        return self.config.schedule

    @property
    def haar_levels(self) -> int:
        return self.config.schedule.haar_levels

    @property
    def multiple(self) -> int:
        return self.denoiser.multiple


def _fingerprint(config: ModelConfig, tensors: dict[str, torch.Tensor]) -> bytes:
    """16-byte digest of the config and every stored tensor (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    d = config.to_dict()
    d["format"] = EXACT_FORMAT
    h.update(json.dumps(d, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}:{str(t.dtype).removeprefix('torch.')}:{list(t.shape)}".encode())
        h.update(t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes())
    return h.digest()[:16]


def save_exact(model: ExactModel, path: str | Path) -> None:
    """Write the tensors (safetensors) and the config beside them as JSON."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.tensors.items()}
    save_file(tensors, str(path), metadata={"format": EXACT_FORMAT, "name": model.config.name})
    d = model.config.to_dict()
    d["format"] = EXACT_FORMAT
    path.with_suffix(".json").write_text(json.dumps(d, indent=2) + "\n")


def load_codec_model(spec: str | Path | None = None) -> ExactModel:
    """The model the codec runs, by name (from weights/) or path. Float weights (a training run's
    output) are converted on the fly with `from_float` on built-in synthetic images; such a model's
    files only decode where the same conversion is made, so ship converted models
    (`scripts/export_weights.py`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_model_path(spec)
    config, raw = read_config(path)
    if raw.get("format") == MODEL_FORMAT:
        return from_float(load_model(path))
    try:
        tensors = load_file(str(path))
    except (SafetensorError, RuntimeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load weights {path}: {first}") from None
    return ExactModel(config, tensors)


def synthetic_calibration_images() -> list[np.ndarray]:
    """Two 128x128 photo-like images (gradients, edges, texture) for converting a model without data."""
    out = []
    for seed in range(2):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:128, 0:128].astype(np.float64)
        base = np.stack(
            [
                128 + 90 * np.sin(xx / (7.0 + seed)) * np.cos(yy / 11.0),
                100 + 0.8 * yy + 60 * (xx > 64),
                60 + 70 * np.cos(yy / 5.0) * np.sin(xx / 9.0),
            ],
            axis=-1,
        )
        out.append(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8))
    return out


def calibrate(model: UQDM, images: list[np.ndarray], seed: int = 0) -> dict[str, float]:
    """Largest magnitudes at every point of the float network over the chains of `images` (the
    states the codec really produces, step by step)."""
    from .codec import _Chain
    from .inference import PriorNetwork

    stats: dict[str, float] = {}
    net = PriorNetwork(model, "cpu", stats=stats)
    for n, pixels in enumerate(images):
        h, w = pixels.shape[:2]
        chain = _Chain(net, h, w, seed + n, tile=1 << 16)
        x = haar.forward(_padded(pixels, chain.hp, chain.wp), chain.levels)
        from . import entropy

        pred = None
        for i in range(1, model.schedule.num_steps):
            prior = chain.prior(i, pred)
            k = entropy.quantise(chain.elements(i, None, x), prior)
            chain.apply(i, entropy.reconstruct(k, prior), np.arange(k.size))
            pred = chain.predict(i)
    return stats


def _padded(pixels: np.ndarray, hp: int, wp: int) -> np.ndarray:
    from .entropy import pixels_to_data

    return haar.extend(pixels_to_data(pixels.transpose(2, 0, 1)), hp, wp)


def from_float(model: UQDM, images: list[np.ndarray] | None = None) -> ExactModel:
    """Convert float weights to the exact model, calibrating ranges on `images` (default: synthetic)."""
    stats = calibrate(model, images if images is not None else synthetic_calibration_images())
    sched = model.schedule
    gammas = [float(model.gamma_input(torch.tensor([s]))[0]) for s in range(1, sched.haar_steps + 1)]
    tensors = {f"net.{k}": v for k, v in export(model.denoiser, stats, gammas).items()}
    with torch.no_grad():
        tensors["first_loc"] = model.first_loc.detach().double().clone()
        scale = portable.exp(model.first_log_scale.detach().double().numpy())
        tensors["first_scale"] = torch.from_numpy(scale)
    return ExactModel(model.config, tensors)
