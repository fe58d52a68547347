"""The prior network in exact integer arithmetic: the same bits on every machine.

A decoder must compute the encoder's priors bit for bit, or the entropy coder loses sync. Float
networks do not give that: convolution libraries sum in device-, ISA-, thread- and shape-dependent
orders. Here every tensor the network passes around holds integers (as float32), following Ballé,
Johnston & Minnen, "Integer networks for data compression with latent-variable models" (ICLR 2019):

- Weights are integers with |w| <= 127 (per output channel scales are folded into the rescaling).
- Every convolution input holds integers with |a| <= A, A chosen per convolution so that
  sum_i |w_i| * A < 2^24 for every output channel. Every partial sum of the convolution is then an
  integer below 2^24, which float32 represents exactly, so any summation order (any algorithm made
  of products and sums: direct, im2col + GEMM, any blocking or thread count, CPU or GPU) gives the
  same result. Winograd and FFT convolutions are not sums of integer products and are never used
  (inference.configure_determinism).
- A convolution's integer output y goes to the next tensor as rint(y * mul + add), mul and add being
  float32 constants per output channel (and per diffusion step where FiLM noise conditioning
  applies): one IEEE multiply and one IEEE add, each a separate correctly rounded operation, so
  every device computes the same integer.
- Residual "streams" are integers in [-2^15, 2^15] (fixed point, a power-of-two unit per stream),
  added exactly. The nonlinearity (SiLU) is a lookup table over that range, built at load time with
  the portable float64 functions of `portable.py`.
- Heads write integers in units of 2^-16, turned into priors in float64 by `inference.py`.

The same topology (`graph`) is evaluated three ways: in float with the trained weights
(`FloatOps`), recording value ranges for calibration (`CalibrationOps`), and exactly (`ExactOps`).
`export` turns a float model into the exact one. docs/FORMAT.md section 8 specifies the arithmetic
for a second decoder.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import portable
from .errors import ModelError
from .network import Denoiser, NetworkConfig, _noise_embedding

EXACT_LIMIT = 1 << 24  # integers below this are exact in float32
STREAM_LIMIT = 1 << 15  # streams are integers in [-STREAM_LIMIT, STREAM_LIMIT]
HEAD_SHIFT = 16  # head outputs are integers in units of 2^-HEAD_SHIFT
HEAD_LIMIT = 1 << 23
WEIGHT_MAX = 127
STREAM_MARGIN = 2.0  # headroom of a stream's range over the largest calibration value
HEAD = "head"


# ----------------------------------------------------------------------------- topology


def _block(ops, name: str, x, key: str):
    """Residual block: x + conv2(silu(FiLM(conv1(silu(x)))))."""
    t = ops.conv(f"{name}.conv1", ops.act(f"{name}.act1", x, key), f"{name}.t", film=name)
    h = ops.conv(f"{name}.conv2", ops.act(f"{name}.act2", t, f"{name}.t"), key)
    return ops.add(x, h, key)


def graph(ops, image, maps: list, cfg: NetworkConfig):
    """The denoiser (network.Denoiser) as a sequence of named operations. Returns (band outputs,
    pixel output) in Denoiser.forward's layout."""
    levels = len(cfg.widths)
    key = "L0"
    h = ops.add(
        ops.conv("stem", ops.input("image", F.pixel_unshuffle(image, 2)), key),
        ops.conv("inject.0", ops.input("maps.0", maps[0]), key),
        key,
    )
    skips = []
    for lv in range(levels - 1):
        for k in range(cfg.blocks_down[lv]):
            h = _block(ops, f"down.{lv}.{k}", h, key)
        skips.append(h)
        nxt = f"L{lv + 1}"
        h = ops.add(
            ops.conv(f"downsample.{lv}", ops.act(f"downsample.{lv}", h, key), nxt, stride=2),
            ops.conv(f"inject.{lv + 1}", ops.input(f"maps.{lv + 1}", maps[lv + 1]), nxt),
            nxt,
        )
        key = nxt
    for k in range(cfg.blocks_mid):
        h = _block(ops, f"mid.{k}", h, key)
    coarse = ops.conv("head.coarse", ops.act("head.coarse", h, key), HEAD)
    b = coarse.shape[0]
    hc, wc = coarse.shape[-2:]
    coarse = coarse.reshape(b, 2, 4, 3, hc, wc)
    bands = [coarse[:, :, 0], coarse[:, :, 1:]]
    for j, lv in enumerate(reversed(range(levels - 1))):
        nxt = f"L{lv}"
        up = ops.conv(f"upsample.{j}", ops.act(f"upsample.{j}", h, key), nxt)
        h = ops.add(F.interpolate(up, scale_factor=2.0, mode="nearest"), skips.pop(), nxt)
        key = nxt
        for k in range(cfg.blocks_up[lv]):
            h = _block(ops, f"up.{j}.{k}", h, key)
        out = ops.conv(f"head.detail.{j}", ops.act(f"head.detail.{j}", h, key), HEAD)
        bands.append(out.reshape(b, 2, 3, 3, *out.shape[-2:]))
    pixel = F.pixel_shuffle(ops.conv("head.pixel", ops.act("head.pixel", h, key), HEAD), 2)
    return bands, pixel


def float_modules(den: Denoiser) -> dict[str, nn.Module]:
    """Map graph names to the float Denoiser's convolutions (and each block to its FiLM layer)."""
    cfg = den.config
    levels = len(cfg.widths)
    mods: dict[str, nn.Module] = {
        "stem": den.stem,
        "head.coarse": den.head_coarse,
        "head.pixel": den.head_pixel,
    }
    for i, conv in enumerate(den.inject):
        mods[f"inject.{i}"] = conv
    blocks = []
    for lv in range(levels - 1):
        mods[f"downsample.{lv}"] = den.downsamplers[lv]
        blocks += [(f"down.{lv}.{k}", blk) for k, blk in enumerate(den.down_blocks[lv])]
    blocks += [(f"mid.{k}", blk) for k, blk in enumerate(den.mid_blocks)]
    for j in range(levels - 1):
        mods[f"upsample.{j}"] = den.upsamplers[j]
        mods[f"head.detail.{j}"] = den.heads_detail[j]
        blocks += [(f"up.{j}.{k}", blk) for k, blk in enumerate(den.up_blocks[j])]
    for name, blk in blocks:
        mods[f"{name}.conv1"], mods[f"{name}.conv2"], mods[name] = blk.conv1, blk.conv2, blk.film
    return mods


# ----------------------------------------------------------------------------- float evaluation


class FloatOps:
    """The trained float network, operation by operation (equals Denoiser.forward)."""

    def __init__(self, den: Denoiser, gamma: torch.Tensor):
        self.mods = float_modules(den)
        self.emb = den.embed(_noise_embedding(0.25 * gamma, den.config.embed_dim))

    def input(self, name: str, x):
        return x

    def act(self, name: str, x, key: str):
        return F.silu(x)

    def conv(self, name: str, a, out: str, stride: int = 1, film: str | None = None):
        y = self.mods[name](a)
        if film is not None:
            scale, shift = self.mods[film](self.emb)[:, :, None, None].chunk(2, dim=1)
            y = y * (1.0 + scale) + shift
        return y

    def add(self, x, y, key: str):
        return x + y


class CalibrationOps(FloatOps):
    """FloatOps that also record the largest magnitude seen at every stream, activation and input."""

    def __init__(self, den: Denoiser, gamma: torch.Tensor, stats: dict[str, float]):
        super().__init__(den, gamma)
        self.stats = stats

    def _see(self, name: str, x) -> None:
        self.stats[name] = max(self.stats.get(name, 0.0), float(x.detach().abs().max()))

    def input(self, name: str, x):
        self._see(f"input:{name}", x)
        return x

    def act(self, name: str, x, key: str):
        y = F.silu(x)
        self._see(f"act:{name}", y)
        return y

    def conv(self, name: str, a, out: str, stride: int = 1, film: str | None = None):
        y = super().conv(name, a, out, stride, film)
        self._see(f"stream:{out}", y)
        return y

    def add(self, x, y, key: str):
        s = x + y
        self._see(f"stream:{key}", s)
        return s


# ----------------------------------------------------------------------------- exact evaluation


def activation_table(src_shift: int, act_scale: float, limit: int) -> np.ndarray:
    """SiLU lookup table of one activation: entry j + 2^15 (j = -2^15 .. 2^15) holds
    clip(rint(silu(j * 2^src_shift) / act_scale), -limit, limit), all float64 and portable."""
    j = np.arange(-STREAM_LIMIT, STREAM_LIMIT + 1, dtype=np.float64)
    v = portable.silu(np.ldexp(j, src_shift)) / act_scale
    return np.clip(np.rint(v), -limit, limit)


class ExactOps:
    """Integer evaluation; tensors hold integers as float32 (see the module docstring)."""

    def __init__(self, net: ExactDenoiser, step: int):
        self.net, self.row = net, step - 1

    def input(self, name: str, x):
        return x  # quantised by ExactDenoiser.quantize_inputs

    def act(self, name: str, x, key: str):
        """table[x + 2^15], gathered in the tensor's memory order (int32 indices)."""
        nhwc = x.permute(0, 2, 3, 1)  # channels_last storage: contiguous in this order
        idx = nhwc.to(torch.int32).add_(STREAM_LIMIT).reshape(-1)  # exact integers: one temporary
        out = torch.index_select(self.net.tables[name], 0, idx)
        return out.view(nhwc.shape).permute(0, 3, 1, 2)

    def conv(self, name: str, a, out: str, stride: int = 1, film: str | None = None):
        w = getattr(self.net, _buf(name, "weight"))
        mul, add = getattr(self.net, _buf(name, "mul")), getattr(self.net, _buf(name, "add"))
        if film is not None:
            mul, add = mul[self.row], add[self.row]
        y = F.conv2d(a, w, None, stride, w.shape[-1] // 2)
        y.mul_(mul[None, :, None, None])  # one rounding
        y.add_(add[None, :, None, None])  # another: never fused into one multiply-add
        y.round_()
        if film is None and out != HEAD:
            return y  # goes into add(), which clips (IEEE adds are deterministic even past 2^24)
        limit = HEAD_LIMIT if out == HEAD else STREAM_LIMIT
        return y.clamp_(-limit, limit)

    def add(self, x, y, key: str):
        return (x + y).clamp_(-STREAM_LIMIT, STREAM_LIMIT)


def _buf(name: str, what: str) -> str:
    return f"{name.replace('.', '_')}__{what}"


class ExactDenoiser(nn.Module):
    """The integer network: weights, per-channel rescaling, activation specs and input scales.

    Tensors (all saved; `params` holds the scalars):
    - `<conv>.weight` int8 (out, in, k, k); `<conv>.mul`, `<conv>.add` float32 (out,) or, for the
      first convolution of a residual block, (steps, out) with one row per diffusion step;
    - `<act>.act` float64 [source stream shift, activation scale, limit];
    - `input.<name>` float64 [shift, limit]: input x becomes clip(rint(x * 2^-shift), -limit, limit).
    """

    def __init__(self, config: NetworkConfig, tensors: dict[str, torch.Tensor]):
        super().__init__()
        self.config = config
        self.params = {k: v for k, v in tensors.items()}
        self.tables: dict[str, torch.Tensor] = {}
        convs = [k[: -len(".weight")] for k in tensors if k.endswith(".weight")]
        for name in convs:
            w = tensors[f"{name}.weight"]
            w32 = w.to(torch.float32).contiguous(memory_format=torch.channels_last)
            self.register_buffer(_buf(name, "weight"), w32, persistent=False)
            self.register_buffer(
                _buf(name, "mul"), tensors[f"{name}.mul"].to(torch.float32), persistent=False
            )
            self.register_buffer(
                _buf(name, "add"), tensors[f"{name}.add"].to(torch.float32), persistent=False
            )
        self.act_specs = {
            k[: -len(".act")]: v.double().tolist() for k, v in tensors.items() if k.endswith(".act")
        }
        for name, (shift, scale, limit) in self.act_specs.items():
            table = torch.from_numpy(activation_table(int(shift), scale, int(limit)).astype(np.float32))
            self.tables[name] = table
        self.inputs = {
            k[len("input.") :]: v.double().tolist() for k, v in tensors.items() if k.startswith("input.")
        }
        self.check_bounds()

    @property
    def multiple(self) -> int:
        return 2 ** len(self.config.widths)

    def _apply(self, fn, recurse=True):  # keep the lookup tables on the module's device
        super()._apply(fn, recurse)
        self.tables = {k: fn(v) for k, v in self.tables.items()}
        return self

    def check_bounds(self) -> None:
        """Refuse a model whose sums could leave float32's exact integers (the argument above)."""
        limits = {name: spec[2] for name, spec in self.act_specs.items()}
        limits.update({name: spec[1] for name, spec in self.inputs.items()})
        for key, w in self.params.items():
            if not key.endswith(".weight"):
                continue
            name = key[: -len(".weight")]
            src = _conv_source(name)
            if src not in limits:
                raise ModelError(f"exact model: no input specification for {name}")
            if w.dtype != torch.int8 or int(w.abs().max()) > WEIGHT_MAX:
                raise ModelError(f"exact model: weights of {name} are not int8 within +-{WEIGHT_MAX}")
            l1 = int(w.to(torch.int64).abs().flatten(1).sum(1).max())
            if l1 * int(limits[src]) >= EXACT_LIMIT:
                raise ModelError(f"exact model: sums of {name} can reach 2^24; the model is invalid")

    def quantize_inputs(
        self, image: np.ndarray, maps: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """float64 inputs -> integers: clip(rint(x * 2^-shift), -limit, limit), exact in float64."""

        def q(name: str, x: np.ndarray) -> np.ndarray:
            shift, limit = self.inputs[name]
            return np.clip(np.rint(np.ldexp(x, -int(shift))), -limit, limit).astype(np.float32)

        return q("image", image), [q(f"maps.{i}", m) for i, m in enumerate(maps)]

    def forward(self, image: torch.Tensor, maps: list[torch.Tensor], step: int):
        """Integer outputs (units 2^-16) for the prior of step `step` + 1 (step >= 1)."""
        image = image.contiguous(memory_format=torch.channels_last)
        maps = [m.contiguous(memory_format=torch.channels_last) for m in maps]
        try:
            return graph(ExactOps(self, step), image, maps, self.config)
        except KeyError as exc:  # an activation table the config's network needs is not there
            raise ModelError(
                f"exact model: no tensors for {exc.args[0]!r}; its config describes another network"
            ) from None


def _conv_source(name: str) -> str:
    """The activation or input feeding convolution `name` (mirrors graph())."""
    if name == "stem":
        return "image"
    if name.startswith("inject."):
        return "maps." + name.split(".")[1]
    if name.endswith(".conv1"):
        return name[: -len(".conv1")] + ".act1"
    if name.endswith(".conv2"):
        return name[: -len(".conv2")] + ".act2"
    return name  # downsample.k, upsample.k and the heads: the activation of the same name


# ----------------------------------------------------------------------------- export


def _coarse(v: float) -> float:
    """v rounded up to 4 significant bits: calibration ranges that differ in the last bits (another
    machine's float arithmetic) almost always give the same exact model."""
    m, e = math.frexp(v)
    return math.ldexp(math.ceil(m * 16.0) / 16.0, e)


def _pow2_at_least(v: float) -> int:
    """Smallest e with 2^e >= v (v > 0)."""
    m, e = math.frexp(v)
    return e - 1 if m == 0.5 else e


def export(den: Denoiser, stats: dict[str, float], gammas: list[float]) -> dict[str, torch.Tensor]:
    """Integer tensors for `den` from calibration ranges `stats` (CalibrationOps) and the noise
    conditioning of steps 1..H (`gammas`). Pure float64 arithmetic on this machine: the result is
    stored, and decoders only ever read it."""
    mods = float_modules(den)
    cfg = den.config
    out: dict[str, torch.Tensor] = {}
    shifts: dict[str, int] = {}  # stream key -> exponent of its unit
    for key, top in stats.items():
        if key.startswith("stream:"):
            name = key[len("stream:") :]
            if name != HEAD:
                shifts[name] = _pow2_at_least(max(top, 1e-6) * STREAM_MARGIN / STREAM_LIMIT)
    shifts[HEAD] = -HEAD_SHIFT
    with torch.no_grad():  # the noise embedding of every step, in float64
        g = torch.tensor(gammas, dtype=torch.float64)
        emb = _noise_embedding(0.25 * g, cfg.embed_dim).double()
        for layer in den.embed:
            emb = (
                F.linear(emb, layer.weight.double(), layer.bias.double())
                if isinstance(layer, nn.Linear)
                else F.silu(emb)
            )
    # which stream each conv writes, which stream each activation reads: from one traced run
    trace = _Trace(den)
    with torch.no_grad():
        graph(trace, torch.zeros(1, 3, den.multiple, den.multiple), _zero_maps(den), cfg)
    for name, (src_stream, dst, film) in trace.convs.items():
        conv = mods[name]
        w = conv.weight.detach().double()
        b = (
            conv.bias.detach().double()
            if conv.bias is not None
            else torch.zeros(w.shape[0], dtype=torch.float64)
        )
        top_w = w.abs().flatten(1).max(1).values
        s_w = torch.where(top_w > 0, top_w / WEIGHT_MAX, torch.ones_like(top_w))
        w_int = torch.round(w / s_w[:, None, None, None])
        l1 = float(w_int.abs().flatten(1).sum(1).max())
        limit = max(1, min(STREAM_LIMIT, int((EXACT_LIMIT - 1) // max(l1, 1.0))))
        src = _conv_source(name)
        if src_stream is None:  # network input: a power-of-two unit
            top_in = max(stats.get(f"input:{src}", 1.0), 1e-6)
            in_shift = _pow2_at_least(top_in / limit)
            s_in = math.ldexp(1.0, in_shift)
            out[f"input.{src}"] = torch.tensor([in_shift, limit], dtype=torch.float64)
        else:
            s_in = _coarse(max(stats.get(f"act:{src}", 1.0), 1e-6) / limit)
            out[f"{src}.act"] = torch.tensor([shifts[src_stream], s_in, limit], dtype=torch.float64)
        unit = math.ldexp(1.0, shifts[dst])
        if film is None:
            mul, add = s_in * s_w / unit, b / unit
        else:
            lin = mods[film]
            scale, shift = F.linear(emb, lin.weight.double(), lin.bias.double()).chunk(2, dim=1)  # (steps, C)
            mul = s_in * s_w[None] * (1.0 + scale) / unit
            add = (b[None] * (1.0 + scale) + shift) / unit
        out[f"{name}.weight"] = w_int.to(torch.int8)
        out[f"{name}.mul"] = mul.float()
        out[f"{name}.add"] = add.float()
    return out


def _zero_maps(den: Denoiser) -> list[torch.Tensor]:
    levels = len(den.config.widths)
    m = den.multiple
    return [
        torch.zeros(1, 9 if lv < levels - 1 else 12, m >> (lv + 1), m >> (lv + 1)) for lv in range(levels)
    ]


class _Trace(FloatOps):
    """Records, per convolution, the stream its input activation reads (None: a network input),
    the stream it writes and its FiLM layer, by running the float graph on a dummy input."""

    def __init__(self, den: Denoiser):
        super().__init__(den, torch.zeros(1))
        self.convs: dict[str, tuple[str | None, str, str | None]] = {}
        self._src: dict[int, str | None] = {}

    def input(self, name, x):
        x = x.clone()
        self._src[id(x)] = None
        return x

    def act(self, name, x, key):
        y = F.silu(x)
        self._src[id(y)] = key
        return y

    def conv(self, name, a, out, stride=1, film=None):
        self.convs[name] = (self._src[id(a)], out, film)
        return super().conv(name, a, out, stride, film)
