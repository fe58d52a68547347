"""Tiled files: an image with a side longer than the codec's region side is coded as a grid of
independent regions, each exactly as an untiled image of its size, with its own seed, and their
layer records interleaved: layer 1 of every region, then layer 2, and so on (FORMAT.md 1.1).

Why: the chain's state of a whole image (the latent, the coefficient states, a step's coded
elements and the network's outputs: about 210 bytes per pixel) cannot be held for a 67-megapixel
photo in a few GB. Coded by regions, encoding and decoding hold one region's chain at a time, so
their memory is bounded by the region size whatever the image's, and the time per megapixel is
that of an image of the region's size. The file stays progressive as a whole: every prefix that
ends on a layer boundary holds that many steps of every region, and a prefix inside a layer holds
one more step of the regions before the cut (rows of regions, left to right) than of the others.

What it costs: the network does not see across region borders, so each region pays the bits of an
image edge there, and at the lowest rates, where the previews are blurry, the seams between
regions can show; each region also fits its own colour context, and on a 2048x1536 photo-like
image the tiled file came out 0.07 % smaller than the untiled one (README "Big photos").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from . import container, quality
from .codec import Codec, DecodedImage, Progress, _DecodeSession, choose_end
from .container import Header, RegionPart
from .errors import UqdmError
from .inference import release_memory


def region_size(width: int, height: int, limit: int, multiple: int) -> tuple[int, int]:
    """The region width and height for an image: as few columns (rows) as keep a region's side
    within `limit`, of near-equal size, rounded up to the network's Haar block (and to 16, which the
    format asks for) so that only the last column (row) is padded."""
    step = math.lcm(multiple, 16)

    def side(n: int) -> int:
        count = math.ceil(n / limit)
        return math.ceil(math.ceil(n / count) / step) * step

    return side(width), side(height)


def encode(
    codec: Codec,
    pixels: np.ndarray,
    header: Header,
    progress: Progress | None = None,
    fast: bool = False,
    tail: bool | None = False,
    traces: list[quality.ScreenTrace] | None = None,
    stop: Callable[[int, int, int], bool] | None = None,
) -> bytes:
    """The tiled file of `pixels`: each region encoded in turn (its chain freed before the next),
    then the layer records interleaved (fast and tail: as for Codec.encode; with tail None every
    region is coded both ways and the smaller file kept). traces: receives each region's
    quality.ScreenTrace; stop: as for Codec.encode_layers, the same for every region (a region
    that stops before another would cut the file there)."""
    size = region_size(header.width, header.height, codec.region, codec.net.multiple)
    header = replace(header, region=size)
    boxes = header.regions()
    per = header.num_layers
    records: list[list[bytes]] = []
    tails: list[bytes] | None = [] if tail is None else None
    for r, (x0, y0, x1, y1) in enumerate(boxes):

        def step(i: int, _n: int, r: int = r) -> None:
            if progress:
                progress(r * per + i, len(boxes) * per)

        sub = np.ascontiguousarray(pixels[y0:y1, x0:x1])
        trace = quality.ScreenTrace() if traces is not None else None
        if trace is not None:
            traces.append(trace)
        region = codec.encode_layers(
            sub, header.region_header(r), step, fast, tails, trace, stop, gray=header.gray
        )
        records.append(region[1:])
        del sub, region
        release_memory()
    coded = min(len(rec) for rec in records)
    if tails is not None and coded == header.num_layers:
        header, records = choose_end(header, records, tails)
        if header.tail:
            for trace in traces or ():
                trace.use_tail(header.num_steps)
    out = [header.to_bytes()]
    for i in range(min(len(rec) for rec in records)):
        for rec in records:
            out.append(rec[i])
            rec[i] = b""
    return b"".join(out)


def _check(codec: Codec, data: bytes, steps: int | None, every_chunk: bool = False):
    hd, size, parts = container.split_tiled(data)
    codec.check_header(hd)
    if every_chunk:
        raise UqdmError(
            f"per-chunk images are not available for a tiled file ({len(parts)} regions); decode by steps"
        )
    if steps is not None:
        hd.check_steps_held(steps, min(len(container.parse(p.data).layers) for p in parts))
    return hd, size, parts


class _Mosaic:
    """Region images pasted into the whole image, and the whole image's DecodedImage."""

    def __init__(self, hd: Header, parts: list[RegionPart]):
        self.hd, self.parts = hd, parts
        self.boxes = hd.regions()
        self.pixels = np.empty((hd.height, hd.width, 3), np.uint8)
        self.shown: np.ndarray | None = None
        self.images: list[DecodedImage | None] = [None] * len(parts)

    def put(self, r: int, image: DecodedImage) -> None:
        x0, y0, x1, y1 = self.boxes[r]
        self.pixels[y0:y1, x0:x1] = image.pixels
        if image.shown is not None:
            if self.shown is None:
                self.shown = self.pixels.copy()
            self.shown[y0:y1, x0:x1] = image.shown
        elif self.shown is not None:
            self.shown[y0:y1, x0:x1] = image.pixels
        self.images[r] = replace(image, pixels=np.zeros((0, 0, 3), np.uint8), shown=None)

    def image(self, header_size: int, copy: bool = True) -> DecodedImage:
        """The whole image now (its arrays copied unless `copy` is False: the last image only)."""
        got = [im for im in self.images if im is not None]
        warnings = []
        for r, im in enumerate(self.images):
            if im is not None:
                x0, y0, *_ = self.boxes[r]
                warnings += [f"region {r + 1} (at {x0},{y0}): {w}" for w in im.warnings if w not in warnings]
        ends = [self.parts[r].file_offset(im.nbytes) for r, im in enumerate(self.images) if im is not None]
        layer = max(im.layer for im in got)
        return DecodedImage(
            self.pixels.copy() if copy else self.pixels,
            min(im.steps for im in got),
            all(im.lossless for im in got),
            warnings,
            layer,
            sum(im.chunks for im in got if im.layer == layer),
            all(im.complete and im.layer == layer for im in got),
            max([header_size, *(e for e in ends if e is not None)]),
            "sample" if any(im.recon == "sample" for im in got) else "mean",
            None if self.shown is None else self.shown.copy() if copy else self.shown,
            any(im.tail for im in got if im.layer == layer),
        )


def decode(
    codec: Codec, data: bytes, steps: int | None, progress: Progress | None, recon: str, seed: int
) -> DecodedImage:
    """A tiled file's image after `steps` steps (default: all it holds), one region at a time."""
    hd, size, parts = _check(codec, data, steps, False)
    mosaic = _Mosaic(hd, parts)
    for r, part in enumerate(parts):

        def step(i: int, n: int, r: int = r) -> None:
            if progress:
                progress(r * n + i, len(parts) * n)

        mosaic.put(r, codec.decode(part.data, steps, step, recon=recon, seed=seed))
        part.data = b""  # decoded: its bytes are no longer needed
        release_memory()
    return mosaic.image(size, copy=False)


def iter_decode(
    codec: Codec,
    data: bytes,
    steps: int | None,
    progress: Progress | None,
    every_chunk: bool,
    recon: str,
    seed: int,
) -> Iterator[DecodedImage]:
    """Codec.iter_decode of a tiled file: the whole image before any step and after each layer.
    The regions are decoded one at a time (one chain alive, as in decode()) and their images kept
    per level: the whole progression costs the images (what a caller that keeps every level holds
    anyway), not every region's chain at once. A region with fewer layers keeps its last image."""
    hd, size, parts = _check(codec, data, steps, every_chunk)
    levels: list[list[DecodedImage | None]] = []
    for r, part in enumerate(parts):

        def step(i: int, n: int, r: int = r) -> None:
            if progress:
                progress(r * n + i, len(parts) * n)

        levels.append(list(codec.iter_decode(part.data, steps, step, False, recon, seed)))
        part.data = b""
        release_memory()
    mosaic = _Mosaic(hd, parts)
    for n in range(max(len(lv) for lv in levels)):
        for r, lv in enumerate(levels):
            if n < len(lv):
                mosaic.put(r, lv[n])
                lv[n] = None  # pasted: the whole image holds it now
        yield mosaic.image(size)


class StreamingTiles:
    """The streaming decoder's state for a tiled file: one decode session per region (all alive,
    as for an untiled image), fed the region's part of the bytes so far."""

    def __init__(self, codec: Codec, header: Header, header_size: int):
        codec.check_header(header)
        self.codec, self.hd, self.size = codec, header, header_size
        self.sessions: list[_DecodeSession] = []
        self.mosaic: _Mosaic | None = None

    def blank(self, warnings: list[str]) -> DecodedImage:
        parts = [RegionPart(self.hd.region_header(r), b"", 0) for r in range(len(self.hd.regions()))]
        self.mosaic = _Mosaic(self.hd, parts)
        for r, part in enumerate(parts):
            head = part.header.to_bytes()
            self.sessions.append(_DecodeSession(self.codec, part.header, len(head)))
            self.mosaic.put(r, self.sessions[-1].blank([]))
        return self.mosaic.image(self.size)

    def feed(self, data: bytes) -> list[DecodedImage]:
        """Apply what the bytes so far add; the whole image after it, if anything changed."""
        _, _, parts = container.split_tiled(data)
        self.mosaic.parts = parts
        changed = False
        for r, (session, part) in enumerate(zip(self.sessions, parts)):
            images = list(session.advance(container.parse(part.data)))
            if images:
                self.mosaic.put(r, images[-1])
                changed = True
        return [self.mosaic.image(self.size)] if changed else []
