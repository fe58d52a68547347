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
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import (
    colour,
    colour_profile,
    container,
    display_filter,
    ensemble,
    entropy,
    files,
    haar,
    lossless_context,
    lossless_tail,
    photo_metadata,
    quality,
    randomness,
    sampling,
)
from .container import (
    KIND_LOSSLESS,
    KIND_STEP,
    KIND_TAIL,
    NETWORK,
    PARTITION_IMPORTANCE,
    PARTITION_NATURAL,
    SHOW,
    Chunk,
    Header,
    Layer,
)
from .display_filter import DisplayFilter
from .errors import (
    FormatError,
    ModelError,
    SyncError,
    UqdmError,
    check_callable,
    check_flag,
    is_whole,
    option,
)
from .exactmodel import ExactModel, from_float, load_codec_model
from .inference import DEFAULT_TILE, Prediction, PriorNetwork, bands_image, release_memory
from .model import UQDM, retired_model_path, shipped_model_path
from .rdoq import choose as rdoq_choose

Progress = Callable[[int, int], None]
DEFAULT_REGION = 1024  # longest side coded whole; larger images are tiled (FORMAT.md 1.1, README)


TAIL_DEFAULT, TAIL_NAMES = lossless_tail.TAIL_DEFAULT, lossless_tail.TAIL_NAMES  # Codec.encode's `tail`


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
    tail: bool = False  # the layer is a lossless tail (FORMAT.md 6.6): `chunks` of its passes decoded
    icc_profile: bytes | None = None  # the file's colour profile (FORMAT.md 1.2), for whoever shows it
    alpha: np.ndarray | None = None  # (H, W) uint8: the file's alpha channel (FORMAT.md 1.2), exact
    exif: bytes | None = None  # the photo's EXIF block (TIFF-structured, FORMAT.md 1.2)
    xmp: bytes | None = None  # the photo's XMP packet (FORMAT.md 1.2)
    gray: bool = False  # a grayscale image's file (FORMAT.md 1.2): R = G = B in `pixels`, one plane shown

    @property
    def mode(self) -> str:
        """The Pillow mode to_pil gives (container.image_mode)."""
        return container.image_mode(self.gray, self.alpha is not None)

    @property
    def part_of_step(self) -> int | None:
        """The diffusion step this image is part-way into (a prefix that ends inside its layer, as
        encode --psnr and truncate --bpp leave files), else None."""
        inside = not self.complete and not self.tail and not self.lossless and self.layer > self.steps
        return self.layer if inside else None

    def to_pil(self):
        """A PIL image: RGB, or L for a grayscale image's file, with an alpha channel RGBA or LA
        (self.mode); info["icc_profile"], info["exif"] (with Pillow's "Exif\\0\\0" prefix) and
        info["xmp"] hold the file's colour profile and metadata where it has them."""
        from .image_io import pil_image

        image = pil_image(self.pixels, self.alpha, self.gray)
        image.info.update(photo_metadata.pil_info(self.icc_profile, self.exif, self.xmp))
        return image

    def extras(self) -> dict:
        """The colour profile, alpha channel and metadata, as image_io.save_image takes them."""
        return {
            "icc_profile": self.icc_profile,
            "alpha": self.alpha,
            "exif": self.exif,
            "xmp": self.xmp,
            "gray": self.gray,
        }


def gray_view(pixels: np.ndarray) -> np.ndarray:
    """The (H, W, 3) image a grayscale image's file shows for (H, W, 3) `pixels` (FORMAT.md 1.2):
    each pixel's R, G and B replaced by their mean, rounded ((R + G + B + 1) // 3; a third never
    ties). The exact image's R = G = B are kept; the chain's other images gain a little."""
    mean = (pixels.astype(np.uint16).sum(axis=2, dtype=np.uint16) + 1) // 3
    return np.repeat(mean.astype(np.uint8)[:, :, None], 3, axis=2)


def _with_header(image: DecodedImage, header: Header) -> DecodedImage:
    """`image` with what its file's header adds to each of its images (FORMAT.md 1.2): colour
    profile, alpha channel, EXIF and XMP, a grayscale image's one plane (gray_view), and a warning
    if the header held extensions this decoder does not know (skipped)."""
    warnings = list(image.warnings)
    if header.unknown_extensions:
        warnings.insert(0, container.unknown_extensions_note(header.unknown_extensions))
    if header.gray:
        image = replace(
            image,
            pixels=gray_view(image.pixels),
            shown=None if image.shown is None else gray_view(image.shown),
            gray=True,
        )
    return replace(
        image,
        icc_profile=header.icc_profile,
        alpha=header.alpha_plane(),
        exif=header.exif,
        xmp=header.xmp,
        warnings=warnings,
    )


@dataclass(frozen=True)
class ChunkPolicy:
    """How the encoder cuts layers: a chunk holds about `growth` times the bytes before it, but at
    least `min_bytes` (`truncate` lands inside chunks, so growth sets how often a streaming decoder
    gets a new image and how much framing the file pays, not how close a cut lands). The first layer
    stays whole (it is small, and every byte of it counts). Each later layer ends in a tail as
    large as the bytes that chunking added to the file so far: a prefix as long as the file would
    be up to this step without sub-step chunks then holds the whole step but its tail, and shows
    the network's image of that (FORMAT.md 6.3), which is close to the step's own. A tail larger
    than a chunk is cut like the rest (into at most `max_tail_pieces`), so it leaves no wide gap
    between cut points either: on small images the framing so far is more than 3 % of the file.

    `min_bytes` is for an image of `reference_pixels` (Kodak's 768x512); for_image() scales it with
    the pixel count, down to `min_floor`. By default the floor is min_bytes itself: `truncate` cuts
    inside chunks (FORMAT.md 2.1), so small chunks no longer buy closer landings, while each
    chunk's framing (about `chunk_overhead` bytes, paid again in every later step's tail) costs the
    step points (README, "Progressive decoding"). A lower floor gives a streaming decoder more updates on
    a small image.

    `network_every` n > 0: at every n-th chunk of a Haar layer the encoder also makes the network's
    image (FORMAT.md 7) and flags `NETWORK` where it beats the per-coefficient posterior means, at
    one network pass per such chunk in the encoder and one in a decoder that stops there
    (docs/MODEL.md section 23); 0 offers it only before the tail, as uqdm 0.19 did.

    `choose_at_tail`: at the tail's head too, keep the closer of the network's image and the
    posterior means (uqdm 0.19 and 0.20 always showed the network's there; section 24)."""

    growth: float = 0.12
    min_bytes: int = 384
    min_floor: int = 384
    reference_pixels: int = 768 * 512
    max_chunks: int = 255
    chunk_overhead: float = 12.0  # first guess at the bytes each extra chunk adds (framing, coder flush)
    layer_overhead: float = 12.0  # a layer header but its chunk descriptors (which chunk_overhead holds)
    descriptor_bytes: float = 3.0  # a chunk's descriptor: in the layer header, before the first chunk
    max_tail_pieces: int = 8
    tail: bool = True
    network_every: int = 1
    choose_at_tail: bool = True

    def for_image(self, width: int, height: int) -> ChunkPolicy:
        """This policy with min_bytes in proportion to the image's pixels (never above min_bytes,
        never below min_floor unless min_bytes is)."""
        scaled = round(self.min_bytes * width * height / self.reference_pixels)
        return replace(self, min_bytes=min(self.min_bytes, max(self.min_floor, scaled)))

    def _grow(self, cum: np.ndarray, at: float, first_extra: float = 0.0) -> list[int]:
        """Chunk ends over cumulative content estimates `cum` (bytes) for chunks starting at file
        position `at`, the first one also carrying `first_extra` bytes (the layer header): each
        chunk, framing included, is at most `growth` times the file before it, or holds min_bytes."""
        n = cum.size
        ends, start_bytes, pos, here, extra = [], 0.0, 0, float(at), first_extra
        while pos < n:
            target = max(self.min_bytes, self.growth * here - self.chunk_overhead - extra)
            end = int(np.searchsorted(cum, start_bytes + target)) + 1
            end = min(max(end, pos + 1), n)
            ends.append(end)
            here += float(cum[end - 1]) - start_bytes + self.chunk_overhead + extra
            start_bytes, pos, extra = float(cum[end - 1]), end, 0.0
        return ends

    def split(
        self, element_bits: np.ndarray, bytes_before: int, tail_bytes: float = 0.0, pieces: bool = True
    ) -> tuple[list[int], int]:
        """End positions (in elements) of the chunks of a layer, from per-element bit estimates,
        ending in a tail of about `tail_bytes` (none if 0; at least one element before it), cut
        like the rest if `pieces` else one chunk; and the number of chunks before the tail (all of
        them when there is none)."""
        return self.split_cum(np.cumsum(element_bits) / 8.0, bytes_before, tail_bytes, pieces)

    def split_cum(
        self, cum: np.ndarray, bytes_before: int, tail_bytes: float = 0.0, pieces: bool = True
    ) -> tuple[list[int], int]:
        """split() from the cumulative bytes cumsum(element_bits) / 8 (the encoder makes it once)."""
        n = cum.size
        if n == 0:
            return [0], 1
        head = n
        if tail_bytes > 0 and n >= 2:
            # elements with at least tail_bytes after them; cum - cum[-1] is exactly -(bytes after)
            head = int(np.searchsorted(cum - cum[-1], -tail_bytes, side="right"))
            head = min(max(head, 1), n - 1)
        count = 1
        for _ in range(2):  # the header before the first chunk holds every chunk's descriptor
            header = self.layer_overhead + self.descriptor_bytes * (count - 1)
            ends = self._grow(cum[:head], bytes_before, header)
            limit, tail = self.max_chunks, []
            if head < n:
                at = bytes_before + header + cum[head - 1] + self.chunk_overhead * len(ends)
                rest = cum[head:] - cum[head - 1]
                # at most max_tail_pieces: each piece's framing enlarges every later tail
                coarse = replace(self, min_bytes=max(self.min_bytes, int(rest[-1] / self.max_tail_pieces)))
                tail = [head + e for e in coarse._grow(rest, at)] if pieces else [n]
                limit = max(1, limit - len(tail))
            if len(ends) > limit:  # merge into at most `limit` near-equal groups
                idx = np.linspace(0, len(ends), limit + 1).astype(int)[1:]
                ends = [ends[k - 1] for k in idx]
            if len(ends) > 1 and ends[-1] - ends[-2] < 16 and not tail:
                ends.pop(-2)  # no sliver at the end
            count = len(ends) + len(tail)
        return ends + tail, len(ends)


def _check(arr: np.ndarray) -> int:
    return container.crc32(np.ascontiguousarray(arr).tobytes())


def _to_image(x_data: np.ndarray, h: int, w: int) -> np.ndarray:
    """(3, >=H, >=W) data units -> (H, W, 3) uint8, a strip of rows at a time (no whole-image
    float64 temporaries)."""
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, (1 << 18) // max(w, 1))
    for r in range(0, h, rows):
        out[r : r + rows] = entropy.data_to_pixels(x_data[:, r : min(r + rows, h), :w]).transpose(1, 2, 0)
    return out


def importance_order(
    prior: entropy.StepPrior | entropy.CodedPrior, colours: np.ndarray, places: np.ndarray
) -> np.ndarray:
    """Partition 1 (FORMAT.md 6.3): places by decreasing largest prior scale / quantiser step of
    their elements (ties: place order), a place's elements in colour order, so the most uncertain
    come first and an element's colour partners before it; int32 positions (half the memory of
    int64) when they fit."""
    n = len(prior)
    key = np.empty(n)
    for sl in entropy.slices(n):
        p = prior.part(sl)
        np.divide(p.scale, p.quant_step, out=key[sl])
    ids, place = np.unique(places, return_inverse=True)
    best = np.full(ids.size, -np.inf)
    np.maximum.at(best, place, key)
    del key
    order = np.lexsort((colours, place, -best[place]))
    return order.astype(np.int32) if n < 2**31 else order


def natural_order(colours: np.ndarray, places: np.ndarray) -> np.ndarray:
    """Partition 0: places in natural order, a place's elements in colour order (FORMAT.md 6.3)."""
    order = np.lexsort((colours, places))
    return order.astype(np.int32) if colours.size < 2**31 else order


def colour_groups(colours: np.ndarray, part: np.ndarray) -> list[np.ndarray]:
    """Positions within a chunk (its elements `part`) of its colour-0, -1 and -2 elements, in the
    chunk's order: the groups its symbols are coded in (FORMAT.md 6.3)."""
    col = colours[part]
    return [np.flatnonzero(col == c) for c in range(3)]


INTERVAL_MARGIN = 2.0**-30  # widens every known interval: float64 rounding never puts x outside


def _round_down(v: np.ndarray) -> np.ndarray:
    """float64 -> the largest float32 <= v (IEEE conversion, then one step down if it rounded up)."""
    f = v.astype(np.float32)
    return np.where(f > v, np.nextafter(f, np.float32(-np.inf)), f)


def _round_up(v: np.ndarray) -> np.ndarray:
    """float64 -> the smallest float32 >= v."""
    f = v.astype(np.float32)
    return np.where(f < v, np.nextafter(f, np.float32(np.inf)), f)


def _narrow(k: np.ndarray) -> np.ndarray:
    """Symbols as int32 when they fit (they always do in practice: |k| <= 2 B / q + 1)."""
    if k.size and (int(k.min()) < -(2**31) or int(k.max()) >= 2**31):
        return k
    return k.astype(np.int32)


def _data_bands(pixels: np.ndarray, hp: int, wp: int, levels: int) -> list[np.ndarray]:
    """The encoder's image in Haar bands, padded to hp x wp by repeating edges, one colour at a time.
    Stored as float32, which is exact: a level-l coefficient is an integer below 2^(8+2l) times
    2^-(8+l), at most 16 significant bits for 4 levels (checked), so converting back gives the
    float64 values bit for bit."""
    h, w = pixels.shape[:2]
    bands: list[np.ndarray] = []
    for c in range(pixels.shape[2]):
        x = haar.extend(entropy.pixels_to_data(pixels[:, :, c]), hp, wp)
        parts = haar.forward(x[None], levels)
        if not bands:
            bands = [np.empty((*p.shape[:-3], pixels.shape[2], *p.shape[-2:]), np.float32) for p in parts]
        for dst, part in zip(bands, parts):
            dst[..., c : c + 1, :, :] = part
            if not np.array_equal(dst[..., c : c + 1, :, :], part):
                raise AssertionError("Haar coefficients are not exact in float32")
    return bands


class _Chain:
    """What both sides know: the latent z in Haar bands, for each coefficient the last step that
    coded it and the interval its value is known to lie in, the current step's coded elements, and
    the pixel step's x_tilde.

    Memory: z is float64, states uint8, known intervals 2 x float32 per coefficient; a Haar step's
    coded elements cost 31 bytes each (location, scale and dither in float64, flat index int32,
    band and state codes, interval in float32; entropy.CodedPrior) and the partial display's
    estimates 8 bytes per coefficient. Whole-band passes run in blocks."""

    BLOCK = 1 << 20  # coefficients per block of a whole-band pass

    def __init__(
        self,
        net: PriorNetwork,
        height: int,
        width: int,
        seed: int,
        tile: int,
        mirrors: int = 1,
        intervals: bool = True,
    ):
        self.net = net
        self.tile = tile
        self.mirrors = mirrors  # network passes averaged per prediction (ensemble.py; the header's)
        self.sched = net.model.schedule
        self.levels = net.levels
        m = net.multiple
        self.h, self.w = height, width
        self.hp, self.wp = -(-height // m) * m, -(-width // m) * m
        self.seed = seed
        self._z: list[np.ndarray] | None = None  # allocated when the first step needs it
        self._state: list[np.ndarray] | None = None
        # per band, the interval each coefficient is known to lie in (FORMAT.md 5.5): float32, the
        # lower ends rounded down and the upper ends up; allocated when first needed
        self.intervals = intervals  # False: a version 7 file's chain, priors truncated to [-B, B] only
        self._lower: list[np.ndarray] | None = None
        self._upper: list[np.ndarray] | None = None
        self._released = False  # z and states freed after the last Haar step
        self.tables = {k: np.array(v) for k, v in self.sched.jump_table().items()}
        self.coded_band = np.zeros(0, np.int8)  # band of each coded element of the current step
        self.coded_flat = np.zeros(0, np.int32)  # its flat index in that band
        self._band_start = np.zeros(1, np.int64)  # coded elements of band b: _band_start[b:b+2]
        self.pixel_tilde = np.zeros(0)  # x_tilde of the pixel step (real pixels, natural order)
        self.pixel_shown = np.zeros(0, np.uint8)  # what the decoder shows per pixel value (levels)
        self.lossless = np.zeros(0, np.uint8)  # decoded pixel levels of the lossless layer
        self.lossless_known = np.zeros(0, bool)  # which of them have arrived
        self.estimate: list[np.ndarray] = []  # per band: E[x] after part of a Haar step
        self.received = np.zeros(0, bool)  # which of the current step's elements arrived
        # colour context of the current step (colour.py): each element's colour and place, the x~
        # of the Haar step's elements (the pixel step keeps pixel_tilde), the layer's parameters
        self.colours = np.zeros(0, np.uint8)
        self.places = np.zeros(0, np.int64)
        self.tilde = np.zeros(0)
        self.context: colour.Context = ()
        self._pairs: np.ndarray | None = None

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
            if self._released:
                raise RuntimeError("the Haar latent is no longer kept after the last Haar step")
            self._z = haar.forward(randomness.initial_latent(self.seed, (3, self.hp, self.wp)), self.levels)
        return self._z

    @property
    def state(self) -> list[np.ndarray]:
        """Per band, each coefficient's state: the last step that coded it (uint8, 0..H)."""
        if self._state is None:
            self._state = [np.zeros(b.shape, dtype=np.uint8) for b in self.z]
        return self._state

    def known(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per band, the lower and upper ends of each coefficient's known interval (float32)."""
        if self._lower is None:
            bounds = [haar.band_bound(b, self.levels) for b in range(len(self.z))]
            self._lower = [np.full(z.shape, -bd, np.float32) for z, bd in zip(self.z, bounds)]
            self._upper = [np.full(z.shape, bd, np.float32) for z, bd in zip(self.z, bounds)]
        return self._lower, self._upper

    def predict(self, step: int) -> Prediction:
        """The network's prediction from the current state; with intervals, its locations clipped
        to the intervals the coefficients are known to lie in (which can only bring them closer)."""
        pred = self.net.predict(self.z, self.state, step, self.tile, self.mirrors)
        if self.intervals:
            lower, upper = self.known()
            for loc, lo, hi in zip(pred.locs, lower, upper):
                flat, lo, hi = loc.reshape(-1), lo.reshape(-1), hi.reshape(-1)
                for s0 in range(0, flat.size, self.BLOCK):
                    s1 = s0 + self.BLOCK
                    np.clip(flat[s0:s1], lo[s0:s1], hi[s0:s1], out=flat[s0:s1])
        return pred

    def finish_step(self) -> None:
        """A Haar step is complete: its partial-display estimates are no longer needed."""
        self.estimate = []

    def tail_intervals(self) -> lossless_tail.Intervals:
        """What a tail of form 10 or later after the current step is told: every band's known
        intervals in levels (FORMAT.md 6.6.4-6.6.5), the float32 ends times 128 (exact), kept as
        float32. The tail reads what its form reads (Intervals.for_form: nothing where the finest
        band bounds nothing, as after step 3)."""
        lower, upper = self.known()
        level = np.float32(128)
        return lossless_tail.Intervals(
            lower[-1] * level,
            upper[-1] * level,
            [band * level for band in lower[:-1]],
            [band * level for band in upper[:-1]],
        )

    def display_imputed(self, i: int, prior: entropy.CodedPrior, missing: np.ndarray) -> np.ndarray:
        """The network's image at state i when only part of Haar step i arrived: the `missing`
        elements (natural-order positions) are taken to state i as if their x_tilde were their prior
        location. The network then sees the state map it was trained on (a mix of states does not
        occur in training and gives much worse images), with little-informed values where data is
        missing. Only the image is kept, not the prediction."""
        z = [b.copy() for b in self.z]
        state = [b.copy() for b in self.state]
        self._move(z, state, i, missing, prior.loc[missing])
        known = self.known() if self.intervals else None  # narrowed for the received elements only
        return self.net.display_image(z, state, i, self.tile, self.h, self.w, self.mirrors, known)

    def prior(self, i: int, pred: Prediction | None, from_display: int = 0) -> entropy.CodedPrior:
        """The entropy model of step i's coded elements in natural order, given the prediction from
        state i-1 (None for step 1). Haar steps code the coefficients with scale >= threshold * q;
        the pixel step codes every real pixel. Band b's locations are the Haar coefficients of the
        shown image after step i-1 (its display filter applied) where bit b of `from_display` is
        set, else the network's (FORMAT.md 6.5); the scales are the network's either way."""
        if self.sched.is_pixel_step(i):
            loc = pred.display_crop(self.h, self.w).reshape(-1).copy()  # the colour context moves it
            scale = pred.pixel_scale_crop(self.h, self.w).reshape(-1)
            self.pixel_tilde = np.array(loc)
            self.pixel_shown = entropy.data_to_pixels(loc)  # unreceived pixels show the prior location
            self.lossless = np.zeros(loc.size, np.uint8)
            self.lossless_known = np.zeros(loc.size, bool)
            self._z = self._state = self._lower = self._upper = None  # on in the pixel basis
            self._released, self.estimate = True, []
            zeros = np.zeros(loc.size, np.uint8)
            u = randomness.dither(self.seed, i, (loc.size,))
            self.received = np.zeros(loc.size, bool)
            n = loc.size
            self._start_context(np.repeat(np.arange(3, dtype=np.uint8), n // 3), colour.pixel_places(n))
            return entropy.CodedPrior(
                loc, scale, u, zeros, np.array([self.sched.pixel_quant]), zeros, np.array([1.0])
            )
        if pred is None:
            first_locs, first_scales = self.net.first_prior([b.shape for b in self.z])
        q_table = np.ascontiguousarray(self.tables["quant_step"][:, i])  # by state before the step
        threshold = self.sched.threshold
        parts: dict[str, list] = {"loc": [], "scale": [], "code": [], "flat": [], "lower": [], "upper": []}
        counts, self.estimate = [], []
        lower, upper = self.known() if self.intervals else (None, None)
        for b, st_band in enumerate(self.state):
            bd = haar.band_bound(b, self.levels)
            if pred is None:
                locs = first_locs[b]
            elif from_display >> b & 1:
                locs = pred.display_bands(self.h, self.w)[b]
            else:
                locs = pred.locs[b]
            if self.intervals:  # the coded elements' locations too
                self.estimate.append(np.clip(locs, lower[b], upper[b]))
            else:
                self.estimate.append(np.clip(locs, -bd, bd))
            est, st = self.estimate[-1].reshape(-1), st_band.reshape(-1)
            count = 0
            for s0 in range(0, st.size, self.BLOCK):
                s1 = min(s0 + self.BLOCK, st.size)
                if pred is None:
                    scale = first_scales[b].reshape(-1)[s0:s1]
                else:
                    scale = pred.band_scale(b, s0, s1)
                codes = st[s0:s1]
                flat = np.flatnonzero(scale >= threshold * q_table[codes])
                parts["flat"].append((flat + s0).astype(np.int32))
                parts["loc"].append(est[s0:s1][flat])
                parts["scale"].append(scale[flat])
                parts["code"].append(codes[flat])
                if self.intervals:
                    parts["lower"].append(lower[b].reshape(-1)[s0:s1][flat])
                    parts["upper"].append(upper[b].reshape(-1)[s0:s1][flat])
                count += flat.size
            counts.append(count)
        if pred is None:
            del first_locs, first_scales
        self.coded_flat = np.concatenate(parts.pop("flat"))
        self.coded_band = np.repeat(np.arange(len(counts), dtype=np.int8), counts)
        self._band_start = np.concatenate([[0], np.cumsum(counts)])
        loc = np.concatenate(parts.pop("loc"))
        scale = np.concatenate(parts.pop("scale"))
        codes = np.concatenate(parts.pop("code"))
        known_lower = np.concatenate(parts.pop("lower")) if self.intervals else None
        known_upper = np.concatenate(parts.pop("upper")) if self.intervals else None
        bounds = np.array([haar.band_bound(b, self.levels) for b in range(len(counts))])
        u = randomness.dither(self.seed, i, (loc.size,))
        self.received = np.zeros(loc.size, bool)
        self.tilde = np.zeros(loc.size)
        colours = np.empty(loc.size, np.uint8)
        for b, size in enumerate(self._plane_sizes()):
            s0, s1 = self._band_start[b], self._band_start[b + 1]
            colours[s0:s1] = (self.coded_flat[s0:s1] // size) % 3
        places = colour.places(colours, self.coded_band, self.coded_flat, self._plane_sizes())
        self._start_context(colours, places)
        return entropy.CodedPrior(
            loc, scale, u, codes, q_table, self.coded_band, bounds, known_lower, known_upper
        )

    def _plane_sizes(self) -> list[int]:
        """Rows x columns of each Haar band (a band array is (3 colours, rows, columns), or
        (3 orientations, 3 colours, rows, columns) for a detail band)."""
        return [int(b.shape[-1] * b.shape[-2]) for b in self.state]

    # ------------------------------------------------------------------ colour context

    def _start_context(self, colours: np.ndarray, places: np.ndarray) -> None:
        self.colours, self.places = colours, places
        self.context, self._pairs = (), None

    @property
    def pairs(self) -> np.ndarray:
        """colour.partners() of the current step's elements, made when first needed."""
        if self._pairs is None:
            if self._released:  # the pixel step: every pixel, (colour, row, column) order
                self._pairs = colour.pixel_partners(self.colours.size)
            else:
                self._pairs = colour.partners(
                    self.colours, self.coded_band, self.coded_flat, self._plane_sizes()
                )
        return self._pairs

    def set_context(self, ctx: colour.Context) -> None:
        """The layer's colour context (from its header, or the encoder's fit)."""
        colour.check(ctx, self._context_bands())
        self.context = ctx

    def _context_bands(self) -> int:
        return 1 if self._released else self.levels + 1

    def _element_bands(self) -> np.ndarray:
        """Each element's band for the colour context (the pixel step has one)."""
        return np.zeros(self.colours.size, np.int8) if self._released else self.coded_band

    def condition(self, c: int, prior: entropy.CodedPrior, at: np.ndarray) -> None:
        """Condition the colour-c elements `at` (positions) on their partners, which have been
        applied (FORMAT.md 6.4): just before a chunk's colour-c group is decoded."""
        tilde = self.pixel_tilde if self._released else self.tilde
        colour.condition(
            c,
            self.context,
            self.colours,
            self._element_bands(),
            self.pairs,
            tilde,
            prior.loc,
            prior.scale,
            at,
        )

    def coding_prior(
        self, prior: entropy.CodedPrior, x: np.ndarray, fit: bool = True
    ) -> tuple[colour.Context, entropy.CodedPrior]:
        """The encoder's side: the context it sends for this step and the prior every element is
        coded with, i.e. what `prior` becomes once the decoder has conditioned every colour
        (computed here at once, from the encoder's own x~). `prior` itself is left as it is."""
        return self.coding_values(prior, x, fit)[:2]

    def coding_values(
        self, prior: entropy.CodedPrior, x: np.ndarray, fit: bool = True, rdoq: float = 0.0
    ) -> tuple[colour.Context, entropy.CodedPrior, np.ndarray]:
        """coding_prior's (context, prior), and the values to quantise: x itself, or with `rdoq`
        > 0 the x~ rdoq.choose picks under each colour's conditioned prior."""
        band = self._element_bands()
        ctx = colour.fit(x, prior, self.colours, band, self.pairs, self._context_bands()) if fit else ()
        coded = replace(prior, loc=prior.loc.copy(), scale=prior.scale.copy())
        pick = None
        if rdoq > 0:

            def pick(now: np.ndarray) -> np.ndarray:  # under the priors as conditioned so far
                return rdoq_choose(x[now], coded.part(now), rdoq)

        if ctx:
            tilde = colour.condition_all(
                ctx,
                x,
                self.colours,
                band,
                self.pairs,
                coded.loc,
                coded.scale,
                coded.dither,
                coded.quant_step,
                choose=pick,
            )
        else:
            tilde = None if pick is None else pick(np.ones(x.size, bool))
        return ctx, coded, x if pick is None else tilde

    def elements(self, i: int, x_pixels: np.ndarray, x_bands: list[np.ndarray]) -> np.ndarray:
        """The encoder's values of step i's coded elements (natural order, as prior()), float64."""
        if self.sched.is_pixel_step(i):
            return x_pixels[:, : self.h, : self.w].ravel()
        out = np.empty(self.coded_flat.size)
        for b, band in enumerate(x_bands):
            s0, s1 = self._band_start[b], self._band_start[b + 1]
            out[s0:s1] = band.reshape(-1)[self.coded_flat[s0:s1]]
        return out

    def apply(self, i: int, x_tilde: np.ndarray, which: np.ndarray, shown: np.ndarray | None = None) -> None:
        """Take the received elements `which` (natural-order positions) of step i to state i;
        `shown` is their posterior mean, which the partial displays use."""
        self.received[which] = True
        if self.sched.is_pixel_step(i):
            self.pixel_tilde[which] = x_tilde
            if shown is not None:
                self.pixel_shown[which] = entropy.data_to_pixels(shown)  # kept as the level it shows
            return
        self.tilde[which] = x_tilde
        known = self.known() if self.intervals else None
        for b, sel, flat, st in self._move(self.z, self.state, i, which, x_tilde):
            if shown is not None:
                self.estimate[b].reshape(-1)[flat] = shown[sel]
            if known is not None:
                half = 0.5 * self.tables["quant_step"][st, i]
                lo, hi = known[0][b].reshape(-1), known[1][b].reshape(-1)
                lo[flat] = np.maximum(lo[flat], _round_down(x_tilde[sel] - half - INTERVAL_MARGIN))
                hi[flat] = np.minimum(hi[flat], _round_up(x_tilde[sel] + half + INTERVAL_MARGIN))

    def _move(self, z, state, i: int, which: np.ndarray, x_tilde: np.ndarray):
        """z <- coef_z z + coef_x x_tilde and state <- i for Haar step i's elements `which`
        (natural-order positions); returns (band, selection in `which`, flat indices, their states
        before the step) per band."""
        bands = self.coded_band[which]
        moved = []
        for b in np.unique(bands):
            sel = bands == b
            flat = self.coded_flat[which[sel]]
            zb, sb = z[b].reshape(-1), state[b].reshape(-1)
            st = sb[flat]
            zb[flat] = self.tables["coef_z"][st, i] * zb[flat] + self.tables["coef_x"][st, i] * x_tilde[sel]
            sb[flat] = i
            moved.append((b, sel, flat, st))
        return moved

    def apply_levels(self, levels: np.ndarray, which: np.ndarray) -> None:
        """Received pixel levels of the lossless layer (natural-order positions)."""
        self.lossless[which] = levels
        self.lossless_known[which] = True
        self.pixel_shown[which] = np.clip(levels, 0, 255)  # = data_to_pixels(pixels_to_data(levels))

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
            return self.display_imputed(i, prior, np.flatnonzero(~self.received))
        if i >= self.sched.num_steps:  # the pixel step and the lossless layer
            return self.pixel_display()
        return bands_image(self.estimate, self.levels, self.h, self.w)

    def pixel_display(self) -> np.ndarray:
        """After (part of) the pixel step: posterior mean where x_tilde arrived, else the prior
        location; after part of the lossless layer, the exact level where it arrived."""
        return np.ascontiguousarray(self.pixel_shown.reshape(3, self.h, self.w).transpose(1, 2, 0))

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

    def __init__(self, original: np.ndarray, first: np.ndarray, gray: bool = False):
        self.original = original  # uint8; differences are taken a strip of rows at a time
        self.gray = gray  # a grayscale image's file: the image judged is the one decoders show (gray_view)
        self.rows = max(1, (1 << 18) // max(original.shape[1], 1))
        self.best = self._sse(first)
        self.marks: list[int] | None = None  # the error on screen after each chunk of a layer

    def mark(self) -> None:
        """Record the error of the image on screen once a chunk's flags are set (quality.py)."""
        if self.marks is not None:
            self.marks.append(self.best)

    def _sse(self, image: np.ndarray) -> int:
        total = 0
        for r in range(0, image.shape[0], self.rows):
            strip = image[r : r + self.rows]
            if self.gray:
                strip = gray_view(strip)
            d = strip.astype(np.int32) - self.original[r : r + self.rows]
            total += int(np.einsum("ijk,ijk->", d, d, dtype=np.int64))
        return total

    def error(self, image: np.ndarray) -> int:
        """The image's squared error against the original."""
        return self._sse(image)

    def __call__(self, image: np.ndarray) -> bool:
        return self.beats(self._sse(image))

    def beats(self, err: int) -> bool:
        """Whether an image of squared error `err` beats the one on screen (it is shown if so)."""
        if err < self.best:
            self.best = err
            return True
        return False


def _check_side(name: str, side: object, most: int) -> None:
    """UqdmError unless `side` is a multiple of 16 from 16 to `most` (was a ValueError from the
    header writer, or a ZeroDivisionError, half-way through an encode)."""
    if not (is_whole(side) and 16 <= side <= most and side % 16 == 0):
        raise UqdmError(f"{name} must be a multiple of 16 from 16 to {most} pixels, not {side!r}")


class Codec:
    """A model on a device, ready to encode and decode. `tile` is the network's tile side on this
    machine: a memory knob only, since the exact network gives the same integers for any tiling."""

    def __init__(
        self,
        model: ExactModel | UQDM | str | Path | None = None,
        device=None,
        tile: int = DEFAULT_TILE,
        chunking: ChunkPolicy | None = ChunkPolicy(),
        region: int | None = DEFAULT_REGION,
        colour_context: bool = True,
        display_filters: bool = True,
        lossless_context: bool = True,
        intervals: bool = True,
    ):
        if isinstance(model, UQDM):
            model = from_float(model)
        elif not isinstance(model, ExactModel):
            model = load_codec_model(model)
        _check_side("tile", tile, 16 * 65535)  # the header holds tile / 16 in a u16
        if region is not None:
            _check_side("region", region, 65520)  # and a region's sides as u16 multiples of 16
        self.model = model
        self.net = PriorNetwork(model, device)
        self.tile = tile
        self.chunking = chunking  # None: one chunk per layer, natural order
        self.region = region  # an image with a longer side is coded in regions (None: never)
        self.colour_context = colour_context  # False: send no colour context (for measuring it)
        self.display_filters = display_filters  # False: send no display filters (for measuring them)
        self.lossless_context = lossless_context  # False: no spatial context in the lossless layer
        # False: the encoder writes version 7 files, whose priors are truncated to the band's bound
        # only, not to the known intervals (FORMAT.md 5.5), as uqdm 0.11-0.12 wrote them: for
        # measuring the intervals. Decoders follow the file's version whatever this says.
        self.intervals = intervals
        self.rdoq = 0.0  # > 0 (with intervals=False only): rdoq.choose's lambda for the Haar steps
        self.rdoq_until: int | None = None  # the last Haar step RDOQ is used in (None: all)
        self.fingerprint = model.fingerprint

    @property
    def num_steps(self) -> int:
        return self.model.schedule.num_steps

    # ------------------------------------------------------------------ encode

    def _cut(
        self,
        pol: ChunkPolicy | None,
        cum: np.ndarray | None,
        n: int,
        order,
        natural,
        code,
        size: int,
        flat: tuple[int, int] | None,
        first: bool,
    ):
        """(partition, order, ends, payloads, head) of one layer of n elements: one chunk in
        natural order for the first layer or without chunking (pol None); else chunks in
        importance order, cum being the cumulative estimated bytes in that order, whose tail (the
        chunks from `head` on) is grown until the bytes before it fit within flat = (start, end):
        where the same file without sub-step chunks would start and end this layer. code(part)
        codes the elements `part` (natural-order positions, in the layer's order)."""
        if pol is None or first:
            return PARTITION_NATURAL, natural, [n], [code(natural)], 1
        cache: dict[tuple[int, int], bytes] = {}

        def payloads(ends):
            starts = [0, *ends[:-1]]
            for s, e in zip(starts, ends):
                if (s, e) not in cache:
                    cache[(s, e)] = code(order[s:e])
            return [cache[(s, e)] for s, e in zip(starts, ends)]

        plain, _ = pol.split_cum(cum, size)
        # a tail in pieces adds a descriptor each to the header before it; where the part before
        # the tail then cannot fit (a layer hardly larger than the framing so far), one chunk
        for pieces in (True, False):
            tail = size - flat[0] + pol.chunk_overhead * len(plain) + 24.0 if flat else 0.0
            for _ in range(6):
                ends, head = pol.split_cum(cum, size, tail if pol.tail else 0.0, pieces)
                pays = payloads(ends)
                if head >= len(ends) or not flat or not pol.tail:
                    return PARTITION_IMPORTANCE, order, ends, pays, head
                chunks = [Chunk(p, e - s, SHOW | NETWORK) for p, s, e in zip(pays, [0, *ends[:-1]], ends)]
                layer = Layer(KIND_STEP, 1, 0, chunks, PARTITION_IMPORTANCE)
                before_tail = size + layer.size - sum(4 + len(p) for p in pays[head:])
                if before_tail <= flat[1]:
                    return PARTITION_IMPORTANCE, order, ends, pays, head
                tail += before_tail - flat[1] + 16.0
            if len(ends) - head <= 1:
                break
        return PARTITION_IMPORTANCE, order, ends, pays, head

    @staticmethod
    def _layer(cut, apply, partial, network, judge, policy: ChunkPolicy | None):
        """The chunks of one layer, flagged: apply(part) moves the chain past elements (given by
        natural-order position), partial(net) is the image a decoder shows after them (net: the
        network's, allowed where `network`), judge says whether it beats what is on screen.
        The last chunk's flags are left to the caller."""
        partition, order, ends, pays, head = cut
        net_at = min(head, len(ends) - 1) - 1  # the tail's head: as close to the step as it gets
        every = policy.network_every if policy is not None else 0
        choose = policy is not None and policy.choose_at_tail
        chunks, start = [], 0
        for c, (end, payload) in enumerate(zip(ends, pays)):
            part = order[start:end]
            apply(part)
            flags = 0
            if c < len(ends) - 1:
                # the default candidate: the network's image at the tail's head, else the means;
                # where the other is offered, it is kept if it is closer to the original
                first = network and c == net_at
                offered = choose if first else network and every and (c + 1) % every == 0
                net, err = first, judge.error(partial(first))
                if offered:
                    alt = judge.error(partial(not first))
                    if alt < err:
                        net, err = not first, alt
                flags = (NETWORK if net else 0) | (SHOW if judge.beats(err) else 0)
                judge.mark()
            chunks.append(Chunk(payload, end - start, flags))
            start = end
        return partition, chunks

    def _flat_end(self, flat_size: int, i: int, natural, code, context) -> int:
        """Where the layer would end in the same file without sub-step chunks (for the tail)."""
        return flat_size + Layer(KIND_STEP, i, 0, [Chunk(code(natural), natural.size)], 0, context).size

    def encode(
        self,
        pixels: np.ndarray,
        seed: int | None = None,
        progress: Progress | None = None,
        mirrors: int = 1,
        fast: bool = False,
        tail: bool | None | str = TAIL_DEFAULT,
        tail_after: int | None = None,
        icc_profile: bytes | None = None,
        alpha: np.ndarray | None = None,
        exif: bytes | None = None,
        xmp: bytes | None = None,
        gray: bool = False,
        target: quality.Target | None = None,
        screen: list[int | None] | None = None,
        psnr_index: bool = False,
        emit: Callable[[bytes], None] | None = None,
    ) -> bytes:
        """Encode an (H, W, 3) uint8 image into .uqd bytes; an image wider or taller than `region`
        as a tiled file (FORMAT.md 1.1), one region at a time. mirrors 2 or 4: every prediction is
        the network's average over the state and its mirror images (ensemble.py), for smaller files
        at 2 or 4 network passes per step on both sides. fast: the network's image is offered only
        at each step's tail head (ChunkPolicy.network_every 0), for about half the encoding time;
        the same bytes but for chunk flags, so the same size and step images, and coarser images
        inside a step (docs/MODEL.md section 25). tail True: after step T-1 the exact pixels are
        coded by an interlaced lossless tail from exact neighbours (lossless_tail.py, FORMAT.md 6.6)
        in place of the pixel step and the lossless layer: a smaller lossless file for photos, no
        pixel-step image (docs/MODEL.md section 27); False: the pixel step and the lossless layer;
        None: both coded, the smaller file kept; "default" (not given): True for a grayscale image,
        else False (default_tail). tail_after S (0 .. T-1, whatever `tail` says):
        the tail follows step S instead, an *early tail* (FORMAT.md 1, `EARLY_TAIL`): a lossless
        file with previews up to step S, smaller than the tail after step T-1 for photos, with no
        step images after S (docs/MODEL.md section 31). icc_profile: the image's RGB colour
        profile (a GRAY one with gray), alpha: its (H, W) uint8 alpha channel, exif: its EXIF as a
        TIFF-structured block and xmp: its XMP packet, all stored in the header (FORMAT.md 1.2) and
        handed back with every decoded image; the layers are the same bytes as without. gray: the image is
        grayscale (R = G = B: a one-plane input), and its file says so, so that decoders show one
        plane (L, or LA with alpha) at every step: the mean of the chain's R, G and B (gray_view),
        which is also what the chunks' show flags and PSNR figures judge. target (quality.Target): the
        shortest prefix of that file whose image reaches a PSNR, the longest within a bpp budget or
        the first steps, the encoder stopping as soon as the rest cannot be in it. screen: a list
        that receives the squared error of the image a decoder shows at each chunk boundary of the
        bytes returned (quality.Encoded). psnr_index: the header records the PSNR of every chunk
        boundary (FORMAT.md 1.2), so that `truncate --psnr` can cut the file to a quality later;
        not with a `bpp` target (truncate the indexed file instead). emit: called with the header
        and then each layer as soon as it is coded, so that a receiver can decode the first steps
        while the encoder codes the next (`uqdm encode -o - --stream`); the pieces add up to the
        bytes returned. Only where nothing coded later changes what came before: not for a tiled
        image, `tail` None, a PSNR index, or a target other than `steps`."""
        target = target or quality.Target()
        pixels = _validate_pixels(pixels)
        if isinstance(tail, str):  # the command line's names too
            if tail != TAIL_DEFAULT and tail not in TAIL_NAMES:
                raise UqdmError(
                    f"tail must be True, False, None, 'on', 'off', 'auto' or {TAIL_DEFAULT!r}, not {tail!r}"
                )
            tail = default_tail(pixels) if tail == TAIL_DEFAULT else TAIL_NAMES[tail]
        check_callable("progress", progress)
        check_callable("emit", emit)
        fast, psnr_index = check_flag("fast", fast), check_flag("psnr_index", psnr_index)
        gray = check_flag("gray", gray)
        if gray and not is_grayscale(pixels):
            raise UqdmError("gray=True is for a grayscale image: R = G = B at every pixel")
        if gray and icc_profile is not None and not colour_profile.is_gray(bytes(icc_profile)):
            raise UqdmError(
                "colour profile not kept: a grayscale image's profile is a GRAY one, and this is not"
            )
        if alpha is not None:
            alpha = np.asarray(alpha)
            if alpha.shape != pixels.shape[:2] or alpha.dtype != np.uint8:
                want = pixels.shape[:2]
                raise UqdmError(f"alpha must be a {want} uint8 array, not {alpha.shape} {alpha.dtype}")
        if tail_after is not None:  # any step, T-1 too: the tail whatever `tail` says
            tail = True
        tail_after = self.check_tail_after(tail_after)
        mirrors = ensemble.check_mirrors(mirrors)
        h, w = pixels.shape[:2]
        seed = randomness.new_seed() if seed is None else randomness.check_seed(seed)
        header = Header(
            w,
            h,
            self.num_steps,
            seed,
            self.fingerprint,
            self.model.config.name,
            self.tile,
            mirrors=mirrors,
            version=container.VERSION if self.intervals else container.INTERVALS_VERSION - 1,
            tail=bool(tail),  # None (either, whichever is smaller) codes the plain file first
            tail_form=lossless_tail.FORM,
            tail_after=tail_after,
            icc_profile=icc_profile,
            alpha=None if alpha is None else np.ascontiguousarray(alpha).tobytes(),
            exif=None if exif is None else bytes(exif),
            xmp=None if xmp is None else bytes(xmp),
            gray=gray,
        )
        if problem := header.extension_problem():
            raise UqdmError(f"{problem[0]} not kept: {problem[1]}")
        if tail and not self.intervals:
            raise UqdmError("a lossless tail needs file format 8 (known intervals)")
        if target.steps is not None:
            header.check_steps(target.steps)
        target.check_psnr_index(psnr_index)
        if psnr_index and not self.intervals:
            raise UqdmError("a PSNR index needs file format 8 (known intervals)")
        if target.budgeted:  # a budget below the header fails now, not after the encode
            target.truncate(header.to_bytes())
        sent: list[bytes] = []
        send = None
        if emit is not None:
            self._check_streamable(h, w, tail, target, psnr_index)

            def send(piece: bytes) -> None:
                sent.append(piece)
                emit(piece)

        bar = _FullAtTheEnd(progress) if progress else None
        encoded = self._judge_cut(
            pixels, self._encode_cut(pixels, header, bar, fast, tail, target, send), target
        )
        if send is not None and b"".join(sent) != encoded.data:  # a guard: the check above is whole
            raise UqdmError("internal error: the streamed layers are not the file")
        if psnr_index:
            encoded = quality.with_psnr_index(encoded)
        if bar:
            bar.finish()
        if screen is not None:
            screen.extend(encoded.screen)
        return encoded.data

    def _check_streamable(
        self, h: int, w: int, tail: bool | None, target: quality.Target, psnr_index: bool
    ) -> None:
        """Refuse, before any work, to stream a file whose later coding changes earlier bytes."""
        if self.region is not None and max(h, w) > self.region:
            raise UqdmError(
                f"an image longer than {self.region} pixels on a side is coded region by region, its "
                "layers interleaved at the end: it cannot be streamed layer by layer"
            )
        if tail is None:
            raise UqdmError("tail auto chooses the file's end after coding both: it cannot be streamed")
        if psnr_index:
            raise UqdmError("a PSNR index is written in the header after the encode: it cannot be streamed")
        if target.given and target.steps is None:
            raise UqdmError(
                "a PSNR, bpp or byte target may cut the last layer after it is coded: it cannot be "
                "streamed (a number of steps can)"
            )

    def encode_judged(self, pixels: np.ndarray, **options) -> quality.Encoded:
        """encode(pixels, **options) with the error of the image on screen at each chunk boundary
        of the bytes: quality.Encoded, the PSNR of every prefix a decoder shows a judged image from."""
        screen: list[int | None] = []
        data = self.encode(pixels, screen=screen, **options)
        h, w = np.shape(pixels)[:2]
        return quality.Encoded(data, screen, w, h)

    def _encode_cut(
        self,
        pixels: np.ndarray,
        header: Header,
        progress: Progress | None,
        fast: bool,
        tail: bool | None,
        target: quality.Target,
        emit: Callable[[bytes], None] | None = None,
    ) -> quality.Encoded:
        """The file `header` describes (tiled where the image is larger than a region), cut to
        `target`, the encoder stopping as soon as the rest cannot be in it; emit: see encode."""
        h, w = pixels.shape[:2]
        if self.region is not None and max(h, w) > self.region:
            from . import regions

            traces: list[quality.ScreenTrace] = []
            stop = target.stopper(w, h, whole_image=False)
            data = regions.encode(self, pixels, header, progress, fast, tail, traces, stop)
            return quality.cut(data, traces, target)
        trace = quality.ScreenTrace()
        stop = target.stopper(w, h, whole_image=True)
        if tail is not None:
            data = b"".join(self.encode_layers(pixels, header, progress, fast, None, trace, stop, emit))
            return quality.cut(data, [trace], target)
        alternative: list[bytes] = []
        plain = self.encode_layers(pixels, header, progress, fast, alternative, trace, stop)
        if len(plain) - 1 < header.num_layers:  # stopped early: the ends were never both coded
            return quality.cut(b"".join(plain), [trace], target)
        header, (records,) = choose_end(header, [plain[1:]], alternative)
        if header.tail:
            trace.use_tail(self.num_steps)
        return quality.cut(header.to_bytes() + b"".join(records), [trace], target)

    def _judge_cut(
        self, pixels: np.ndarray, encoded: quality.Encoded, target: quality.Target
    ) -> quality.Encoded:
        """A file cut to `target` on a chunk boundary, made shorter by a cut inside its last chunk for
        a `psnr` target; a file that ends in a cut chunk (a `bpp` target) with the error of the
        image it shows. Both decode the cut (cut_judge.py; in a tiled file, its region's file)."""
        from . import cut_judge

        if target.psnr is not None:
            return cut_judge.shortest_cut(self, pixels, encoded, target.psnr)
        if encoded.screen and encoded.screen[-1] is None:
            return cut_judge.judge_end(self, pixels, encoded)
        return encoded

    def check_tail_after(self, tail_after: int | None) -> int | None:
        """`tail_after` as the header holds it: None for the tail after step T-1 (or no tail)."""
        if tail_after is None:
            return None
        T = self.num_steps
        if not is_whole(tail_after):
            raise UqdmError(f"tail_after must be a step number from 0 to {T - 1}")
        if not 0 <= tail_after <= T - 1:
            raise UqdmError(f"the tail can follow step 0 to {T - 1}, not {tail_after}")
        return int(tail_after) if tail_after < T - 1 else None

    def encode_layers(
        self,
        pixels: np.ndarray,
        header: Header,
        progress: Progress | None = None,
        fast: bool = False,
        tail_record: list[bytes] | None = None,
        trace: quality.ScreenTrace | None = None,
        stop: Callable[[int, int, int], bool] | None = None,
        emit: Callable[[bytes], None] | None = None,
        gray: bool | None = None,
    ) -> list[bytes]:
        """The header bytes and then each layer's bytes of the untiled file `header` describes
        (fast: as for encode). tail_record: a list that receives the tail layer's record (FORMAT.md
        6.6) made from the same layers 1..T-1, so that the caller can choose between the plain
        file returned and its TAIL form (choose_end). trace: receives the squared error of the image
        on screen at every chunk boundary (the tail record's in trace.tail). stop(layer, bytes so
        far, error on screen): whether to end the file after this layer (quality.Target.stopper).
        emit: called with the header and with each layer as soon as it is appended. gray: whether
        the image judged is the gray view (gray_view); None: header.gray (a region's header has no
        extensions, so regions.encode passes its file's)."""
        if self.rdoq and header.intervals:
            raise ValueError("RDOQ moves values out of their bins: files with known intervals cannot use it")
        h, w = pixels.shape[:2]
        T, seed = self.num_steps, header.seed
        chain = _Chain(self.net, h, w, seed, self.tile, header.mirrors, header.intervals)
        x_bands = _data_bands(pixels, chain.hp, chain.wp, chain.levels)
        out: list[bytes] = []

        def add(piece: bytes) -> None:  # the file so far, and the receiver's copy (emit)
            out.append(piece)
            if emit is not None:
                emit(piece)

        add(header.to_bytes())
        # flat_size: the same file without sub-step chunks. Both leave the header's extensions out,
        # so that they change no chunk boundary: the layers are those of the file without them
        size = flat_size = len(header.without_extensions().to_bytes())
        extensions = len(out[0]) - size  # bytes the file has that `size` leaves out
        judge = _Judge(pixels, chain.blank_display(), header.gray if gray is None else gray)
        if trace is not None:
            trace.start = judge.best
        policy = self.chunking.for_image(w, h) if self.chunking is not None else None
        if fast and policy is not None:
            policy = replace(policy, network_every=0)
        pred, prior, order = None, None, np.zeros(0, np.int64)
        side = chain.blank_display()  # the tail's side image: the one shown after step S (T-1)
        original = pixels.transpose(2, 0, 1).astype(np.float64)
        prev_sse = float(judge.best)  # of the last complete step's image: for the filters' choice
        from_display = 0  # the next step's bands that take the shown image's locations
        last = header.num_layers  # the tail's layer in a TAIL file (T, or S + 1 for an early tail)
        for i in range(1, T + 2):
            if i == last and header.tail or i == T and tail_record is not None:
                tail_judge = copy.copy(judge)
                tail_judge.marks = [] if trace is not None else None
                record = self._tail_layer(i, pixels, side, tail_judge, chain.tail_intervals()).to_bytes()
                if header.tail:
                    add(record)
                    if trace is not None:
                        trace.layers.append(tail_judge.marks)
                    if progress:
                        progress(i, i)
                    break
                tail_record.append(record)
                if trace is not None:
                    trace.tail = tail_judge.marks
            judge.marks = [] if trace is not None else None
            if i <= T:
                prior = chain.prior(i, pred, from_display)
                pred = None
                order = importance_order(prior, chain.colours, chain.places)  # the largest temporary
            if i == T:
                x_bands = None  # the pixel step codes pixels
            partition, chunks, flat_size, context = self._encode_layer(
                chain, i, pixels, x_bands, prior, order, judge, size, flat_size, policy
            )
            if i < T:
                chain.finish_step()
                pred = chain.predict(i)
                bits = 8.0 * sum(len(c.payload) for c in chunks)
                pred.filter, next_from_display, prev_sse = self.step_filter(
                    chain, i, pred, original, x_bands, prev_sse, bits
                )
                shown = side = pred.image(h, w)
            else:
                shown = pixels if i == T + 1 else chain.pixel_display()
            chunks[-1].flags = SHOW if judge(shown) or i == T + 1 else 0  # the exact image always shows
            judge.mark()
            if trace is not None:
                trace.layers.append(judge.marks)
            kind = KIND_LOSSLESS if i == T + 1 else KIND_STEP
            filt = pred.filter if i < T else None
            if filt is not None:  # the same file without sub-step chunks carries the same filter
                flat_size += filt.nbytes - 1
            if i > T:  # the lossless layer's context is its spatial one
                layer = Layer(kind, i, _check(shown), chunks, partition, lossless_context=context)
            else:
                layer = Layer(kind, i, _check(shown), chunks, partition, context, filt, from_display)
            add(layer.to_bytes())
            from_display = next_from_display if i + 1 < T else 0  # a Haar step i + 1 only
            release_memory()
            size += len(out[-1])
            if progress:
                progress(i, T + 1)
            if stop is not None and i < last and stop(i, size + extensions, judge.best):
                if progress:  # done: the bar ends full, not where the file does
                    progress(T + 1, T + 1)
                break
        return out

    @staticmethod
    def _tail_layer(
        index: int,
        pixels: np.ndarray,
        side: np.ndarray,
        judge: _Judge,
        intervals: lossless_tail.Intervals | None,
    ) -> Layer:
        """The last layer of a TAIL file: the exact pixels given the image after step S (and from
        form 10 on the known intervals then), a chunk per pass (FORMAT.md 6.6), decoded here as a
        decoder will (a check of the coder) to flag the chunks whose image beats the one on screen."""
        h, w = pixels.shape[:2]
        form = lossless_tail.FORM
        bounds = intervals if form >= 10 else None
        coded = lossless_tail.encode_passes(pixels, side, form, bounds)
        dec = lossless_tail.TailDecoder(coded.params, h, w, side, form, bounds)
        chunks = []
        for count, payload in coded.chunks:
            dec.decode_pass(payload)
            chunks.append(Chunk(payload, count, SHOW if judge(dec.image()) else 0))
            judge.mark()
        if not np.array_equal(dec.x, pixels):
            raise AssertionError("lossless tail: the decoder's pixels would differ from the original")
        chunks[-1].flags = SHOW
        return Layer(KIND_TAIL, index, _check(pixels), chunks, PARTITION_NATURAL, tail_params=coded.params)

    def step_filter(
        self,
        chain: _Chain,
        i: int,
        pred: Prediction,
        original: np.ndarray,
        x_bands,
        prev_sse: float,
        bits: float,
    ) -> tuple[DisplayFilter | None, int, float]:
        """The encoder's choice for completed Haar step i (prediction `pred`): its display filter,
        the bands whose step-(i+1) prior locations come from the shown image (FORMAT.md 6.5), and
        the squared error of the image then shown (display_filter.choose, at the step's own rate
        of dB per bit: from the error before the step, `prev_sse`, and the `bits` it took; with
        the bits the filter saves the next step, colour.approx_bits without the colour context).
        `original`: (3, H, W) levels."""
        h, w = original.shape[1:]
        image = pred.display_crop(h, w)  # pred.filter is not set yet
        sse = display_filter.shown_sse(image, original)
        if not self.display_filters or sse <= 0 or bits <= 0:
            return None, 0, sse
        db_per_bit = 10.0 * np.log10(max(prev_sse, 1e-9) / sse) / bits
        saving = self._next_step_saving(chain, i, pred, x_bands, entropy.pixels_to_data(original))
        return display_filter.choose(image, original, db_per_bit, saving)

    def _next_step_saving(self, chain: _Chain, i: int, pred: Prediction, x_bands, target: np.ndarray):
        """A function (filter, its shown image) -> (approximate bits step i+1 saves with it, the
        bands that should take the shown image's locations). Step i+1's coded elements, scales and
        dithers do not depend on the filter, only their locations."""
        h, w = target.shape[1:]
        if self.model.schedule.is_pixel_step(i + 1):  # its location is the shown image itself
            u = randomness.dither(chain.seed, i + 1, (target.size,))
            q = np.full(target.size, self.model.schedule.pixel_quant)
            scale = pred.pixel_scale_crop(h, w).reshape(-1)
            x = target.reshape(-1)

            def pixel_bits(loc):
                return float(colour.approx_bits(x, loc, scale, u, q, -np.ones(x.size), np.ones(x.size)).sum())

            base = pixel_bits(pred.display_crop(h, w).reshape(-1))
            return lambda f, shown: (base - pixel_bits(shown.reshape(-1)), 0)
        pred.scales  # kept, for this prior and step i+1's own  # noqa: B018
        p = chain.prior(i + 1, pred, 0).part(slice(None))  # set up again when step i+1 starts
        xs = chain.elements(i + 1, None, x_bands)
        bands = chain.levels + 1
        per = colour.approx_bits(xs, p.loc, p.scale, p.dither, p.quant_step, p.lower, p.upper)
        base = np.bincount(chain.coded_band, per, minlength=bands)
        starts, flats = chain._band_start, chain.coded_flat

        def saving(f, shown):
            loc = np.empty_like(p.loc)
            for b, band in enumerate(haar.forward(haar.extend(shown, chain.hp, chain.wp), chain.levels)):
                s0, s1 = starts[b], starts[b + 1]
                loc[s0:s1] = band.reshape(-1)[flats[s0:s1]]
            np.clip(loc, p.lower, p.upper, out=loc)  # as prior() clips them
            per_f = colour.approx_bits(xs, loc, p.scale, p.dither, p.quant_step, p.lower, p.upper)
            got = np.bincount(chain.coded_band, per_f, minlength=bands)
            mask = sum(1 << b for b in range(bands) if got[b] < base[b])
            return float(np.maximum(base - got, 0.0).sum()), mask

        return saving

    def _encode_layer(
        self,
        chain: _Chain,
        i: int,
        pixels,
        x_bands,
        prior,
        order,
        judge,
        size: int,
        flat_size: int,
        policy: ChunkPolicy | None,
    ):
        """(partition, chunks, flat end) of layer i: its chunks (the last one's flags left to the
        caller) and where it would end in the same file without sub-step chunks. The layer's
        arrays (symbols, bit estimates) are freed on return, before the network runs again."""
        T = self.num_steps
        if i == T + 1:
            levels = pixels.transpose(
                2, 0, 1
            ).ravel()  # uint8; the lossless layer keeps the pixel step's order
            q = self.model.schedule.pixel_quant
            xt, h, w = chain.pixel_tilde, chain.h, chain.w
            # half B's prior given all of half A, which precedes it in every chunk that codes it
            context, loc, scale = lossless_context.encoder_prior(
                levels, xt, prior.loc, prior.scale, q, h, w, self.lossless_context
            )
            second = lossless_context.second_half(h, w)
            order = lossless_context.halves(order, second)
            bits = entropy.levels_element_bits(levels, xt, loc, scale, q)

            def code(part):
                halves = lossless_context.groups(part, second)
                return entropy.encode_levels(levels[part], xt[part], loc[part], scale[part], q, halves)

            def apply(part):
                chain.apply_levels(levels[part], part)

        else:
            if i == T:
                xs = entropy.pixels_to_data(pixels.transpose(2, 0, 1)).reshape(-1)
            else:
                xs = chain.elements(i, None, x_bands)
            # never in the pixel step: the lossless layer needs each pixel inside its bin
            last = T - 1 if self.rdoq_until is None else min(self.rdoq_until, T - 1)
            rdoq = self.rdoq if i <= last else 0.0
            context, coded, xs = chain.coding_values(prior, xs, self.colour_context, rdoq)
            chain.set_context(context)
            k = _narrow(entropy.quantise(xs, coded))
            del xs
            bits = entropy.step_element_bits(k, coded)

            def code(part):
                return entropy.encode_step(k[part], coded.part(part), colour_groups(chain.colours, part))

            def apply(part):  # group by group, as the decoder conditions and decodes them
                for c, g in enumerate(colour_groups(chain.colours, part)):
                    at = part[g]
                    if c:
                        chain.condition(c, prior, at)
                    sub = coded.part(at)
                    xt = entropy.reconstruct(k[at], sub)
                    chain.apply(i, xt, at, chain.posterior(i, xt, sub))

        def partial(net: bool) -> np.ndarray:
            return chain.partial_display(i, prior, net)

        n = bits.size
        chunked = policy is not None and i > 1
        cum = None
        if chunked:  # cumulative estimated bytes in importance order, made once for every split
            ordered = bits[order]
            del bits
            cum = np.cumsum(ordered)
            del ordered
            cum /= 8.0
        else:
            del bits
        natural = np.arange(n) if i > T else natural_order(chain.colours, chain.places)
        steps_ctx = context if i <= T else ()  # for sizes: a step layer's header as stand-in
        flat = (flat_size, self._flat_end(flat_size, i, natural, code, steps_ctx)) if chunked else None
        cut = self._cut(policy, cum, n, order, natural, code, size, flat, first=i == 1)
        del cum
        flat_size = (
            flat[1] if flat else size + Layer(KIND_STEP, i, 0, [Chunk(cut[3][0], n)], 0, steps_ctx).size
        )
        partition, chunks = self._layer(cut, apply, partial, i < T, judge, policy)
        if i <= T and not np.array_equal(prior.loc, coded.loc):
            raise AssertionError("colour context: the decoder's prior would differ from the encoder's")
        return partition, chunks, flat_size, context

    # ------------------------------------------------------------------ decode

    def check_header(self, header: Header) -> None:
        if header.fingerprint != self.fingerprint:
            raise ModelError(
                f"file was made with model '{header.model_name}' ({header.fingerprint.hex()[:12]}), "
                f"but the loaded model is '{self.model.config.name}' ({self.fingerprint.hex()[:12]}); "
                f"pass {option('--model', 'model=')} with the weights it was made with"
            )
        if header.num_steps != self.num_steps:
            raise ModelError("file and model disagree on the number of steps")

    def _levels(self, data: bytes, steps: int | None, progress: Progress | None, every_chunk: bool):
        """The decode session and a generator of its images (the session is at each image's state
        when the generator yields it)."""
        parsed = container.parse(data)
        session = _DecodeSession(self, parsed.header, parsed.header_size)
        if steps is not None:
            parsed.header.check_steps_held(steps, len(parsed.layers))

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
        check_callable("progress", progress)
        every_chunk = check_flag("every_chunk", every_chunk)
        data = files.uqd_bytes(data)
        header, _ = container.parse_header(data)
        if header.tiled:
            from . import regions

            for image in regions.iter_decode(self, data, steps, progress, every_chunk, recon, seed):
                yield _with_header(image, header)
            return
        session, images = self._levels(data, steps, progress, every_chunk)
        for image in images:
            yield _with_header(session.reconstruct(image, recon, seed), header)

    def decode(
        self,
        data: bytes,
        steps: int | None = None,
        progress: Progress | None = None,
        recon: str = "mean",
        seed: int | None = None,
    ) -> DecodedImage:
        """The image after `steps` diffusion steps (default: everything the file holds): the posterior
        mean, or with recon="sample" the remaining steps drawn from the model (seeded by `seed`).
        `data`: bytes, a path or a binary file object, as uqdm_codec.decode takes."""
        recon, seed = sampling.check_recon(recon), sampling.check_seed(seed)
        check_callable("progress", progress)
        data = files.uqd_bytes(data)
        header, _ = container.parse_header(data)
        if header.tiled:
            from . import regions

            return _with_header(regions.decode(self, data, steps, progress, recon, seed), header)
        session, images = self._levels(data, steps, progress, every_chunk=False)
        *_, last = images
        return _with_header(session.reconstruct(last, recon, seed), header)


class _DecodeSession:
    """Decoding state that survives between calls, so bytes can arrive in pieces: the chain, the
    next layer and chunk to apply, the prior of the layer in progress and the image on screen."""

    def __init__(self, codec: Codec, header: Header, header_size: int):
        codec.check_header(header)
        self.codec, self.hd = codec, header
        self.T = codec.num_steps
        self.chain = _Chain(
            codec.net, header.height, header.width, header.seed, codec.tile, header.mirrors, header.intervals
        )
        self.pred: Prediction | None = None
        self.prior: entropy.CodedPrior | None = None  # the pixel step's prior serves the lossless layer
        self.order = np.zeros(0, np.int64)
        self.pixel_order = self.order  # the pixel step's importance order, which the lossless layer keeps
        self.second = np.zeros(0, bool)  # the lossless layer's half-B elements (lossless_context.py)
        self.spatial: lossless_context.LosslessContext | None = None  # and its spatial context
        self.layer, self.chunk, self.done_steps = 1, 0, 0
        self.started = 0  # the layer whose prior and order are set up (a layer may arrive chunkless)
        self.nbytes = header_size
        self.ended = False
        self.shown = self.chain.blank_display()  # the image on screen: changes on flagged chunks
        self.side = self.shown  # a TAIL file's side image: the one shown after step S (T-1)
        self.tail: lossless_tail.TailDecoder | None = None

    def blank(self, warnings: list[str]) -> DecodedImage:
        return DecodedImage(self.shown, 0, False, list(warnings), nbytes=self.nbytes)

    def sample(self, seed: int) -> np.ndarray | None:
        """An ancestral sample from the current state (sampling.py): the rest of a step in progress
        and every later Haar step drawn from the model. None where there is nothing to draw: after
        the last Haar step (the pixel step is not sampled, see sampling.py)."""
        H = self.T - 1
        first, partial = self.layer, self.chunk > 0  # the first step not complete; arrived in part?
        if self.tail is not None:  # the tail's images are exact where decoded: nothing to draw
            return None
        if first > H and (self.hd.tail or not (first == H + 1 and not partial and sampling.SAMPLE_PIXELS)):
            return None
        prior = self.prior if self.started == first else None  # set up (and maybe in part) already
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
        i, chain = layer.index, self.chain
        if layer.kind == KIND_TAIL:
            hd = self.hd
            intervals = chain.tail_intervals() if hd.tail_form >= 10 else None
            self.tail = lossless_tail.TailDecoder(
                layer.tail_params, hd.height, hd.width, self.side, hd.tail_form, intervals
            )
            self.order = np.arange(3 * hd.height * hd.width)
            return
        if i > self.T:  # the lossless layer: the pixel step's order (its scales before conditioning)
            important = layer.partition == PARTITION_IMPORTANCE
            self.second = lossless_context.second_half(self.hd.height, self.hd.width)
            if important:  # half A, then half B (FORMAT.md 6.2)
                self.order = lossless_context.halves(self.pixel_order, self.second)
            else:
                self.order = np.arange(self.second.size)
            self.spatial = layer.lossless_context
            return
        if layer.from_display and not 1 < i < self.T or layer.from_display >> (chain.levels + 1):
            raise FormatError(f"layer {i} takes prior locations from the shown image where it may not")
        self.prior = chain.prior(i, self.pred, layer.from_display)
        self.pred = None  # the prior holds what the step needs of it
        if layer.partition == PARTITION_IMPORTANCE or i == self.T:
            important = importance_order(self.prior, chain.colours, chain.places)
            if i == self.T:
                self.pixel_order = important
        if layer.partition == PARTITION_IMPORTANCE:
            self.order = important
        else:
            self.order = natural_order(chain.colours, chain.places)
        chain.set_context(layer.context)

    def _apply_chunk(self, i: int, chunk: Chunk, part: np.ndarray) -> None:
        """Decode a chunk and move the chain past its elements; of a cut chunk, past those its
        words hold (FORMAT.md 2.1)."""
        if self.tail is not None:
            _decode_checked(self.tail.decode_pass, i, chunk, chunk.cut)
            return
        if i <= self.T:
            _decode_checked(self._decode_groups, i, chunk, i, part, chunk.cut)
            return
        _decode_checked(self._decode_halves, i, chunk, part, chunk.cut)

    def _decode_halves(self, payload: bytes, part: np.ndarray, cut: bool) -> None:
        """A lossless chunk's two groups in turn (FORMAT.md 6.2): its half-A elements, then its
        half-B ones, moved by the spatial context given the neighbours known by then."""
        chain, prior, hd = self.chain, self.prior, self.hd
        q = self.codec.model.schedule.pixel_quant
        stream = entropy.LevelsStream(payload, cut)
        for g, sel in enumerate(lossless_context.groups(part, self.second)):
            at = part[sel]
            if g and self.spatial is not None:
                feats = lossless_context.features(
                    at, chain.lossless, chain.lossless_known, prior.loc, prior.scale, hd.height, hd.width
                )
                n = self.second.size // 3
                loc, scale = lossless_context.moved(self.spatial, at, feats, prior.loc, prior.scale, n)
            else:
                loc, scale = prior.loc[at], prior.scale[at]
            levels, got = stream.group(chain.pixel_tilde[at], loc, scale, q)
            chain.apply_levels(levels[got], at[got])
            if not got.all():
                break
        stream.finish()

    def _decode_groups(self, payload: bytes, i: int, part: np.ndarray, cut: bool) -> None:
        """A step chunk's colour groups in turn (FORMAT.md 6.3-6.4): each conditioned on the
        partners applied before it (unless an earlier group of a cut chunk fell short), decoded,
        and its received elements applied."""
        chain, prior = self.chain, self.prior
        stream = entropy.StepStream(payload, cut)
        whole = True
        for c, g in enumerate(colour_groups(chain.colours, part)):
            at = part[g]
            if c and whole:
                chain.condition(c, prior, at)
            sub = prior.part(at)
            k, got = stream.group(sub)
            if not got.all():
                whole = False
                at, sub, k = at[got], sub.part(got), k[got]
            x_tilde = entropy.reconstruct(k, sub)
            chain.apply(i, x_tilde, at, chain.posterior(i, x_tilde, sub))
        stream.finish()

    def _finish_layer(self, i: int, filt: DisplayFilter | None) -> np.ndarray:
        hd = self.hd
        if self.tail is not None:
            if not self.tail.complete:
                raise SyncError(_sync_message(i))
            self.done_steps = i
            return self.tail.x.copy()
        if i > self.T:
            levels = self.chain.lossless.reshape(3, hd.height, hd.width).transpose(1, 2, 0)
            return np.ascontiguousarray(levels.astype(np.uint8))
        self.done_steps = i
        if i == self.T:
            self.pred = None
            return self.chain.pixel_display()
        self.prior = None  # free the step's elements before the network runs
        self.chain.finish_step()
        self.pred = self.chain.predict(i)
        self.pred.filter = filt
        return self.pred.image(hd.height, hd.width)

    def advance(
        self,
        parsed: container.ParsedFile,
        every_chunk: bool = False,
        max_layer: int | None = None,
        progress: Progress | None = None,
    ) -> Iterator[DecodedImage]:
        """Apply whatever `parsed` holds beyond what was applied before; yield the images."""
        T = self.T
        last = self.hd.num_layers
        last_layer = last if max_layer is None else max_layer
        warnings = list(parsed.warnings)
        while self.layer <= last_layer and not self.ended:
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
                if chunk.network and (c >= declared - 1 or i >= T or layer.kind == KIND_TAIL):
                    raise FormatError(f"layer {i}, chunk {c + 1}: network flag where no network runs")
            if self.started != i:  # once: the prior consumes the prediction it is made from
                self._start_layer(layer)
                self.started = i
            if self.chunk == 0:
                if complete and sum(c.count for c in layer.chunks) != self.order.size:
                    raise SyncError(_sync_message(i))
                if self.tail is not None:
                    counts = self.tail.counts()
                    if [c.count for c in layer.chunks] != counts[:n] or complete and n != len(counts):
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
                self.ended = chunk.cut  # a cut chunk ends the file (and what of it can be applied)
                if c >= inner:
                    break
                if c in wanted:
                    if self.tail is not None:
                        self.shown = self.tail.image()
                    else:
                        self.shown = self.chain.partial_display(i, self.prior, chunk.network)
                if every_chunk or c == n - 1:
                    yield DecodedImage(
                        self.shown,
                        self.done_steps,
                        False,
                        warnings,
                        i,
                        c + 1,
                        False,
                        self.nbytes,
                        tail=self.tail is not None,
                    )
            if not complete:
                return
            end_image = self._finish_layer(i, layer.display_filter)
            release_memory()
            if _check(end_image) != layer.display_check:
                raise SyncError(_sync_message(i))
            if self.hd.tail and i == self.hd.coded_steps:
                self.side = end_image
            if layer.chunks[-1].show or i == last:
                self.shown = end_image
            self.layer, self.chunk = i + 1, 0
            if progress:
                progress(i, last_layer)
            yield DecodedImage(self.shown, self.done_steps, i == last, warnings, i, n, True, self.nbytes)


class Decoder:
    """Streaming decoder: feed bytes as they arrive, get a better image each time a chunk completes.

    dec = Decoder()
    for piece in download():
        image = dec.feed(piece)   # a PIL image, or None when nothing new could be decoded

    `images(piece)` gives the DecodedImages one by one instead (every step as it is decoded), which
    streaming.decode_stream hands on.
    """

    def __init__(self, model=None, device=None):
        self._model, self._device = model, device
        self._buffer = bytearray()
        self._session = None  # a _DecodeSession, or regions.StreamingTiles for a tiled file
        self._fresh = True  # nothing shown yet: the first image is news even if it is the blank one
        self._header: Header | None = None  # once it is in: what it adds to every image
        self.latest: DecodedImage | None = None

    @property
    def received(self) -> bytes:
        """Every byte fed so far."""
        return bytes(self._buffer)

    def feed(self, data: bytes):
        newest = deque(self.images(data), maxlen=1)  # the images before it are not kept
        return newest[0].to_pil() if newest else None

    def images(self, data: bytes) -> Iterator[DecodedImage]:
        """What `feed` does, image by image, for a viewer that shows each as soon as it is decoded:
        every step the new bytes complete (each costs a network pass, so it is not held back until
        the bytes are used up), then the newest image if it ends no step; nothing when the bytes
        complete no chunk, except on the first image, the header's blank one."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise UqdmError(f"a decoder is fed bytes, not {type(data).__name__}")
        self._buffer += data
        if self._session is None:
            if len(self._buffer) < len(container.MAGIC) and container.MAGIC.startswith(bytes(self._buffer)):
                return
            try:
                header, size = container.parse_header(bytes(self._buffer))
            except FormatError as exc:
                if "too short" in str(exc):
                    return
                raise
            from . import get_codec

            codec = get_codec(model_for_file(header, self._model), self._device)
            self._header = header
            if header.tiled:
                from .regions import StreamingTiles

                self._session = StreamingTiles(codec, header, size)
            else:
                self._session = _DecodeSession(codec, header, size)
            self.latest = self._session.blank([])
        damage = None
        if isinstance(self._session, _DecodeSession):
            try:
                parsed = container.parse(bytes(self._buffer))
            except FormatError as exc:  # the images of the bytes before the damage, then the error
                if exc.intact is None:
                    raise
                parsed, damage = container.parse(bytes(self._buffer[: exc.intact])), exc
            produced = self._session.advance(parsed)
        else:
            produced = iter(self._session.feed(bytes(self._buffer)))
        newest = None
        for newest in produced:
            if newest.complete:
                yield self._show(newest)
        if newest is not None and not newest.complete:
            yield self._show(newest)
        elif newest is None and self._fresh:
            yield self._show(self.latest)
        if damage is not None:
            raise damage

    def _show(self, image: DecodedImage) -> DecodedImage:
        self._fresh = False
        self.latest = _with_header(image, self._header)
        return self.latest


def choose_end(
    header: Header, plains: list[list[bytes]], tails: list[bytes]
) -> tuple[Header, list[list[bytes]]]:
    """The smaller of two files that share layers 1..T-1: per region, the plain layer records
    (`plains`: layers 1..T+1) or the same with its tail record (`tails`) in place of layers T and
    T+1; returns the header (TAIL flag set for the latter) and each region's records."""
    T = header.num_steps
    plain_size = sum(len(r) for rec in plains for r in rec[T - 1 :])
    if plain_size <= sum(len(t) for t in tails):
        return header, plains
    return replace(header, tail=True), [[*rec[: T - 1], t] for rec, t in zip(plains, tails)]


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
        f"decoded layer {layer} does not match what the encoder computed: the file was altered, or its "
        "encoder's or this decoder's arithmetic departs from the format (docs/FORMAT.md section 8)"
    )


def is_grayscale(pixels: np.ndarray) -> bool:
    """Whether R = G = B at every pixel of an (H, W, 3) image."""
    return bool(
        np.array_equal(pixels[:, :, 0], pixels[:, :, 1]) and np.array_equal(pixels[:, :, 1], pixels[:, :, 2])
    )


def default_tail(pixels: np.ndarray) -> bool:
    """The lossless end of an encode that does not choose one: the tail for a grayscale image,
    whose pixel step and lossless layer code three copies of one plane while the tail's colour
    differences make two of them nearly free: 26-60 % smaller lossless files (docs/MODEL.md
    section 45); the pixel step and the lossless layer, with the pixel step's image, otherwise."""
    return is_grayscale(pixels)


def default_tail_note(pixels: np.ndarray, tail) -> str | None:
    """The one-line note of an encode whose lossless end default_tail chose to be the tail."""
    if not (tail == TAIL_DEFAULT and default_tail(pixels)):  # True, False and None are not it
        return None
    return (
        "grayscale image: its lossless end is the tail after step T-1, about 40 % smaller than the "
        f"pixel step and lossless layer ({option('--tail off', 'tail=False')} codes those instead)"
    )


class _FullAtTheEnd:
    """A progress callback that holds back the report of a full bar until finish(): after its last
    layer the encoder may still judge cuts of the file (cut_judge.py, seconds on a large photo),
    and a bar that is full while it does looks hung."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.total: int | None = None

    def __call__(self, done: int, total: int) -> None:
        if done >= total:
            self.total = total
        else:
            self.progress(done, total)

    def finish(self) -> None:
        if self.total is not None:
            self.progress(self.total, self.total)


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
    """Which model to load for a file: the requested one, else the file's own if it is shipped:
    a retired release's weights when the file's fingerprint names one, else the current model of
    the file's name (whose fingerprint check_header then compares)."""
    if requested is not None:
        return requested
    retired = retired_model_path(header.model_name, header.fingerprint)
    return retired if retired is not None else shipped_model_path(header.model_name)


class ChainRun:
    """The chain driven the way the encoder drives it, every element of a step at once, for
    measuring it (ideal_bits, accounting.py, the study scripts): each step's prior as the encoder
    sets it up, priors taken from the shown image included, and after each Haar step the
    prediction with the display filter and next-step bands the encoder would choose. The caller
    codes and applies each step between prior() and finish(), with code_all() or by itself."""

    def __init__(self, codec: Codec, pixels: np.ndarray, seed: int = 0, mirrors: int = 1):
        pixels = _validate_pixels(pixels)
        h, w = pixels.shape[:2]
        self.codec = codec
        self.chain = _Chain(
            codec.net, h, w, seed, codec.tile, ensemble.check_mirrors(mirrors), codec.intervals
        )
        x = entropy.pixels_to_data(pixels.transpose(2, 0, 1))
        self.x = haar.extend(x, self.chain.hp, self.chain.wp)
        self.x_bands = haar.forward(self.x, self.chain.levels)
        self.original = pixels.transpose(2, 0, 1).astype(np.float64)  # levels, for the filters
        # the squared error of the image shown after the last complete step, as the encoder's judge
        self.sse = float(np.sum((self.chain.blank_display().astype(np.float64) - pixels) ** 2))
        self.pred: Prediction | None = None  # the prediction the next step's prior comes from
        self.from_display = 0  # the next step's bands that take the shown image's locations

    def prior(self, i: int) -> entropy.CodedPrior:
        return self.chain.prior(i, self.pred, self.from_display)

    def values(self, i: int) -> np.ndarray:
        """The original's values of step i's coded elements (after prior(i))."""
        return self.chain.elements(i, self.x, self.x_bands)

    def code_all(
        self, i: int, prior: entropy.CodedPrior, xs: np.ndarray
    ) -> tuple[entropy.StepPrior, np.ndarray]:
        """Code every element of step i under `prior` with the colour context fitted as the encoder
        fits it, and apply them: (the prior as coded, the symbols)."""
        _, coded = self.chain.coding_prior(prior, xs)
        p = coded.part(slice(None))
        k = entropy.quantise(xs, p)
        self.chain.apply(i, entropy.reconstruct(k, p), np.arange(k.size))
        return p, k

    def predict(self, i: int) -> None:
        """The network's prediction after Haar step i, not yet filtered."""
        self.pred = self.chain.predict(i)

    def choose_filter(self, i: int, bits: float) -> None:
        """The encoder's display filter for step i and bands for step i+1, given the step's bits."""
        self.pred.filter, self.from_display, self.sse = self.codec.step_filter(
            self.chain, i, self.pred, self.original, self.x_bands, self.sse, bits
        )

    def finish(self, i: int, bits: float) -> None:
        """After step i is applied: predict and choose, for a Haar step (nothing after the last)."""
        if i < self.codec.num_steps:
            self.predict(i)
            self.choose_filter(i, bits)


def ideal_bits(codec: Codec, pixels: np.ndarray, seed: int = 0, mirrors: int = 1) -> list[float]:
    """Sum of -log2 P(symbol) of every layer under the exact model (for measuring coder overhead)."""
    run = ChainRun(codec, pixels, seed, mirrors)
    out, prior = [], None
    for i in range(1, codec.num_steps + 1):
        prior, k = run.code_all(i, run.prior(i), run.values(i))  # colour context included
        out.append(entropy.step_ideal_bits(k, prior))
        run.finish(i, out[-1])
    levels = run.original.ravel().astype(np.int64)
    q, h, w, xt = codec.model.schedule.pixel_quant, run.chain.h, run.chain.w, run.chain.pixel_tilde
    _, loc, scale = lossless_context.encoder_prior(
        levels, xt, prior.loc, prior.scale, q, h, w, codec.lossless_context
    )
    out.append(entropy.levels_ideal_bits(levels, xt, loc, scale, q))
    return out
