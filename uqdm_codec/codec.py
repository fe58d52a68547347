"""Encoding and decoding: the UQDM chain driven layer by layer.

`Codec` holds a model on a device. encode() runs the chain forward and records, for every step,
the ANS-coded symbols plus two check values: a CRC of the symbols and a CRC of the image the decoder
will show after that step. decode() replays the chain from the same shared randomness and verifies
both, so a decoder whose arithmetic drifted from the encoder's stops with SyncError instead of
showing a wrong image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import container, entropy, haar, randomness
from .container import KIND_LOSSLESS, KIND_STEP, Chunk, Header, Layer
from .errors import FormatError, ModelError, SyncError, UqdmError
from .inference import DEFAULT_TILE, Prediction, PriorNetwork
from .model import UQDM, fingerprint, load_model, resolve_model_path

Progress = Callable[[int, int], None]


@dataclass
class DecodedImage:
    pixels: np.ndarray  # (H, W, 3) uint8
    steps: int  # diffusion steps applied
    lossless: bool  # True when the lossless layer was decoded: pixels are the original
    warnings: list[str] = field(default_factory=list)

    def to_pil(self):
        from PIL import Image

        return Image.fromarray(self.pixels, "RGB")


def _check(arr: np.ndarray) -> int:
    return container.crc32(np.ascontiguousarray(arr).tobytes())


def _symbols_check(k: np.ndarray) -> int:
    return _check(k.astype("<i4"))


def _to_image(x_data: np.ndarray, h: int, w: int) -> np.ndarray:
    """(3, Hp, Wp) data units -> (H, W, 3) uint8."""
    return np.ascontiguousarray(entropy.data_to_pixels(x_data[:, :h, :w]).transpose(1, 2, 0))


class _Chain:
    """The state both sides keep: the latent z in Haar bands, for each coefficient the last step
    that coded it, and which coefficients the current step codes."""

    def __init__(self, net: PriorNetwork, height: int, width: int, seed: int, tile: int):
        self.net = net
        self.tile = tile
        self.sched = net.model.schedule
        self.levels = net.levels
        m = net.multiple
        self.h, self.w = height, width
        self.hp, self.wp = -(-height // m) * m, -(-width // m) * m
        self.seed = seed
        self.z = haar.forward(randomness.initial_latent(seed, (3, self.hp, self.wp)), self.levels)
        self.state = [np.zeros(b.shape, dtype=np.int64) for b in self.z]
        self.tables = {k: np.array(v) for k, v in self.sched.jump_table().items()}
        self.masks: list[np.ndarray] = []
        self.last_x_tilde: np.ndarray | None = None  # the pixel step's x_tilde (real pixels)

    def predict(self, step: int) -> Prediction:
        return self.net.predict(self.z, self.state, step, self.tile)

    def prior(self, i: int, pred: Prediction | None) -> entropy.StepPrior:
        """The entropy model of step i's coded elements, given the prediction from state i-1
        (None for step 1). Haar steps code the coefficients with scale >= threshold * q."""
        if self.sched.is_pixel_step(i):
            loc = pred.display[:, : self.h, : self.w].ravel()
            scale = pred.pixel_scale[:, : self.h, : self.w].ravel()
            q = np.full(loc.size, self.sched.pixel_quant)
            bound = np.ones(loc.size)
        else:
            if pred is None:
                locs, scales = self.net.first_prior([b.shape for b in self.z])
            else:
                locs, scales = pred.locs, pred.scales
            parts = {"loc": [], "scale": [], "q": [], "bound": []}
            self.masks = []
            for b, st in enumerate(self.state):
                q = self.tables["quant_step"][st, i]
                mask = scales[b] >= self.sched.threshold * q
                bd = haar.band_bound(b, self.levels)
                self.masks.append(mask)
                parts["loc"].append(np.clip(locs[b][mask], -bd, bd))
                parts["scale"].append(scales[b][mask])
                parts["q"].append(q[mask])
                parts["bound"].append(np.full(int(mask.sum()), bd))
            loc, scale, q, bound = (np.concatenate(parts[k]) for k in ("loc", "scale", "q", "bound"))
        u = randomness.dither(self.seed, i, (loc.size,))
        return entropy.StepPrior(loc, scale, u, q, bound)

    def elements(self, i: int, x_pixels: np.ndarray, x_bands: list[np.ndarray]) -> np.ndarray:
        """The encoder's values of step i's coded elements (same order as prior())."""
        if self.sched.is_pixel_step(i):
            return x_pixels[:, : self.h, : self.w].ravel()
        return np.concatenate([xb[mask] for xb, mask in zip(x_bands, self.masks)])

    def apply(self, i: int, x_tilde: np.ndarray) -> None:
        """Move to state i given the coded elements' reconstructed x_tilde."""
        if self.sched.is_pixel_step(i):
            self.last_x_tilde = x_tilde  # the last step: z is not needed any more
            return
        pos = 0
        for b, mask in enumerate(self.masks):
            n = int(mask.sum())
            st = self.state[b][mask]
            self.z[b][mask] = (
                self.tables["coef_z"][st, i] * self.z[b][mask]
                + self.tables["coef_x"][st, i] * x_tilde[pos : pos + n]
            )
            self.state[b][mask] = i
            pos += n

    def display(self, i: int, pred_i: Prediction | None, last_prior: entropy.StepPrior | None) -> np.ndarray:
        """The image shown after step i (uint8, H x W x 3)."""
        if i == 0:
            return _to_image(self.net.blank_display((self.hp, self.wp)), self.h, self.w)
        if i == self.sched.num_steps:
            q = self.sched.pixel_quant
            mean = entropy.posterior_mean(self.last_x_tilde, last_prior.loc, last_prior.scale, q)
            return _to_image(mean.reshape(3, self.h, self.w), self.h, self.w)
        return _to_image(pred_i.display, self.h, self.w)


class Codec:
    """A model on a device, ready to encode and decode. `tile` is the network tile size written
    into new files (decoding always uses the file's own)."""

    def __init__(self, model: UQDM | str | Path | None = None, device=None, tile: int = DEFAULT_TILE):
        if not isinstance(model, UQDM):
            model = load_model(model)
        self.model = model
        self.net = PriorNetwork(model, device)
        self.tile = tile
        self.fingerprint = fingerprint(model)

    @property
    def num_steps(self) -> int:
        return self.model.schedule.num_steps

    # ------------------------------------------------------------------ encode

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
        layers = []
        pred = None
        prior = None
        for i in range(1, T + 1):
            prior = chain.prior(i, pred)
            k = entropy.quantise(chain.elements(i, xp, x_bands), prior)
            payload = entropy.encode_step(k, prior)
            chain.apply(i, entropy.reconstruct(k, prior))
            pred = chain.predict(i) if i < T else None
            check = _check(chain.display(i, pred, prior))
            layers.append(Layer(KIND_STEP, i, check, [Chunk(payload, _symbols_check(k))]))
            if progress:
                progress(i, T + 1)
        levels = pixels.transpose(2, 0, 1).ravel().astype(np.int64)
        q = self.model.schedule.pixel_quant
        payload = entropy.encode_levels(levels, chain.last_x_tilde, prior.loc, prior.scale, q)
        layers.append(Layer(KIND_LOSSLESS, T + 1, _check(pixels), [Chunk(payload, _symbols_check(levels))]))
        if progress:
            progress(T + 1, T + 1)
        return header.to_bytes() + b"".join(layer.to_bytes() for layer in layers)

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

    def iter_decode(
        self, data: bytes, steps: int | None = None, progress: Progress | None = None
    ) -> Iterator[DecodedImage]:
        """Decode layer by layer, yielding the image shown before any step (steps=0), then after
        every decoded step, then the exact image if the lossless layer is decoded. Stops after
        `steps` diffusion steps if given, else after the last complete layer."""
        parsed = container.parse(data)
        hd = parsed.header
        self.check_header(hd)
        T = self.num_steps
        have = min(len(parsed.layers), T)
        if steps is None:
            target, lossless = have, len(parsed.layers) == T + 1
        else:
            if not 0 <= steps <= T:
                raise UqdmError(f"steps must be between 0 and {T}")
            if steps > have:
                raise UqdmError(f"the file holds {have} complete steps; cannot decode {steps}")
            target, lossless = steps, False
        total = target + int(lossless)
        warnings = list(parsed.warnings)
        chain = _Chain(self.net, hd.height, hd.width, hd.seed, hd.tile)
        yield DecodedImage(chain.display(0, None, None), 0, False, warnings)
        pred, prior = None, None
        for i in range(1, target + 1):
            layer = parsed.layers[i - 1]
            prior = chain.prior(i, pred)
            k = _decode_checked(entropy.decode_step, i, layer.chunks[0], prior)
            chain.apply(i, entropy.reconstruct(k, prior))
            pred = chain.predict(i) if i < T else None
            shown = chain.display(i, pred, prior)
            if _check(shown) != layer.display_check:
                raise SyncError(_sync_message(i))
            if progress:
                progress(i, total)
            yield DecodedImage(shown, i, False, warnings)
        if lossless:
            layer = parsed.layers[T]
            q = self.model.schedule.pixel_quant
            chunk = layer.chunks[0]
            levels = _decode_checked(
                entropy.decode_levels, T + 1, chunk, chain.last_x_tilde, prior.loc, prior.scale, q
            )
            pixels = levels.reshape(3, hd.height, hd.width).transpose(1, 2, 0).astype(np.uint8)
            pixels = np.ascontiguousarray(pixels)
            if _check(pixels) != layer.display_check:
                raise SyncError(_sync_message(T + 1))
            if progress:
                progress(total, total)
            yield DecodedImage(pixels, T, True, warnings)

    def decode(self, data: bytes, steps: int | None = None, progress: Progress | None = None) -> DecodedImage:
        """The image after `steps` diffusion steps (default: everything the file holds)."""
        *_, last = self.iter_decode(data, steps, progress)
        return last


def _decode_checked(fn, layer: int, chunk: Chunk, *args) -> np.ndarray:
    """Entropy-decode a chunk whose bytes passed their CRC: any inconsistency now means the
    decoder's probabilities differ from the encoder's."""
    try:
        symbols = fn(chunk.payload, *args)
    except FormatError:
        raise SyncError(_sync_message(layer)) from None
    if _symbols_check(symbols) != chunk.symbol_check:
        raise SyncError(_sync_message(layer))
    return symbols


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


def bits_per_pixel(nbytes: int, header: Header) -> float:
    return 8.0 * nbytes / (header.width * header.height)


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
        chain.apply(i, entropy.reconstruct(k, prior))
        pred = chain.predict(i) if i < T else None
    levels = pixels.transpose(2, 0, 1).ravel().astype(np.int64)
    out.append(
        entropy.levels_ideal_bits(
            levels, chain.last_x_tilde, prior.loc, prior.scale, codec.model.schedule.pixel_quant
        )
    )
    return out
