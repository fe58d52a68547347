"""Decoding a .uqd file while its bytes are still arriving.

A progressive file's point is that every prefix is already an image. `codec.Decoder` turns bytes
into images as chunks complete; this module is the loop around it that a pipeline runs
(`curl URL | uqdm decode - --stream -o preview.png`): read what the pipe holds, feed it, hand each
better image on at once. The last image is exactly what `decode` gives for all the bytes that came.
"""

from __future__ import annotations

import io
import os
import select
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from . import container, files
from .codec import DecodedImage, Decoder
from .errors import FormatError, UqdmError, is_whole

PIECE = 1 << 16  # one read: a pipe hands over what it holds, at most its capacity (64 KiB on Linux)
CATCH_UP = 1 << 24  # the most taken at once when more is waiting: 16 MiB


def _descriptor(source: BinaryIO) -> int | None:
    """The file descriptor behind `source`, where select() can tell whether more bytes are waiting
    (POSIX only: on Windows select() takes sockets alone)."""
    if os.name == "nt":
        return None
    try:
        return source.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # BytesIO, test doubles
        return None


def read_pieces(source: BinaryIO, piece: int = PIECE) -> Iterator[bytes]:
    """The bytes of `source` as they come: each piece is what was waiting when the last one was
    handed on (one read blocks until something arrives, then everything already there up to 16
    MiB is taken without waiting), so a slow sender's first chunk is decoded before its last is
    sent, and a decoder that fell behind catches up in one step instead of one read at a time.
    Reads go through `read1` where the source has it: bytes a buffered reader already holds (an
    HTTP body after its headers were read line by line) come first, none is skipped."""
    read = getattr(source, "read1", None) or source.read  # what is there, not a full piece
    fd = _descriptor(source)
    while data := read(piece):
        parts, size, ended = [data], len(data), False
        while fd is not None and size < CATCH_UP and select.select([fd], [], [], 0)[0]:
            more = read(piece)
            if not more:
                ended = True
                break
            parts.append(more)
            size += len(more)
        yield b"".join(parts)
        if ended:
            return


def decode_stream(
    pieces: Iterable[bytes],
    model=None,
    device=None,
    *,
    steps: int | None = None,
    psnr: float | None = None,
    bpp: float | None = None,
    max_bytes: int | None = None,
) -> Iterator[DecodedImage]:
    """Each image the bytes received so far decode to, from the header's blank image on, each one
    better than the last: every step as soon as it is decoded, and the newest image once a piece
    is used up; the final one equals `decode` of all the bytes (`pieces` may be bytes: one piece).
    FormatError when the bytes end before a whole header (or are not a .uqd file), as `decode` would
    raise.

    With one of `steps` (the first N steps), `psnr` (the shortest prefix the file's PSNR index says
    reaches it), `bpp` or `max_bytes` (the longest prefix within the budget), no piece is read once
    the bytes that prefix needs are in, nothing after it is decoded, and the final image is what
    `decode` gives with that option, i.e. the image of what `truncate` keeps. A budget needs the
    whole chunk it ends in (`truncate` cuts that chunk, with a new CRC at its start), so the decoder
    is fed whole chunks only and reading stops once a chunk ends at or past the budget. UqdmError,
    after the images of what came, when the bytes end before a step or PSNR stop."""
    if isinstance(pieces, (bytes, bytearray, memoryview)):  # iterating bytes gives ints, not pieces
        pieces = [bytes(pieces)]
    given = sum(v is not None for v in (steps, psnr, bpp, max_bytes))
    stop = _Stop(steps, psnr, bpp, max_bytes) if given else None
    decoder = Decoder(model, device)
    received, fed = bytearray(), 0

    def images(data: bytes) -> Iterator[DecodedImage]:
        """The decoder's images of `data`, each with the line on damage met after the stop."""
        for image in decoder.images(data):
            image.warnings[:0] = stop.damage
            yield image

    for piece in pieces:
        if stop is None:
            yield from decoder.images(piece)
            continue
        received += piece
        goal, upto = stop.where(bytes(received), ended=False)
        if upto > fed:  # before the goal is known, every byte fed lies inside it
            yield from images(bytes(received[fed:upto]) if goal is None else goal[fed:])
            fed = upto
        if goal is not None:
            return
    if decoder.latest is None:  # no whole header arrived (a stop feeds the header once it is whole)
        received = bytes(received) if stop is not None else decoder.received
        if not received:
            raise FormatError("the input is empty: no .uqd header arrived")
        container.parse_header(received)  # raises the error `decode` gives for these bytes
        raise FormatError(f"the input ended after {len(received)} bytes, inside the .uqd header")
    if stop is not None:  # raises where the bytes ended before a step or PSNR stop
        goal, _ = stop.where(bytes(received), ended=True)  # a budget: truncate's file of what came
        if len(goal) > fed:
            yield from images(goal[fed:])


class _Stop:
    """Where a stream decoded with --steps, --psnr, --bpp or --bytes ends: the bytes `decode` with
    that option reads (a prefix, or for a budget `truncate`'s file, whose last chunk may be cut),
    known once the bytes that say where it ends have arrived."""

    def __init__(self, steps=None, psnr=None, bpp=None, max_bytes=None) -> None:
        if sum(v is not None for v in (steps, psnr, bpp, max_bytes)) > 1:
            raise UqdmError("give at most one of steps, psnr, bpp and max_bytes")
        if steps is not None and not is_whole(steps):
            raise UqdmError("steps must be a whole number")
        if psnr is not None:
            files.check_psnr(psnr)
        if bpp is not None:
            files.check_bpp(bpp)
        if max_bytes is not None:
            files.check_max_bytes(max_bytes)
        self.steps, self.psnr, self.bpp, self.max_bytes = steps, psnr, bpp, max_bytes
        self.damage: list[str] = []  # a line on damage met after the prefix asked for

    def _asked(self) -> dict:
        asked = {"steps": self.steps, "psnr": self.psnr, "bpp": self.bpp, "max_bytes": self.max_bytes}
        return {name: value for name, value in asked.items() if value is not None}

    def _info(self, received: bytes, ended: bool) -> files.FileInfo | None:
        if len(received) < len(container.MAGIC) and container.MAGIC.startswith(received) and not ended:
            return None
        try:
            return files.info(received)
        except FormatError as exc:
            if "too short" in str(exc) and not ended:
                return None
            raise

    def where(self, received: bytes, ended: bool) -> tuple[bytes | None, int]:
        """(goal, how many bytes the decoder may have now). The goal: the bytes the decoder ends
        with, or None while the bytes so far cannot tell (never None once they have `ended`).
        Until it is known the decoder may have every byte for a step or PSNR stop (its end lies
        past every byte that cannot yet tell it), but whole chunks only for a budget, whose last
        chunk may be cut. Bytes after damage (a checksum that fails) are of no use: what lies before
        it decides, as if the bytes had ended there, with a line in `damage`."""
        try:
            fi = self._info(received, ended)
        except FormatError as exc:
            if exc.intact is None:
                raise
            notes: list[str] = []
            head = files.truncate(received, notes=notes, **self._asked())  # or the error of the damage
            self.damage = notes
            return head, len(head)
        goal = None if fi is None else self.goal(fi, received, ended)
        if goal is not None:
            return goal, len(goal)
        if self.bpp is None and self.max_bytes is None:
            return None, len(received)
        return None, 0 if fi is None else fi.cut_points[-1]

    def goal(self, fi: files.FileInfo, received: bytes, ended: bool) -> bytes | None:
        """The bytes the decoder ends with (`fi`: info of `received`), or None while the bytes so
        far cannot tell; UqdmError where the file cannot give them (too few steps, no PSNR index
        or none that reaches the target, a budget below the header), or, once the bytes have
        `ended`, where a step or PSNR stop lies past them."""
        if self.steps is not None:
            fi.header.check_steps(self.steps)
            if fi.steps >= self.steps:
                return received[: fi.layers[self.steps - 1].end if self.steps else fi.header_bytes]
            if ended:
                fi.header.check_steps_held(self.steps, fi.steps)
            return None
        if self.psnr is not None:
            index = fi.header.psnr_index
            if index is not None and max(index) < files.psnr_entry_needed(self.psnr):
                raise UqdmError(
                    f"no prefix of the file is known to reach {self.psnr:g} dB: its PSNR index goes "
                    f"up to {files.psnr_of_entry(max(index)):.2f} dB"
                )
            try:
                return received[: files.psnr_end(fi, self.psnr)]  # also the error without an index
            except UqdmError:
                if ended or index is None:
                    raise
                return None
        budget = self.max_bytes
        if budget is None:
            budget = files.budget_bytes(self.bpp, fi.header.width, fi.header.height)
        if ended or fi.complete or fi.cut_points[-1] >= budget or budget < fi.header_bytes:
            return files.truncate(received, max_bytes=budget)  # also the error of a budget too small
        return None
