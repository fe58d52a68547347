"""Hostile inputs for the decoder, shared by tests/test_fuzz.py and scripts/fuzz_campaign.py.

Each case is bytes built from a real .uqd file (or from nothing): random bytes, bit flips,
truncations at and inside layer boundaries, swapped, dropped and duplicated layers, and headers with
absurd fields but a valid checksum. `inner_mutations` and `tail_mutations` reach past the checksums:
a layer's header or payload damaged, or a lossless tail's parameters, payloads, counts or chunk
order, with the checksums recomputed (a file a buggy or hostile encoder could write). `run_case`
feeds one to decode/info/truncate and classifies the outcome: "ok" (decoded), "error:<Type>" (the
codec's own error) or "crash:<Type>" (a bug).
"""

from __future__ import annotations

import time
from dataclasses import replace
from unittest import mock

import numpy as np
from hypothesis import strategies as st

from uqdm_codec import container, files, lossless_tail
from uqdm_codec.errors import UqdmError


def layer_spans(data: bytes) -> list[tuple[int, int]]:
    fi = files.info(data)
    starts = [fi.header_bytes] + [layer.end for layer in fi.layers[:-1]]
    return list(zip(starts, [layer.end for layer in fi.layers]))


def header_with(
    width=64, height=48, channels=3, steps=8, tile16=64, name=b"m", version=container.VERSION, flags=0
):
    body = (
        container._HEAD.pack(
            container.MAGIC, version, flags, width, height, channels, steps, tile16, bytes(16), 1, len(name)
        )
        + name
    )
    return container.sealed(body)


def mutations(data: bytes):
    """A hypothesis strategy of hostile byte strings derived from `data`."""
    spans = layer_spans(data)
    n = len(data)

    def swap(ij):
        i, j = sorted(ij)
        if i == j:
            return data
        (a0, a1), (b0, b1) = spans[i], spans[j]
        return data[:a0] + data[b0:b1] + data[a1:b0] + data[a0:a1] + data[b1:]

    def drop(i):
        a, b = spans[i]
        return data[:a] + data[b:]

    def duplicate(i):
        a, b = spans[i]
        return data[:b] + data[a:b] + data[b:]

    def splice(args):
        pos, junk = args
        return data[: pos % n] + junk + data[pos % n :]

    k = len(spans)
    return st.one_of(
        st.binary(max_size=400),
        st.builds(
            lambda pos_bit: _flipped(data, [pos_bit]), st.tuples(st.integers(0, n - 1), st.integers(0, 7))
        ),
        st.builds(lambda cut: data[:cut], st.integers(0, n)),
        st.sampled_from([data[:b] for _, b in spans] + [data[: b - 1] for _, b in spans]),
        st.builds(swap, st.tuples(st.integers(0, k - 1), st.integers(0, k - 1))),
        st.builds(drop, st.integers(0, k - 1)),
        st.builds(duplicate, st.integers(0, k - 1)),
        st.builds(splice, st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=40))),
        st.builds(
            lambda w, h, c, s, t, v, f: header_with(w, h, c, s, t, version=v, flags=f),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 65535),
            st.integers(0, 3),
            st.integers(0, 2),
        ),
        st.builds(
            lambda w, h, body: header_with(w, h) + body,
            st.integers(1, 100_000),
            st.integers(1, 100_000),
            st.binary(max_size=64),
        ),
    )


def _flipped(raw: bytes, spots) -> bytes:
    """raw with the bits (position modulo its length, bit) of `spots` flipped (none if it is empty)."""
    if not raw:
        return raw
    out = bytearray(raw)
    for pos, bit in spots:
        out[pos % len(out)] ^= 1 << bit
    return bytes(out)


def inner_mutations(data: bytes):
    """A hypothesis strategy of files with one complete layer damaged inside its checksums: bits
    flipped in its header (after which its checksum is recomputed: the colour context, display
    filter, lossless context or tail parameters a buggy or hostile encoder could write) or in one
    chunk's payload (its checksum recomputed too). `data`: an untiled file."""
    parsed = container.parse(data)
    starts = [parsed.header_size] + parsed.layer_offsets[:-1]

    def damaged(i: int, chunk: int | None, spots) -> bytes:
        k = i % len(parsed.layers)
        layer, start = parsed.layers[k], starts[k]
        if chunk is None or not layer.chunks:
            header = layer.header_bytes()
            rebuilt = container.sealed(_flipped(header[:-4], spots)) + layer.to_bytes()[len(header) :]
        else:
            j = chunk % len(layer.chunks)
            changed = replace(layer.chunks[j], payload=_flipped(layer.chunks[j].payload, spots))
            rebuilt = replace(
                layer, chunks=[changed if n == j else c for n, c in enumerate(layer.chunks)]
            ).to_bytes()
        return data[:start] + rebuilt + data[start + layer.size :]

    spots = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), min_size=1, max_size=4)
    return st.builds(damaged, st.integers(0, 255), st.none() | st.integers(0, 1 << 10), spots)


def tail_files(codec, img) -> dict[str, bytes]:
    """The sources of tail_mutations: `img` with a tail after step T-1 in each of form 11's colour
    orders (FORMAT.md 6.6.1: green in the passes, green in raster order, all three in raster order;
    the encoder's choice steered), and with a tail after step 3 (no known intervals)."""
    out = {}
    with mock.patch.object(lossless_tail, "_interlaced_green_bits", lambda *args: -1.0):
        out["interlaced"] = codec.encode(img, seed=3, tail=True)
    with mock.patch.object(lossless_tail, "RASTER_MARGIN", -1.0):
        out["raster"] = codec.encode(img, seed=3, tail=True)
    with mock.patch.object(lossless_tail, "RASTER_MARGIN", 1e9):
        out["all raster"] = codec.encode(img, seed=3, tail=True)
    out["after step 3"] = codec.encode(img, seed=3, tail=True, tail_after=3)
    return out


def tail_mutations(data: bytes):
    """A hypothesis strategy of files whose last layer, a lossless tail (FORMAT.md 6.6), is damaged
    inside its checksums: its parameters (bits flipped, cut short, a varint spliced in, bytes
    replaced), a chunk's payload (bits flipped, cut or lengthened by whole words), a chunk's count,
    or its chunks dropped, repeated or swapped. `data`: an untiled file with a tail."""
    parsed = container.parse(data)
    tail = parsed.layers[-1]
    if tail.kind != container.KIND_TAIL:
        raise ValueError("tail_mutations needs a file whose last layer is a lossless tail")
    start = parsed.layer_offsets[-2] if len(parsed.layers) > 1 else parsed.header_size
    params, chunks, k = tail.tail_params, tail.chunks, len(tail.chunks)

    def rebuilt(new_params: bytes = params, new_chunks=chunks) -> bytes:
        layer = replace(tail, tail_params=bytes(new_params), chunks=list(new_chunks))
        return data[:start] + layer.to_bytes()

    def with_chunk(j: int, **changes) -> bytes:
        return rebuilt(new_chunks=[replace(c, **changes) if i == j % k else c for i, c in enumerate(chunks)])

    def overwrite_params(pos: int, junk: bytes) -> bytes:
        pos %= len(params)
        return rebuilt(params[:pos] + junk + params[pos + len(junk) :])

    def splice_params(pos: int, value: int) -> bytes:
        pos %= len(params) + 1
        return rebuilt(params[:pos] + container.put_varint(value) + params[pos:])

    def resize_payload(j: int, words: int, junk: bytes | None) -> bytes:
        payload = chunks[j % k].payload
        payload = payload[: 4 * (words % (len(payload) // 4 + 1))] if junk is None else payload + junk
        return with_chunk(j, payload=payload)

    def reorder(how: int, i: int, j: int) -> bytes:
        out = list(chunks)
        if how == 0 and k > 1:
            del out[i % k]
        elif how == 1:
            out.insert(i % k, out[i % k])
        else:
            out[i % k], out[j % k] = out[j % k], out[i % k]
        return rebuilt(new_chunks=out)

    spots = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), min_size=1, max_size=6)
    anywhere, chunk = st.integers(0, 1 << 20), st.integers(0, k - 1)
    varints = st.sampled_from([0, 1, 127, 128, 2**14, 2**31 - 1, 2**32, 2**63 - 1])
    words = st.binary(min_size=1, max_size=4).map(lambda b: b * 4)  # whole 32-bit words
    return st.one_of(
        st.builds(lambda s: rebuilt(_flipped(params, s)), spots),
        st.builds(lambda cut: rebuilt(params[: cut % (len(params) + 1)]), anywhere),
        st.builds(splice_params, anywhere, varints),
        st.builds(overwrite_params, anywhere, st.binary(min_size=1, max_size=8)),
        st.builds(lambda j, s: with_chunk(j, payload=_flipped(chunks[j % k].payload, s)), chunk, spots),
        st.builds(resize_payload, chunk, anywhere, st.none() | words),
        st.builds(
            lambda j, d: with_chunk(j, count=max(0, chunks[j % k].count + d)),
            chunk,
            st.sampled_from([-5, -1, 1, 7, 1000]),
        ),
        st.builds(reorder, st.integers(0, 2), chunk, chunk),
    )


def run_case(codec, blob: bytes, time_limit: float = 20.0) -> str:
    """Decode, info and truncate one blob; return how it ended. A numpy warning of invalid values
    (a NaN made, or cast to pixels) is a crash too: their pixels would differ between machines."""
    t0 = time.perf_counter()
    try:
        with np.errstate(invalid="raise"):
            files.info(blob)
            files.truncate(blob, max_bytes=len(blob))
            codec.decode(blob)
        outcome = "ok"
    except UqdmError as exc:
        outcome = f"error:{type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - this is what we are looking for
        outcome = f"crash:{type(exc).__name__}:{exc}"
    if time.perf_counter() - t0 > time_limit:
        outcome = f"slow:{outcome}"
    return outcome
