"""The UQDM model: denoiser + preconditioning + schedule, with loading, saving and fingerprinting."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import haar
from .errors import ModelError
from .network import Denoiser, NetworkConfig
from .schedule import Schedule

MODEL_FORMAT = "uqdm-model/2"
DEFAULT_MODEL = "uqdm-small"
PIXEL_SIGMA_DATA = 0.5
# RMS of each band (LL_4, D_4 .. D_1) on the training photos, in data units; used for
# preconditioning the network's inputs and outputs (EDM-style c_skip / c_out).
DEFAULT_BAND_SIGMA = (7.7, 1.23, 0.52, 0.25, 0.12)


@dataclass(frozen=True)
class ModelConfig:
    """Everything besides the weights that changes what the codec computes."""

    name: str = "untrained"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    schedule: Schedule = field(default_factory=Schedule)
    band_sigma: tuple[float, ...] = DEFAULT_BAND_SIGMA
    prior: str = "logistic"

    def __post_init__(self) -> None:
        if len(self.network.widths) != self.schedule.haar_levels:
            raise ModelError("the network needs one resolution level per Haar level")
        if len(self.band_sigma) != self.schedule.num_bands:
            raise ModelError("band_sigma needs one entry per band")

    def to_dict(self) -> dict:
        return {
            "format": MODEL_FORMAT,
            "name": self.name,
            "prior": self.prior,
            "schedule": self.schedule.to_dict(),
            "band_sigma": list(self.band_sigma),
            "network": self.network.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        if d.get("format") != MODEL_FORMAT:
            raise ModelError(f"unsupported model config format {d.get('format')!r}")
        if d.get("prior") != "logistic":
            raise ModelError(f"unsupported prior {d.get('prior')!r}")
        return cls(
            name=str(d["name"]),
            network=NetworkConfig.from_dict(d["network"]),
            schedule=Schedule.from_dict(d["schedule"]),
            band_sigma=tuple(float(s) for s in d["band_sigma"]),
            prior=d["prior"],
        )


def _preconditioning(noise: float, sigma_data: float) -> tuple[float, float, float]:
    """(input gain a = c_skip / alpha, c_skip, c_out) for a band at noise std `noise`."""
    if math.isinf(noise):
        return 0.0, 0.0, sigma_data
    alpha = math.sqrt(1.0 / (1.0 + noise * noise))  # VP: alpha^2 = sigmoid(-gamma), gamma = log n^2
    c_skip = sigma_data**2 / (noise**2 + sigma_data**2)
    c_out = noise * sigma_data / math.sqrt(noise**2 + sigma_data**2)
    return c_skip / alpha, c_skip, c_out


class UQDM(nn.Module):
    """Denoiser plus the data-independent prior of the first step (z_0 carries no information)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.denoiser = Denoiser(config.network)
        ll = config.band_sigma[0]
        self.first_loc = nn.Parameter(torch.full((3,), -0.2 * ll))
        self.first_log_scale = nn.Parameter(torch.full((3,), math.log(0.55 * ll)))
        sched = config.schedule
        table = []
        for i in range(sched.num_steps + 1):
            noise = sched.band_noise(i)
            row = [_preconditioning(n, s) for n, s in zip(noise, config.band_sigma)]
            pix = _preconditioning(sched.noise(i), PIXEL_SIGMA_DATA)
            table.append([v for r in row for v in r] + [pix[2]])
        # per state: (gain, c_skip, c_out) for each band, then the pixel c_out
        self.register_buffer("precond", torch.tensor(table, dtype=torch.float64), persistent=False)

    @property
    def schedule(self) -> Schedule:
        return self.config.schedule

    @property
    def haar_levels(self) -> int:
        return self.config.schedule.haar_levels

    def network_input(self, z_bands: list[torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        """Pixel-domain image inverse-Haar(c_skip * z / alpha): the linear estimate of x."""
        pc = self.precond[state].to(z_bands[0].dtype)
        parts = [_bcast(pc[:, 3 * b], z) * z for b, z in enumerate(z_bands)]
        return haar.inverse(parts)

    def gamma_input(self, state: torch.Tensor) -> torch.Tensor:
        """The network's noise conditioning for each state: log of the global noise variance."""
        noise = [self.schedule.noise(int(s)) for s in state.tolist()]
        return torch.log(torch.tensor(noise, device=state.device) ** 2)

    def postprocess(self, z_bands, state, raw_bands, raw_pixel):
        """Turn the denoiser's raw outputs into priors (EDM-style c_skip / c_out per band).

        Returns (loc bands, log-scale bands, pixel log-scale (B,3,H,W), display (B,3,H,W)), all in
        data units; display is inverse-Haar of the band locations, clipped to [-1, 1]."""
        pc = self.precond[state].to(z_bands[0].dtype)
        locs, log_scales = [], []
        for b, (z, raw) in enumerate(zip(z_bands, raw_bands)):
            gain, c_out = pc[:, 3 * b], pc[:, 3 * b + 2]
            locs.append(_bcast(gain, z) * z + _bcast(c_out, z) * raw[:, 0])
            log_scales.append(torch.log(0.55 * _bcast(c_out, z)) + raw[:, 1])
        pixel_log_scale = torch.log(0.55 * _bcast(pc[:, -1], raw_pixel)) + raw_pixel
        display = haar.inverse(locs).clamp(-1.0, 1.0)
        return locs, log_scales, pixel_log_scale, display

    def predict(self, z_bands: list[torch.Tensor], state: torch.Tensor):
        """Prior for the step leaving `state` (B,), from the latent z (Haar bands, batch-first)."""
        image = self.network_input(z_bands, state)
        raw_bands, raw_pixel = self.denoiser(image, self.gamma_input(state).to(image.dtype))
        return self.postprocess(z_bands, state, raw_bands, raw_pixel)

    def forward(self, z_bands, state):
        return self.predict(z_bands, state)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def fingerprint(model: UQDM) -> bytes:
    """16-byte digest of the config and every tensor: what a .uqd file records."""
    h = hashlib.sha256()
    h.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.digest()[:16]


def weights_dir() -> Path:
    """Where the shipped weights live: inside the package when installed, else the repo's weights/."""
    packaged = Path(__file__).resolve().parent / "weights"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "weights"


def resolve_model_path(spec: str | Path | None) -> Path:
    """Map a model name or path to its .safetensors file (its config sits beside it as .json)."""
    spec = DEFAULT_MODEL if spec is None else spec
    path = Path(spec)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if path.suffix != ".safetensors" and not path.exists():
        path = weights_dir() / f"{spec}.safetensors"
    if path.is_dir():
        raise ModelError(f"{path} is a folder; give a .safetensors file or a model name")
    if not path.exists():
        raise ModelError(f"model {str(spec)!r} not found (looked for {path})")
    return path


def save_model(model: UQDM, path: str | Path) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": MODEL_FORMAT, "name": model.config.name})
    path.with_suffix(".json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")


def load_model(spec: str | Path | None = None) -> UQDM:
    """Load weights + config by name (from weights/) or by path; raises ModelError, one line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_model_path(spec)
    config_path = path.with_suffix(".json")
    try:
        config = ModelConfig.from_dict(json.loads(config_path.read_text()))
    except FileNotFoundError:
        raise ModelError(f"model config {config_path} is missing") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model config {config_path} is invalid: {exc}") from None
    model = UQDM(config)
    try:
        model.load_state_dict(load_file(str(path)))
    except (SafetensorError, RuntimeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load weights {path}: {first}") from None
    return model.eval()
