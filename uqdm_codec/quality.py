"""Encoding to a quality or a size: the shortest file that reaches a PSNR, or the longest within a
budget, written by the encoder itself.

Why here and not in `truncate`: a .uqd file does not say how good its images are unless it was
encoded with a PSNR index (FORMAT.md 1.2, `encode --psnr-index`; not the default: it costs about
a byte per chunk, uqdm 0.38-0.40 skip it with a warning and older ones refuse it, and `truncate
--psnr` can only cut on the chunk boundaries it lists), but the encoder knows the original, and
its judge (codec._Judge) already measures the squared error of the image a decoder
shows after every chunk, to set the chunks' show flags. Recorded as a `ScreenTrace`, that gives the
PSNR of every prefix that ends on a chunk boundary, exactly as every decoder will show it (FORMAT.md
7), and lets the encoder stop once the target is reached instead of coding the rest of the chain.
Inside a chunk the judge sees nothing; cut_judge.py decodes the cuts it needs there. No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

from . import container, files
from .errors import UqdmError, is_whole, option

PEAK = 255.0


@dataclass
class ScreenTrace:
    """What a decoder shows at every chunk boundary of one untiled file (or one region of a tiled
    file), as the encoder judged it: the squared error (sum over pixels and colours, against the
    original) of the blank image, then of the image on screen after each chunk of each layer."""

    start: int = 0
    layers: list[list[int]] = field(default_factory=list)
    tail: list[int] | None = None  # the same for the tail record coded as an alternative end

    def use_tail(self, first_replaced: int) -> None:
        """The file keeps the alternative tail in place of layers `first_replaced` on."""
        if self.tail is None:
            raise AssertionError("no trace of the alternative tail")
        self.layers = [*self.layers[: first_replaced - 1], self.tail]


def file_order(traces: list[ScreenTrace]) -> list[int]:
    """The whole image's squared error at every chunk boundary of the file the traces' regions make
    (one trace: an untiled file), in file order: records go layer 1 of regions 0 .. R-1, layer 2 of
    regions 0 .. R-1, ... (FORMAT.md 1.1), and a region not yet reached shows what it showed."""
    current = [t.start for t in traces]
    total = sum(current)
    out = [total]
    for i in range(max((len(t.layers) for t in traces), default=0)):
        for r, t in enumerate(traces):
            for err in t.layers[i] if i < len(t.layers) else ():
                total += err - current[r]
                current[r] = err
                out.append(total)
    return out


def psnr_of(sse: int, pixels: int) -> float:
    """PSNR in dB of an RGB image of `pixels` pixels with squared error `sse` (inf when exact)."""
    if sse == 0:
        return math.inf
    return 10.0 * math.log10(PEAK * PEAK * 3 * pixels / sse)


@dataclass(frozen=True)
class Target:
    """What an encode aims at: the shortest prefix whose image reaches `psnr` dB, the longest within
    `bpp` bits per pixel or `max_bytes` bytes (what `truncate` keeps of the whole file), or the first
    `steps` diffusion steps. At most one is given; none: the whole, lossless file."""

    psnr: float | None = None
    bpp: float | None = None
    steps: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if sum(v is not None for v in (self.psnr, self.bpp, self.steps, self.max_bytes)) > 1:
            raise UqdmError("give at most one of psnr, bpp, max_bytes or steps")
        if self.psnr is not None:
            files.check_psnr(self.psnr, " (leave it out for the lossless file)")
        if self.bpp is not None:
            files.check_bpp(self.bpp)
        if self.steps is not None and not is_whole(self.steps):
            raise UqdmError(f"steps must be a whole number, not {self.steps!r}")
        if self.max_bytes is not None:
            files.check_max_bytes(self.max_bytes)
        for name, kind in (("psnr", float), ("bpp", float), ("steps", int), ("max_bytes", int)):
            if getattr(self, name) is not None:  # Python numbers: NumPy's float32 computes in float32
                object.__setattr__(self, name, kind(getattr(self, name)))

    def check_psnr_index(self, psnr_index: bool) -> None:
        """A PSNR index is written into a file's header once its chunk boundaries are known, which a
        byte budget, counting the header's bytes, would need before."""
        if psnr_index and self.budgeted:
            what, cli, keyword = (
                ("bpp", "--bpp", "bpp=") if self.bpp is not None else ("size", "--bytes", "max_bytes=")
            )
            raise UqdmError(
                f"a PSNR index does not go with a {what} target: encode with the index, then "
                + option(f"truncate {cli}", f"truncate(data, {keyword})")
            )

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.psnr, self.bpp, self.steps, self.max_bytes))

    @property
    def budgeted(self) -> bool:
        """A byte budget (bpp or max_bytes): the file is what `truncate` keeps of the whole one."""
        return self.bpp is not None or self.max_bytes is not None

    def byte_budget(self, width: int, height: int) -> int | None:
        """The bytes a `bpp` or `max_bytes` target allows, a bpp rounded as `truncate` rounds it."""
        if self.max_bytes is not None:
            return int(self.max_bytes)
        if self.bpp is None:
            return None
        return files.budget_bytes(self.bpp, width, height)

    def truncate(self, data: bytes) -> bytes:
        """What `truncate` keeps of `data` within this target's byte budget."""
        return files.truncate(data, bpp=self.bpp, max_bytes=self.max_bytes)

    def stopper(self, width: int, height: int, whole_image: bool) -> Callable[[int, int, int], bool] | None:
        """stop(layer, bytes so far, squared error on screen): whether an encoder may stop after this
        layer, since no later byte can be in the file it returns. whole_image False (a region of a
        tiled file): a region's own error or bytes do not decide, so only `steps` stops early."""
        if self.steps is not None:
            steps = self.steps
            return lambda i, size, sse: i >= steps
        if not whole_image:
            return None
        if self.psnr is not None:
            psnr, pixels = self.psnr, width * height
            return lambda i, size, sse: psnr_of(sse, pixels) >= psnr
        if self.budgeted:
            budget = self.byte_budget(width, height)
            return lambda i, size, sse: size >= budget
        return None


@dataclass
class Encoded:
    """An encoder's output with what it knows of it: the file's bytes and the squared error of the
    image on screen at each of its chunk boundaries (files.info(data).cut_points, the end of a cut
    chunk among them: the encoder judges that image by decoding it, cut_judge.py; None where no
    one judged it)."""

    data: bytes
    screen: list[int | None]
    width: int
    height: int

    def psnr_at(self, offset: int) -> float | None:
        """PSNR of the image a decoder shows from the first `offset` bytes, where that is a chunk
        boundary the encoder judged; None otherwise."""
        k = self._cut_index.get(offset)
        sse = None if k is None else self.screen[k]
        return None if sse is None else psnr_of(sse, self.width * self.height)

    @cached_property
    def _cut_index(self) -> dict[int, int]:
        return {end: k for k, end in enumerate(files.info(self.data).cut_points)}

    @property
    def psnr(self) -> float | None:
        """PSNR of the image the whole file decodes to (inf: lossless; None: not judged)."""
        sse = self.screen[-1]
        return None if sse is None else psnr_of(sse, self.width * self.height)


def cut(data: bytes, traces: list[ScreenTrace], target: Target) -> Encoded:
    """The prefix of `data` (a file as its encoder wrote it, maybe stopped early by
    Target.stopper) that `target` asks for, with the screen errors of its chunk boundaries."""
    fi = files.info(data)
    hd = fi.header
    screen: list[int | None] = list(file_order(traces))
    if len(screen) != len(fi.cut_points):
        raise AssertionError(f"{len(screen)} judged images for {len(fi.cut_points)} chunk boundaries")
    pixels = hd.width * hd.height
    if target.psnr is not None:
        k = next(
            (k for k, sse in enumerate(screen) if psnr_of(sse, pixels) >= target.psnr),  # type: ignore[arg-type]
            len(screen) - 1,
        )
        out = bytes(data[: fi.cut_points[k]])
    elif target.steps is not None:
        out = files.truncate(data, steps=target.steps)
    elif target.budgeted:
        out = target.truncate(data)
    else:
        out = bytes(data)
    kept = [sse for c, sse in zip(fi.cut_points, screen) if c <= len(out)]
    if len(out) not in fi.cut_points:
        kept.append(None)  # ends in a cut chunk
    return Encoded(out, kept, hd.width, hd.height)


def index_entry(psnr: float) -> int:
    """A PSNR as the header's PSNR index holds it: hundredths of a dB rounded down (so an entry
    never promises more than the image has), PSNR_EXACT for an exact image."""
    if psnr == math.inf:
        return container.PSNR_EXACT
    return min(container.PSNR_EXACT - 1, max(0, math.floor(psnr * container.PSNR_PER_DB - 1e-9)))


def with_psnr_index(encoded: Encoded) -> Encoded:
    """`encoded` with the PSNR of every chunk boundary it holds (not the end of a cut chunk) in its
    header (FORMAT.md 1.2): what `truncate --psnr` reads. The layers are the same bytes, the
    chunk boundaries move by the header's growth."""
    fi = files.info(encoded.data)
    count = len(fi.chunk_boundaries)
    judged = encoded.screen[:count]
    if len(judged) != count or any(sse is None for sse in judged):
        raise AssertionError("a chunk boundary the encoder did not judge")
    pixels = encoded.width * encoded.height
    entries = tuple(index_entry(psnr_of(sse, pixels)) for sse in judged)  # type: ignore[arg-type]
    plain = fi.header.to_bytes()
    if encoded.data[: fi.header_bytes] != plain:
        raise AssertionError("the header does not write itself back as it was read")
    data = replace(fi.header, psnr_index=entries).to_bytes() + encoded.data[fi.header_bytes :]
    return Encoded(data, list(encoded.screen), encoded.width, encoded.height)
