"""The UQDM model: denoiser + preconditioning + schedule, with loading, saving and fingerprinting."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import container, haar
from .errors import ModelError
from .network import Denoiser, NetworkConfig
from .schedule import Schedule

MODEL_FORMAT = "uqdm-model/3"  # float weights: what training reads and writes
EXACT_FORMAT = "uqdm-exact/1"  # integer network: what the codec runs (exactnet.py)
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
        if self.prior != "logistic":
            raise ModelError(f"unsupported prior {self.prior!r}")
        if len(self.name.encode("utf-8")) > container.MAX_NAME:  # every file's header holds it
            raise ModelError(f"model name longer than the {container.MAX_NAME} bytes a file's header holds")

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
        if d.get("format") not in (MODEL_FORMAT, EXACT_FORMAT):
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
    """(input gain a = c_skip / alpha, c_skip, c_out) for a coefficient at noise std `noise`."""
    if math.isinf(noise):
        return 0.0, 0.0, sigma_data
    # only +, -, *, / and sqrt (x**2 calls libm's pow, which is not correctly rounded everywhere)
    n2, s2 = noise * noise, sigma_data * sigma_data
    alpha = math.sqrt(1.0 / (1.0 + n2))  # VP: alpha^2 = sigmoid(-gamma), gamma = log n^2
    c_skip = s2 / (n2 + s2)
    c_out = noise * sigma_data / math.sqrt(n2 + s2)
    return c_skip / alpha, c_skip, c_out


class UQDM(nn.Module):
    """Denoiser, the data-independent prior of step 1, and the per-coefficient preconditioning."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        sched = config.schedule
        self.denoiser = Denoiser(config.network)
        sig = torch.tensor(config.band_sigma, dtype=torch.float32)
        loc = torch.zeros(sched.num_bands, 3)
        loc[0] = -0.2 * sig[0]
        self.first_loc = nn.Parameter(loc)
        self.first_log_scale = nn.Parameter(torch.log(0.55 * sig)[:, None].repeat(1, 3))
        table = [
            [_preconditioning(sched.noise(j), s) for j in range(sched.haar_steps + 1)]
            for s in config.band_sigma
        ]
        # precond[b, j] = (gain, c_skip, c_out) of band b in state j
        self.register_buffer("precond", torch.tensor(table, dtype=torch.float64), persistent=False)
        self.pixel_c_out = _preconditioning(sched.noise(sched.haar_steps), PIXEL_SIGMA_DATA)[2]

    @property
    def schedule(self) -> Schedule:
        return self.config.schedule

    @property
    def haar_levels(self) -> int:
        return self.config.schedule.haar_levels

    def gamma_input(self, step: torch.Tensor) -> torch.Tensor:
        """The network's noise conditioning: log of the global noise variance after `step` steps."""
        return torch.tensor(
            [2.0 * math.log(self.schedule.noise(int(s))) for s in step.tolist()], device=step.device
        )

    def first_prior(self, like: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Step 1's prior: one learned location and scale per band and colour."""
        locs, scales = [], []
        for b, z in enumerate(like):
            shape = [1] * (z.dim() - 3) + [3, 1, 1]
            locs.append(self.first_loc[b].view(shape).to(z.dtype).expand_as(z))
            scales.append(self.first_log_scale[b].view(shape).to(z.dtype).expand_as(z))
        return locs, scales

    def network_input(self, z_bands: list[torch.Tensor], states: list[torch.Tensor]):
        """(image, maps): inverse-Haar of c_skip * z / alpha per coefficient (the linear estimate of
        x), and the c_skip maps grouped by resolution for the denoiser."""
        parts, cskips = [], []
        for b, (z, st) in enumerate(zip(z_bands, states)):
            pc = self.precond[b].to(z.dtype)[st]
            parts.append(pc[..., 0] * z)
            cskips.append(pc[..., 1].flatten(1, -3) if z.dim() == 5 else pc[..., 1])
        image = haar.inverse(parts)
        levels = self.haar_levels
        maps = [cskips[levels + 1 - (lv + 1)] for lv in range(levels - 1)]  # D_1, D_2, ...
        maps.append(torch.cat([cskips[0], cskips[1]], dim=1))  # LL_L and D_L
        return image, maps

    def postprocess(self, z_bands, states, raw_bands, raw_pixel):
        """Turn the denoiser's raw outputs into priors (EDM-style c_skip / c_out per coefficient).

        Returns (loc bands, log-scale bands, pixel log-scale (B,3,H,W), display (B,3,H,W)), all in
        data units; display is inverse-Haar of the band locations, clipped to [-1, 1]."""
        locs, log_scales = [], []
        for b, (z, st, raw) in enumerate(zip(z_bands, states, raw_bands)):
            pc = self.precond[b].to(z.dtype)[st]
            locs.append(pc[..., 0] * z + pc[..., 2] * raw[:, 0])
            log_scales.append(torch.log(0.55 * pc[..., 2]) + raw[:, 1])
        pixel_log_scale = math.log(0.55 * self.pixel_c_out) + raw_pixel
        display = haar.inverse(locs).clamp(-1.0, 1.0)
        return locs, log_scales, pixel_log_scale, display

    def predict(self, z_bands: list[torch.Tensor], states: list[torch.Tensor], step: torch.Tensor):
        """Prior for step `step` + 1, from the latent z and per-coefficient states (batch-first)."""
        image, maps = self.network_input(z_bands, states)
        raw_bands, raw_pixel = self.denoiser(image, self.gamma_input(step).to(image.dtype), maps)
        return self.postprocess(z_bands, states, raw_bands, raw_pixel)

    def forward(self, z_bands, states, step):
        return self.predict(z_bands, states, step)


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


def retired_model_path(name: str, fingerprint: bytes) -> Path | None:
    """The shipped weights of an earlier release that made a file, if this install has them:
    weights/retired/<name>-<fingerprint hex>.safetensors. A new model must not orphan the files
    its predecessor wrote; the name comes from the file, so only plain names are looked up."""
    if not plain_name(name):
        return None
    path = weights_dir() / "retired" / f"{name}-{fingerprint.hex()}.safetensors"
    return path if path.is_file() else None


def plain_name(name: str) -> bool:
    """A model name that can only name a file inside weights/ (no folder, no '..')."""
    return re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}", name) is not None and ".." not in name


def shipped_model_path(name: str) -> Path | None:
    """weights/<name>.safetensors, if `name` is a plain name and this install has it. A file's
    model name is looked up only so: it comes from the file, and '../x' or '/tmp/x.safetensors'
    must not make a decoder load weights from elsewhere."""
    if not plain_name(name):
        return None
    path = weights_dir() / f"{name}.safetensors"
    return path if path.is_file() else None


def resolve_model_path(spec: str | Path | None) -> Path:
    """Map a model name or path to its .safetensors file (its config sits beside it as .json). A
    name of shipped weights is theirs first: a file or folder of that name in the working folder
    (a training run's --out uqdm-small) does not hide them."""
    spec = DEFAULT_MODEL if spec is None else spec
    if not isinstance(spec, (str, os.PathLike)):
        raise ModelError(f"a model is a name or a path to its .safetensors, not {spec!r}")
    if not str(spec).strip():  # Path('') is '.': the working folder, 'is a folder'
        raise ModelError("the model name is empty: give a name in weights/ or a .safetensors path")
    shipped = shipped_model_path(spec) if isinstance(spec, str) else None
    if shipped is not None:
        return shipped
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


def read_config(path: Path) -> tuple[ModelConfig, dict]:
    """The config beside a model's weights (`path` with .json), and the JSON it was read from;
    ModelError, one line, where it is missing or invalid."""
    config_path = path.with_suffix(".json")
    try:
        raw = json.loads(config_path.read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"a JSON {type(raw).__name__}, not an object")
        return ModelConfig.from_dict(raw), raw
    except FileNotFoundError:
        if path.suffix != ".safetensors":  # -m photo.png: a file, but not a model's
            raise ModelError(
                f"{path} is not a model: give a model name or a .safetensors file (its .json beside it)"
            ) from None
        raise ModelError(f"model config {config_path} is missing") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError, ModelError) as exc:
        raise ModelError(f"model config {config_path} is invalid: {exc}") from None


def save_model(model: UQDM, path: str | Path, dtype: torch.dtype = torch.float32) -> None:
    """Write weights (safetensors, optionally stored as float16 to halve the size; they are used
    in float32) and the config beside them as JSON."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": MODEL_FORMAT, "name": model.config.name})
    path.with_suffix(".json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")


def load_model(spec: str | Path | None = None) -> UQDM:
    """Load weights + config by name (from weights/) or by path; raises ModelError, one line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_model_path(spec)
    model = UQDM(read_config(path)[0])
    try:
        tensors = {k: v.float() for k, v in load_file(str(path)).items()}
    except (SafetensorError, RuntimeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load weights {path}: {first}") from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError:  # torch's message is many lines, the first of them empty of facts
        raise ModelError(
            f"cannot load weights {path}: they do not fit {path.with_suffix('.json').name} "
            "(tensors missing, unexpected or of other shapes)"
        ) from None
    return model.eval()
