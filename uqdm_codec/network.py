"""The denoiser: a small U-Net whose decoder levels line up with the Haar bands.

Design notes (measurements in docs/MODEL.md):
- The image is folded 2x2 into channels (pixel-unshuffle), so all convolutions run at 1/2
  resolution or below; on a 2-core CPU this is ~3x cheaper than full-resolution convolutions.
- Four resolution levels, 1/2 .. 1/16, match the Haar levels 1 .. 4: the decoder's features at
  resolution 1/2^l predict the level-l detail coefficients directly, at their own positions, and
  the 1/16 features predict LL_4 and D_4. A fifth head at 1/2 gives the per-pixel scale used by the
  pixel-basis steps.
- No normalisation layers: GroupNorm couples every pixel of the image, which would make the output
  depend on how the image is tiled. Everything here is local, so tiles with a halo as wide as the
  receptive field compute exactly what the whole image would (tested bit for bit).
- Every coefficient has its own noise level (the chain codes only coefficients whose prior is
  uncertain enough), so the network also receives, at each resolution, the c_skip map (0 = nothing
  known, 1 = known exactly) of the bands living there, added through a 1x1 convolution.
- Noise conditioning by FiLM from an embedding of the step's global noise level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture hyper-parameters; stored in the model's JSON config."""

    widths: tuple[int, ...] = (32, 64, 128, 192)
    blocks_down: tuple[int, ...] = (1, 1, 1)
    blocks_mid: int = 2
    blocks_up: tuple[int, ...] = (1, 1, 1)
    embed_dim: int = 64

    def __post_init__(self) -> None:
        levels = len(self.widths)
        if levels < 1 or min(self.widths) < 1:
            raise ValueError(f"network widths must be at least 1 channel each, not {list(self.widths)}")
        for name, blocks in (("blocks_down", self.blocks_down), ("blocks_up", self.blocks_up)):
            if len(blocks) != levels - 1 or any(b < 0 for b in blocks):
                raise ValueError(
                    f"{name} needs {levels - 1} block counts for {levels} widths (one per level but the "
                    f"coarsest), not {list(blocks)}"
                )
        if self.blocks_mid < 0 or self.embed_dim < 2 or self.embed_dim % 2:
            raise ValueError("blocks_mid must be at least 0 and embed_dim a positive even number")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NetworkConfig:
        d = dict(d)
        for key in ("widths", "blocks_down", "blocks_up"):
            d[key] = tuple(d[key])
        return cls(**d)


def _noise_embedding(c_noise: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=c_noise.device) / half)
    args = c_noise[:, None].float() * freqs[None, :] * 100.0
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a FiLM modulation in between; the second starts at zero."""

    def __init__(self, channels: int, embed_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(embed_dim, 2 * channels)
        for layer in (self.conv2, self.film):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv1(F.silu(x))
        h = h * (1.0 + scale) + shift
        h = self.conv2(F.silu(h))
        return x + h


def _head(channels_in: int, channels_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels_in, channels_out, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class Denoiser(nn.Module):
    """forward(image, gamma, maps) -> (band outputs, pixel output).

    `image` (B,3,H,W) is the preconditioned estimate of x, H and W multiples of `multiple`;
    `gamma` (B,) the log noise variance of the step; `maps[l]` the precision maps at resolution
    1/2^(l+1) (9 channels, 12 at the coarsest level). Band output b (b = 0 for LL_L, 1 for D_L, ...,
    L for D_1) has shape (B, 2, 3, h, w) for LL and (B, 2, 3, 3, h, w) for details, the leading 2
    being (location residual, log-scale residual) and the next 3 the orientation (details only).
    The pixel output (B,3,H,W) is the log-scale residual of the pixel-basis steps.
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        w, e = config.widths, config.embed_dim
        levels = len(w)
        self.embed = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.stem = nn.Conv2d(12, w[0], 3, padding=1)
        # precision maps: D_1 .. D_{L-1} (9 channels each), then LL_L + D_L (12) at the bottom
        self.inject = nn.ModuleList(nn.Conv2d(9 if lv < levels - 1 else 12, w[lv], 1) for lv in range(levels))
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        for lv in range(levels - 1):
            self.down_blocks.append(nn.ModuleList(ResBlock(w[lv], e) for _ in range(config.blocks_down[lv])))
            self.downsamplers.append(nn.Conv2d(w[lv], w[lv + 1], 3, stride=2, padding=1))
        self.mid_blocks = nn.ModuleList(ResBlock(w[-1], e) for _ in range(config.blocks_mid))
        self.upsamplers = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for lv in reversed(range(levels - 1)):
            self.upsamplers.append(nn.Conv2d(w[lv + 1], w[lv], 1))
            self.up_blocks.append(nn.ModuleList(ResBlock(w[lv], e) for _ in range(config.blocks_up[lv])))
        # coarsest: LL (3) + D (9) coefficients, each with location and scale
        self.head_coarse = _head(w[-1], 2 * 12)
        self.heads_detail = nn.ModuleList(_head(w[lv], 2 * 9) for lv in reversed(range(levels - 1)))
        self.head_pixel = _head(w[0], 3 * 4)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (the 2x2 fold, then one halving per level)."""
        return 2 ** len(self.config.widths)

    @property
    def haar_levels(self) -> int:
        return len(self.config.widths)

    def forward(self, image: torch.Tensor, gamma: torch.Tensor, maps: list[torch.Tensor]):
        b = image.shape[0]
        emb = self.embed(_noise_embedding(0.25 * gamma, self.config.embed_dim))
        h = self.stem(F.pixel_unshuffle(image, 2)) + self.inject[0](maps[0])
        skips = []
        for lv, (blocks, down) in enumerate(zip(self.down_blocks, self.downsamplers)):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            h = down(F.silu(h)) + self.inject[lv + 1](maps[lv + 1])
        for block in self.mid_blocks:
            h = block(h, emb)
        coarse = self.head_coarse(F.silu(h))
        hc, wc = coarse.shape[-2:]
        coarse = coarse.reshape(b, 2, 4, 3, hc, wc)
        bands = [coarse[:, :, 0], coarse[:, :, 1:]]
        for up, blocks, head in zip(self.upsamplers, self.up_blocks, self.heads_detail):
            h = F.interpolate(up(F.silu(h)), scale_factor=2.0, mode="nearest") + skips.pop()
            for block in blocks:
                h = block(h, emb)
            out = head(F.silu(h))
            bands.append(out.reshape(b, 2, 3, 3, *out.shape[-2:]))
        pixel = F.pixel_shuffle(self.head_pixel(F.silu(h)), 2)
        return bands, pixel


def receptive_radius(config: NetworkConfig) -> int:
    """Upper bound, in pixels, on how far an input pixel can influence an output pixel."""
    radius = 2.0  # stem, at the 2x2-folded resolution
    scale = 2
    levels = len(config.widths)
    for lv in range(levels - 1):
        radius += 2 * config.blocks_down[lv] * scale + scale  # blocks, then the strided conv
        scale *= 2
    radius += 2 * config.blocks_mid * scale + scale  # mid blocks and the coarse head
    for lv in reversed(range(levels - 1)):
        scale //= 2
        radius += scale + 2 * config.blocks_up[lv] * scale  # nearest upsampling, blocks
    radius += 2  # pixel head
    return int(math.ceil(radius)) + 2
