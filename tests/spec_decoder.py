"""A second decoder of .uqd files, written from docs/FORMAT.md alone (sections 1 to 8).

Nothing here imports uqdm_codec: it reads the bytes with spec_container, runs the network with
spec_network and the lossless tail (forms 1 to 11) with spec_tail, and decodes files of versions
7 to 9, tiled or not, with any mirror ensemble, and any prefix of them: the image on screen
(section 7) after chunks inside a step (the network's image or the per-coefficient estimates),
inside a tail, in cut chunks (2.1) and truncated tails, checking every complete layer's display
check. Left out: the generative reconstruction of 7.1 (informative). It is slow (plain NumPy, and
loops where the text states a rule symbol by symbol or pixel by pixel) and meant for small images:
what it shows is that the document is enough to decode a file bit for bit.
tests/test_format_spec.py compares it with the reference."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import constriction
import numpy as np

from . import spec_container as sc
from .spec_network import SpecNetwork, haar_inverse, prediction, sigmoid_p, softplus_p
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


VERSION_7 = False  # set while decoding a version 7 file: F(t) = sigmoid_p(t) always (6.1)


def bin_mass_ends(e, m, s, u, q, lower, upper):
    """F(t(e)) of 6.1 at edges e (broadcast against the element arrays as columns)."""
    r = 1 / s
    a, b = (lower - m) * r, (upper - m) * r
    t = np.clip((e - u[:, None]) * (q * r)[:, None], a[:, None], b[:, None])
    return cdf(t, (a > 0)[:, None] & (not VERSION_7))


def bin_mass(k, m, s, u, q, lower, upper) -> np.ndarray:
    """P(k) of 6.1, unnormalised (k broadcast against the element arrays as columns)."""
    return bin_mass_ends(k + 0.5, m, s, u, q, lower, upper) - bin_mass_ends(k - 0.5, m, s, u, q, lower, upper)


def normaliser(m, s, lower, upper) -> np.ndarray:
    """N of 6.1: F(b) - F(a), from the upper tail where the interval lies right of m."""
    r = 1 / s
    a, b = (lower - m) * r, (upper - m) * r
    right = (a > 0) & (not VERSION_7)
    return np.where(right, sigmoid_p(-a) - sigmoid_p(-b), sigmoid_p(b) - sigmoid_p(a))


class Source:
    """A chunk's ANS decoder (6.1). In a cut chunk (2.1) a symbol is received while the coder's
    state is whole (at least two words) before it; once it is not, no later symbol is."""

    def __init__(self, data: bytes, chunk: sc.Chunk):
        words = np.frombuffer(data[chunk.start + 4 : chunk.end], dtype="<u4")[::-1].astype(np.uint32)
        self.coder = constriction.stream.stack.AnsCoder(words)
        self.cut, self.alive = chunk.cut, True

    def decode(self, rows: np.ndarray) -> tuple[np.ndarray, int]:
        """The symbols of the rows, and how many of them were received."""
        if not self.cut:
            return self.coder.decode(CATEGORICAL, rows).astype(np.int64), len(rows)
        out = np.zeros(len(rows), np.int64)
        for n, row in enumerate(rows):
            if not self.alive or self.coder.num_words() < 2:
                self.alive = False
                return out, n
            out[n] = self.coder.decode(CATEGORICAL, row[None, :])[0]
        return out, len(rows)

    def finish(self) -> None:
        if not self.cut and not self.coder.is_empty():
            raise Mismatch("a chunk's coder did not end empty")


def decode_group(source: Source, m, s, u, q, lower, upper) -> tuple[np.ndarray, np.ndarray]:
    """6.1: the symbols k of one group of elements (arrays in the group's order), and which of
    them were received (all but in a cut chunk)."""
    k = np.zeros(len(m), np.int64)
    got = np.zeros(len(m), bool)
    for start in range(0, len(m), SLICE):
        if not source.alive:
            break
        sl = slice(start, start + SLICE)
        ms, ss, us, qs, lo, hi = m[sl], s[sl], u[sl], q[sl], lower[sl], upper[sl]
        w = window(ss, qs)
        ks = np.zeros(len(ms), np.int64)
        ok = np.zeros(len(ms), bool)
        for width in sorted(set(w.tolist()), reverse=True):
            idx = np.flatnonzero(w == width)
            ks_row = np.arange(-width, width + 1, dtype=np.float64)[None, :]
            mass = bin_mass(ks_row, ms[idx], ss[idx], us[idx], qs[idx], lo[idx], hi[idx])
            norm = normaliser(ms[idx], ss[idx], lo[idx], hi[idx])
            t_end = np.array([-width - 0.5, width + 0.5])[None, :]
            ends = bin_mass_ends(t_end, ms[idx], ss[idx], us[idx], qs[idx], lo[idx], hi[idx])
            escape = np.maximum(norm - (ends[:, 1] - ends[:, 0]), 0.0)
            rows = np.maximum(np.concatenate([mass, escape[:, None]], axis=1), FLOOR)
            sym, valid = source.decode(rows)
            ks[idx[:valid]] = sym[:valid] - width
            ok[idx[:valid]] = True
        escaped = np.flatnonzero(ok & (ks > w))
        if escaped.size:
            me, se, ue, qe, le, he = (v[escaped] for v in (ms, ss, us, qs, lo, hi))
            k_lo = np.floor((le - me) / qe + ue - 0.5).astype(np.int64) + 1
            k_hi = np.ceil((he - me) / qe + ue + 0.5).astype(np.int64) - 1
            values = k_lo[:, None] + np.arange(int((k_hi - k_lo).max()) + 1)[None, :]
            mass = bin_mass(values.astype(np.float64), me, se, ue, qe, le, he)
            outside = (np.abs(values) > w[escaped][:, None]) & (values <= k_hi[:, None])
            if not outside.any(axis=1).all():
                raise Mismatch("an escape that no value can take")
            sym, valid = source.decode(np.where(outside, np.maximum(mass, FLOOR), 0.0))
            ks[escaped[:valid]] = sym[:valid] + k_lo[:valid]
            ok[escaped[valid:]] = False  # an escaped element is received with its escape value only
        k[sl], got[sl] = ks, ok
    return k, got


# ----------------------------------------------------------------------------- 6.4


# ----------------------------------------------------------------------------- the decoder


class Step:
    """What both sides know of one step's coded elements (5.2-5.4), in its natural order."""

    def __init__(self, coded, m, s, u, q, lower, upper, colour, place, band, order):
        self.coded, self.u, self.q, self.lower, self.upper = coded, u, q, lower, upper
        self.m_prior = m.copy()  # 5.3's location, never moved
        self.m, self.s = m.copy(), s.copy()  # as coded: moved for colours 1, 2 when conditioned
        self.colour, self.place, self.band, self.order = colour, place, band, order
        self.xt = np.full(len(m), np.nan)
        self.got = np.zeros(len(m), bool)
        self.partners = {}
        for e, (p, c) in enumerate(zip(place.tolist(), colour.tolist())):
            self.partners.setdefault(p, {})[c] = e

    def residual(self, e):
        return 0.0 if e is None else float(np.clip((self.xt[e] - self.m[e]) / self.s[e], -8, 8))

    def condition(self, e: int, params) -> None:
        """6.4: move m and s of element e (colour 1 or 2) if it has a partner (r of a missing one: 0)."""
        a10, f1, a20, a21, f2 = params
        here = self.partners[self.place[e]]
        p0, p1 = here.get(0), here.get(1)
        if self.colour[e] == 1:
            if p0 is None:
                return
            t, f = (a10 / 64) * self.residual(p0), f1 / 64
        else:
            if p0 is None and p1 is None:
                return
            t, f = ((a20 / 64) * self.residual(p0)) + ((a21 / 64) * self.residual(p1)), f2 / 64
        self.m[e] = self.m[e] + (self.s[e] * t)
        self.s[e] = self.s[e] * f


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
        """The image after every complete layer (3, H, W levels), the last the exact pixels."""
        return self.run(data)[0]

    def screen(self, data: bytes) -> np.ndarray:
        """The image on screen (7) after the bytes of `data`, any prefix of a file (3, H, W)."""
        return self.run(data)[1]

    def run(self, data: bytes) -> tuple[list[np.ndarray], np.ndarray]:
        """(the images after the complete layers, the image on screen); a grayscale image's file
        (1.2 bit 5) shows each pixel's rounded mean of R, G and B in all three."""
        images, screen = self.chain(data)
        if 5 not in sc.read(data).extensions:
            return images, screen

        def gray(image: np.ndarray) -> np.ndarray:
            mean = (image.astype(np.int64).sum(axis=0) + 1) // 3
            return np.repeat(mean[None].astype(np.uint8), 3, axis=0)

        return [gray(image) for image in images], gray(screen)

    def chain(self, data: bytes) -> tuple[list[np.ndarray], np.ndarray]:
        f = sc.read(data)
        self.data, self.mirrors, self.tail_step, self.steps = data, f.mirrors, f.tail_step, f.steps
        global VERSION_7
        VERSION_7 = f.version == 7
        self.tail_form = f.tail_form
        if f.region_size is None:
            return self.region(f.records, f.width, f.height, f.seed)
        rw, rh = f.region_size  # 1.1: every region as an untiled file of its own
        images: list[np.ndarray] | None = None
        screen = np.zeros((3, f.height, f.width), np.uint8)
        r = 0
        for y in range(0, f.height, rh):
            for x in range(0, f.width, rw):
                h, w = min(rh, f.height - y), min(rw, f.width - x)
                seed = (f.seed + r * 0x9E3779B97F4A7C15) % 2**64
                steps, shown = self.region([rec for rec in f.records if rec.region == r], w, h, seed)
                if images is None:
                    images = [np.zeros((3, f.height, f.width), np.uint8) for _ in steps]
                for image, part in zip(images, steps):  # layers every region holds whole
                    image[:, y : y + h, x : x + w] = part
                images = images[: len(steps)]
                screen[:, y : y + h, x : x + w] = shown
                r += 1
        return images or [], screen

    def region(self, records, width: int, height: int, seed: int):
        """(images after the complete layers, the image on screen) of one untiled file."""
        self.h, self.w, self.seed = height, width, seed
        self.hp, self.wp = -(-height // 16) * 16, -(-width // 16) * 16
        z = haar_forward((uniform([seed, 0, 0], (3, self.hp, self.wp)) - 0.5) * 3.4641016151377544, 4)
        self.z = z
        self.state = [np.zeros(b.shape, np.int64) for b in z]
        bound = [2.0**4, 2.0**4, 2.0**3, 2.0**2, 2.0**1]
        self.lower = [np.full(b.shape, -bd, np.float32) for b, bd in zip(z, bound)]
        self.upper = [np.full(b.shape, bd, np.float32) for b, bd in zip(z, bound)]
        shown_at = [(rec.layer, j) for rec in records for j, c in enumerate(rec.chunks) if c.flags & 1]
        self.show = shown_at[-1] if shown_at else None  # the chunk whose candidate is on screen
        self.on_screen, self.shown_kind = None, "blank"
        blank = np.clip(haar_inverse(self.haar_priors(1, 0, None)[0]), -1, 1)[:, :height, :width]
        images, shown = [], blank
        last_haar = self.tail_step if self.tail_step is not None else self.steps - 1
        for record in records[:last_haar]:
            i = record.layer
            locs, scales = self.haar_priors(i, record.fields["from_display"], shown)
            self.haar_step(i, record, locs, scales)
            if not record.complete:
                break
            self.after = self.predict(i)
            display = np.clip(haar_inverse(self.after[0]), -1, 1)[:, :height, :width]
            shown = self.filtered(display, record.fields["filter"])
            check(to_levels(shown), record.fields["display_check"], f"step {i}")
            images.append(to_levels(shown))
            if self.show == (i, len(record.chunks) - 1):
                self.on_screen, self.shown_kind = images[-1], "step"
        else:
            rest = records[last_haar:]
            if self.tail_step is not None and rest:
                images += self.tail(rest[0], shown)
            elif rest:
                images += self.pixel_layers(rest, shown)
        if records and records[-1].complete and records[-1].kind in (2, 3):
            self.on_screen, self.shown_kind = images[-1], "exact"  # whatever the flag says
        screen = self.on_screen if self.on_screen is not None else to_levels(blank)
        return images, screen

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
        locs = list(locs)
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

    @staticmethod
    def flat(arrays) -> np.ndarray:
        return np.concatenate([a.reshape(-1) for a in arrays])

    def unflatten(self, values: np.ndarray, like) -> list[np.ndarray]:
        out, start = [], 0
        for a in like:
            out.append(values[start : start + a.size].reshape(a.shape))
            start += a.size
        return out

    def haar_step(self, i: int, record: sc.Record, locs, scales) -> None:
        m_all, s_all, st_all = self.flat(locs), self.flat(scales), self.flat(self.state)
        lo_all, hi_all = self.flat(self.lower).astype(np.float64), self.flat(self.upper).astype(np.float64)
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
        u = uniform([self.seed, 1, i], (len(coded),)) - 0.5
        m, s, q = m_all[coded], s_all[coded], q_all[coded]
        order = self.order(record.fields["partition"], colour[coded], place[coded], s / q)
        step = Step(
            coded, m, s, u, q, lo_all[coded], hi_all[coded], colour[coded], place[coded], band[coded], order
        )
        self.cz = np.array([jumps[j][2] for j in st_all[coded]])
        self.cx = np.array([jumps[j][1] for j in st_all[coded]])
        self.locs_prior = locs

        def applied(new: np.ndarray) -> None:  # 5.4, 5.5: a chunk's received elements
            zf, stf = self.flat(self.z), self.flat(self.state)
            lof, hif = self.flat(self.lower), self.flat(self.upper)
            e = coded[new]
            zf[e] = (self.cz[new] * zf[e]) + (self.cx[new] * step.xt[new])
            stf[e] = i
            if not VERSION_7:  # version 7: every known interval stays [-B, B]
                lof[e] = np.maximum(lof[e], down32(step.xt[new] - step.q[new] / 2 - 2.0**-30))
                hif[e] = np.minimum(hif[e], up32(step.xt[new] + step.q[new] / 2 + 2.0**-30))
            self.z, self.state = self.unflatten(zf, self.z), self.unflatten(stf, self.state)
            self.lower, self.upper = self.unflatten(lof, self.lower), self.unflatten(hif, self.upper)

        for j in self.decode_layer(record, step, applied):
            if self.show == (i, j) and not (record.complete and j == len(record.chunks) - 1):
                network = record.chunks[j].flags & 2
                self.on_screen = self.network_candidate(i, step) if network else self.estimates(step)
                self.shown_kind = "network" if network else "estimates"

    def network_candidate(self, i: int, step: Step) -> np.ndarray:
        """7, `NETWORK` set: the network's display image at state i, the elements of step i that
        have not arrived taken there with x~ = m (as it is now); not filtered."""
        saved = self.z, self.state
        zf, stf = self.flat(self.z), self.flat(self.state)
        missing = ~step.got
        e = step.coded[missing]
        zf[e] = (self.cz[missing] * zf[e]) + (self.cx[missing] * step.m[missing])
        stf[e] = i
        self.z, self.state = self.unflatten(zf, self.z), self.unflatten(stf, self.state)
        locs = self.predict(i)[0]
        self.z, self.state = saved
        return to_levels(np.clip(haar_inverse(locs), -1, 1)[:, : self.h, : self.w])

    def estimates(self, step: Step) -> np.ndarray:
        """7, `NETWORK` clear: per coefficient the posterior mean where received, else 5.3's
        location (clipped to the known interval)."""
        values = self.flat(self.locs_prior).copy()
        g = step.got
        m, s, xt, q = step.m[g], step.s[g], step.xt[g], step.q[g]
        lower, upper = step.lower[g], step.upper[g]
        if VERSION_7:  # the bin not intersected with the interval; the result clipped to [-B, B]
            ta, tb = (xt - q / 2 - m) / s, (xt + q / 2 - m) / s
        else:
            ta = (np.maximum(xt - q / 2, lower) - m) / s
            tb = (np.minimum(xt + q / 2, upper) - m) / s
        flip = ta > 0
        a, b = np.where(flip, -tb, ta), np.where(flip, -ta, tb)

        def p(t):
            return t * sigmoid_p(t) - softplus_p(t)

        den = sigmoid_p(b) - sigmoid_p(a)
        with np.errstate(all="ignore"):
            t = np.clip((p(b) - p(a)) / den, a, b)
        t = np.where((den <= 1e-200) | (b - a <= 1e-9), (a + b) / 2, t)
        t = np.where(flip, -t, t)
        values[step.coded[g]] = np.clip(m + s * t, lower, upper)
        return to_levels(np.clip(haar_inverse(self.unflatten(values, self.z)), -1, 1)[:, : self.h, : self.w])

    @staticmethod
    def order(partition: int, colour, place, ratio) -> np.ndarray:
        if partition == 0:
            return np.lexsort((colour, place))
        key = {}
        for p, v in zip(place.tolist(), ratio.tolist()):
            key[p] = max(key.get(p, -math.inf), v)
        return np.lexsort((colour, place, -np.array([key[p] for p in place.tolist()])))

    def decode_layer(self, record, step: Step, applied):
        """6.3: chunk by chunk, each in colour groups conditioned as 6.4 says; yields each chunk's
        index once its received elements are applied."""
        params = record.fields.get("colour", {})
        pos = 0
        for j, chunk in enumerate(record.chunks):
            elements = step.order[pos : pos + chunk.count]
            pos += chunk.count
            source = Source(self.data, chunk)
            before = step.got.copy()
            whole = True  # every earlier group of the chunk received whole
            for c in range(3):
                group = elements[step.colour[elements] == c]
                if not whole or not group.size:
                    continue
                for e in group.tolist() if c else []:
                    if step.band[e] in params:
                        step.condition(e, params[step.band[e]])
                k, got = decode_group(
                    source, step.m[group], step.s[group], step.u[group], step.q[group],
                    step.lower[group], step.upper[group],
                )  # fmt: skip
                step.xt[group[got]] = step.m[group[got]] + (k[got] - step.u[group[got]]) * step.q[group[got]]
                step.got[group[got]] = True
                whole = bool(got.all())
            source.finish()
            applied(step.got & ~before)
            yield j

    # -- the pixel step and the lossless layer (5.2, 6.2, 7)

    def pixel_layers(self, records, location) -> list[np.ndarray]:
        h, w = self.h, self.w
        pixel_scale = self.after[2]
        n = 3 * h * w
        s = pixel_scale[:, :h, :w].reshape(-1)
        q = np.full(n, self.pixel_q)
        u = uniform([self.seed, 1, len(self.levels) + 1], (n,)) - 0.5
        colour, place = np.arange(n) // (h * w), np.arange(n) % (h * w)
        m = location.reshape(-1)
        order = self.order(records[0].fields["partition"], colour, place, s / q)
        step = Step(
            np.arange(n),
            m,
            s,
            u,
            q,
            np.full(n, -1.0),
            np.full(n, 1.0),
            colour,
            place,
            np.zeros(n, int),
            order,
        )
        record = records[0]
        for j in self.decode_layer(record, step, lambda new: None):
            if self.show == (record.layer, j) and not (record.complete and j == len(record.chunks) - 1):
                self.on_screen, self.shown_kind = self.pixel_means(step), "pixel step"
        if not record.complete:
            return []
        images = [self.pixel_means(step)]
        check(images[0], record.fields["display_check"], f"step {record.layer}")
        if self.show == (record.layer, len(record.chunks) - 1):
            self.on_screen, self.shown_kind = images[0], "step"
        if len(records) > 1:
            exact = self.lossless(records[1], step, order, images[0])
            if records[1].complete:
                check(exact, records[1].fields["display_check"], "the lossless layer")
                images.append(exact)
        return images

    def pixel_means(self, step: Step) -> np.ndarray:
        """7: the posterior mean over 6.2's candidates where x~ arrived, 5.3's location elsewhere."""
        out = step.m_prior.copy()
        g = step.got
        _, x, p = self.candidates(step.xt[g], step.m[g], step.s[g])
        num, den = x[:, 0] * p[:, 0], p[:, 0].copy()
        for j in range(1, p.shape[1]):  # left to right
            num, den = num + x[:, j] * p[:, j], den + p[:, j]
        out[g] = num / den
        return to_levels(out.reshape(3, self.h, self.w))

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

    def lossless(self, record, step: Step, pixel_order, mean_image) -> np.ndarray:
        """6.2: the exact levels where they arrived, the step-T image elsewhere (7)."""
        h, w = self.h, self.w
        n = step.xt.size
        xt, m, s = step.xt, step.m, step.s
        base = pixel_order if record.fields["partition"] == 1 else np.arange(n)
        row, col = (np.arange(n) % (h * w)) // w, np.arange(n) % w
        half_b = (row + col) % 2 == 1
        order = np.concatenate([base[~half_b[base]], base[half_b[base]]])  # stable: A, then B
        context = record.fields["lossless"]
        levels = np.full(n, -1, np.int64)
        pos = 0
        for j, chunk in enumerate(record.chunks):
            elements = order[pos : pos + chunk.count]
            pos += chunk.count
            source = Source(self.data, chunk)
            for in_b in (False, True):
                group = elements[half_b[elements] == in_b]
                for start in range(0, group.size, SLICE):
                    if not source.alive:
                        break
                    part = group[start : start + SLICE]
                    mm, ss = m[part], s[part]
                    if in_b and context is not None:
                        mm, ss = self.spatial(part, levels, m, s, context)
                    first, _, rows = self.candidates(xt[part], mm, ss)
                    sym, valid = source.decode(rows)
                    levels[part[:valid]] = first[:valid] + sym[:valid]
            source.finish()
            if self.show == (record.layer, j) and not (record.complete and j == len(record.chunks) - 1):
                self.shown_kind = "lossless"
                self.on_screen = (
                    np.where(levels >= 0, levels, mean_image.reshape(-1)).reshape(3, h, w).astype(np.uint8)
                )
        return np.where(levels >= 0, levels, mean_image.reshape(-1)).reshape(3, h, w).astype(np.uint8)

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

    # -- the tail (6.6)

    def tail(self, record, shown) -> list[np.ndarray]:
        from . import spec_tail

        side = to_levels(shown).astype(np.int64)
        intervals = spec_tail.Intervals(self.lower, self.upper)
        intervals.active &= self.tail_form >= 10  # bounds from form 10 on
        show = self.show[1] if self.show is not None and self.show[0] == record.layer else None
        pixels, candidate = spec_tail.decode_tail(
            self.data, record, side, intervals, decode_group, Source, show, self.tail_form
        )
        if candidate is not None:
            self.on_screen, self.shown_kind = candidate.astype(np.uint8), "tail"
        if pixels is None:
            return []
        pixels = pixels.astype(np.uint8)
        check(pixels, record.fields["display_check"], "the tail")
        return [pixels]
