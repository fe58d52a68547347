"""A second decoder of whole .uqd files, written from docs/FORMAT.md alone (sections 1 to 8).

Nothing here imports uqdm_codec: it reads the bytes with spec_container, runs the network with
spec_network and the lossless tail (form 11, the one the encoder writes) with spec_tail, and
decodes every layer of a whole file, tiled or not, with any mirror ensemble, checking every
layer's display check as section 7 asks. Left out: prefixes that end inside a layer (the images
inside a step, cut chunks), version 7 files and tail forms 1 to 10 (what older releases wrote),
and the generative reconstruction of 7.1. It is slow (plain NumPy, and loops where the text
states a rule pixel by pixel) and meant for small images: what it shows is that the document is
enough to decode a file bit for bit. tests/test_format_spec.py compares it with the reference."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import constriction
import numpy as np

from . import spec_container as sc
from .spec_network import SpecNetwork, haar_inverse, prediction, sigmoid_p
from .spec_network import scales as prior_scales

SLICE = 1 << 18
WINDOWS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
FLOOR = 1e-12
CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


class Mismatch(Exception):
    """A check of section 7 failed: the decoder does not follow the document (or the file is bad)."""


# ----------------------------------------------------------------------------- 3, 5.1, 5.2


def uniform(entropy: list[int], shape) -> np.ndarray:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy))).random(shape)


def haar_forward(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """5.1: [LL_L, D_L, ..., D_1] of (3, Hp, Wp); each D as (3 orientations, 3 colours, h, w)."""
    details = []
    for _ in range(levels):
        a, b = x[:, 0::2, 0::2], x[:, 0::2, 1::2]
        c, d = x[:, 1::2, 0::2], x[:, 1::2, 1::2]
        details.append(np.stack([(a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2]))
        x = (a + b + c + d) / 2
    return [x, *reversed(details)]


def jump(n_t: float, n_s: float) -> tuple[float, float, float]:
    """5.2: (q, coef_x, coef_z) of a coefficient moving from noise n_t to n_s."""
    big_n_t = 22026.465794806718 if n_t == math.inf else n_t * n_t
    big_n_s = n_s * n_s
    alpha_t = math.sqrt(1 / (1 + big_n_t))
    alpha_s = math.sqrt(1 / (1 + big_n_s))
    sigma_s = math.sqrt(big_n_s / (1 + big_n_s))
    e = 1 - big_n_s / big_n_t
    delta = math.sqrt(12 * e) * sigma_s
    coef_x = alpha_s * e
    coef_z = alpha_s * (1 - e) / alpha_t
    return delta / coef_x, coef_x, coef_z


def down32(v: np.ndarray) -> np.ndarray:
    """The largest float32 <= v."""
    f = v.astype(np.float32)
    return np.where(f.astype(np.float64) > v, np.nextafter(f, np.float32(-np.inf)), f)


def up32(v: np.ndarray) -> np.ndarray:
    f = v.astype(np.float32)
    return np.where(f.astype(np.float64) < v, np.nextafter(f, np.float32(np.inf)), f)


def to_levels(x: np.ndarray) -> np.ndarray:
    """7: data units to levels."""
    return np.clip(np.rint((x + 1) * 128 - 0.5), 0, 255).astype(np.uint8)


def check(image: np.ndarray, expected: int, what: str) -> None:
    """7: CRC32 of an (3, H, W) image in levels, row-major RGB."""
    if zlib.crc32(np.ascontiguousarray(image.transpose(1, 2, 0)).tobytes()) != expected:
        raise Mismatch(f"display check of {what}")


def mirror_image(x: np.ndarray, kind: str) -> np.ndarray:
    """5.3.1 by position: v reverses the rows, h the columns."""
    if "h" in kind:
        x = x[..., ::-1]
    if "v" in kind:
        x = x[..., ::-1, :]
    return x


def mirrored(bands: list[np.ndarray], kind: str, signed: bool) -> list[np.ndarray]:
    """5.3.1: a state's bands mirrored; with signs, h negates LH and HH, v negates HL and HH."""
    out = []
    for b, band in enumerate(bands):
        band = mirror_image(band, kind)
        if signed and b > 0:
            sign = np.ones((3, 1, 1, 1))
            if "h" in kind:
                sign[[0, 2]] *= -1
            if "v" in kind:
                sign[[1, 2]] *= -1
            band = band * sign
        out.append(np.ascontiguousarray(band))
    return out


# ----------------------------------------------------------------------------- 6.1


def window(s: np.ndarray, q: np.ndarray) -> np.ndarray:
    need = np.ceil(np.minimum(8 * s / q, 1e6)) + 1
    return np.array([next((w for w in WINDOWS if w >= v), 256) for v in need], np.int64)


def cdf(t: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.where(right, -sigmoid_p(-t), sigmoid_p(t))


def bin_mass_ends(e, m, s, u, q, lower, upper):
    """F(t(e)) of 6.1 at edges e (broadcast against the element arrays as columns)."""
    r = 1 / s
    a, b = (lower - m) * r, (upper - m) * r
    t = np.clip((e - u[:, None]) * (q * r)[:, None], a[:, None], b[:, None])
    return cdf(t, (a > 0)[:, None])


def bin_mass(k, m, s, u, q, lower, upper):
    """P(k) of 6.1, unnormalised (k broadcast against the element arrays as columns)."""
    r = 1 / s
    a, b = (lower - m) * r, (upper - m) * r
    right = (a > 0)[:, None]

    def t(e):
        return np.clip((e - u[:, None]) * (q * r)[:, None], a[:, None], b[:, None])

    return cdf(t(k + 0.5), right) - cdf(t(k - 0.5), right), a, b, right[:, 0]


def decode_group(coder, m, s, u, q, lower, upper) -> np.ndarray:
    """6.1: the symbols k of one group of elements (arrays in the group's order)."""
    k = np.zeros(len(m), np.int64)
    for start in range(0, len(m), SLICE):
        sl = slice(start, start + SLICE)
        ms, ss, us, qs, lo, hi = m[sl], s[sl], u[sl], q[sl], lower[sl], upper[sl]
        w = window(ss, qs)
        ks = np.zeros(len(ms), np.int64)
        for width in sorted(set(w.tolist()), reverse=True):
            idx = np.flatnonzero(w == width)
            ks_row = np.arange(-width, width + 1, dtype=np.float64)[None, :]
            mass, a, b, right = bin_mass(ks_row, ms[idx], ss[idx], us[idx], qs[idx], lo[idx], hi[idx])
            norm = np.where(right, sigmoid_p(-a) - sigmoid_p(-b), sigmoid_p(b) - sigmoid_p(a))
            t_end = np.array([-width - 0.5, width + 0.5])[None, :]
            ends = bin_mass_ends(t_end, ms[idx], ss[idx], us[idx], qs[idx], lo[idx], hi[idx])
            escape = np.maximum(norm - (ends[:, 1] - ends[:, 0]), 0.0)
            rows = np.maximum(np.concatenate([mass, escape[:, None]], axis=1), FLOOR)
            ks[idx] = coder.decode(CATEGORICAL, rows).astype(np.int64) - width
        escaped = np.flatnonzero(ks > w)
        if escaped.size:
            me, se, ue, qe, le, he = (v[escaped] for v in (ms, ss, us, qs, lo, hi))
            k_lo = np.floor((le - me) / qe + ue - 0.5).astype(np.int64) + 1
            k_hi = np.ceil((he - me) / qe + ue + 0.5).astype(np.int64) - 1
            values = k_lo[:, None] + np.arange(int((k_hi - k_lo).max()) + 1)[None, :]
            mass = bin_mass(values.astype(np.float64), me, se, ue, qe, le, he)[0]
            outside = (np.abs(values) > w[escaped][:, None]) & (values <= k_hi[:, None])
            rows = np.where(outside, np.maximum(mass, FLOOR), 0.0)
            ks[escaped] = coder.decode(CATEGORICAL, rows).astype(np.int64) + k_lo
        k[sl] = ks
    return k


def chunk_coder(data: bytes, chunk: sc.Chunk):
    words = np.frombuffer(data[chunk.start + 4 : chunk.end], dtype="<u4")[::-1].astype(np.uint32)
    return constriction.stream.stack.AnsCoder(words)


def finish(coder) -> None:
    if not coder.is_empty():
        raise Mismatch("a chunk's coder did not end empty")


# ----------------------------------------------------------------------------- 6.4


def condition(c, m, s, partners, residual, params):
    """6.4: move m and s of the colour-c elements that have partners (r of missing ones: 0)."""
    a10, f1, a20, a21, f2 = params
    for e, (p0, p1) in partners.items():
        if p0 is None and (c == 1 or p1 is None):
            continue
        r0 = residual(p0)
        if c == 1:
            t = (a10 / 64) * r0
            f = f1 / 64
        else:
            t = ((a20 / 64) * r0) + ((a21 / 64) * residual(p1))
            f = f2 / 64
        m[e] = m[e] + (s[e] * t)
        s[e] = s[e] * f


# ----------------------------------------------------------------------------- the decoder


class SpecDecoder:
    def __init__(self, model_path: str | Path):
        model_path = Path(model_path)
        self.config = json.loads(model_path.with_suffix(".json").read_text())
        from safetensors.numpy import load_file

        tensors = load_file(str(model_path))
        self.net = SpecNetwork(self.config, tensors)
        self.first_loc, self.first_scale = tensors["first_loc"], tensors["first_scale"]
        sched = self.config["schedule"]
        self.levels = sched["levels"]
        self.noise = [math.inf] + [v / 127.5 for v in self.levels]
        self.threshold = sched["threshold"]
        self.pixel_q = sched["pixel_step"] / 127.5

    def decode(self, data: bytes) -> list[np.ndarray]:
        """The image after every layer (3, H, W levels), the last the exact pixels."""
        f = sc.read(data)
        if not f.complete or (f.tail_step is not None and f.tail_form != 11):
            raise NotImplementedError("whole files, without a tail or with a tail of form 11")
        self.data, self.mirrors, self.tail_step = data, f.mirrors, f.tail_step
        if f.region_size is None:
            return self.decode_region(f.records, f.width, f.height, f.seed, f.steps)
        rw, rh = f.region_size  # 1.1: every region as an untiled file of its own
        images = [np.zeros((3, f.height, f.width), np.uint8) for _ in range(f.layers)]
        r = 0
        for y in range(0, f.height, rh):
            for x in range(0, f.width, rw):
                h, w = min(rh, f.height - y), min(rw, f.width - x)
                seed = (f.seed + r * 0x9E3779B97F4A7C15) % 2**64
                records = [rec for rec in f.records if rec.region == r]
                for image, region in zip(images, self.decode_region(records, w, h, seed, f.steps)):
                    image[:, y : y + h, x : x + w] = region
                r += 1
        return images

    def decode_region(self, records, width: int, height: int, seed: int, steps: int) -> list[np.ndarray]:
        self.h, self.w, self.seed = height, width, seed
        hp, wp = -(-self.h // 16) * 16, -(-self.w // 16) * 16
        z = haar_forward((uniform([self.seed, 0, 0], (3, hp, wp)) - 0.5) * 3.4641016151377544, 4)
        self.state = [np.zeros(b.shape, np.int64) for b in z]
        bound = [2.0**4, 2.0**4, 2.0**3, 2.0**2, 2.0**1]
        self.lower = [np.full(b.shape, -bd, np.float32) for b, bd in zip(z, bound)]
        self.upper = [np.full(b.shape, bd, np.float32) for b, bd in zip(z, bound)]
        self.z, self.hp, self.wp = z, hp, wp
        images, shown = [], None
        if self.tail_step is not None:
            return self.decode_with_tail(records)
        for record in records[: steps - 1]:
            i = record.layer
            locs, scales = self.haar_priors(i, record.fields["from_display"], shown)
            self.haar_step(i, record, locs, scales)
            self.after = self.predict(i)
            locs, scales, pixel_scale = self.after
            display = np.clip(haar_inverse(locs), -1, 1)[:, : self.h, : self.w]
            shown = self.filtered(display, record.fields["filter"])
            check(to_levels(shown), record.fields["display_check"], f"step {i}")
            images.append(to_levels(shown))
        xt, m, s = self.pixel_step(records[steps - 1], shown, pixel_scale)
        images.append(self.lossless(records[steps], xt, m, s, mean_only=True))
        check(images[-1], records[steps - 1].fields["display_check"], f"step {steps}")
        images.append(self.lossless(records[steps], xt, m, s))
        check(images[-1], records[steps].fields["display_check"], "the lossless layer")
        return images

    def decode_with_tail(self, records) -> list[np.ndarray]:
        """Steps 1..TS, then the tail (6.6) given the side image and the known intervals."""
        from . import spec_tail

        ts, images = self.tail_step, []
        shown = np.clip(haar_inverse(self.haar_priors(1, 0, None)[0]), -1, 1)[:, : self.h, : self.w]
        for record in records[:ts]:
            i = record.layer
            locs, scales = self.haar_priors(i, record.fields["from_display"], shown)
            self.haar_step(i, record, locs, scales)
            self.after = self.predict(i)
            display = np.clip(haar_inverse(self.after[0]), -1, 1)[:, : self.h, : self.w]
            shown = self.filtered(display, record.fields["filter"])
            check(to_levels(shown), record.fields["display_check"], f"step {i}")
            images.append(to_levels(shown))
        side = to_levels(shown).astype(np.int64)
        intervals = spec_tail.Intervals(self.lower, self.upper)
        tail = records[ts]
        pixels = spec_tail.decode_tail(self.data, tail, side, intervals, decode_group, chunk_coder, finish)
        check(pixels, tail.fields["display_check"], "the tail")
        return [*images, pixels]

    # -- 5.3, 5.3.1

    def predict(self, step: int):
        """Locations clipped to the known intervals, scales, and the pixel scales, at state `step`:
        the average over the mirror images of the state where the file asks for it."""
        sets = {1: [""], 2: ["", "v"], 4: ["", "v", "h", "hv"]}[self.mirrors]
        total = None
        for kind in sets:
            z, st = mirrored(self.z, kind, signed=True), mirrored(self.state, kind, signed=False)
            locs, g, p = prediction(self.config, self.net, z, st, step)
            parts = [
                *mirrored(locs, kind, signed=True),
                *mirrored(g, kind, signed=False),
                mirror_image(p, kind),
            ]
            total = parts if total is None else [t + v for t, v in zip(total, parts)]
        mean = [t * (1 / len(sets)) for t in total]
        locs, g, p = mean[:5], mean[5:10], mean[10]
        locs = [
            np.clip(v, lo.astype(np.float64), hi.astype(np.float64))
            for v, lo, hi in zip(locs, self.lower, self.upper)
        ]
        return (locs, *prior_scales(self.config, self.state, g, p))

    def haar_priors(self, i: int, from_display: int, shown):
        if i == 1:
            locs = [
                np.broadcast_to(self.first_loc[b][:, None, None], z.shape[-3:]) * np.ones(z.shape)
                for b, z in enumerate(self.z)
            ]
            scales = [
                np.broadcast_to(self.first_scale[b][:, None, None], z.shape[-3:]) * np.ones(z.shape)
                for b, z in enumerate(self.z)
            ]
            return locs, scales
        locs, scales, _ = self.after  # the prediction at state i - 1, made for its display image
        if from_display:
            padded = np.pad(shown, ((0, 0), (0, self.hp - self.h), (0, self.wp - self.w)), mode="edge")
            bands = haar_forward(padded, 4)
            for b in range(5):
                if from_display >> b & 1:
                    locs[b] = np.clip(
                        bands[b], self.lower[b].astype(np.float64), self.upper[b].astype(np.float64)
                    )
        return locs, scales

    # -- 6.5

    def filtered(self, display: np.ndarray, filt) -> np.ndarray:
        if filt is None:
            return display
        radius, taps, biases = filt
        k = 2 * radius + 1
        taps = np.array(taps, np.float64).reshape(3, 3, k, k)
        ext = np.pad(display, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
        out = np.empty_like(display)
        h, w = display.shape[1:]
        for c in range(3):
            acc = np.zeros((h, w))
            for c2 in range(3):
                for dy in range(k):
                    for dx in range(k):
                        if taps[c, c2, dy, dx] != 0:
                            acc = acc + ((taps[c, c2, dy, dx] * 2.0**-14) * ext[c2, dy : dy + h, dx : dx + w])
            out[c] = np.clip((display[c] + acc) + (biases[c] * 2.0**-16), -1, 1)
        return out

    # -- 5.4, 6.3, 6.4: one Haar step

    def haar_step(self, i: int, record: sc.Record, locs, scales) -> None:
        flat = lambda arrays: np.concatenate([a.reshape(-1) for a in arrays])  # noqa: E731
        m_all, s_all, st_all = flat(locs), flat(scales), flat(self.state)
        lo_all, hi_all = flat(self.lower).astype(np.float64), flat(self.upper).astype(np.float64)
        band, colour, place = [], [], []
        offset = 0
        for b, z in enumerate(self.z):
            pb = z.shape[-1] * z.shape[-2]
            f = np.arange(z.size)
            band.append(np.full(z.size, b))
            colour.append(f // pb if b == 0 else (f // pb) % 3)
            place.append(offset + (f // (3 * pb)) * pb + f % pb)
            offset += pb if b == 0 else 3 * pb
        band, colour, place = np.concatenate(band), np.concatenate(colour), np.concatenate(place)
        jumps = {j: jump(self.noise[j], self.noise[i]) for j in range(i)}
        q_all = np.array([jumps[j][0] for j in st_all])
        coded = np.flatnonzero(s_all >= self.threshold * q_all)  # natural order
        n = len(coded)
        u = uniform([self.seed, 1, i], (n,)) - 0.5
        m, s, q = m_all[coded].copy(), s_all[coded].copy(), q_all[coded]
        lower, upper = lo_all[coded], hi_all[coded]
        col, plc = colour[coded], place[coded]
        order = self.order(record.fields["partition"], col, plc, s / q)
        xt = self.decode_layer(record, order, m, s, u, q, lower, upper, col, plc, band[coded])
        # apply: z, state, known interval
        zf, stf = flat(self.z), st_all.copy()
        cz = np.array([jumps[j][2] for j in st_all[coded]])
        cx = np.array([jumps[j][1] for j in st_all[coded]])
        zf[coded] = (cz * zf[coded]) + (cx * xt)
        stf[coded] = i
        lof, hif = flat(self.lower), flat(self.upper)
        lof[coded] = np.maximum(lof[coded], down32(xt - q / 2 - 2.0**-30))
        hif[coded] = np.minimum(hif[coded], up32(xt + q / 2 + 2.0**-30))
        start = 0
        for b, z in enumerate(self.z):
            sl = slice(start, start + z.size)
            self.z[b] = zf[sl].reshape(z.shape)
            self.state[b] = stf[sl].reshape(z.shape)
            self.lower[b], self.upper[b] = lof[sl].reshape(z.shape), hif[sl].reshape(z.shape)
            start += z.size

    @staticmethod
    def order(partition: int, colour, place, ratio) -> np.ndarray:
        if partition == 0:
            return np.lexsort((colour, place))
        key = {}
        for p, v in zip(place.tolist(), ratio.tolist()):
            key[p] = max(key.get(p, -math.inf), v)
        return np.lexsort((colour, place, -np.array([key[p] for p in place.tolist()])))

    def decode_layer(self, record, order, m, s, u, q, lower, upper, colour, place, band):
        """6.3: chunk by chunk, each in colour groups, conditioned as 6.4 says; returns x~."""
        params = record.fields["colour"]
        by_place = {}
        for e, (p, c) in enumerate(zip(place.tolist(), colour.tolist())):
            by_place.setdefault(p, {})[c] = e
        xt = np.full(len(m), np.nan)
        m0, s0 = m.copy(), s.copy()  # as coded (moved for colours 1, 2 when conditioned)

        def residual(e):
            return 0.0 if e is None else float(np.clip((xt[e] - m0[e]) / s0[e], -8, 8))

        pos = 0
        for chunk in record.chunks:
            elements = order[pos : pos + chunk.count]
            pos += chunk.count
            coder = chunk_coder(self.data, chunk)
            for c in range(3):
                group = elements[colour[elements] == c]
                if c and group.size:
                    for b in set(band[group].tolist()):
                        if b in params:
                            members = group[band[group] == b]
                            partners = {
                                e: (by_place[place[e]].get(0), by_place[place[e]].get(1)) for e in members
                            }
                            condition(c, m0, s0, partners, residual, params[b])
                k = decode_group(coder, m0[group], s0[group], u[group], q[group], lower[group], upper[group])
                xt[group] = m0[group] + (k - u[group]) * q[group]
            finish(coder)
        self.coded_m, self.coded_s = m0, s0
        return xt

    # -- the pixel step and the lossless layer (5.2, 6.2)

    def pixel_step(self, record, location, pixel_scale):
        h, w = self.h, self.w
        m = location.reshape(-1).copy()
        s = pixel_scale[:, :h, :w].reshape(-1).copy()
        n = m.size
        q = np.full(n, self.pixel_q)
        u = uniform([self.seed, 1, len(self.levels) + 1], (n,)) - 0.5
        colour, place = np.arange(n) // (h * w), np.arange(n) % (h * w)
        order = self.order(record.fields["partition"], colour, place, s / q)
        self.pixel_order = order
        xt = self.decode_layer(
            record, order, m, s, u, q, np.full(n, -1.0), np.full(n, 1.0), colour, place, np.zeros(n, np.int64)
        )
        return xt, self.coded_m, self.coded_s

    def candidates(self, xt: np.ndarray, m: np.ndarray, s: np.ndarray):
        """6.2: per element, the first candidate level, the candidates' x_v and the row."""
        q = self.pixel_q
        first = np.ceil((xt - q / 2 - 1e-9 + 1) * 128 - 1 / 2).astype(np.int64)
        values = first[:, None] + np.arange(math.ceil(128 * q) + 2)[None, :]
        x = (2 * values + 1) / 256 - 1
        valid = (values >= 0) & (values <= 255) & (np.abs(x - xt[:, None]) < q / 2 + 1e-9)
        r = (1 / s)[:, None]
        upper = sigmoid_p((x + 1 / 256 - m[:, None]) * r)
        p = np.maximum(upper - sigmoid_p((x - 1 / 256 - m[:, None]) * r), FLOOR)
        return first, x, np.where(valid, p, 0.0)

    def lossless(self, record, xt, m, s, mean_only: bool = False) -> np.ndarray:
        h, w = self.h, self.w
        n = xt.size
        if mean_only:  # 7: the step-T image, the posterior mean over the candidates
            _, x, p = self.candidates(xt, m, s)
            num, den = x[:, 0] * p[:, 0], p[:, 0].copy()
            for j in range(1, p.shape[1]):  # left to right
                num, den = num + x[:, j] * p[:, j], den + p[:, j]
            return to_levels((num / den).reshape(3, h, w))
        base = self.pixel_order if record.fields["partition"] == 1 else np.arange(n)
        row, col = (np.arange(n) % (h * w)) // w, np.arange(n) % w
        half_b = (row + col) % 2 == 1
        order = np.concatenate([base[~half_b[base]], base[half_b[base]]])  # stable: A, then B
        context = record.fields["lossless"]
        levels = np.full(n, -1, np.int64)
        pos = 0
        for chunk in record.chunks:
            elements = order[pos : pos + chunk.count]
            pos += chunk.count
            coder = chunk_coder(self.data, chunk)
            for in_b in (False, True):
                group = elements[half_b[elements] == in_b]
                for start in range(0, group.size, SLICE):
                    part = group[start : start + SLICE]
                    mm, ss = m[part], s[part]
                    if in_b and context is not None:
                        mm, ss = self.spatial(part, levels, m, s, context)
                    first, _, rows = self.candidates(xt[part], mm, ss)
                    levels[part] = first + coder.decode(CATEGORICAL, rows).astype(np.int64)
            finish(coder)
        return levels.reshape(3, h, w).astype(np.uint8)

    def spatial(self, part: np.ndarray, levels, m, s, context):
        """6.2: half-B elements' priors moved by their four neighbours' residuals."""
        h, w = self.h, self.w
        c, y, x = part // (h * w), (part % (h * w)) // w, part % w
        betas = np.array([context[cc][:12] for cc in range(3)], np.float64)[c]
        factor = np.array([context[cc][12] for cc in range(3)], np.float64)[c]
        tsum = np.zeros(part.size)
        t = 0
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            yy, xx = y + dy, x + dx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            for c2 in range(3):
                e2 = np.where(inside, c2 * h * w + np.clip(yy, 0, h - 1) * w + np.clip(xx, 0, w - 1), 0)
                known = inside & (levels[e2] >= 0)
                xv = (2 * levels[e2] + 1) / 256 - 1
                r = np.where(known, np.clip((xv - m[e2]) / s[e2], -8, 8), 0.0)
                tsum = tsum + (betas[:, t] / 64) * r
                t += 1
        return m[part] + s[part] * tsum, s[part] * (factor / 64)
