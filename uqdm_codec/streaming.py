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

from . import container
from .codec import DecodedImage, Decoder
from .errors import FormatError

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


def decode_stream(pieces: Iterable[bytes], model=None, device=None) -> Iterator[DecodedImage]:
    """Each image the bytes received so far decode to, from the header's blank image on, each one
    better than the last: every step as soon as it is decoded, and the newest image once a piece
    is used up; the final one equals `decode` of all the bytes. FormatError when the
    bytes end before a whole header (or are not a .uqd file), as `decode` would raise."""
    decoder = Decoder(model, device)
    for piece in pieces:
        yield from decoder.images(piece)
    if decoder.latest is None:
        received = decoder.received
        if not received:
            raise FormatError("the input is empty: no .uqd header arrived")
        container.parse_header(bytes(received))  # raises the error `decode` gives for these bytes
        raise FormatError(f"the input ended after {len(received)} bytes, inside the .uqd header")
