"""A second implementation of docs/FORMAT.md section 8, written from the text alone.

Nothing here imports uqdm_codec: the portable functions of 8.1 in NumPy float64, and the integer
network of 8.2 with int64 tensors whose convolution sums are taken in float64 (exact below 2^53;
the reference sums in float32, exact below 2^24), reading a model as 8.3 and section 4 describe
it (a JSON config beside a safetensors file), and the priors of 5.1-5.3 made from its outputs. If
the reference and this agree bit for bit, the document says enough to build them, and two
different implementations agree on them. tests/test_format_spec.py compares them.
"""

from __future__ import annotations

import json
from decimal import Decimal, getcontext
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------- 8.1

getcontext().prec = 60
EXP_TABLE = np.array([float(Decimal(2) ** (Decimal(j) / 32)) for j in range(32)])  # correctly rounded
EXP_C = [
    None,
    1.0,
    0.5,
    0.16666666666666666,
    0.041666666666666664,
    0.008333333333333333,
    0.001388888888888889,
]
LOG_D = [2.0 / (2 * k + 1) for k in range(12)]


def exp_p(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    xc = np.minimum(np.maximum(x, -746.0), 709.782712893384)
    n = np.rint(xc * 46.16624130844683)
    r = xc - n * 0.02166084938653512
    r = r - n * 5.9631716539705866e-12
    p = r * EXP_C[6]
    for k in range(5, 0, -1):
        p = p + EXP_C[k]
        p = p * r
    p = p + 1.0
    ni = n.astype(np.int64)
    j = np.mod(ni, 32)
    m = (ni - j) // 32
    out = np.ldexp(EXP_TABLE[j] * p, m)
    out = np.where(x > 709.782712893384, np.inf, out)
    out = np.where(x < -746.0, 0.0, out)
    return np.where(np.isnan(x), np.nan, out)


def log_p(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    m, e = np.frexp(x)
    small = m < 0.7071067811865476
    m = np.where(small, m * 2.0, m)
    e = np.where(small, e - 1, e).astype(np.float64)
    f = (m - 1.0) / (m + 1.0)
    s = f * f
    p = np.full_like(x, LOG_D[11])
    for k in range(10, -1, -1):
        p = p * s
        p = p + LOG_D[k]
    out = (e * 1.9082149292705877e-10 + p * f) + e * 0.6931471803691238
    out = np.where(x == 0, -np.inf, out)
    out = np.where(x == np.inf, np.inf, out)
    return np.where((x < 0) | np.isnan(x), np.nan, out)


def log1p_p(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    u = 1.0 + y
    safe = np.where((u == 1.0) | (u == 0.0), 2.0, u)  # avoids 0/0 in branches not taken
    out = np.where(u == 1.0, y, log_p(safe) + (y - (safe - 1.0)) / safe)
    return np.where(u == 0.0, -np.inf, np.where(u < 0, np.nan, out))


def sigmoid_p(t: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + exp_p(-np.asarray(t, dtype=np.float64)))


def softplus_p(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    return np.maximum(t, 0.0) + log1p_p(exp_p(-np.abs(t)))


def silu_p(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    return t * sigmoid_p(t)


# ----------------------------------------------------------------------------- 8.2

STREAM = 1 << 15
HEADS = 1 << 23


class SpecNetwork:
    """The integer network of a model file, evaluated in int64."""

    def __init__(self, config: dict, tensors: dict[str, np.ndarray]):
        self.shape = config["network"]
        self.t = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
        self.tables: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, path: str | Path) -> SpecNetwork:
        from safetensors.numpy import load_file

        path = Path(path)
        return cls(json.loads(path.with_suffix(".json").read_text()), load_file(str(path)))

    def quantise(self, name: str, x: np.ndarray) -> np.ndarray:
        shift, limit = self.t[f"input.{name}"]
        return np.clip(np.rint(np.ldexp(np.asarray(x, np.float64), -int(shift))), -limit, limit).astype(
            np.int64
        )

    def act(self, name: str, x: np.ndarray) -> np.ndarray:
        if name not in self.tables:
            shift, scale, limit = self.t[f"{name}.act"]
            j = np.arange(-STREAM, STREAM + 1, dtype=np.float64)
            v = np.rint(silu_p(np.ldexp(j, int(shift))) / scale)
            self.tables[name] = np.clip(v, -limit, limit).astype(np.int64)
        return self.tables[name][x + STREAM]

    def conv(self, name: str, a: np.ndarray, row: int, stride: int = 1) -> np.ndarray:
        w = self.t[f"{name}.weight"].astype(np.int64)
        mul, add = self.t[f"{name}.mul"], self.t[f"{name}.add"]
        if mul.ndim == 2:
            mul, add = mul[row], add[row]
        k = w.shape[-1]
        p = k // 2
        _, h, wd = a.shape
        ho, wo = (h + stride - 1) // stride, (wd + stride - 1) // stride
        padded = np.pad(a, ((0, 0), (p, p), (p, p))).astype(np.float64)
        y = np.zeros((w.shape[0], ho * wo))
        for dy in range(k):
            for dx in range(k):
                window = padded[:, dy : dy + stride * ho : stride, dx : dx + stride * wo : stride]
                # float64 products and sums of integers below 2^53: exact in any order
                y += w[:, :, dy, dx].astype(np.float64) @ window.reshape(a.shape[0], -1)
        y = y.reshape(-1, ho, wo).astype(np.int64)
        assert np.abs(y).max(initial=0) < 1 << 24  # the model's guarantee (8.2)
        v = np.float32(y) * mul[:, None, None]  # one float32 product
        v = v + add[:, None, None]  # one float32 sum
        v = np.rint(v).astype(np.int64)
        if name.endswith(".conv1"):
            return np.clip(v, -STREAM, STREAM)
        if name.startswith("head."):
            return np.clip(v, -HEADS, HEADS)
        return v

    @staticmethod
    def add(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.clip(x + y, -STREAM, STREAM)

    def block(self, name: str, x: np.ndarray, row: int) -> np.ndarray:
        t = self.conv(f"{name}.conv1", self.act(f"{name}.act1", x), row)
        return self.add(x, self.conv(f"{name}.conv2", self.act(f"{name}.act2", t), row))

    def __call__(self, image: np.ndarray, maps: list[np.ndarray], step: int):
        """Head outputs for the prediction made at state `step` (>= 1): (band outputs, pixel)
        with the bands in the order LL_L, D_L, D_(L-1), ..., D_1 as (2, orientations, 3, h, w)."""
        row = step - 1
        q = self.quantise("image", image)
        c, hp, wp = q.shape
        folded = (
            q.reshape(c, hp // 2, 2, wp // 2, 2).transpose(0, 2, 4, 1, 3).reshape(4 * c, hp // 2, wp // 2)
        )
        levels = len(self.shape["widths"])
        qmaps = [self.quantise(f"maps.{lv}", m) for lv, m in enumerate(maps)]
        h = self.add(self.conv("stem", folded, row), self.conv("inject.0", qmaps[0], row))
        skips = []
        for lv in range(levels - 1):
            for k in range(self.shape["blocks_down"][lv]):
                h = self.block(f"down.{lv}.{k}", h, row)
            skips.append(h)
            down = self.conv(f"downsample.{lv}", self.act(f"downsample.{lv}", h), row, stride=2)
            h = self.add(down, self.conv(f"inject.{lv + 1}", qmaps[lv + 1], row))
        for k in range(self.shape["blocks_mid"]):
            h = self.block(f"mid.{k}", h, row)
        coarse = self.conv("head.coarse", self.act("head.coarse", h), row)
        coarse = coarse.reshape(2, 4, 3, *coarse.shape[-2:])
        bands = [coarse[:, 0], coarse[:, 1:]]
        for j in range(levels - 1):
            lv = levels - 2 - j
            up = self.conv(f"upsample.{j}", self.act(f"upsample.{j}", h), row)
            h = self.add(up.repeat(2, axis=1).repeat(2, axis=2), skips[lv])
            for k in range(self.shape["blocks_up"][lv]):
                h = self.block(f"up.{j}.{k}", h, row)
            detail = self.conv(f"head.detail.{j}", self.act(f"head.detail.{j}", h), row)
            bands.append(detail.reshape(2, 3, 3, *detail.shape[-2:]))
        pixel = self.conv("head.pixel", self.act("head.pixel", h), row)
        _, hh, ww = pixel.shape
        pixel = pixel.reshape(3, 2, 2, hh, ww).transpose(0, 3, 1, 4, 2).reshape(3, 2 * hh, 2 * ww)
        return bands, pixel


# ----------------------------------------------------------------------------- 5.1-5.3


def haar_inverse(bands: list[np.ndarray]) -> np.ndarray:
    """5.1: from LL_L (3, h, w) and D_L..D_1 (3 orientations, 3, h, w), coarsest first."""
    x = bands[0]
    for d in bands[1:]:
        ll, lh, hl, hh = x, d[0], d[1], d[2]
        out = np.empty((3, 2 * ll.shape[1], 2 * ll.shape[2]))
        out[:, 0::2, 0::2] = (ll + lh + hl + hh) / 2
        out[:, 0::2, 1::2] = (ll - lh + hl - hh) / 2
        out[:, 1::2, 0::2] = (ll + lh - hl - hh) / 2
        out[:, 1::2, 1::2] = (ll - lh - hl + hh) / 2
        x = out
    return x


def preconditioning(n: float, s: float) -> tuple[float, float, float]:
    """5.3: (gain, c_skip, c_out) of a coefficient with noise n (inf: never coded), data scale s."""
    if n == np.inf:
        return 0.0, 0.0, s
    alpha = np.sqrt(1 / (1 + n * n))
    c_skip = s * s / (n * n + s * s)
    return c_skip / alpha, c_skip, n * s / np.sqrt(n * n + s * s)


def prediction(config: dict, net: SpecNetwork, z: list[np.ndarray], states: list[np.ndarray], step: int):
    """5.3: one network pass at the state after `step`: per band the locations gain*z + c_out*F
    (not clipped) and the raw scale outputs G, and the pixel head's raw output P (units of 1)."""
    levels = config["schedule"]["levels"]
    noise = [np.inf] + [v / 127.5 for v in levels]
    table = [[preconditioning(n, s) for n in noise] for s in config["band_sigma"]]
    gain = [np.array([t[0] for t in row])[st] for row, st in zip(table, states)]
    cskip = [np.array([t[1] for t in row])[st] for row, st in zip(table, states)]
    cout = [np.array([t[2] for t in row])[st] for row, st in zip(table, states)]
    image = haar_inverse([g * b for g, b in zip(gain, z)])
    flat = [c.reshape(-1, *c.shape[-2:]) for c in cskip]  # detail bands: orientation-major channels
    maps = [flat[4], flat[3], flat[2], np.concatenate([flat[0], flat[1]])]
    bands, pixel = net(image, maps, step)
    f = [b[0].astype(np.float64) * 2.0**-16 for b in bands]
    g = [b[1].astype(np.float64) * 2.0**-16 for b in bands]
    locs = [gn * zb + co * fb for gn, zb, co, fb in zip(gain, z, cout, f)]
    return locs, g, pixel.astype(np.float64) * 2.0**-16


def scales(config: dict, states: list[np.ndarray], g: list[np.ndarray], p: np.ndarray):
    """5.3: the scales (0.55*c_out) * exp_p(G) of every band, and the pixel step's."""
    levels = config["schedule"]["levels"]
    noise = [np.inf] + [v / 127.5 for v in levels]
    cout = [
        np.array([preconditioning(n, s)[2] for n in noise])[st] for s, st in zip(config["band_sigma"], states)
    ]
    c = preconditioning(levels[-1] / 127.5, 0.5)[2]
    return [(0.55 * co) * exp_p(gb) for co, gb in zip(cout, g)], (0.55 * c) * exp_p(p)


def priors(config: dict, net: SpecNetwork, z: list[np.ndarray], states: list[np.ndarray], step: int):
    """5.3 with one network pass: locations (before the clip to known intervals) and scales of
    every Haar coefficient for step `step` + 1, and the pixel step's scales."""
    locs, g, p = prediction(config, net, z, states, step)
    return (locs, *scales(config, states, g, p))
