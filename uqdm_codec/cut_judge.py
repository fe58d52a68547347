"""The image a file cut inside a chunk shows, judged by the encoder, and the shortest such cut that
reaches a quality.

Why: `encode --psnr` cut its files on chunk boundaries, the only places the encoder's judge sees
(quality.py), and a chunk is about 12 % of the bytes before it, so a file landed on average a few
tenths of a dB above its target, paying bytes for them. A file may end inside a chunk (a *cut* chunk,
FORMAT.md 2.1), and a decoder then shows an image from the symbols those words hold. The encoder
cannot predict that image from its own state without redoing the decoder's work, so it runs the
decoder: a decode session brought up to the chunk before, then, for each candidate cut, a copy of
it fed the cut file. What it measures is therefore what every decoder shows (the exact arithmetic
of FORMAT.md 8), not an estimate.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import container, files, quality
from .codec import Codec, _DecodeSession, _Judge

# candidate cuts tried per search: each costs a copy of the decode session, the symbols of a part of
# one chunk and at most one network pass
MAX_TRIES = 10
# the search stops once the cut is known to within this share of the file (or a few words)
RESOLUTION = 0.002


@dataclass
class CutSession:
    """A decode session of an untiled file's prefix, kept at its last chunk boundary, from which
    the image of any longer prefix ending within the next chunk is decoded on a copy."""

    codec: Codec
    original: np.ndarray  # (H, W, 3) uint8
    session: _DecodeSession
    boundary: int  # the prefix the session has applied: a chunk boundary
    gray: bool = False  # a grayscale image's file: its error is the gray view's (codec.gray_view)

    @classmethod
    def at(cls, codec: Codec, original: np.ndarray, data: bytes, boundary: int, gray: bool) -> CutSession:
        """A session that has decoded data[:boundary] (a chunk boundary of the untiled file `data`;
        gray: its whole file's header says the image is grayscale)."""
        parsed = container.parse(bytes(data[:boundary]))
        session = _DecodeSession(codec, parsed.header, parsed.header_size)
        for _ in session.advance(parsed):
            pass
        return cls(codec, original, session, boundary, gray)

    @cached_property
    def _judge(self) -> _Judge:
        """The encoder's measure of squared error, from the image on screen at the boundary."""
        return _Judge(self.original, self.session.shown, self.gray)

    @property
    def shown_error(self) -> int:
        """The squared error of the image on screen at the session's boundary."""
        return self._judge.best

    def error(self, prefix: bytes) -> int:
        """The squared error against the original of the image a decoder shows from `prefix`, a file
        that extends the session's prefix by at most one chunk, maybe cut (FORMAT.md 2.1)."""
        keep = {id(self.codec): self.codec, id(self.session.chain.net): self.session.chain.net}
        twin = copy.deepcopy(self.session, keep)
        shown = twin.shown
        for image in twin.advance(container.parse(prefix)):
            shown = image.pixels
        return self._judge.error(shown)


@dataclass
class _LastRegion:
    """The untiled file whose chunk a prefix ends in: the file itself, or the region of a tiled file
    (FORMAT.md 1.1) whose record comes last, as its own untiled file with its part of the original.
    A tiled image's error is the sum of its regions', so only that region's changes."""

    region: int | None  # None: an untiled file
    data: bytes
    original: np.ndarray
    gray: bool  # the whole file's header says the image is grayscale (a region's says nothing)

    @classmethod
    def of(cls, data: bytes, original: np.ndarray) -> _LastRegion:
        header, size = container.parse_header(data)
        if not header.tiled:
            return cls(None, bytes(data), original, header.gray)
        _, _, parts = container.split_tiled(data, (header, size))
        r = next(r for r, p in enumerate(parts) if p.segments and sum(p.segments[-1][1:]) == len(data))
        x0, y0, x1, y1 = header.regions()[r]
        return cls(r, parts[r].data, original[y0:y1, x0:x1], header.gray)

    def bytes_of(self, prefix: bytes) -> bytes:
        """The region's file in a longer (or cut) prefix of the same file."""
        return prefix if self.region is None else container.split_tiled(prefix)[2][self.region].data


def shortest_cut(
    codec: Codec,
    original: np.ndarray,
    encoded: quality.Encoded,
    psnr: float,
    judge: CutSession | None = None,
) -> quality.Encoded:
    """`encoded` (a file cut on the first chunk boundary whose image reaches `psnr` dB) shortened
    to a cut inside its last chunk whose image still reaches it, where one is found; the search is
    a bisection over the chunk's words, each candidate decoded (CutSession; in a tiled file, the
    region the chunk belongs to). judge: a session already at the chunk boundary before the last
    chunk of an untiled file, to be reused for other targets."""
    data, screen = encoded.data, encoded.screen
    fi = files.info(data)
    if fi.ends_in_cut_chunk or len(fi.cut_points) < 2 or fi.cut_points[-1] != len(data) or MAX_TRIES <= 0:
        return encoded
    pixels = encoded.width * encoded.height
    before = screen[-2]
    if before is None or screen[-1] is None or quality.psnr_of(before, pixels) >= psnr:
        return encoded
    if quality.psnr_of(screen[-1], pixels) < psnr:  # the target was never reached: the whole file
        return encoded
    start = fi.chunk_spans[-1][0]  # the last chunk, from its CRC field
    lo = start + 4 + 4 * (container.MIN_CUT_WORDS - 1)  # longest prefix known to fall short
    hi, best = len(data), (data, screen[-1])
    if hi - lo <= 4:
        return encoded
    view = _LastRegion.of(data, original)
    own = files.info(view.data)
    last = own.layers[-1] if own.layers else None
    if (
        last is not None
        and last.end == len(view.data)
        and not last.lossless
        and last.index < own.header.num_steps
    ):
        # the last chunk of a Haar step: cut, it shows per-coefficient estimates (it may not carry
        # the network flag, FORMAT.md 7), below the network's image before it; only whole it reaches
        return encoded
    if judge is None or view.region is not None or judge.boundary != own.cut_points[-2]:
        judge = CutSession.at(codec, view.original, view.data, own.cut_points[-2], view.gray)
    others = before - judge.shown_error  # the other regions' error (0 for an untiled file)
    step = max(4, int(RESOLUTION * len(data)) // 4 * 4)
    for tried in range(MAX_TRIES):
        if hi - lo <= step:
            break
        # first the cut one resolution short of the whole chunk: where even that falls short, the
        # chunk's partial images are no use and the search ends there; then bisection
        mid = hi - step if tried == 0 else lo + (hi - lo) // 8 * 4  # word boundaries
        mid = max(mid, start + 4 + 4 * container.MIN_CUT_WORDS)
        candidate = container.cut_chunk_bytes(data, start, mid)  # what truncate keeps of `mid` bytes
        sse = others + judge.error(view.bytes_of(candidate))
        if quality.psnr_of(sse, pixels) >= psnr:
            hi, best = mid, (candidate, sse)
        elif tried == 0:
            break
        else:
            lo = mid
    out, sse = best
    if out is data:
        return encoded
    return quality.Encoded(out, [*screen[:-1], sse], encoded.width, encoded.height)


def judge_end(codec: Codec, original: np.ndarray, encoded: quality.Encoded) -> quality.Encoded:
    """`encoded`, a file that ends in a cut chunk (what `truncate` makes of a budget), with the
    squared error of the image it shows (quality.Encoded.screen's last entry)."""
    fi = files.info(encoded.data)
    if not fi.ends_in_cut_chunk or len(fi.cut_points) < 2 or encoded.screen[-2] is None:
        return encoded
    view = _LastRegion.of(encoded.data, original)
    own = files.info(view.data)
    judge = CutSession.at(codec, view.original, view.data, own.cut_points[-2], view.gray)
    sse = encoded.screen[-2] - judge.shown_error + judge.error(view.data)
    return quality.Encoded(encoded.data, [*encoded.screen[:-1], sse], encoded.width, encoded.height)
