"""Decoding a .uqd file while its bytes are still arriving.

A progressive file's point is that every prefix is already an image. `codec.Decoder` turns bytes
into images as chunks complete; this module is the loop around it that a pipeline runs
(`curl URL | uqdm decode - --stream -o preview.png`): read what the pipe holds, feed it, hand each
better image on at once. The last image is exactly what `decode` gives for all the bytes that came.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from . import container
from .codec import DecodedImage, Decoder
from .errors import FormatError

PIECE = 1 << 16  # the most read at once; a pipe hands over what it holds, often less


def read_pieces(source: BinaryIO, piece: int = PIECE) -> Iterator[bytes]:
    """The bytes of `source` as they come: `read1` returns what a pipe holds now instead of waiting
    for a full piece, so a slow sender's first chunk is decoded before its last is sent."""
    read = getattr(source, "read1", None) or source.read
    while True:
        data = read(piece)
        if not data:
            return
        yield data


def decode_stream(pieces: Iterable[bytes], model=None, device=None) -> Iterator[DecodedImage]:
    """Each image the bytes received so far decode to, from the header's blank image on, each one
    better than the last; the final one equals `decode` of all the bytes. FormatError when the
    bytes end before a whole header (or are not a .uqd file), as `decode` would raise."""
    decoder = Decoder(model, device)
    received = bytearray()
    for piece in pieces:
        received += piece
        if decoder.feed(piece) is not None:
            yield decoder.latest
    if decoder.latest is None:
        if not received:
            raise FormatError("the input is empty: no .uqd header arrived")
        container.parse_header(bytes(received))  # raises the error `decode` gives for these bytes
        raise FormatError(f"the input ended after {len(received)} bytes, inside the .uqd header")
