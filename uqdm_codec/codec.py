"""Encoding and decoding: the UQDM chain driven layer by layer, chunk by chunk.

`Codec` holds a model on a device. encode() runs the chain forward; every layer's symbols are
put in importance order (largest prior scale / quantiser step first, which the decoder knows too)
and cut into chunks, each an independent ANS stream, so a file can stop after any chunk. Every
layer records a CRC of the image the decoder will show after it, and every chunk's ANS stream must
end in the coder's initial state; decode() replays the chain from the same shared randomness and
verifies both, so a decoder whose arithmetic drifted from the encoder's stops with SyncError
instead of showing a wrong image.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import container, entropy, haar, randomness, sampling
from .container import (
    KIND_LOSSLESS,
    KIND_STEP,
    NETWORK,
    PARTITION_IMPORTANCE,
    PARTITION_NATURAL,
    SHOW,
    Chunk,
    Header,
    Layer,
)
from .errors import FormatError, ModelError, SyncError, UqdmError
from .inference import DEFAULT_TILE, Prediction, PriorNetwork
from .model import UQDM, fingerprint, load_model, resolve_model_path

Progress = Callable[[int, int], None]


@dataclass
class DecodedImage:
    pixels: np.ndarray  # (H, W, 3) uint8
    steps: int  # complete diffusion steps applied
    lossless: bool  # True when the lossless layer was decoded: pixels are the original
    warnings: list[str] = field(default_factory=list)
    layer: int = 0  # the layer this image follows (0: header only)
    chunks: int = 0  # chunks of that layer decoded
    complete: bool = True  # whether that layer is complete
    nbytes: int = 0  # length of the file prefix this image needs
    recon: str = "mean"  # what `pixels` is: the decoder's image on screen, or an ancestral "sample"
    shown: np.ndarray | None = None  # with recon "sample": the image on screen (the mean's)

    def to_pil(self):
        from PIL import Image

        return Image.fromarray(self.pixels, "RGB")


@dataclass(frozen=True)
class ChunkPolicy:
    """How the encoder cuts layers: a chunk holds about `growth` times the bytes before it (so a
    file can be cut within that fraction of any budget), but at least `min_bytes`. The first layer
    stays whole (it is small, and every byte of it counts). Each later layer ends in a tail chunk
    as large as the bytes that chunking added to the file so far: a prefix as long as the file
    would be up to this step without sub-step chunks then holds the whole step but its tail, and
    shows the network's image of that (FORMAT.md 6.3), which is close to the step's own."""

    growth: float = 0.03
    min_bytes: int = 384
    max_chunks: int = 255
    chunk_overhead: float = 12.0  # first guess at the bytes each extra chunk adds (framing, coder flush)
    tail: bool = True

    def _grow(self, cum: np.ndarray, bytes_before: int) -> list[int]:
        n = cum.size
        ends, start_bytes, pos = [], 0.0, 0
        while pos < n:
            target = max(self.min_bytes, self.growth * (bytes_before + start_bytes))
            end = int(np.searchsorted(cum, start_bytes + target)) + 1
            end = min(max(end, pos + 1), n)
            ends.append(end)
            start_bytes, pos = float(cum[end - 1]), end
        return ends

    def split(self, element_bits: np.ndarray, bytes_before: int, tail_bytes: float = 0.0) -> list[int]:
        """End positions (in elements) of the chunks of a layer, from per-element bit estimates,
        ending in a tail of about `tail_bytes` (none if 0; at least one element before it)."""
        n = element_bits.size
        if n == 0:
            return [0]
        cum = np.cumsum(element_bits) / 8.0
        ends = self._grow(cum, bytes_before)
        limit = self.max_chunks
        head = 0
        if tail_bytes > 0 and n >= 2:
            after = cum[-1] - cum  # bytes after each element
            head = int(np.searchsorted(-after, -tail_bytes, side="right"))  # elements with enough after
            head = min(max(head, 1), n - 1)
            ends = self._grow(cum[:head], bytes_before)
            limit -= 1
        if len(ends) > limit:  # merge into at most `limit` near-equal groups
            idx = np.linspace(0, len(ends), limit + 1).astype(int)[1:]
            ends = [ends[k - 1] for k in idx]
        if len(ends) > 1 and ends[-1] - ends[-2] < 16 and not head:
            ends.pop(-2)  # no sliver at the end
        if head:
            ends.append(n)
        return ends


def _check(arr: np.ndarray) -> int:
    return container.crc32(np.ascontiguousarray(arr).tobytes())


def _to_image(x_data: np.ndarray, h: int, w: int) -> np.ndarray:
    """(3, >=H, >=W) data units -> (H, W, 3) uint8."""
    return np.ascontiguousarray(entropy.data_to_pixels(x_data[:, :h, :w]).transpose(1, 2, 0))


def importance_order(prior: entropy.StepPrior) -> np.ndarray:
    """Elements by decreasing prior scale / quantiser step (ties: natural order)."""
    return np.argsort(-(prior.scale / prior.quant_step), kind="stable")


class _Chain:
    """What both sides know: the latent z in Haar bands, for each coefficient the last step that
    coded it, the current step's coded elements, and the pixel step's x_tilde."""

    def __init__(self, net: PriorNetwork, height: int, width: int, seed: int, tile: int):
        self.net = net
        self.tile = tile
        self.sched = net.model.schedule
        self.levels = net.levels
        m = net.multiple
        self.h, self.w = height, width
        self.hp, self.wp = -(-height // m) * m, -(-width // m) * m
        self.seed = seed
        self._z: list[np.ndarray] | None = None  # allocated when the first step needs it
        self._state: list[np.ndarray] | None = None
        self.tables = {k: np.array(v) for k, v in self.sched.jump_table().items()}
        self.coded_band = np.zeros(0, np.int64)  # band of each coded element of the current step
        self.coded_flat = np.zeros(0, np.int64)  # its flat index in that band
        self.pixel_tilde = np.zeros(0)  # x_tilde of the pixel step (real pixels, natural order)
        self.pixel_shown = np.zeros(0)  # what the decoder shows per pixel (data units, natural order)
        self.lossless = np.zeros(0, np.int64)  # decoded pixel levels of the lossless layer
        self.estimate: list[np.ndarray] = []  # per band: E[x] after part of a Haar step
        self.received = np.zeros(0, bool)  # which of the current step's elements arrived

    def fork(self) -> _Chain:
        """An independent copy (arrays copied, network and tables shared), for running the chain on
        without moving the decoder's: generative reconstruction (sampling.py) does."""
        twin = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                setattr(twin, name, value.copy())
            elif isinstance(value, list) and all(isinstance(v, np.ndarray) for v in value):
                setattr(twin, name, [v.copy() for v in value])
        return twin

    @property
    def z(self) -> list[np.ndarray]:
        if self._z is None:
            self._z = haar.forward(randomness.initial_latent(self.seed, (3, self.hp, self.wp)), self.levels)
        return self._z

    @property
    def state(self) -> list[np.ndarray]:
        if self._state is None:
            self._state = [np.zeros(b.shape, dtype=np.int64) for b in self.z]
        return self._state

    def predict(self, step: int) -> Prediction:
        return self.net.predict(self.z, self.state, step, self.tile)

    def predict_imputed(self, i: int, prior: entropy.StepPrior, missing: np.ndarray) -> Prediction:
        """The network at state i when only part of Haar step i arrived: the `missing` elements
        (natural-order positions) are taken to state i as if their x_tilde were their prior
        location. The network then sees the state map it was trained on (a mix of states does not
        occur in training and gives much worse images), with little-informed values where data is
        missing."""
        z = [b.copy() for b in self.z]
        state = [b.copy() for b in self.state]
        self._move(z, state, i, missing, prior.loc[missing])
        return self.net.predict(z, state, i, self.tile)

    def prior(self, i: int, pred: Prediction | None) -> entropy.StepPrior:
        """The entropy model of step i's coded elements in natural order, given the prediction from
        state i-1 (None for step 1). Haar steps code the coefficients with scale >= threshold * q;
        the pixel step codes every real pixel."""
        if self.sched.is_pixel_step(i):
            loc = pred.display[:, : self.h, : self.w].ravel()
            scale = pred.pixel_scale[:, : self.h, : self.w].ravel()
            q = np.full(loc.size, self.sched.pixel_quant)
            bound = np.ones(loc.size)
            self.pixel_tilde = np.array(loc)
            self.pixel_shown = np.array(loc)  # unreceived pixels show the prior location
            self.lossless = np.zeros(loc.size, np.int64)
        else:
            if pred is None:
                locs, scales = self.net.first_prior([b.shape for b in self.z])
            else:
                locs, scales = pred.locs, pred.scales
            parts: dict[str, list] = {"loc": [], "scale": [], "q": [], "bound": [], "band": [], "flat": []}
            for b, st in enumerate(self.state):
                q = self.tables["quant_step"][st, i].ravel()
                flat = np.flatnonzero(scales[b].ravel() >= self.sched.threshold * q)
                bd = haar.band_bound(b, self.levels)
                parts["loc"].append(np.clip(locs[b].ravel()[flat], -bd, bd))
                parts["scale"].append(scales[b].ravel()[flat])
                parts["q"].append(q[flat])
                parts["bound"].append(np.full(flat.size, bd))
                parts["band"].append(np.full(flat.size, b))
                parts["flat"].append(flat)
            loc, scale, q, bound = (np.concatenate(parts[k]) for k in ("loc", "scale", "q", "bound"))
            bounds = [haar.band_bound(b, self.levels) for b in range(len(locs))]
            self.estimate = [np.clip(lb, -bd, bd) for lb, bd in zip(locs, bounds)]
            self.coded_band = np.concatenate(parts["band"])
            self.coded_flat = np.concatenate(parts["flat"])
        u = randomness.dither(self.seed, i, (loc.size,))
        self.received = np.zeros(loc.size, bool)
        return entropy.StepPrior(loc, scale, u, q, bound)

    def elements(self, i: int, x_pixels: np.ndarray, x_bands: list[np.ndarray]) -> np.ndarray:
        """The encoder's values of step i's coded elements (natural order, as prior())."""
        if self.sched.is_pixel_step(i):
            return x_pixels[:, : self.h, : self.w].ravel()
        return np.concatenate(
            [x_bands[b].ravel()[self.coded_flat[self.coded_band == b]] for b in range(len(x_bands))]
        )

    def apply(self, i: int, x_tilde: np.ndarray, which: np.ndarray, shown: np.ndarray | None = None) -> None:
        """Take the received elements `which` (natural-order positions) of step i to state i;
        `shown` is their posterior mean, which the partial displays use."""
        self.received[which] = True
        if self.sched.is_pixel_step(i):
            self.pixel_tilde[which] = x_tilde
            if shown is not None:
                self.pixel_shown[which] = shown
            return
        for b, sel, flat in self._move(self.z, self.state, i, which, x_tilde):
            if shown is not None:
                self.estimate[b].reshape(-1)[flat] = shown[sel]

    def _move(self, z, state, i: int, which: np.ndarray, x_tilde: np.ndarray):
        """z <- coef_z z + coef_x x_tilde and state <- i for Haar step i's elements `which`
        (natural-order positions); returns (band, selection in `which`, flat indices) per band."""
        bands = self.coded_band[which]
        moved = []
        for b in np.unique(bands):
            sel = bands == b
            flat = self.coded_flat[which[sel]]
            zb, sb = z[b].reshape(-1), state[b].reshape(-1)
            st = sb[flat]
            zb[flat] = self.tables["coef_z"][st, i] * zb[flat] + self.tables["coef_x"][st, i] * x_tilde[sel]
            sb[flat] = i
            moved.append((b, sel, flat))
        return moved

    def apply_levels(self, levels: np.ndarray, which: np.ndarray) -> None:
        """Received pixel levels of the lossless layer (natural-order positions)."""
        self.lossless[which] = levels
        self.pixel_shown[which] = entropy.pixels_to_data(levels)

    def posterior(self, i: int, x_tilde: np.ndarray, prior: entropy.StepPrior) -> np.ndarray:
        """What the decoder shows for elements of step i that arrived (prior: theirs)."""
        if self.sched.is_pixel_step(i):
            return entropy.posterior_mean(x_tilde, prior.loc, prior.scale, self.sched.pixel_quant)
        return entropy.step_posterior_mean(x_tilde, prior)

    def partial_display(self, i: int, prior: entropy.StepPrior, network: bool) -> np.ndarray:
        """The image after part of layer i (FORMAT.md 7), the same on both sides: with `network`
        (Haar steps only) the network's display at the state with the missing elements imputed;
        else for a Haar step inverse-Haar of the estimates, and for the last two layers the
        per-pixel values shown so far."""
        if network:
            missing = np.flatnonzero(~self.received)
            return _to_image(self.predict_imputed(i, prior, missing).display, self.h, self.w)
        if i >= self.sched.num_steps:  # the pixel step and the lossless layer
            return self.pixel_display()
        return _to_image(np.clip(haar.inverse(self.estimate), -1.0, 1.0), self.h, self.w)

    def pixel_display(self) -> np.ndarray:
        """After (part of) the pixel step: posterior mean where x_tilde arrived, else the prior
        location; after part of the lossless layer, the exact level where it arrived."""
        return _to_image(self.pixel_shown.reshape(3, self.h, self.w), self.h, self.w)

    def blank_display(self) -> np.ndarray:
        """The first prior's image: its bands are constant, so it repeats with the Haar block."""
        block = self.net.multiple
        tile = _to_image(self.net.blank_display((block, block)), block, block)
        reps = (-(-self.h // block), -(-self.w // block), 1)
        return np.ascontiguousarray(np.tile(tile, reps)[: self.h, : self.w])


class _Judge:
    """The encoder's side of the show flags. It knows the original, so it marks a chunk's image as
    shown only when it is closer to the original (smaller squared error) than the image on screen
    before it: the decoder's quality then never falls as bytes arrive."""

    def __init__(self, original: np.ndarray, first: np.ndarray):
        self.original = original.astype(np.int32)
        self.best = self._sse(first)

    def _sse(self, image: np.ndarray) -> int:
        d = image.astype(np.int32) - self.original
        return int(np.einsum("ijk,ijk->", d, d, dtype=np.int64))

    def __call__(self, image: np.ndarray) -> bool:
        err = self._sse(image)
        if err < self.best:
            self.best = err
            return True
        return False


class Codec:
    """A model on a device, ready to encode and decode. `tile` is the network tile size written
    into new files (decoding always uses the file's own)."""

    def __init__(
        self,
        model: UQDM | str | Path | None = None,
        device=None,
        tile: int = DEFAULT_TILE,
        chunking: ChunkPolicy | None = ChunkPolicy(),
    ):
        if not isinstance(model, UQDM):
            model = load_model(model)
        self.model = model
        self.net = PriorNetwork(model, device)
        self.tile = tile
        self.chunking = chunking  # None: one chunk per layer, natural order
        self.fingerprint = fingerprint(model)

    @property
    def num_steps(self) -> int:
        return self.model.schedule.num_steps

    # ------------------------------------------------------------------ encode

    def _cut(self, bits, order, code, size: int, flat: tuple[int, int] | None, first: bool):
        """(partition, ends, payloads) of one layer: one natural-order chunk for the first layer
        or without chunking; else chunks in importance order whose tail is grown until the bytes
        before it fit within flat = (start, end): where the same file without sub-step chunks would
        start and end this layer."""
        n = bits.size
        if self.chunking is None or first:
            return PARTITION_NATURAL, np.arange(n), [n], [code(np.arange(n))]
        cache: dict[tuple[int, int], bytes] = {}

        def payloads(ends):
            starts = [0, *ends[:-1]]
            for s, e in zip(starts, ends):
                if (s, e) not in cache:
                    cache[(s, e)] = code(order[s:e])
            return [cache[(s, e)] for s, e in zip(starts, ends)]

        pol = self.chunking
        plain = pol.split(bits[order], size)
        tail = size - flat[0] + pol.chunk_overhead * len(plain) + 24.0 if flat else 0.0
        for _ in range(6):
            ends = pol.split(bits[order], size, tail if pol.tail else 0.0)
            pays = payloads(ends)
            if len(ends) < 2 or not flat or not pol.tail:
                break
            flat_end = flat[1]
            chunks = [Chunk(p, e - s, SHOW | NETWORK) for p, s, e in zip(pays, [0, *ends[:-1]], ends)]
            layer = Layer(KIND_STEP, 1, 0, chunks, PARTITION_IMPORTANCE)
            before_tail = size + layer.size - (4 + len(pays[-1]))
            if before_tail <= flat_end:
                break
            tail += before_tail - flat_end + 16.0
        return PARTITION_IMPORTANCE, order, ends, pays

    def _layer(self, cut, apply, partial, network, judge):
        """The chunks of one layer, flagged: apply(part) moves the chain past elements (given by
        natural-order position), partial(net) is the image a decoder shows after them (net: the
        network's, allowed where `network`), judge(image) says whether it beats what is on screen.
        The last chunk's flags are left to the caller."""
        partition, order, ends, pays = cut
        chunks, start = [], 0
        for c, (end, payload) in enumerate(zip(ends, pays)):
            part = order[start:end]
            apply(part)
            flags = 0
            if c < len(ends) - 1:
                net = network and c == len(ends) - 2  # the tail's head: as close to the step as it gets
                flags = (NETWORK if net else 0) | (SHOW if judge(partial(net)) else 0)
            chunks.append(Chunk(payload, end - start, flags))
            start = end
        return partition, chunks

    def _flat_end(self, flat_size: int, n: int, code) -> int:
        """Where the layer would end in the same file without sub-step chunks (for the tail)."""
        return flat_size + Layer(KIND_STEP, 1, 0, [Chunk(code(np.arange(n)), n, SHOW)]).size

    def encode(self, pixels: np.ndarray, seed: int | None = None, progress: Progress | None = None) -> bytes:
        """Encode an (H, W, 3) uint8 image into .uqd bytes."""
        pixels = _validate_pixels(pixels)
        h, w = pixels.shape[:2]
        seed = randomness.new_seed() if seed is None else int(seed) & ((1 << 63) - 1)
        T = self.num_steps
        chain = _Chain(self.net, h, w, seed, self.tile)
        x = entropy.pixels_to_data(pixels.transpose(2, 0, 1))
        xp = np.pad(x, ((0, 0), (0, chain.hp - h), (0, chain.wp - w)), mode="edge")
        x_bands = haar.forward(xp, chain.levels)
        header = Header(w, h, T, seed, self.fingerprint, self.model.config.name, self.tile)
        out = [header.to_bytes()]
        size = flat_size = len(out[0])  # flat_size: the same file without sub-step chunks
        judge = _Judge(pixels, chain.blank_display())
        pred = prior = None
        for i in range(1, T + 2):
            lossless = i == T + 1
            if lossless:
                levels = pixels.transpose(2, 0, 1).ravel().astype(np.int64)
                q = self.model.schedule.pixel_quant
                xt, loc, scale = chain.pixel_tilde, prior.loc, prior.scale
                bits = entropy.levels_element_bits(levels, xt, loc, scale, q)

                def code(part, xt=xt, loc=loc, scale=scale, q=q, levels=levels):
                    return entropy.encode_levels(levels[part], xt[part], loc[part], scale[part], q)

                def apply(part, levels=levels):
                    chain.apply_levels(levels[part], part)

                # the lossless layer keeps the pixel step's order
            else:
                prior = chain.prior(i, pred)
                k = entropy.quantise(chain.elements(i, xp, x_bands), prior)
                xt = entropy.reconstruct(k, prior)
                est = chain.posterior(i, xt, prior)
                bits = entropy.step_element_bits(k, prior)
                order = importance_order(prior)

                def code(part, k=k, prior=prior):
                    return entropy.encode_step(k[part], prior.part(part))

                def apply(part, i=i, xt=xt, est=est):
                    chain.apply(i, xt[part], part, est[part])

            haar_step = i < T

            def partial(net: bool, i=i, prior=prior) -> np.ndarray:
                return chain.partial_display(i, prior, net)

            flat = None
            if self.chunking is not None and i > 1:
                flat = (flat_size, self._flat_end(flat_size, bits.size, code))
            cut = self._cut(bits, order, code, size, flat, first=i == 1)
            flat_size = flat[1] if flat else size + Layer(KIND_STEP, i, 0, [Chunk(cut[3][0], bits.size)]).size
            partition, chunks = self._layer(cut, apply, partial, haar_step, judge)
            if lossless:
                shown = pixels
            elif haar_step:
                pred = chain.predict(i)
                shown = _to_image(pred.display, h, w)
            else:
                shown = chain.pixel_display()
            chunks[-1].flags = SHOW if judge(shown) or lossless else 0  # the exact image always shows
            kind = KIND_LOSSLESS if lossless else KIND_STEP
            out.append(Layer(kind, i, _check(shown), chunks, partition).to_bytes())
            size += len(out[-1])
            if progress:
                progress(i, T + 1)
        return b"".join(out)

    # ------------------------------------------------------------------ decode

    def check_header(self, header: Header) -> None:
        if header.fingerprint != self.fingerprint:
            raise ModelError(
                f"file was made with model '{header.model_name}' ({header.fingerprint.hex()[:12]}), "
                f"but the loaded model is '{self.model.config.name}' ({self.fingerprint.hex()[:12]}); "
                "pass --model with the weights it was made with"
            )
        if header.num_steps != self.num_steps:
            raise ModelError("file and model disagree on the number of steps")

    def _levels(self, data: bytes, steps: int | None, progress: Progress | None, every_chunk: bool):
        """The decode session and a generator of its images (the session is at each image's state
        when the generator yields it)."""
        parsed = container.parse(data)
        session = _DecodeSession(self, parsed.header, parsed.header_size)
        T = self.num_steps
        if steps is not None:
            have = min(len(parsed.layers), T)
            if not 0 <= steps <= T:
                raise UqdmError(f"steps must be between 0 and {T}")
            if steps > have:
                raise UqdmError(f"the file holds {have} complete steps; cannot decode {steps}")

        def images() -> Iterator[DecodedImage]:
            yield session.blank(parsed.warnings)
            yield from session.advance(parsed, every_chunk=every_chunk, max_layer=steps, progress=progress)

        return session, images()

    def iter_decode(
        self,
        data: bytes,
        steps: int | None = None,
        progress: Progress | None = None,
        every_chunk: bool = False,
        recon: str = "mean",
        seed: int | None = None,
    ) -> Iterator[DecodedImage]:
        """Decode layer by layer, yielding the image shown before any step, after every decoded
        step, and the exact image once the lossless layer is in; with every_chunk, also after every
        chunk. Stops after `steps` diffusion steps if given, else after the last complete chunk.
        recon="sample" replaces every image before the pixel step by an ancestral sample (seeded by
        `seed`; see sampling.py), which costs a network pass per remaining step and image."""
        recon, seed = sampling.check_recon(recon), sampling.check_seed(seed)
        session, images = self._levels(data, steps, progress, every_chunk)
        for image in images:
            yield session.reconstruct(image, recon, seed)

    def decode(
        self,
        data: bytes,
        steps: int | None = None,
        progress: Progress | None = None,
        recon: str = "mean",
        seed: int | None = None,
    ) -> DecodedImage:
        """The image after `steps` diffusion steps (default: everything the file holds): the posterior
        mean, or with recon="sample" the remaining steps drawn from the model (seeded by `seed`)."""
        recon, seed = sampling.check_recon(recon), sampling.check_seed(seed)
        session, images = self._levels(data, steps, progress, every_chunk=False)
        *_, last = images
        return session.reconstruct(last, recon, seed)


class _DecodeSession:
    """Decoding state that survives between calls, so bytes can arrive in pieces: the chain, the
    next layer and chunk to apply, the prior of the layer in progress and the image on screen."""

    def __init__(self, codec: Codec, header: Header, header_size: int):
        codec.check_header(header)
        self.codec, self.hd = codec, header
        self.T = codec.num_steps
        self.chain = _Chain(codec.net, header.height, header.width, header.seed, header.tile)
        self.pred: Prediction | None = None
        self.prior: entropy.StepPrior | None = None  # the pixel step's prior serves the lossless layer
        self.order = np.zeros(0, np.int64)
        self.layer, self.chunk, self.done_steps = 1, 0, 0
        self.nbytes = header_size
        self.shown = self.chain.blank_display()  # the image on screen: changes on flagged chunks

    def blank(self, warnings: list[str]) -> DecodedImage:
        return DecodedImage(self.shown, 0, False, list(warnings), nbytes=self.nbytes)

    def sample(self, seed: int) -> np.ndarray | None:
        """An ancestral sample from the current state (sampling.py): the rest of a step in progress
        and every later Haar step drawn from the model. None where there is nothing to draw: after
        the last Haar step (the pixel step is not sampled, see sampling.py)."""
        H = self.T - 1
        first, partial = self.layer, self.chunk > 0  # the first step not complete; arrived in part?
        if first > H and not (first == H + 1 and not partial and sampling.SAMPLE_PIXELS):
            return None
        prior = self.prior if partial else None
        x = sampling.ancestral(self.chain.fork(), first, H, self.pred, prior, seed)
        return _to_image(x, self.hd.height, self.hd.width)

    def reconstruct(self, image: DecodedImage, recon: str, seed: int) -> DecodedImage:
        """`image` (the session's current one) as asked: as is for "mean", else its sample."""
        if recon == "mean" or image.lossless:
            return image
        drawn = self.sample(seed)
        if drawn is None:
            return image
        return replace(image, pixels=drawn, recon="sample", shown=image.pixels)

    def _start_layer(self, layer: Layer) -> None:
        i = layer.index
        if i <= self.T:
            self.prior = self.chain.prior(i, self.pred)
        count = len(self.prior) if i <= self.T else self.hd.width * self.hd.height * 3
        if layer.partition == PARTITION_IMPORTANCE:
            self.order = importance_order(self.prior)
        else:
            self.order = np.arange(count)

    def _apply_chunk(self, i: int, chunk: Chunk, part: np.ndarray) -> None:
        chain, prior = self.chain, self.prior
        if i <= self.T:
            sub = prior.part(part)
            k = _decode_checked(entropy.decode_step, i, chunk, sub)
            x_tilde = entropy.reconstruct(k, sub)
            chain.apply(i, x_tilde, part, chain.posterior(i, x_tilde, sub))
            return
        q = self.codec.model.schedule.pixel_quant
        levels = _decode_checked(
            entropy.decode_levels, i, chunk, chain.pixel_tilde[part], prior.loc[part], prior.scale[part], q
        )
        chain.apply_levels(levels, part)

    def _finish_layer(self, i: int) -> np.ndarray:
        hd = self.hd
        if i > self.T:
            levels = self.chain.lossless.reshape(3, hd.height, hd.width).transpose(1, 2, 0)
            return np.ascontiguousarray(levels.astype(np.uint8))
        self.done_steps = i
        if i == self.T:
            self.pred = None
            return self.chain.pixel_display()
        self.pred = self.chain.predict(i)
        return _to_image(self.pred.display, hd.height, hd.width)

    def advance(
        self,
        parsed: container.ParsedFile,
        every_chunk: bool = False,
        max_layer: int | None = None,
        progress: Progress | None = None,
    ) -> Iterator[DecodedImage]:
        """Apply whatever `parsed` holds beyond what was applied before; yield the images."""
        T = self.T
        last_layer = T + 1 if max_layer is None else max_layer
        warnings = list(parsed.warnings)
        while self.layer <= last_layer:
            i = self.layer
            if i <= len(parsed.layers):
                layer, complete = parsed.layers[i - 1], True
            elif max_layer is None and parsed.partial is not None and parsed.partial.index == i:
                layer, complete = parsed.partial, False
            else:
                return
            n = len(layer.chunks)
            inner = n - 1 if complete else n  # chunks available before the layer's end
            declared = n if complete else parsed.partial_expected_chunks
            for c, chunk in enumerate(layer.chunks):
                if chunk.network and (c >= declared - 1 or i >= T):
                    raise FormatError(f"layer {i}, chunk {c + 1}: network flag where no network runs")
            if self.chunk == 0:
                self._start_layer(layer)
                if complete and sum(c.count for c in layer.chunks) != self.order.size:
                    raise SyncError(_sync_message(i))
            # without every_chunk only the last shown image inside the layer is ever seen
            flagged = [c for c in range(self.chunk, inner) if layer.chunks[c].show]
            wanted = set(flagged) if every_chunk else set(flagged[-1:])
            if complete and layer.chunks[-1].show and not every_chunk:
                wanted = set()
            ends = parsed.chunk_offsets[i - 1]
            start = sum(c.count for c in layer.chunks[: self.chunk])
            for c in range(self.chunk, n):
                chunk = layer.chunks[c]
                part = self.order[start : start + chunk.count]
                if part.size != chunk.count:
                    raise SyncError(_sync_message(i))
                start += chunk.count
                self._apply_chunk(i, chunk, part)
                self.chunk, self.nbytes = c + 1, ends[c]
                if c >= inner:
                    break
                if c in wanted:
                    self.shown = self.chain.partial_display(i, self.prior, chunk.network)
                if every_chunk or c == n - 1:
                    yield DecodedImage(
                        self.shown, self.done_steps, False, warnings, i, c + 1, False, self.nbytes
                    )
            if not complete:
                return
            end_image = self._finish_layer(i)
            if _check(end_image) != layer.display_check:
                raise SyncError(_sync_message(i))
            if layer.chunks[-1].show or i == T + 1:
                self.shown = end_image
            self.layer, self.chunk = i + 1, 0
            if progress:
                progress(i, last_layer)
            yield DecodedImage(self.shown, self.done_steps, i == T + 1, warnings, i, n, True, self.nbytes)


class Decoder:
    """Streaming decoder: feed bytes as they arrive, get a better image each time a chunk completes.

    dec = Decoder()
    for piece in download():
        image = dec.feed(piece)   # a PIL image, or None when nothing new could be decoded
    """

    def __init__(self, model=None, device=None):
        self._model, self._device = model, device
        self._buffer = bytearray()
        self._session: _DecodeSession | None = None
        self._fresh = True  # nothing shown yet: the first image is news even if it is the blank one
        self.latest: DecodedImage | None = None

    def feed(self, data: bytes):
        self._buffer += data
        if self._session is None:
            if len(self._buffer) < len(container.MAGIC) and container.MAGIC.startswith(bytes(self._buffer)):
                return None
            try:
                header, size = container.parse_header(bytes(self._buffer))
            except FormatError as exc:
                if "too short" in str(exc):
                    return None
                raise
            from . import get_codec

            codec = get_codec(model_for_file(header, self._model), self._device)
            self._session = _DecodeSession(codec, header, size)
            self.latest = self._session.blank([])
        images = list(self._session.advance(container.parse(bytes(self._buffer))))
        if images:
            self.latest = images[-1]
        elif not self._fresh:
            return None
        self._fresh = False
        return self.latest.to_pil()


def _decode_checked(fn, layer: int, chunk: Chunk, *args) -> np.ndarray:
    """Entropy-decode a chunk whose bytes passed their CRC. The ANS coder must end exactly in its
    initial state; if the decoder's probabilities differ from the encoder's, it does not (but for a
    2^-32 chance), so the chunk is refused instead of decoded into a wrong image."""
    try:
        return fn(chunk.payload, *args)
    except FormatError:
        raise SyncError(_sync_message(layer)) from None


def _sync_message(layer: int) -> str:
    return (
        f"decoded layer {layer} does not match what the encoder computed: this machine's arithmetic "
        "differs from the encoder's (another device, CPU type or library build), or the file was altered"
    )


def _validate_pixels(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise UqdmError("encode() needs an (H, W, 3) uint8 array; use load_image() for other inputs")
    h, w = pixels.shape[:2]
    if not (1 <= h <= container.MAX_SIDE and 1 <= w <= container.MAX_SIDE) or h * w > container.MAX_PIXELS:
        raise UqdmError(
            f"image size {w}x{h} is outside the supported range "
            f"(1 to {container.MAX_SIDE} per side, at most {container.MAX_PIXELS} pixels)"
        )
    return np.ascontiguousarray(pixels)


def model_for_file(header: Header, requested: str | Path | None) -> str | Path | None:
    """Which model to load for a file: the requested one, else the file's own if it is shipped."""
    if requested is not None:
        return requested
    try:
        resolve_model_path(header.model_name)
        return header.model_name
    except ModelError:
        return None


def ideal_bits(codec: Codec, pixels: np.ndarray, seed: int = 0) -> list[float]:
    """Sum of -log2 P(symbol) of every layer under the exact model (for measuring coder overhead)."""
    pixels = _validate_pixels(pixels)
    h, w = pixels.shape[:2]
    T = codec.num_steps
    chain = _Chain(codec.net, h, w, seed, codec.tile)
    x = entropy.pixels_to_data(pixels.transpose(2, 0, 1))
    xp = np.pad(x, ((0, 0), (0, chain.hp - h), (0, chain.wp - w)), mode="edge")
    x_bands = haar.forward(xp, chain.levels)
    out, pred, prior = [], None, None
    for i in range(1, T + 1):
        prior = chain.prior(i, pred)
        k = entropy.quantise(chain.elements(i, xp, x_bands), prior)
        out.append(entropy.step_ideal_bits(k, prior))
        chain.apply(i, entropy.reconstruct(k, prior), np.arange(k.size))
        pred = chain.predict(i) if i < T else None
    levels = pixels.transpose(2, 0, 1).ravel().astype(np.int64)
    q = codec.model.schedule.pixel_quant
    out.append(entropy.levels_ideal_bits(levels, chain.pixel_tilde, prior.loc, prior.scale, q))
    return out
