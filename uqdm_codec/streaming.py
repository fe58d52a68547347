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
from .errors import FormatError, UqdmError

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
) -> Iterator[DecodedImage]:
    """Each image the bytes received so far decode to, from the header's blank image on, each one
    better than the last: every step as soon as it is decoded, and the newest image once a piece
    is used up; the final one equals `decode` of all the bytes. FormatError when the
    bytes end before a whole header (or are not a .uqd file), as `decode` would raise.

    With `steps` (the first N steps) or `psnr` (the shortest prefix the file's PSNR index says
    reaches it, as `truncate --psnr` keeps), no piece is read once the bytes that prefix needs are
    in, nothing after it is decoded, and the final image is what `decode` gives with that option;
    UqdmError, after the images of what came, when the bytes end before it."""
    stop = _Stop(steps, psnr) if steps is not None or psnr is not None else None
    decoder = Decoder(model, device)
    received, fed = bytearray(), 0
    for piece in pieces:
        if stop is None:
            yield from decoder.images(piece)
            continue
        received += piece
        end = stop.end(bytes(received), ended=False)
        upto = len(received) if end is None else end
        if upto > fed:  # before the end is known, every byte that came lies before it
            yield from decoder.images(bytes(received[fed:upto]))
            fed = upto
        if end is not None:
            return
    if decoder.latest is None:
        received = decoder.received
        if not received:
            raise FormatError("the input is empty: no .uqd header arrived")
        container.parse_header(bytes(received))  # raises the error `decode` gives for these bytes
        raise FormatError(f"the input ended after {len(received)} bytes, inside the .uqd header")
    if stop is not None:
        stop.end(bytes(received), ended=True)  # raises: the bytes ended before the prefix did


class _Stop:
    """Where a stream decoded with --steps or --psnr ends: the prefix `decode` with that option
    reads, known once the bytes that say where it ends have arrived (a layer's last chunk, or the
    header's PSNR index and the chunk it points to)."""

    def __init__(self, steps: int | None, psnr: float | None) -> None:
        if steps is not None and psnr is not None:
            raise UqdmError("give at most one of steps and psnr")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)):
            raise UqdmError("steps must be a whole number")
        if psnr is not None:
            files.check_psnr(psnr)
        self.steps, self.psnr = steps, psnr

    def end(self, received: bytes, ended: bool) -> int | None:
        """The prefix's length, or None while the bytes so far cannot tell; UqdmError where the
        file cannot give it (too few steps, no PSNR index or none that reaches the target), or,
        once the bytes have `ended`, where they stopped short of it."""
        if len(received) < len(container.MAGIC) and container.MAGIC.startswith(received):
            return None
        try:
            fi = files.info(received)
        except FormatError as exc:
            if "too short" in str(exc) and not ended:
                return None
            raise
        if self.steps is not None:
            fi.header.check_steps(self.steps)
            if fi.steps >= self.steps:
                return fi.layers[self.steps - 1].end if self.steps else fi.header_bytes
            if ended:
                raise UqdmError(f"the file holds {fi.steps} complete steps; cannot decode {self.steps}")
            return None
        index = fi.header.psnr_index
        if index is not None and max(index) < files.psnr_entry_needed(self.psnr):
            raise UqdmError(
                f"no prefix of the file is known to reach {self.psnr:g} dB: its PSNR index goes up to "
                f"{files.psnr_of_entry(max(index)):.2f} dB"
            )
        try:
            return files.psnr_end(fi, self.psnr)  # also the error of a file without an index
        except UqdmError:
            if ended or index is None:
                raise
            return None
